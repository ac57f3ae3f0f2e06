"""The oldest Airflow and Prefect this package supports, checked where their adapters are first imported.

>>> check_version("airflow", "3.1.8")
>>> check_version("airflow", "2.10.5")
Traceback (most recent call last):
...
carbon_sensors.errors.VersionError: carbon-sensors needs Apache Airflow 3.1 or newer, and this environment has 2.10.5: ...

The Airflow adapters (``carbon_sensors.sensors``, ``triggers``, ``operators``, ``hooks``,
``decorators`` and the plugin) call :func:`require` ``("airflow")`` before importing Airflow, and
``carbon_sensors.prefect`` calls ``require("prefect")``, so an old framework gets this one clear
error instead of an ``ImportError`` deep inside a module. The installed version is read from the
distribution's metadata (no framework import); where there is none, the check steps aside.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import metadata

from carbon_sensors.errors import VersionError

__all__ = ["FLOORS", "check_version", "installed_version", "require"]

#: framework -> (its name in messages, distributions carrying its version, the oldest (major, minor) supported).
#: Keep in step with pyproject.toml's extras and the README's supported versions (scripts/matrix.py proves them).
FLOORS: dict[str, tuple[str, tuple[str, ...], tuple[int, int]]] = {
    "airflow": ("Apache Airflow", ("apache-airflow-core", "apache-airflow"), (3, 1)),
    "prefect": ("Prefect", ("prefect",), (3, 7)),
}


def installed_version(framework: str) -> str | None:
    """The installed version of ``framework`` ("airflow" or "prefect") from its metadata, or None."""
    for dist in FLOORS[framework][1]:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_version(framework: str, version: str) -> None:
    """Raise :class:`VersionError` when ``version`` of ``framework`` is older than the supported floor."""
    title, _, floor = FLOORS[framework]
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None or (int(match[1]), int(match[2])) >= floor:
        return
    wanted = f"{floor[0]}.{floor[1]}"
    pin = "apache-airflow" if framework == "airflow" else "prefect"
    raise VersionError(
        f"carbon-sensors needs {title} {wanted} or newer, and this environment has {version}: "
        f"upgrade it (pip install '{pin}>={wanted}'), or keep carbon-sensors out of this environment"
    )


@cache
def require(framework: str) -> None:
    """Check the installed ``framework`` once per process; see :func:`check_version`."""
    version = installed_version(framework)
    if version is not None:
        check_version(framework, version)
