"""``CarbonSensorsPlugin``: the "Carbon" page and the task instance's "Carbon plan" in the Airflow 3 UI.

Registered through the ``airflow.plugins`` entry point (``carbon_sensors.plugins.plugin:CarbonSensorsPlugin``),
so installing the package is enough; ``airflow plugins`` lists it. The API server mounts the app at
``/carbon-sensors``; the UI frames its pages (every route needs a signed-in Airflow user).

Every Airflow process loads plugins (each task's process does, for macros), so this module stays
light: the FastAPI app and the page code are imported when the API server serves the first request.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from carbon_sensors.compat import require

require("airflow")  # a clear error on an Airflow older than the floor

from airflow.plugins_manager import AirflowPlugin  # noqa: E402

from carbon_sensors.plugins.links import APP_PREFIX, NAV_ROUTE, TASK_ROUTE  # noqa: E402

__all__ = ["ENTRY_POINT", "CarbonSensorsApp", "CarbonSensorsPlugin"]

#: The ``airflow.plugins`` entry point's value.
ENTRY_POINT = "carbon_sensors.plugins.plugin:CarbonSensorsPlugin"


class CarbonSensorsApp:
    """The ASGI app the API server mounts: builds :func:`carbon_sensors.plugins.app.create_app` on first use."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from carbon_sensors.plugins.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class CarbonSensorsPlugin(AirflowPlugin):
    """The carbon-sensors UI: an overview in the navigation and a view on every task instance."""

    name = "carbon_sensors"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": CarbonSensorsApp(), "url_prefix": APP_PREFIX, "name": "carbon-sensors"},
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Carbon",
            "href": f"{APP_PREFIX}/",
            "destination": "nav",
            "url_route": NAV_ROUTE,
            "category": "browse",
        },
        {
            "name": "Carbon plan",
            "href": f"{APP_PREFIX}/task?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&task_id={{TASK_ID}}&map_index={{MAP_INDEX}}",
            "destination": "task_instance",
            "url_route": TASK_ROUTE,
        },
    ]
