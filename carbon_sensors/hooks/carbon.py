"""``CarbonIntensityHook``: the ``carbon_intensity`` connection type holding a source's base URL and key.

Fields: **Host** is the base URL (optional; each source has its default), **Login** the username
(WattTime), **Password** the API key (Electricity Maps, Carbon Aware SDK) or the password (WattTime).
Sources and sensors take the connection id (``conn_id``); the trigger reads the connection
asynchronously in the triggerer, so keys never travel in trigger kwargs, XCom, events or records.

Importing this module registers the Airflow connection resolver for
:func:`carbon_sensors.signals.credentials.resolve_credentials` (and the shared forecast cache's options).

>>> CarbonIntensityHook.conn_type
'carbon_intensity'
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from airflow.sdk import BaseHook

import carbon_sensors.hooks.shared_cache  # noqa: F401 - registers the shared forecast cache's Airflow options
from carbon_sensors.errors import ConfigurationError
from carbon_sensors.signals.credentials import Credentials, register_resolver

__all__ = ["CarbonIntensityHook"]

log = logging.getLogger(__name__)


class CarbonIntensityHook(BaseHook):
    """Credentials for a carbon-intensity API, from an Airflow Connection of type ``carbon_intensity``."""

    conn_name_attr = "carbon_conn_id"
    default_conn_name = "carbon_intensity_default"
    conn_type = "carbon_intensity"
    hook_name = "Carbon Intensity API"

    def __init__(self, carbon_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.carbon_conn_id = carbon_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """How the connection form shows the fields."""
        return {
            "hidden_fields": ["schema", "port"],
            "relabeling": {"host": "Base URL (optional)", "login": "Username (WattTime)",
                           "password": "API key, or WattTime password"},
            "placeholders": {"host": "https://api.electricitymaps.com", "extra": '{"provider": "electricitymaps"}'},
        }

    def get_credentials(self) -> Credentials:
        """The connection's credentials (sync; in a worker)."""
        return _credentials(self.get_connection(self.carbon_conn_id))

    async def aget_credentials(self) -> Credentials:
        """The connection's credentials (async; in the triggerer)."""
        return await _resolve(self.carbon_conn_id, "")


def _credentials(conn: Any) -> Credentials:
    return Credentials(api_key=conn.password or None, username=conn.login or None, password=conn.password or None,
                       base_url=conn.host or None)


async def _resolve(conn_id: str, provider: str) -> Credentials:
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = await BaseHook.aget_connection(conn_id)
    except AirflowNotFoundException:
        raise ConfigurationError(
            f"the Airflow connection {conn_id!r} does not exist; create it with conn type 'carbon_intensity' "
            "(Password: the API key) or set the source's environment variables instead"
        ) from None
    except Exception as exc:  # noqa: BLE001 - no async comms here (e.g. a worker): read it the sync way
        log.debug("async connection lookup failed (%s); reading %s synchronously", type(exc).__name__, conn_id)
        try:
            conn = await asyncio.to_thread(BaseHook.get_connection, conn_id)
        except AirflowNotFoundException:
            raise ConfigurationError(f"the Airflow connection {conn_id!r} does not exist") from None
    return _credentials(conn)


register_resolver(_resolve)
