"""One process of tests/signals/test_shared_cache.py's race: opens the store, says "ready", waits for the
go file, then asks the shared cache for the test's key, fetching from the local vendor on a miss."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from carbon_sensors.forecast import Forecast
from carbon_sensors.signals.shared_cache import RedisStore, SharedForecastCache, SqlStore

T0 = datetime(2026, 6, 15, tzinfo=UTC)
KEY = ("electricitymaps", "http://127.0.0.1:1", "carbon_em", ("DE", None, None), "lifecycle", "hourly", 24, T0)


def main(store_url: str, vendor_url: str, go: str) -> None:
    store = RedisStore(store_url, timeout_s=5.0) if store_url.startswith("redis") else SqlStore(store_url, timeout_s=5.0)
    cache = SharedForecastCache(store, timeout_s=5.0, wait_s=30.0)
    store.now()  # connected
    print("ready", flush=True)
    while not Path(go).exists():
        time.sleep(0.005)

    async def fetch() -> Forecast:
        async with httpx.AsyncClient() as client:
            value = (await client.get(vendor_url)).json()["value"]
        return Forecast.from_points([(T0 + timedelta(hours=h), value) for h in range(4)], zone="DE", source="racer")

    forecast = asyncio.run(cache.get(KEY, fetch, ttl_s=600.0, max_stale_s=3600.0))
    print(json.dumps({"value": forecast.values[0], "stats": cache.stats}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
