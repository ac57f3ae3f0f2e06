"""The planner, pure functions that decide when (and where) a job starts: it imports nothing doing I/O; anything may import it.

No I/O and no clock reads: the caller passes ``now`` and the forecasts. Call :func:`plan` again
whenever a fresher forecast arrives; the same inputs always give the same :class:`Plan`.

A job is judged on the duration-weighted mean intensity of its whole window, not on the single
lowest slot. :func:`plan` checks its inputs (``planner``), searches for the window
(``search``: a typed :class:`~carbon_sensors.planning.search.Candidate` and why it was chosen,
no words), and writes the plan and its reason (``explain``). ``policy`` holds what a job
accepts, ``history`` the safety margins learned from run times.

>>> from datetime import datetime, timedelta, timezone
>>> from carbon_sensors.forecast import Forecast
>>> t0 = datetime(2026, 6, 15, 6, tzinfo=timezone.utc)
>>> f = Forecast.from_points([(t0 + timedelta(hours=h), v) for h, v in enumerate([400, 380, 200, 390])],
...                          zone="DE", source="example")
>>> p = plan(f, now=t0, deadline=t0 + timedelta(hours=4), expected_duration=timedelta(hours=1))
>>> p.decision, p.planned_start.hour, round(p.expected_saving_pct)
('wait', 8, 50)
"""

from __future__ import annotations

# ``NAME as NAME``: importable from here, as from the single module this package replaced, but not in ``__all__``.
from carbon_sensors.planning.explain import Plan
from carbon_sensors.planning.history import COLD_START_MARGIN_SHARE as COLD_START_MARGIN_SHARE
from carbon_sensors.planning.history import MIN_HISTORY_RUNS as MIN_HISTORY_RUNS
from carbon_sensors.planning.history import duration_quantile, safety_margin_from_history
from carbon_sensors.planning.planner import plan
from carbon_sensors.planning.policy import DEFAULT_MARGIN_FLOOR as DEFAULT_MARGIN_FLOOR
from carbon_sensors.planning.policy import DEFAULT_MARGIN_SHARE as DEFAULT_MARGIN_SHARE
from carbon_sensors.planning.policy import DEFAULT_MIN_SAVING_PCT, LATEST_START_TOLERANCE, Policy, latest_start

__all__ = ["DEFAULT_MIN_SAVING_PCT", "LATEST_START_TOLERANCE", "Plan", "Policy", "duration_quantile", "latest_start", "plan",
           "safety_margin_from_history"]
