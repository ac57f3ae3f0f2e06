"""One vendor request per zone per refresh across a deployment: a forecast cache that processes share.

Each process keeps its own :class:`~carbon_sensors.signals.cache.ForecastCache` in front; on a miss
it asks a :class:`SharedForecastCache` before the vendor. The shared cache keeps forecasts in a store
every process of the deployment reaches: an SQL database (the ledger's, by default: PostgreSQL in
production, the SQLite file on one machine; table ``carbon_sensors_forecast_cache``) or Redis (keys
``carbon_sensors:forecast:*`` and ``carbon_sensors:lease:*``).

Semantics are the per-process cache's: the same keys (hashed: a key never enters the store), the
same TTLs, single flight across processes (a lease: one process fetches, the others wait for its
row, at most ``wait_s``), and stale-while-error (a row up to ``max_stale_s`` old serves when the
refresh fails, marked ``[stale]``). Ages are measured on the store's clock, so processes whose clocks
disagree still agree on freshness. Only forecasts and their zone, source and times are stored; never
credentials.

A store that is down, slow (``timeout_s`` per operation) or holds a corrupt, truncated or newer-schema
row is never an error for a task: the process logs a warning and fetches through its own cache
(and leaves an unreachable store alone for ``retry_s``).

Settings (environment, or the Airflow options of the same name under ``[carbon_sensors]``):
``CARBON_SENSORS_SHARED_CACHE`` = ``off`` (default), ``ledger`` (the ledger's database), an SQL URL or
a ``redis://host:6379/0`` URL; ``CARBON_SENSORS_SHARED_CACHE_TIMEOUT_S`` (default 1);
``CARBON_SENSORS_SHARED_CACHE_WAIT_S`` (default 5).

>>> cache = shared_cache_from_setting("sqlite://")
>>> cache.store.describe(), cache.timeout_s
('sqlite://', 1.0)
>>> shared_cache_from_setting("off") is None
True
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from carbon_sensors.errors import ConfigurationError, ForecastError, SharedCacheError, SourceAuthError, SourceError
from carbon_sensors.forecast import Forecast
from carbon_sensors.renames import env_setting
from carbon_sensors.signals.shared_rows import SCHEMA, _NewerRow, decode_forecast, encode_forecast

__all__ = [
    "SCHEMA",
    "SHARED_CACHE_ENV",
    "TABLE",
    "RedisStore",
    "SharedForecastCache",
    "SqlStore",
    "decode_forecast",
    "encode_forecast",
    "process_shared_cache",
    "register_settings_reader",
    "shared_cache_from_setting",
]

log = logging.getLogger(__name__)

SHARED_CACHE_ENV = "CARBON_SENSORS_SHARED_CACHE"
TABLE = "carbon_sensors_forecast_cache"
_STALE_MARK = " [stale]"
_REDIS_PREFIX = "carbon_sensors:"
#: Clock skew between this process and the store above which a warning is logged (ages use the store's clock).
_SKEW_WARN_S = 5.0


def _digest(key: Hashable) -> str:
    """The store's name for a cache key: a hash, so no part of the key (a URL, a connection id) is stored."""
    return hashlib.sha256(repr(key).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Row:
    payload: str | None  # None: only a lease exists
    age_s: float         # on the store's clock
    leased: bool         # another process holds a live lease


# -- stores (sync; called from a worker thread) ------------------------------------------------------


class Store(Protocol):
    def describe(self) -> str: ...

    def now(self) -> float: ...

    def read(self, key: str) -> _Row | None: ...

    def try_lease(self, key: str, owner: str, lease_s: float) -> bool: ...

    def write(self, key: str, payload: str, zone: str, source: str, keep_s: float, owner: str) -> None: ...

    def release(self, key: str, owner: str) -> None: ...


class SqlStore:
    """Rows in ``carbon_sensors_forecast_cache`` of an SQLite or PostgreSQL database (created on first use).

    >>> SqlStore("sqlite://").describe()
    'sqlite://'
    """

    def __init__(self, url: str, *, timeout_s: float = 1.0) -> None:
        import sqlalchemy as sa

        try:
            self._url = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise ConfigurationError("cannot read the shared cache's database URL; write e.g. "
                                     "postgresql+psycopg://user:password@host/database or sqlite:////path/file.db") from None
        self.dialect = self._url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigurationError(f"the shared cache supports SQLite, PostgreSQL and Redis, not {self.dialect!r}")
        self.timeout_s = timeout_s
        # The store's clock, in epoch seconds: ages never depend on a process's own clock.
        self._now_sql = ("extract(epoch from clock_timestamp())" if self.dialect == "postgresql"
                         else "((julianday('now') - 2440587.5) * 86400.0)")
        self._engine: Any = None
        self._pid: int | None = None
        self._ready = False
        self._lock = threading.Lock()

    def describe(self) -> str:
        return self._url.render_as_string(hide_password=True)

    def _conn(self) -> Any:
        import sqlalchemy as sa

        with self._lock:
            if self._engine is None or self._pid != os.getpid():
                if self._engine is not None:
                    self._engine.dispose(close=False)  # a forked child leaves the parent's connections alone
                kwargs: dict[str, Any] = {}
                database = self._url.database or ""
                if self.dialect == "sqlite":
                    kwargs["connect_args"] = {"timeout": self.timeout_s, "check_same_thread": False}
                    if database in ("", ":memory:"):
                        kwargs["poolclass"] = sa.pool.StaticPool
                else:
                    kwargs["pool_pre_ping"] = True
                    kwargs["pool_size"], kwargs["max_overflow"] = 2, 2
                    kwargs["connect_args"] = {"connect_timeout": max(1, round(self.timeout_s)),
                                              "options": f"-c statement_timeout={int(self.timeout_s * 1000)}"}
                self._engine = sa.create_engine(self._url, **kwargs)
                self._pid, self._ready = os.getpid(), False
            engine = self._engine
        if not self._ready:
            with engine.begin() as conn:
                if self.dialect == "postgresql":  # CREATE TABLE IF NOT EXISTS races on PostgreSQL's catalog
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x27B0_8EA3_A4D7_C503})
                real = "double precision" if self.dialect == "postgresql" else "real"
                conn.execute(sa.text(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} (key varchar(64) PRIMARY KEY, zone text, source text, "
                    f"payload text, fetched_at {real}, expires_at {real}, lease_owner text, lease_until {real})"))
            self._ready = True
        return engine.begin()

    def now(self) -> float:
        import sqlalchemy as sa

        with self._conn() as conn:
            return float(conn.execute(sa.text(f"SELECT {self._now_sql}")).scalar())

    def read(self, key: str) -> _Row | None:
        import sqlalchemy as sa

        with self._conn() as conn:
            row = conn.execute(sa.text(
                f"SELECT payload, {self._now_sql} - fetched_at, "
                f"CASE WHEN lease_until > {self._now_sql} THEN 1 ELSE 0 END FROM {TABLE} WHERE key = :k"),
                {"k": key}).first()
        if row is None:
            return None
        return _Row(row[0], float(row[1]) if row[1] is not None else float("inf"), bool(row[2]))

    def try_lease(self, key: str, owner: str, lease_s: float) -> bool:
        import sqlalchemy as sa

        with self._conn() as conn:
            result = conn.execute(sa.text(
                f"INSERT INTO {TABLE} (key, lease_owner, lease_until) VALUES (:k, :o, {self._now_sql} + :l) "
                f"ON CONFLICT (key) DO UPDATE SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until "
                f"WHERE {TABLE}.lease_until IS NULL OR {TABLE}.lease_until <= {self._now_sql}"),
                {"k": key, "o": owner, "l": lease_s})
            return result.rowcount == 1

    def write(self, key: str, payload: str, zone: str, source: str, keep_s: float, owner: str) -> None:
        import sqlalchemy as sa

        now = self._now_sql
        with self._conn() as conn:
            conn.execute(sa.text(
                f"INSERT INTO {TABLE} (key, zone, source, payload, fetched_at, expires_at) "
                f"VALUES (:k, :z, :s, :p, {now}, {now} + :keep) ON CONFLICT (key) DO UPDATE SET zone = excluded.zone, "
                f"source = excluded.source, payload = excluded.payload, fetched_at = excluded.fetched_at, "
                f"expires_at = excluded.expires_at, "
                f"lease_owner = CASE WHEN {TABLE}.lease_owner = :o THEN NULL ELSE {TABLE}.lease_owner END, "
                f"lease_until = CASE WHEN {TABLE}.lease_owner = :o THEN NULL ELSE {TABLE}.lease_until END"),
                {"k": key, "z": zone, "s": source, "p": payload, "keep": keep_s, "o": owner})
            # Rows past any use (stale-while-error included) go; a leader writes once per zone per refresh.
            conn.execute(sa.text(f"DELETE FROM {TABLE} WHERE (expires_at < {now} OR (payload IS NULL AND "
                                 f"lease_until < {now} - 3600)) AND (lease_until IS NULL OR lease_until < {now})"))

    def release(self, key: str, owner: str) -> None:
        import sqlalchemy as sa

        with self._conn() as conn:
            conn.execute(sa.text(f"UPDATE {TABLE} SET lease_owner = NULL, lease_until = NULL "
                                 "WHERE key = :k AND lease_owner = :o"), {"k": key, "o": owner})


_REDIS_WRITE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[1], 'payload', ARGV[1], 'fetched_at', string.format('%.6f', now), 'zone', ARGV[2], 'source', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
return 1
"""
_REDIS_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RedisStore:
    """A hash per forecast (``carbon_sensors:forecast:<hash>``) and a lease key, expired by Redis itself.

    >>> RedisStore("redis://:pw@127.0.0.1:6379/13").describe()
    'redis://127.0.0.1:6379/13'
    """

    def __init__(self, url: str, *, timeout_s: float = 1.0) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(f"a Redis URL starts redis://, rediss:// or unix://, got {parts.scheme!r}")
        self.url, self.timeout_s = url, timeout_s
        host = parts.hostname or ""
        self._shown = f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"
        self._client: Any = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        return self._shown

    def _redis(self) -> Any:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                try:
                    import redis
                except ImportError:
                    raise ConfigurationError("the shared cache on Redis needs redis-py: pip install "
                                             "'carbon-sensors[redis]'") from None
                self._client = redis.Redis.from_url(self.url, socket_timeout=self.timeout_s,
                                                    socket_connect_timeout=self.timeout_s, retry_on_timeout=False)
                self._pid = os.getpid()
            return self._client

    def now(self) -> float:
        seconds, micro = self._redis().time()
        return seconds + micro / 1e6

    def read(self, key: str) -> _Row | None:
        client = self._redis()
        pipe = client.pipeline(transaction=False)
        pipe.hmget(_REDIS_PREFIX + "forecast:" + key, "payload", "fetched_at")
        pipe.time()
        pipe.exists(_REDIS_PREFIX + "lease:" + key)
        (payload, fetched_at), (seconds, micro), leased = pipe.execute()
        if payload is None and not leased:
            return None
        try:
            age = seconds + micro / 1e6 - float(fetched_at) if fetched_at is not None else float("inf")
        except ValueError:
            age = float("inf")
        return _Row(payload.decode("utf-8", "replace") if payload is not None else None, age, bool(leased))

    def try_lease(self, key: str, owner: str, lease_s: float) -> bool:
        return bool(self._redis().set(_REDIS_PREFIX + "lease:" + key, owner, nx=True, px=max(1, int(lease_s * 1000))))

    def write(self, key: str, payload: str, zone: str, source: str, keep_s: float, owner: str) -> None:
        self._redis().eval(_REDIS_WRITE, 2, _REDIS_PREFIX + "forecast:" + key, _REDIS_PREFIX + "lease:" + key,
                           payload, zone, source, max(1, int(keep_s * 1000)), owner)

    def release(self, key: str, owner: str) -> None:
        self._redis().eval(_REDIS_RELEASE, 1, _REDIS_PREFIX + "lease:" + key, owner)


# -- the cache -------------------------------------------------------------------------------------

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """This process's threads for store calls (threads do not survive a fork: a child gets its own)."""
    pid = os.getpid()
    with _pools_lock:
        pool = _pools.get(pid)
        if pool is None:
            _pools.clear()
            pool = _pools[pid] = ThreadPoolExecutor(max_workers=4, thread_name_prefix="carbon-sensors-shared-cache")
        return pool


class SharedForecastCache:
    """The deployment-wide layer behind a process's ForecastCache: ``await shared.get(key, fetch, ...)``.

    ``timeout_s`` bounds each store call; ``wait_s`` how long a process waits for another's fetch
    before fetching itself; ``lease_s`` how long a fetching process holds the lease (a killed one's
    lease lapses by itself); ``retry_s`` how long an unreachable store is left alone.
    ``wall`` is this process's clock, only compared with the store's to warn about skew.

    >>> SharedForecastCache(SqlStore("sqlite://"), wait_s=2.0).wait_s
    2.0
    """

    def __init__(self, store: Store, *, timeout_s: float = 1.0, wait_s: float = 5.0, lease_s: float = 30.0,
                 retry_s: float = 30.0, poll_s: float = 0.05, wall: Callable[[], float] = time.time) -> None:
        if min(timeout_s, lease_s, poll_s) <= 0 or wait_s < 0 or retry_s < 0:
            raise ConfigurationError("shared cache timeouts must be positive, waits zero or more")
        self.store, self.timeout_s, self.wait_s, self.lease_s = store, timeout_s, wait_s, lease_s
        self.retry_s, self.poll_s, self.wall = retry_s, poll_s, wall
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._down_until = 0.0
        self._skew_checked = False
        #: what happened, for tests and benchmarks: hits, fetches (as leader), waits, stale, bypassed
        self.stats: dict[str, int] = {"hits": 0, "fetches": 0, "waits": 0, "stale": 0, "bypassed": 0}

    def __repr__(self) -> str:
        return f"SharedForecastCache({self.store.describe()!r})"

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """One store call in a worker thread, bounded by ``timeout_s``; any failure is a SharedCacheError."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(_pool(), function, *args), self.timeout_s)
        except TimeoutError:
            raise SharedCacheError(f"no answer within {self.timeout_s:g} s") from None
        except (ConfigurationError, SharedCacheError):
            raise
        except Exception as exc:  # noqa: BLE001 - redis, SQLAlchemy and driver errors alike mean "down"
            reason = str(exc).strip().splitlines()
            raise SharedCacheError(f"{type(exc).__name__}: {reason[0][:200] if reason else ''}") from None

    def _down(self, exc: Exception) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("the shared forecast cache at %s is unavailable (%s); fetching through this process's own "
                        "cache, trying the store again in %.0f s", self.store.describe(), exc, self.retry_s)
        self._down_until = time.monotonic() + self.retry_s

    async def _check_skew(self) -> None:
        store_now = await self._call(self.store.now)  # a store that is down is checked on its next use
        self._skew_checked = True
        skew = self.wall() - store_now
        if abs(skew) > _SKEW_WARN_S:
            log.warning("this process's clock is %.0f s %s the shared forecast cache's (%s); ages are measured on the "
                        "store's clock, so caching is unaffected, but check the machine's time sync (NTP)",
                        abs(skew), "ahead of" if skew > 0 else "behind", self.store.describe())

    def _decode(self, row: _Row | None) -> tuple[Forecast | None, bool]:
        """(the row's forecast or None, whether the row is newer than this version)."""
        if row is None or row.payload is None:
            return None, False
        try:
            return decode_forecast(row.payload), False
        except _NewerRow as exc:
            log.warning("the shared forecast cache at %s holds a %s; fetching through this process's own cache",
                        self.store.describe(), exc)
            return None, True
        except SharedCacheError as exc:
            log.warning("the shared forecast cache at %s holds an %s; this process fetches and rewrites it",
                        self.store.describe(), exc)
            return None, False

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[Forecast]], *, ttl_s: float,
                  max_stale_s: float) -> Forecast:
        """The forecast for ``key``: from the store while fresh, else fetched by one process for all."""
        if time.monotonic() < self._down_until:
            self.stats["bypassed"] += 1
            return await fetch()
        digest = _digest(key)
        try:
            if not self._skew_checked:
                await self._check_skew()
            row = await self._call(self.store.read, digest)
        except SharedCacheError as exc:
            self._down(exc)
            self.stats["bypassed"] += 1
            return await fetch()
        forecast, newer = self._decode(row)
        if forecast is not None and row is not None and row.age_s < ttl_s:
            self.stats["hits"] += 1
            return forecast
        if newer:
            self.stats["bypassed"] += 1
            return await fetch()
        stale = (forecast, row.age_s) if forecast is not None and row is not None else None
        waited = time.monotonic() + self.wait_s
        poll = self.poll_s
        try:
            while not await self._call(self.store.try_lease, digest, self.owner, self.lease_s):
                # Another process fetches: wait for its row, not past wait_s.
                if time.monotonic() >= waited:
                    log.warning("waited %.1f s for another process to fetch a forecast into the shared cache; "
                                "fetching here", self.wait_s)
                    self.stats["bypassed"] += 1
                    return await fetch()
                self.stats["waits"] += 1
                await asyncio.sleep(poll)
                poll = min(poll * 1.5, 0.5)
                row = await self._call(self.store.read, digest)
                fresh, newer = self._decode(row)
                if fresh is not None and row is not None and row.age_s < ttl_s:
                    self.stats["hits"] += 1
                    return fresh
                if newer:
                    self.stats["bypassed"] += 1
                    return await fetch()
            # Leader: another process may have written between our read and our lease.
            leased_at = time.monotonic()
            row = await self._call(self.store.read, digest)
            fresh, _ = self._decode(row)
            if fresh is not None and row is not None and row.age_s < ttl_s:
                await self._release(digest)
                self.stats["hits"] += 1
                return fresh
        except SharedCacheError as exc:
            self._down(exc)
            self.stats["bypassed"] += 1
            return await fetch()
        self.stats["fetches"] += 1
        try:
            forecast = await fetch()
        except (SourceError, ForecastError) as exc:
            self._overran(leased_at)
            await self._release(digest)
            if stale is not None and stale[1] < max_stale_s and not isinstance(exc, SourceAuthError):
                log.warning("refresh failed (%s); serving the shared cache's forecast from %.0f s ago", exc, stale[1])
                self.stats["stale"] += 1
                old = stale[0]
                return old if old.source.endswith(_STALE_MARK) else replace(old, source=old.source + _STALE_MARK)
            raise
        except BaseException:  # cancelled, or a foreign error: free the lease without awaiting anything more
            _pool().submit(self._release_quietly, digest)
            raise
        self._overran(leased_at)
        try:
            await self._call(self.store.write, digest, encode_forecast(forecast), forecast.zone, forecast.source,
                             max(ttl_s, max_stale_s) + 60.0, self.owner)
        except SharedCacheError as exc:
            self._down(exc)
        return forecast

    def _overran(self, leased_at: float) -> None:
        """Say so when a fetch outlived its lease: a process that came after it lapsed fetched too."""
        took = time.monotonic() - leased_at
        if took > self.lease_s:
            log.warning("fetching a forecast took %.3g s, longer than the shared cache's %.3g s lease; another "
                        "process may have fetched it too (a slow vendor, or a process starved of CPU)", took, self.lease_s)

    def _release_quietly(self, digest: str) -> None:
        try:
            self.store.release(digest, self.owner)
        except Exception as exc:  # noqa: BLE001 - the lease lapses by itself after lease_s
            log.debug("could not release the shared cache lease (%s)", type(exc).__name__)

    async def _release(self, digest: str) -> None:
        try:
            await self._call(self.store.release, digest, self.owner)
        except SharedCacheError as exc:  # the lease lapses by itself after lease_s
            log.debug("could not release the shared cache lease (%s)", exc)


# -- settings ----------------------------------------------------------------------------------------

SettingsReader = Callable[[], Mapping[str, Any]]
_readers: list[SettingsReader] = []
_process: dict[str, Any] = {}


def register_settings_reader(reader: SettingsReader) -> None:
    """Add a source of settings (``shared_cache``, ``..._timeout_s``, ``..._wait_s``, ``ledger_url``). Idempotent.

    The Airflow adapter registers one that reads ``[carbon_sensors]``; the environment is read last.
    """
    if reader not in _readers:
        _readers.append(reader)
        _process.clear()


def _setting(name: str) -> Any:
    for reader in _readers:
        try:
            value = reader().get(name)
        except Exception:  # noqa: BLE001 - an unreadable option is an unset one
            value = None
        if value not in (None, ""):
            return value
    return (env_setting("CARBON_SENSORS_" + name.upper()) or "").strip() or None


def shared_cache_from_setting(setting: str | None, *, ledger_url: str | None = None, timeout_s: float = 1.0,
                              wait_s: float = 5.0) -> SharedForecastCache | None:
    """The shared cache a setting names: ``off``/empty (None), ``ledger``, an SQL URL or a Redis URL."""
    text = (setting or "").strip()
    if text.lower() in ("", "off", "none", "false", "0", "no"):
        return None
    if text.lower() == "ledger":
        if not ledger_url:
            from carbon_sensors.ledger import default_ledger_url

            ledger_url = default_ledger_url()
        text = ledger_url
    if text.startswith(("redis://", "rediss://", "unix://")):
        store: Store = RedisStore(text, timeout_s=timeout_s)
    elif text.startswith(("sqlite:", "postgresql")):
        store = SqlStore(text, timeout_s=timeout_s)
    else:
        raise ConfigurationError(f"shared_cache must be 'off', 'ledger', an SQL URL (postgresql+psycopg://..., "
                                 f"sqlite:///...) or a Redis URL (redis://host:6379/0), got {text[:20]!r}...")
    return SharedForecastCache(store, timeout_s=timeout_s, wait_s=wait_s)


def process_shared_cache() -> SharedForecastCache | None:
    """This process's shared cache, from the settings (read once per process); None when off or misconfigured."""
    pid = os.getpid()
    if _process.get("pid") != pid:
        cache = None
        try:
            cache = shared_cache_from_setting(
                _setting("shared_cache"), ledger_url=_setting("ledger_url"),
                timeout_s=float(_setting("shared_cache_timeout_s") or 1.0),
                wait_s=float(_setting("shared_cache_wait_s") or 5.0))
        except (ConfigurationError, ValueError) as exc:
            log.warning("the shared forecast cache is not used: %s", exc)
        _process.clear()
        _process.update(pid=pid, cache=cache)
    return _process["cache"]
