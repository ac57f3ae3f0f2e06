"""Renamed settings: an old name keeps working, warns once naming the new one, and loses to the new one.

Two tables, old name -> new name: :data:`RENAMED_ENV` for ``CARBON_SENSORS_*`` environment variables
and :data:`RENAMED_OPTIONS` for options of Airflow's ``[carbon_sensors]`` section (which Airflow also
reads from ``AIRFLOW__CARBON_SENSORS__<OPTION>``). Every reader asks for the new name; when only an
old name is set its value is used and a :class:`~carbon_sensors.errors.RenamedSettingWarning` says
what to set instead; when both are set the new one wins and the warning says the old one is ignored.
An empty value counts as unset. Each old name warns once per process.

A renamed ``[carbon_sensors]`` option keeps an empty default in ``provider_info`` (the code holds
the real default), so that an unset new option never hides an old one that is set.

>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     resolve_renamed("EXAMPLE_NEW", {"EXAMPLE_OLD": "3"}.get, {"EXAMPLE_OLD": "EXAMPLE_NEW"})
'3'
>>> print(caught[0].message)
EXAMPLE_OLD is renamed EXAMPLE_NEW: set EXAMPLE_NEW instead (the old name still works for now)
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Mapping

from carbon_sensors.errors import RenamedSettingWarning

__all__ = ["RENAMED_ENV", "RENAMED_OPTIONS", "env_setting", "old_names", "resolve_renamed"]

#: ``CARBON_SENSORS_*`` environment variables that were renamed: old -> new.
RENAMED_ENV: dict[str, str] = {
    # 0.1.0: the price table's path, named like the ``prices_file`` option it stands in for (not a price)
    "CARBON_SENSORS_PRICES": "CARBON_SENSORS_PRICES_FILE",
}
#: ``[carbon_sensors]`` options that were renamed: old -> new.
RENAMED_OPTIONS: dict[str, str] = {}

_warned: set[tuple[str, str]] = set()
_lock = threading.Lock()


def old_names(new: str, renamed: Mapping[str, str]) -> tuple[str, ...]:
    """The old names of ``new`` in ``renamed``, the latest first; a chain of renames (a -> b -> c) is followed."""
    found: list[str] = []
    frontier = [new]
    while frontier:
        target = frontier.pop(0)
        for old, name in renamed.items():
            if name == target and old not in found and old != new:
                found.append(old)
                frontier.append(old)
    return tuple(found)


def _warn_once(old: str, message: str) -> None:
    with _lock:
        if (old, message) in _warned:
            return
        _warned.add((old, message))
    warnings.warn(message, RenamedSettingWarning, stacklevel=4)


def resolve_renamed(new: str, read: Callable[[str], str | None], renamed: Mapping[str, str],
                    describe: Callable[[str], str] = str) -> str | None:
    """The value of ``new`` by ``read``, else of the first old name that is set (with a warning); None when none is.

    ``read(name)`` returns a value or None (unset); an empty or blank value counts as unset.
    ``describe(name)`` is how a message names a setting, e.g. ``[carbon_sensors] ledger_url``.
    """
    value = _present(read(new))
    for old in old_names(new, renamed):
        old_value = _present(read(old))
        if old_value is None:
            continue
        if value is None:
            _warn_once(old, f"{describe(old)} is renamed {describe(new)}: set {describe(new)} instead "
                            "(the old name still works for now)")
            value = old_value
        else:
            _warn_once(old, f"{describe(old)} is ignored: it is renamed {describe(new)}, which is also set "
                            f"and wins; remove {describe(old)}")
    return value


def _present(value: str | None) -> str | None:
    return None if value is None or str(value).strip() == "" else value


def env_setting(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The environment variable ``name`` (or an old name of it, see :data:`RENAMED_ENV`); None when unset or blank.

    The value is returned as set; callers strip it where they always did.
    """
    env = os.environ if environ is None else environ
    return resolve_renamed(name, env.get, RENAMED_ENV)
