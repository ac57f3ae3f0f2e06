"""The gated tasks of a DAG or flow file, read by the adapter of its orchestrator (for ``simulate --dag/--flow``).

The one place outside the adapters that reaches them: the command line calls it when a file is
given, and it imports the Airflow or Prefect reader then, never at import. The core
(:mod:`carbon_sensors.simulate_dag` backtests what it returns) imports neither this module nor the
adapters; ``make lint-imports`` holds both to that.

>>> load_gated_tasks("no_such_dag.py")
Traceback (most recent call last):
...
carbon_sensors.errors.ConfigurationError: --dag no_such_dag.py: no such file; give the path of the DAG file
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from carbon_sensors.errors import CarbonSensorsError, ConfigurationError

if TYPE_CHECKING:
    from carbon_sensors.simulate_dag import GatedTask

__all__ = ["load_gated_tasks"]

_NEEDS = {"dag": ("airflow", "Apache Airflow", "apache-airflow"), "flow": ("prefect", "Prefect", "prefect")}


def load_gated_tasks(path: str | Path, kind: str = "dag", task_id: str | None = None) -> list[GatedTask]:
    """The gated tasks of a DAG file (``kind="dag"``) or a Prefect flow file (``"flow"``).

    A file given as a DAG that imports Prefect and not Airflow is read as a flow file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"--{kind} {path}: no such file; give the path of the {kind.upper()} file")
    if kind == "dag" and _looks_like_prefect(path):
        kind = "flow"
    package, product, pip_name = _NEEDS[kind]
    try:
        if kind == "dag":
            from carbon_sensors.airflow import dag_gates as reader
        else:
            from carbon_sensors.prefect import flow_gates as reader
    except CarbonSensorsError:
        raise
    except ImportError as exc:
        if (getattr(exc, "name", None) or "").split(".")[0] != package:
            raise
        raise ConfigurationError(
            f"{path} is a {product} file, and reading it needs {product}, which this environment does not have; "
            f"run carbon-sensors from the environment where {product} is installed (pip install {pip_name})"
        ) from None
    return reader.load(path, task_id)


def _looks_like_prefect(path: Path) -> bool:
    text = path.read_text(errors="replace")
    imports = set(re.findall(r"^\s*(?:from|import)\s+(\w+)", text, re.MULTILINE))
    return "prefect" in imports and "airflow" not in imports
