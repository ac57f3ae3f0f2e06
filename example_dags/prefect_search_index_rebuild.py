"""Prefect example: search-index rebuild every evening, gated with ``@carbon_aware_flow``.

Scheduled at 18:00 UTC, the rebuilt index must be live by 06:00 the next morning (12 hours), and a
rebuild takes about two hours. The run reschedules itself to the cleanest two hours of Great
Britain's grid (usually the windy small hours) and holds no worker until then.

    python example_dags/prefect_search_index_rebuild.py        # one run now, in this process, simulated time
    python example_dags/prefect_search_index_rebuild.py serve  # serve the deployment on its schedule
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from carbon_sensors import After
from carbon_sensors.prefect import carbon_aware_flow


@carbon_aware_flow(zone="GB", deadline=After(hours=12), expected_duration=timedelta(hours=2),
                   name="search-index-rebuild", retries=1)
def search_index_rebuild(shards: int = 16) -> str:
    # A stand-in for the rebuild command: one pass per shard.
    rebuilt = [f"shard-{i}" for i in range(shards)]
    return f"rebuilt shards 0-{len(rebuilt) - 1}"


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        search_index_rebuild.serve(name="nightly", cron="0 18 * * *", tags=["carbon-aware", "team:search"])
    else:
        from carbon_sensors.testing import FrozenClock, use_clock

        with use_clock(FrozenClock(datetime.now(UTC))):
            print(search_index_rebuild())
