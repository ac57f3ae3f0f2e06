"""Airflow's ``[carbon_sensors]`` options for the deployment-wide forecast cache.

Importing this module (the hook module does, in the triggerer, the workers and the API server)
registers a reader of ``shared_cache``, ``shared_cache_timeout_s``, ``shared_cache_wait_s`` and
``ledger_url`` for :func:`carbon_sensors.signals.shared_cache.process_shared_cache`; unset options
fall back to the ``CARBON_SENSORS_*`` environment variables.

>>> sorted(airflow_settings())
['ledger_url', 'shared_cache', 'shared_cache_timeout_s', 'shared_cache_wait_s']
"""

from __future__ import annotations

from typing import Any

from carbon_sensors.airflow.settings import conf
from carbon_sensors.signals.shared_cache import register_settings_reader

__all__ = ["airflow_settings"]

_OPTIONS = ("shared_cache", "shared_cache_timeout_s", "shared_cache_wait_s", "ledger_url")


def airflow_settings() -> dict[str, Any]:
    """The shared cache's options as Airflow's configuration has them (None: unset; renamed ones by either name)."""
    return {option: conf(option) for option in _OPTIONS}


register_settings_reader(airflow_settings)
