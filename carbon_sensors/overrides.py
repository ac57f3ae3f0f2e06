"""Force-starting: the kill switch and the force-start patterns, read the same way by every adapter.

>>> match_force("nightly, weekly.*", ["weekly.retrain"], "the Variable 'carbon_sensors_force'")
Override(kind='manual', reason="the Variable 'carbon_sensors_force' force-starts 'weekly.*'")
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from carbon_sensors.renames import env_setting

__all__ = ["KILL_SWITCH_ENV", "Override", "force_patterns", "kill_switch_from_env", "match_force"]

#: Set to 1/true/yes/on to make every gate pass at once (see also the Airflow config switch).
KILL_SWITCH_ENV = "CARBON_SENSORS_KILL_SWITCH"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class Override:
    """A reason to start at once whatever the forecast says: ``kind`` is ``kill_switch`` or ``manual``."""

    kind: Literal["kill_switch", "manual"]
    reason: str


def force_patterns(value: Any) -> list[str]:
    """The ``fnmatch`` patterns a force-start setting names: ``True``/``"*"``/``"all"``, a comma list or a JSON list.

    One reading for the Airflow Variable and run conf and the Prefect Variable.

    >>> force_patterns('["nightly", "weekly.*"]'), force_patterns("a, b"), force_patterns(True), force_patterns(None)
    (['nightly', 'weekly.*'], ['a', 'b'], ['*'], [])
    """
    if value is True:
        return ["*"]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return force_patterns(json.loads(text))
            except ValueError:
                pass
        if text.lower() in ("true", "all", "*"):
            return ["*"]
        return [p.strip() for p in text.split(",") if p.strip()]
    if isinstance(value, list | tuple):
        return [str(p).strip() for p in value if str(p).strip()]
    return []


def kill_switch_from_env() -> Override | None:
    """The global kill switch from the environment, if set."""
    if (env_setting(KILL_SWITCH_ENV) or "").strip().lower() in _TRUE:
        return Override("kill_switch", f"the kill switch {KILL_SWITCH_ENV} is on")
    return None


def match_force(value: Any, names: Iterable[str], where: str) -> Override | None:
    """A manual override when a pattern of ``value`` (see :func:`force_patterns`) matches one of ``names``.

    ``where`` names the setting in the override's reason, e.g. ``"the Variable 'carbon_sensors_force'"``.
    """
    names = list(names)
    for pattern in force_patterns(value):
        if any(fnmatch.fnmatchcase(name, pattern) for name in names):
            return Override("manual", f"{where} force-starts {pattern!r}")
    return None
