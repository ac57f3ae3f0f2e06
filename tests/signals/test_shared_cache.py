"""The deployment-wide forecast cache on SQLite, PostgreSQL and Redis: sharing, TTLs, leases and every fault.

PostgreSQL (``CS_TEST_POSTGRES_URL``, default 127.0.0.1:5432/test) and Redis (``CS_TEST_REDIS_URL``,
default database 13 on 127.0.0.1:6379, flushed by these tests and nothing else) are used where they
answer, and skipped where they do not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from faulty_server import faulty_server, send_json
from shared_cache_racer import KEY, T0  # the racing processes ask for the same key

from carbon_sensors.errors import ConfigurationError, SourceAuthError, SourceUnavailableError
from carbon_sensors.forecast import Forecast
from carbon_sensors.signals import shared_cache as sc
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.shared_cache import (
    RedisStore,
    SharedForecastCache,
    SqlStore,
    decode_forecast,
    encode_forecast,
    shared_cache_from_setting,
)

PG_ADMIN_URL = os.environ.get("CS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CS_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def forecast(value: float = 200.0, zone: str = "DE") -> Forecast:
    return Forecast.from_points([(T0 + timedelta(hours=h), value + h) for h in range(4)], zone=zone, source="test",
                                issued_at=T0, measured_until=T0 + timedelta(hours=1), error_24h=0.1, recent_error=0.02)


class Vendor:
    """A fetch function that counts its calls (the vendor's requests) and can fail."""

    def __init__(self, result: Forecast | Exception | None = None) -> None:
        self.calls, self.result = 0, result if result is not None else forecast()

    async def __call__(self) -> Forecast:
        self.calls += 1
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def get(cache: SharedForecastCache, vendor: Vendor, key=KEY, ttl_s: float = 3600.0, max_stale_s: float = 10800.0):
    return asyncio.run(cache.get(key, vendor, ttl_s=ttl_s, max_stale_s=max_stale_s))


# -- stores ------------------------------------------------------------------------------------------


def _postgres_url():
    psycopg = pytest.importorskip("psycopg")
    import sqlalchemy as sa

    url = sa.engine.make_url(PG_ADMIN_URL)
    try:
        admin = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                                dbname=url.database, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL server answers; set CS_TEST_POSTGRES_URL")
    name = f"cs_shared_cache_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return admin, name, url.set(database=name).render_as_string(hide_password=False)


def _redis_client():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis answers at {REDIS_URL}; set CS_TEST_REDIS_URL")
    return client


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def store_url(request, tmp_path):
    """A fresh, empty store of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cache.db'}"
    elif request.param == "postgresql":
        admin, name, url = _postgres_url()
        try:
            yield url
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
    else:
        client = _redis_client()
        client.flushdb()
        try:
            yield REDIS_URL
        finally:
            client.flushdb()


def make(url: str, **kwargs) -> SharedForecastCache:
    """One process's view of the store (a new owner, as another process would be)."""
    kwargs.setdefault("timeout_s", 5.0)
    kind = RedisStore if url.startswith("redis") else SqlStore
    store = kind(url, timeout_s=kwargs["timeout_s"])
    return SharedForecastCache(store, **kwargs)


def age(url: str, key, seconds: float) -> None:
    """Make the stored row ``seconds`` older on the store's own clock."""
    digest = sc._digest(key)
    if url.startswith("redis"):
        _redis_client().hincrbyfloat(sc._REDIS_PREFIX + "forecast:" + digest, "fetched_at", -seconds)
    else:
        import sqlalchemy as sa

        with sa.create_engine(url).begin() as conn:
            conn.execute(sa.text(f"UPDATE {sc.TABLE} SET fetched_at = fetched_at - :s WHERE key = :k"),
                         {"s": seconds, "k": digest})


def put_raw(url: str, key, payload: str) -> None:
    """Write a row as another (broken or newer) writer would, fresh on the store's clock."""
    cache = make(url)
    store, digest = cache.store, sc._digest(key)
    assert store.try_lease(digest, "writer", 30.0)
    store.write(digest, payload, "DE", "test", 3600.0, "writer")


def stored_payload(url: str, key) -> str | None:
    row = make(url).store.read(sc._digest(key))
    return None if row is None else row.payload


# -- sharing ---------------------------------------------------------------------------------------


def test_the_row_format_round_trips_every_field():
    """A stored forecast comes back equal, metadata included."""
    f = forecast()
    assert decode_forecast(encode_forecast(f)) == f
    assert json.loads(encode_forecast(f))["schema"] == sc.SCHEMA


def test_a_price_forecast_round_trips_and_is_shared_like_carbon(store_url):
    """Prices share the store too: one ENTSO-E request serves three processes, the currency kept."""
    import httpx

    from carbon_sensors.prices import PriceForecast
    from carbon_sensors.signals.credentials import Credentials
    from carbon_sensors.signals.prices.entsoe import EntsoePrices

    price = PriceForecast.from_points([(datetime(2026, 6, 15, tzinfo=UTC), -12.5), (datetime(2026, 6, 15, 1, tzinfo=UTC), 80.0)],
                                      zone="DE", source="entsoe", currency="EUR", error_24h=0.1)
    assert decode_forecast(encode_forecast(price)) == price
    day = (Path(__file__).resolve().parent.parent / "fixtures" / "entsoe_a44_DE-LU_2025-10-06_PT15M.xml").read_text()
    calls = []

    def vendor(request):
        calls.append(request)
        return httpx.Response(200, text=day, headers={"Content-Type": "text/xml"})

    now = datetime(2025, 10, 6, 8, 20, tzinfo=UTC)
    answers = []
    for _ in range(3):  # three processes: each its own process cache and price source, one store
        source = EntsoePrices(transport=httpx.MockTransport(vendor), credentials=Credentials(api_key="t0ken-x"),
                              cache=ForecastCache(shared=make(store_url)))
        answers.append(asyncio.run(source.fetch("DE", now, now + timedelta(hours=4), now=now)))
    assert len(calls) == 1 and answers[0] == answers[1] == answers[2] and answers[0].currency == "EUR"


def test_one_process_fetches_and_the_others_read_its_row(store_url):
    """Three processes, one vendor request; the others are hits, the forecast equal."""
    vendor = Vendor()
    caches = [make(store_url) for _ in range(3)]
    results = [get(cache, vendor) for cache in caches]
    assert vendor.calls == 1
    assert all(r == results[0] for r in results)
    assert [c.stats["fetches"] for c in caches] == [1, 0, 0] and [c.stats["hits"] for c in caches] == [0, 1, 1]


def test_the_ttl_is_kept_on_the_stores_clock(store_url):
    """A row older than the TTL (on the store's clock) is fetched again, once, by whoever comes first."""
    vendor = Vendor()
    a, b = make(store_url), make(store_url)
    get(a, vendor, ttl_s=600)
    age(store_url, KEY, 601)
    vendor.result = forecast(300.0)
    assert get(b, vendor, ttl_s=600).values[0] == 300.0
    assert get(a, vendor, ttl_s=600).values[0] == 300.0
    assert vendor.calls == 2


def test_the_per_process_cache_stays_in_front(store_url):
    """A process asks the store once per key; later callers in it are served from its own cache."""
    vendor = Vendor()
    shared = make(store_url)
    local = ForecastCache(shared=shared)

    async def twice():
        for _ in range(2):
            await local.get(KEY, vendor, ttl_s=600, max_stale_s=3600)

    asyncio.run(twice())
    assert vendor.calls == 1 and local.fetches == 1 and shared.stats["fetches"] == 1


def test_waiters_in_one_process_share_one_store_lookup(store_url):
    """Fifty concurrent callers in one process: one store lookup, one vendor request."""
    vendor = Vendor()
    shared = make(store_url)
    local = ForecastCache(shared=shared)

    async def many():
        return await asyncio.gather(*(local.get(KEY, vendor, ttl_s=600, max_stale_s=3600) for _ in range(50)))

    assert len(set(asyncio.run(many()))) == 1
    assert vendor.calls == 1 and sum(shared.stats.values()) == 1


def test_a_caller_cancelled_mid_fetch_still_fills_the_store_for_the_others(store_url):
    """A trigger dropped while its request is out: the answer still reaches the store and the others.

    The request had reached the vendor; cancelling it would make the next process ask again.
    """
    answered = []

    async def slow_vendor():
        await asyncio.sleep(0.2)
        answered.append(1)
        return forecast()

    shared, other = make(store_url), make(store_url)

    async def cancel_the_first():
        local = ForecastCache(shared=shared)
        first = asyncio.ensure_future(local.get(KEY, slow_vendor, ttl_s=600, max_stale_s=3600))
        second = asyncio.ensure_future(local.get(KEY, slow_vendor, ttl_s=600, max_stale_s=3600))
        await asyncio.sleep(0.05)
        first.cancel()
        got = await second
        with pytest.raises(asyncio.CancelledError):
            await first
        return got, local

    got, local = asyncio.run(cancel_the_first())
    assert got == forecast() and answered == [1] and local.fetches == 1
    vendor = Vendor()
    assert get(other, vendor) == forecast() and vendor.calls == 0 and other.stats["hits"] == 1


# -- racing processes --------------------------------------------------------------------------------

RACER = Path(__file__).with_name("shared_cache_racer.py")


def test_processes_racing_on_an_expired_entry_send_one_request(store_url, tmp_path):
    """Four real processes find the same expired row at once: the vendor sees one request, all get its answer."""
    stale = make(store_url)
    get(stale, Vendor(forecast(999.0)), ttl_s=600)
    age(store_url, KEY, 700)  # expired for everyone
    go = tmp_path / "go"
    with faulty_server(lambda n, h: send_json(h, {"value": 100.0 + n})) as server:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path])}
        racers = [subprocess.Popen([sys.executable, str(RACER), store_url, server["url"], str(go)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        try:
            for r in racers:  # each says it is ready (imports done, store opened) by a line on stdout
                assert r.stdout.readline().strip() == "ready", r.stderr.read()
            go.touch()
            outputs = [r.communicate(timeout=60) for r in racers]
        finally:
            for r in racers:
                if r.poll() is None:
                    r.kill()
        answers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        assert server["requests"] == 1, (server["requests"], [err[-2000:] for _, err in outputs])
    assert {a["value"] for a in answers} == {101.0}
    assert sum(a["stats"]["fetches"] for a in answers) == 1


# -- stale-while-error -------------------------------------------------------------------------------


def test_a_failed_refresh_serves_the_stored_forecast_marked_stale(store_url):
    """The vendor is down at the refresh: the shared row (within max_stale) serves, marked [stale]."""
    a, b = make(store_url), make(store_url)
    get(a, Vendor(), ttl_s=600)
    age(store_url, KEY, 900)
    down = Vendor(SourceUnavailableError("the vendor is down"))
    served = get(b, down, ttl_s=600, max_stale_s=3600)
    assert down.calls == 1 and served.source == "test [stale]" and served.values == forecast().values
    age(store_url, KEY, 3600)  # now older than max_stale: the error comes through
    with pytest.raises(SourceUnavailableError):
        get(b, down, ttl_s=600, max_stale_s=3600)


def test_refused_credentials_are_never_covered_by_a_stale_row(store_url):
    """A 401 is the DAG author's to fix: it is raised, not hidden behind an old forecast."""
    a = make(store_url)
    get(a, Vendor(), ttl_s=600)
    age(store_url, KEY, 900)
    with pytest.raises(SourceAuthError):
        get(make(store_url), Vendor(SourceAuthError("refused")), ttl_s=600, max_stale_s=3600)


def test_a_stale_answer_is_not_kept_as_fresh_by_the_process(store_url):
    """After a stale answer the process asks again on the next call (the vendor may be back)."""
    a = make(store_url)
    get(a, Vendor(), ttl_s=600)
    age(store_url, KEY, 900)
    shared = make(store_url)
    local = ForecastCache(shared=shared)
    down = Vendor(SourceUnavailableError("down"))

    async def twice():
        first = await local.get(KEY, down, ttl_s=600, max_stale_s=3600)
        down.result = forecast(50.0)
        return first, await local.get(KEY, down, ttl_s=600, max_stale_s=3600)

    first, second = asyncio.run(twice())
    assert first.source.endswith("[stale]") and second.values[0] == 50.0 and down.calls == 2


# -- bad rows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    "{", encode_forecast(forecast())[:-7], "not json at all", json.dumps({"schema": 1, "zone": "DE"}),
    json.dumps({**json.loads(encode_forecast(forecast())), "values": [1.0, -5.0, 3.0, 4.0]}), "[]",
], ids=["brace", "truncated", "text", "missing-fields", "invalid-values", "wrong-shape"])
def test_a_corrupt_or_truncated_row_warns_and_is_fetched_and_rewritten(store_url, payload, caplog):
    """An unreadable row is a miss with a warning; the fetching process writes a good row over it."""
    put_raw(store_url, KEY, payload)
    vendor = Vendor()
    with caplog.at_level(logging.WARNING, logger="carbon_sensors.signals.shared_cache"):
        assert get(make(store_url), vendor) == forecast()
    assert vendor.calls == 1 and "unreadable row" in caplog.text
    assert decode_forecast(stored_payload(store_url, KEY)) == forecast()
    assert get(make(store_url), vendor) == forecast() and vendor.calls == 1  # repaired: the next process hits


def test_a_row_from_a_newer_schema_is_left_alone(store_url, caplog):
    """A newer version's row: a warning, the per-process path, and the row kept for the newer processes."""
    newer = json.dumps({**json.loads(encode_forecast(forecast())), "schema": sc.SCHEMA + 1, "extra": [1, 2]})
    put_raw(store_url, KEY, newer)
    vendor = Vendor()
    with caplog.at_level(logging.WARNING, logger="carbon_sensors.signals.shared_cache"):
        cache = make(store_url)
        assert get(cache, vendor) == forecast()
    assert vendor.calls == 1 and "newer than this carbon-sensors" in caplog.text and cache.stats["bypassed"] == 1
    assert stored_payload(store_url, KEY) == newer


# -- a store that is down ------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never answers (a hung store)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:{port}/0",
    "postgresql+psycopg://postgres@127.0.0.1:{port}/test",
], ids=["redis-refused", "postgresql-refused"])
def test_a_store_refusing_connections_degrades_to_the_process_cache(url, caplog):
    """Connection refused: one warning, the forecast from the vendor, and the store left alone for a while."""
    cache = make(url.format(port=_closed_port()), timeout_s=3.0)
    vendor = Vendor()
    with caplog.at_level(logging.WARNING, logger="carbon_sensors.signals.shared_cache"):
        assert get(cache, vendor) == forecast()
        assert get(cache, vendor, key=(*KEY[:-1], T0 + timedelta(hours=1))) == forecast()
    assert vendor.calls == 2 and cache.stats["bypassed"] == 2
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1, caplog.text  # once per outage, not once per call
    assert "fetching through this process's own cache" in warnings[0].getMessage()


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
def test_a_store_that_never_answers_is_given_up_on_after_the_timeout(scheme, silent_port, caplog):
    """A hung store (connects, never answers): the call gives up after timeout_s and the vendor serves."""
    url = (f"redis://127.0.0.1:{silent_port}/0" if scheme == "redis"
           else f"postgresql+psycopg://postgres@127.0.0.1:{silent_port}/test")
    cache = make(url, timeout_s=0.5)
    vendor = Vendor()
    with caplog.at_level(logging.WARNING, logger="carbon_sensors.signals.shared_cache"):
        assert get(cache, vendor) == forecast()
    assert vendor.calls == 1 and cache.stats["bypassed"] == 1
    assert "unavailable" in caplog.text


def test_a_store_that_comes_back_is_used_again(tmp_path):
    """After retry_s the store is asked again."""
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'cache.db'}"  # cannot be opened: its directory is missing
    cache = make(url, retry_s=0.0)
    vendor = Vendor()
    get(cache, vendor)
    assert cache.stats["bypassed"] == 1
    (tmp_path / "missing-dir").mkdir()
    get(cache, vendor, key=(*KEY[:-1], T0 + timedelta(hours=1)))
    assert cache.stats["fetches"] == 1  # the store answered: this process fetched as its leader


def test_the_clock_is_checked_once_the_store_answers_not_while_it_is_down(tmp_path, caplog):
    """A process that met the store down checks its clock against the store when it comes back."""
    import time

    url = f"sqlite:///{tmp_path / 'missing-dir' / 'cache.db'}"
    cache = make(url, retry_s=0.0, wall=lambda: time.time() + 60.0)
    get(cache, Vendor())
    assert cache.stats["bypassed"] == 1
    (tmp_path / "missing-dir").mkdir()
    with caplog.at_level(logging.WARNING, logger="carbon_sensors.signals.shared_cache"):
        get(cache, Vendor(), key=(*KEY[:-1], T0 + timedelta(hours=1)))
    assert any("clock is 60 s ahead of" in r.getMessage() for r in caplog.records)


def test_a_fetch_that_outlives_its_lease_says_so_as_another_process_fetches_too(store_url, caplog):
    """A leader slower than lease_s: a process arriving after the lapse leads too, and the slow one warns."""
    slow, other = make(store_url, lease_s=0.2), make(store_url, lease_s=0.2)
    calls = []

    async def vendor(delay):
        calls.append(delay)
        await asyncio.sleep(delay)
        return forecast()

    async def both():
        first = asyncio.ensure_future(slow.get(KEY, lambda: vendor(0.6), ttl_s=600, max_stale_s=3600))
        await asyncio.sleep(0.4)  # the first's lease has lapsed; its row is not written yet
        second = await other.get(KEY, lambda: vendor(0.0), ttl_s=600, max_stale_s=3600)
        return await first, second

    with caplog.at_level(logging.WARNING, logger="carbon_sensors.signals.shared_cache"):
        assert asyncio.run(both()) == (forecast(), forecast())
    assert calls == [0.6, 0.0] and slow.stats["fetches"] == other.stats["fetches"] == 1
    [said] = [r.getMessage() for r in caplog.records if "longer than the shared cache's" in r.getMessage()]
    assert said.startswith("fetching a forecast took 0.6") and "longer than the shared cache's 0.2 s lease; another " \
        "process may have fetched it too (a slow vendor, or a process starved of CPU)" in said, said


def test_a_killed_leader_holds_nobody_up_past_wait_s(store_url, caplog):
    """A lease whose holder died: the others wait at most wait_s, then fetch themselves."""
    cache = make(store_url, wait_s=0.3)
    assert cache.store.try_lease(sc._digest(KEY), "a-killed-process", 600.0)
    vendor = Vendor()
    with caplog.at_level(logging.WARNING, logger="carbon_sensors.signals.shared_cache"):
        assert get(cache, vendor) == forecast()
    assert vendor.calls == 1 and cache.stats["waits"] >= 1 and "fetching here" in caplog.text


# -- clock skew ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("skew_s", [60.0, -60.0])
def test_clock_skew_between_processes_changes_nothing_but_a_warning(store_url, skew_s, caplog):
    """Two processes a minute apart agree on freshness (the store's clock decides) and the skewed one warns."""
    import time

    right = make(store_url)
    skewed = make(store_url, wall=lambda: time.time() + skew_s)
    vendor = Vendor()
    with caplog.at_level(logging.WARNING, logger="carbon_sensors.signals.shared_cache"):
        get(right, vendor, ttl_s=120)
        get(skewed, vendor, ttl_s=120)   # 60 s off, the row is still fresh for it
        assert vendor.calls == 1
        age(store_url, KEY, 121)
        get(skewed, vendor, ttl_s=120)   # and expired for it when it is expired for the store
        get(right, vendor, ttl_s=120)
    assert vendor.calls == 2
    skew = [r.getMessage() for r in caplog.records if "clock is" in r.getMessage()]
    assert len(skew) == 1 and ("ahead of" if skew_s > 0 else "behind") in skew[0]


# -- secrets and keys ----------------------------------------------------------------------------------


def test_no_key_or_secret_enters_the_store(store_url, monkeypatch):
    """A real keyed source through the shared cache: the store holds the forecast, never the key, URL or conn id."""
    from carbon_sensors.signals.credentials import Credentials
    from carbon_sensors.signals.electricitymaps import ElectricityMapsSource

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    bodies = {p: json.loads((fixtures / f"electricitymaps_{p}_DE.json").read_text()) for p in ("forecast", "latest")}
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    seen = []

    def answer(n, handler):
        seen.append(handler.headers.get("auth-token"))
        send_json(handler, bodies["latest" if "/latest" in handler.path else "forecast"])

    with faulty_server(answer) as server:
        shared = make(store_url)
        source = ElectricityMapsSource(base_url=server["url"], credentials=Credentials(api_key=sentinel),
                                       cache=ForecastCache(shared=shared))
        got = asyncio.run(source.fetch("DE", datetime(2023, 3, 15, 1, tzinfo=UTC), datetime(2023, 3, 15, 6, tzinfo=UTC),
                                       now=datetime(2023, 3, 15, 1, 10, tzinfo=UTC)))
        port = str(server["url"].rsplit(":", 1)[1])
    assert seen == [sentinel, sentinel] and shared.stats["fetches"] == 1
    dump = _dump(store_url)
    assert got.zone.encode() in dump  # the sweep reads the rows: the forecast's zone is there...
    for needle in (sentinel, "auth-token", "127.0.0.1", port):  # ...and no key, header, or URL
        assert needle.encode() not in dump, needle


def _dump(url: str) -> bytes:
    """Every key and value in the store, as bytes."""
    if url.startswith("redis"):
        client = _redis_client()
        out = []
        for key in client.scan_iter("*"):
            out.append(key)
            kind = client.type(key)
            if kind == b"hash":
                for field, value in client.hgetall(key).items():
                    out += [field, value]
            elif kind == b"string":
                out.append(client.get(key) or b"")
        return b"\n".join(out)
    import sqlalchemy as sa

    with sa.create_engine(url).connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {sc.TABLE}")).all()
    return "\n".join(repr(tuple(r)) for r in rows).encode()


# -- settings ------------------------------------------------------------------------------------------


def test_settings_name_the_store(monkeypatch, tmp_path):
    """off by default; 'ledger' means the ledger's database; SQL and Redis URLs; anything else is refused."""
    assert shared_cache_from_setting(None) is None and shared_cache_from_setting("off") is None
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert shared_cache_from_setting("ledger", ledger_url=ledger).store.describe() == ledger
    monkeypatch.setenv("CARBON_SENSORS_LEDGER_URL", ledger)
    assert shared_cache_from_setting("ledger").store.describe() == ledger
    assert isinstance(shared_cache_from_setting("redis://:secret@127.0.0.1:6379/13").store, RedisStore)
    assert "secret" not in shared_cache_from_setting("redis://:secret@127.0.0.1:6379/13").store.describe()
    with pytest.raises(ConfigurationError, match="shared_cache must be"):
        shared_cache_from_setting("mysql://db/cache")


def test_the_process_cache_follows_the_environment_and_warns_on_nonsense(monkeypatch, caplog, tmp_path):
    """CARBON_SENSORS_SHARED_CACHE picks the process's store; a bad value warns and leaves it off."""
    monkeypatch.setattr(sc, "_process", {})
    monkeypatch.setenv("CARBON_SENSORS_SHARED_CACHE", f"sqlite:///{tmp_path / 'c.db'}")
    monkeypatch.setenv("CARBON_SENSORS_SHARED_CACHE_WAIT_S", "2.5")
    cache = sc.process_shared_cache()
    assert cache is not None and cache.wait_s == 2.5 and sc.process_shared_cache() is cache
    monkeypatch.setattr(sc, "_process", {})
    monkeypatch.setenv("CARBON_SENSORS_SHARED_CACHE", "memcached://nope")
    # Airflow's logging setup, once anything in this process has imported it, disables existing loggers.
    monkeypatch.setattr(sc.log, "disabled", False)
    with caplog.at_level(logging.WARNING, logger="carbon_sensors.signals.shared_cache"):
        assert sc.process_shared_cache() is None
    assert "shared_cache must be" in caplog.text
    monkeypatch.setattr(sc, "_process", {})
    monkeypatch.delenv("CARBON_SENSORS_SHARED_CACHE")
    assert sc.process_shared_cache() is None


def test_an_airflow_option_left_empty_falls_back_to_the_environment(monkeypatch):
    """With Airflow's reader registered, an unset [carbon_sensors] option does not hide CARBON_SENSORS_*."""
    pytest.importorskip("airflow")
    import carbon_sensors.hooks.shared_cache  # noqa: F401 - registers Airflow's reader
    from carbon_sensors.provider_info import get_provider_info

    options = get_provider_info()["config"]["carbon_sensors"]["options"]
    assert options["shared_cache_wait_s"]["default"] == "" and options["shared_cache_timeout_s"]["default"] == ""
    monkeypatch.setenv("CARBON_SENSORS_SHARED_CACHE_WAIT_S", "2.5")
    monkeypatch.setenv("CARBON_SENSORS_SHARED_CACHE_TIMEOUT_S", "0.5")
    assert sc._setting("shared_cache_wait_s") == "2.5" and sc._setting("shared_cache_timeout_s") == "0.5"
