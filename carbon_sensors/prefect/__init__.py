"""The Prefect adapter: carbon-aware flows, tasks and scheduled runs, and credentials blocks.
Prefect adapter: flow files import it; the core and the Airflow adapters never do.

- :func:`carbon_aware_flow` (in place of ``@flow``): a deployed run waits for its window by
  rescheduling itself (no worker held), re-checks the forecast when it starts again, and always
  runs by its latest start.
- :func:`schedule_in_window`: plan now, create a deployment's run ``Scheduled`` at the planned start.
- :func:`carbon_aware_task` (in place of ``@task``): a short wait inside the running process.
- :data:`plan_carbon_window`: a task that returns the plan, without waiting.
- Blocks for the API keys (:mod:`carbon_sensors.prefect.blocks`); sources name a block, never a key.

>>> from datetime import timedelta
>>> from carbon_sensors import After
>>> @carbon_aware_flow(zone="DE", deadline=After(hours=8), expected_duration=timedelta(hours=1), retries=2)
... def enrich_catalog() -> int:
...     return 2000
>>> enrich_catalog.name, enrich_catalog.retries, enrich_catalog.carbon_gate.zones
('enrich-catalog', 2, ('DE',))

Importing this package imports Prefect; the core and the Airflow adapters never import it.
"""

from carbon_sensors.compat import require

require("prefect")  # a clear error on a Prefect older than the floor

from carbon_sensors.prefect._flow import (  # noqa: E402
    DEFAULT_MAX_DEFERRALS,
    FORCE_VARIABLE,
    LABEL_PREFIX,
    START_SLACK,
    carbon_aware_flow,
    current_decision,
)
from carbon_sensors.prefect._schedule import ScheduledRun, aschedule_in_window, schedule_in_window  # noqa: E402
from carbon_sensors.prefect._settings import GATE_SETTINGS, build_gate  # noqa: E402
from carbon_sensors.prefect._tasks import DEFAULT_TASK_MAX_DELAY, carbon_aware_task, plan_carbon_window  # noqa: E402
from carbon_sensors.prefect.blocks import (  # noqa: E402
    CarbonAwareSdkCredentials,
    ElectricityMapsCredentials,
    EntsoeCredentials,
    WattTimeCredentials,
)

__all__ = [
    "DEFAULT_MAX_DEFERRALS",
    "DEFAULT_TASK_MAX_DELAY",
    "FORCE_VARIABLE",
    "GATE_SETTINGS",
    "LABEL_PREFIX",
    "START_SLACK",
    "CarbonAwareSdkCredentials",
    "ElectricityMapsCredentials",
    "EntsoeCredentials",
    "ScheduledRun",
    "WattTimeCredentials",
    "aschedule_in_window",
    "build_gate",
    "carbon_aware_flow",
    "carbon_aware_task",
    "current_decision",
    "plan_carbon_window",
    "schedule_in_window",
]
