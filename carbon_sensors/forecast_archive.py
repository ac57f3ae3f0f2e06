"""Real forecasts for backtests: an archive of ``issued_at, target_time, value`` rows (gCO2eq/kWh).

Each issue time holds one forecast: its targets, evenly spaced. A backtest that plans at ``t`` sees
the latest forecast issued by ``t`` and nothing issued later, so a real archive is non-anticipative
by construction. ``--forecast-archive`` in ``carbon-sensors simulate`` uses it instead of the model.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "archive.csv"
>>> _ = path.write_text("issued_at,target_time,value\\n"
...     "2023-03-15T01:00Z,2023-03-15T01:00Z,180\\n2023-03-15T01:00Z,2023-03-15T01:30Z,170\\n")
>>> archive = ForecastArchive(path, "GB")
>>> archive.describe()
'1 issue time (2023-03-15 01:00 UTC), 2 targets in 30 min slots'
"""

from __future__ import annotations

import csv
from bisect import bisect_right
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from carbon_sensors.errors import ForecastCoverageError, SourceDataError
from carbon_sensors.forecast import Forecast

__all__ = ["ForecastArchive"]

HOUR = 3600.0
COLUMNS = ("issued_at", "target_time", "value")


class ForecastArchive:
    """The forecasts of an archive file for one zone, by issue time; refuses gaps, duplicates and hindcasts."""

    def __init__(self, path: str | Path, zone: str, signal: str = "average"):
        from carbon_sensors.timeutil import parse_utc

        self.path = Path(path)
        by_issue: dict[float, dict[float, float]] = {}
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = set(COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise SourceDataError(
                    f"{path} lacks column(s) {', '.join(sorted(missing))}; it needs issued_at, target_time, value"
                )
            for line, row in enumerate(reader, start=2):
                try:
                    issued = parse_utc(row["issued_at"], "issued_at").timestamp()
                    target = parse_utc(row["target_time"], "target_time").timestamp()
                    value = float(row["value"])
                except (TypeError, ValueError) as exc:
                    raise SourceDataError(f"{path} line {line}: {exc}; each row needs two times and a number") from None
                targets = by_issue.setdefault(issued, {})
                if target in targets:
                    raise SourceDataError(
                        f"{path} line {line}: a second value for {_when(target)} issued at {_when(issued)}; "
                        "keep one row per issue and target time"
                    )
                targets[target] = value
        if not by_issue:
            raise SourceDataError(f"{path} has no rows")
        self.zone, self.signal = zone, signal
        self.issues = sorted(by_issue)
        self.points = {issued: sorted(targets.items()) for issued, targets in by_issue.items()}
        self.steps = {issued: _check_issue(self.path, issued, pairs) for issued, pairs in self.points.items()}

    def describe(self) -> str:
        """How many issue times, from when to when, and the slot length, in words."""
        first, last = _when(self.issues[0]), _when(self.issues[-1])
        count = len(self.issues)
        span = f"{count} issue time{'s' * (count != 1)} ({first}" + (f" to {last})" if count > 1 else ")")
        targets = sum(len(p) for p in self.points.values())
        steps = sorted({s for s in self.steps.values()})
        slot = " or ".join(f"{s / 60:g} min" for s in steps)
        return f"{span}, {targets} targets in {slot} slots"

    def issued_at(self, t_s: float) -> Forecast:
        """The latest forecast issued by ``t_s`` (epoch seconds)."""
        k = bisect_right(self.issues, t_s) - 1
        if k < 0:
            raise ForecastCoverageError(f"no archived forecast was issued by {datetime.fromtimestamp(t_s, UTC)}")
        issued = self.issues[k]
        pairs = self.points[issued]
        return Forecast(
            zone=self.zone, source="forecast-archive", signal=self.signal,  # type: ignore[arg-type]
            issued_at=datetime.fromtimestamp(issued, UTC), starts_s=tuple(p[0] for p in pairs),
            values=tuple(p[1] for p in pairs), end_s=pairs[-1][0] + self.steps[issued],
        )


def _check_issue(path: Path, issued: float, pairs: list[tuple[float, float]]) -> float:
    """The slot length of one issue's forecast; a gap between its targets, or a target before it was issued, is refused."""
    step = pairs[1][0] - pairs[0][0] if len(pairs) > 1 else HOUR
    if pairs[0][0] + step <= issued:
        raise SourceDataError(
            f"{path}: the forecast issued at {_when(issued)} has a target at {_when(pairs[0][0])}, a slot that had "
            "ended when it was issued; an archive holds forecasts, not hindcasts (drop targets before their issue time)"
        )
    for (earlier, _), (later, _) in pairwise(pairs):
        if later - earlier != step:
            raise SourceDataError(
                f"{path}: the forecast issued at {_when(issued)} jumps from {_when(earlier)} to {_when(later)}, not "
                f"{step / 60:g} min like its first slots; fill the gap or split the forecast"
            )
    return step


def _when(epoch_s: float) -> str:
    return f"{datetime.fromtimestamp(epoch_s, UTC):%Y-%m-%d %H:%M} UTC"
