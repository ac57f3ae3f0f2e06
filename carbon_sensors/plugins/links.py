"""The operator extra link "Carbon plan": a task instance's carbon plan, decision trail and run record.

Imported when a DAG file imports the sensor, so it imports only what ``airflow.sdk`` already has.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

__all__ = ["APP_PREFIX", "NAV_ROUTE", "TASK_ROUTE", "CarbonPlanLink", "task_view_path", "task_view_url"]

#: Where the plugin's FastAPI app is mounted in the API server.
APP_PREFIX = "/carbon-sensors"
#: ``url_route`` of the "Carbon" page in the navigation: the UI shows it at ``/plugin/carbon``.
NAV_ROUTE = "carbon"
#: ``url_route`` of the task instance view: ``/dags/<dag>/runs/<run>/tasks/<task>/plugin/carbon-plan``.
TASK_ROUTE = "carbon-plan"


def task_view_path(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> str:
    """The Airflow UI's path of a task instance's carbon plan (framed in the task instance page)."""
    path = f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    if isinstance(map_index, int) and map_index >= 0:
        path += f"/mapped/{map_index}"
    return f"{path}/plugin/{TASK_ROUTE}"


def _base_url() -> str:
    try:
        from airflow.sdk.configuration import conf

        return (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    except Exception:  # noqa: BLE001 - no configured base URL: a link relative to the UI's own host
        return ""


def task_view_url(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> str:
    """:func:`task_view_path` under ``[api] base_url`` (relative to the UI's host when that is unset)."""
    return _base_url() + task_view_path(dag_id, run_id, task_id, map_index)


class CarbonPlanLink(BaseOperatorLink):
    """Links a gated task instance to its plan, its decision trail and its run record in the Airflow UI."""

    name = "Carbon plan"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return task_view_url(ti_key.dag_id, ti_key.run_id, ti_key.task_id, getattr(ti_key, "map_index", -1))
