"""Airflow sensors (``CarbonAwareSensor``): a deferrable wait for a low-carbon window.

Airflow adapter: DAG files import it; the core and Prefect never do.
"""

from carbon_sensors.compat import require

require("airflow")  # a clear error on an Airflow older than the floor

from carbon_sensors.sensors.carbon import CarbonAwareSensor  # noqa: E402 - after the version check

__all__ = ["CarbonAwareSensor"]
