"""Safety margins that learn: a bound on a task's next run time from the run times it has had."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.planning.policy import Policy

__all__ = ["COLD_START_MARGIN_SHARE", "MIN_HISTORY_RUNS", "duration_quantile", "safety_margin_from_history"]

#: With fewer runs of history than this, a task's run time is barely known: keep a wide margin.
MIN_HISTORY_RUNS = 3
COLD_START_MARGIN_SHARE = 0.5


def duration_quantile(durations: Sequence[timedelta], quantile: float = 0.99) -> timedelta:
    """A bound on a task's next run time from its history: a safety margin that learns.

    Run times spread multiplicatively, so this is the upper ``quantile`` prediction bound of a
    log-normal fitted to the history (Student-t, so a short history gives a wide bound); it is
    never below the longest run seen. Use ``duration_quantile(h, q) - expected`` as the
    ``safety_margin``.

    >>> duration_quantile([timedelta(minutes=m) for m in (50, 55, 60, 65, 70)], 0.999) > timedelta(minutes=70)
    True
    """
    import statistics

    seconds = [d.total_seconds() for d in durations]
    if not seconds or min(seconds) <= 0:
        raise ConfigurationError("duration_quantile needs at least one positive duration")
    if not 0.5 <= quantile < 1:
        raise ConfigurationError(f"quantile must be in [0.5, 1), got {quantile}")
    if len(seconds) < 3:
        return timedelta(seconds=max(seconds))
    logs = [math.log(s) for s in seconds]
    n = len(logs)
    spread = statistics.stdev(logs) * math.sqrt(1 + 1 / n)  # the next run, not the mean
    bound = math.exp(statistics.fmean(logs) + _student_t(quantile, n - 1) * spread)
    return timedelta(seconds=max(bound, max(seconds)))


def safety_margin_from_history(
    history: Sequence[timedelta], expected_duration: timedelta, quantile: float = 0.999
) -> timedelta:
    """The safety margin a task's run-time history calls for.

    With under ``MIN_HISTORY_RUNS`` runs, half the expected duration (a new task's run time is barely
    known); then ``duration_quantile(history, quantile) - expected_duration``. Never below the
    default margin.

    >>> safety_margin_from_history([], timedelta(hours=2))
    datetime.timedelta(seconds=3600)
    """
    floor = Policy().margin_for(expected_duration)
    if len(history) < MIN_HISTORY_RUNS:
        return max(floor, expected_duration * COLD_START_MARGIN_SHARE)
    return max(floor, duration_quantile(history, quantile) - expected_duration)


def _student_t(quantile: float, dof: int) -> float:
    """Student's t quantile (Cornish-Fisher expansion around the normal; good for dof >= 3)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(quantile)
    v = float(dof)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))
