"""What a triggerer with thousands of waiting gates relies on: shared objects and work done once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from carbon_sensors import Forecast
from carbon_sensors.clock import SystemClock
from carbon_sensors.correction import ForecastMemory, correct_forecast
from carbon_sensors.signals import source_from_spec
from carbon_sensors.triggers.carbon import CarbonWindowTrigger

T0 = datetime(2026, 6, 15, tzinfo=UTC)


def test_equal_specs_share_one_source():
    """Equal source specs give the same object (and so one HTTP client and one cache entry)."""
    spec = {"kind": "neso", "region_id": 13}
    assert source_from_spec(spec) is source_from_spec(dict(spec))
    assert source_from_spec(spec) is not source_from_spec({"kind": "neso", "region_id": 12})


def test_triggers_with_equal_settings_share_one_gate():
    """Mapped tasks of one run rebuild equal gates; the triggerer keeps one object."""
    kwargs = dict(zones=["DE"], deadline=T0 + timedelta(hours=8), expected_duration_s=3600, submitted_at=T0)
    first, second = CarbonWindowTrigger(**kwargs, task_id="a"), CarbonWindowTrigger(**kwargs, task_id="b")
    assert first.gate is second.gate and first.task_id != second.task_id


def test_a_correction_is_computed_once_per_forecast():
    """Thousands of gates correcting the same forecast get the same result object."""
    forecast = Forecast.from_points([(T0 + timedelta(hours=h), 200.0 + h) for h in range(6)], zone="GB",
                                    source="x", error_24h=0.1, recent_error=0.05)
    assert correct_forecast(forecast) is correct_forecast(forecast)


def test_memory_keeps_nothing_for_forecasts_that_report_their_error():
    """A source that reports its own recent error needs no memory per gate."""
    memory = ForecastMemory()
    forecast = Forecast.from_points([(T0 + timedelta(hours=h), 200.0) for h in range(4)], zone="GB",
                                    source="x", error_24h=0.1, recent_error=0.02)
    memory.correct(forecast)
    assert memory._last is None


def test_system_clock_sleep_is_awaitable():
    """SystemClock.sleep hands back asyncio's own sleep, awaitable as before."""
    asyncio.run(SystemClock().sleep(0))
    assert SystemClock().now().tzinfo is not None


def test_every_live_source_carries_all_its_http_settings_in_its_spec():
    """Timeouts, retries and backoff survive the trip to the triggerer for every live source."""
    from carbon_sensors.signals.http import HttpSettings

    tuned = {"connect_timeout_s": 1.5, "read_timeout_s": 2.5, "max_retries": 0, "backoff_s": 0.1, "max_retry_after_s": 7.0}
    specs = [{"kind": "neso"}, {"kind": "electricitymaps", "zone_key": "DE"}, {"kind": "watttime", "region": "CAISO_NORTH"},
             {"kind": "carbon_aware_sdk", "base_url": "https://casdk.example", "location": "westus"}]
    for spec in specs:
        source = source_from_spec({**spec, **tuned})
        assert source.settings == HttpSettings(**tuned), spec["kind"]
        assert {k: source.to_spec()[k] for k in tuned} == tuned


def test_a_shared_fetch_failing_unexpectedly_gives_every_waiter_the_same_error():
    """A single-flight fetch that fails with a foreign error hands that error to all waiters, not a cancellation."""
    from carbon_sensors.signals.cache import ForecastCache

    cache = ForecastCache()

    async def broken():
        await asyncio.sleep(0.01)
        raise KeyError("forecast")

    async def both():
        calls = [cache.get("k", broken, ttl_s=60, max_stale_s=0) for _ in range(2)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(both())
    assert [type(r).__name__ for r in results] == ["KeyError", "KeyError"]


def test_a_waiter_is_not_cancelled_with_the_caller_whose_fetch_it_shares():
    """Single flight: cancelling the first caller leaves its fetch running for the others, and cached."""
    from carbon_sensors.signals.cache import ForecastCache

    cache = ForecastCache()
    calls = []
    forecast = Forecast.from_points([(T0, 200.0), (T0 + timedelta(hours=1), 180.0)], zone="DE", source="x")

    async def slow():
        calls.append(1)
        await asyncio.sleep(0.1)
        return forecast

    async def scenario():
        first = asyncio.ensure_future(cache.get("k", slow, ttl_s=60, max_stale_s=0))
        second = asyncio.ensure_future(cache.get("k", slow, ttl_s=60, max_stale_s=0))
        await asyncio.sleep(0.02)
        first.cancel()
        results = await asyncio.gather(first, second, return_exceptions=True)
        again = await cache.get("k", slow, ttl_s=60, max_stale_s=0)
        return results, again

    (first, second), again = asyncio.run(scenario())
    assert isinstance(first, asyncio.CancelledError)
    assert second is forecast and again is forecast
    assert calls == [1] and cache.fetches == 1
