"""Airflow hooks: the ``carbon_intensity`` connection type and the shared-cache reader.

Airflow adapter: the Airflow side imports it; the core and Prefect never do.
"""

from carbon_sensors.compat import require

require("airflow")  # a clear error on an Airflow older than the floor

from carbon_sensors.hooks.carbon import CarbonIntensityHook  # noqa: E402 - after the version check

__all__ = ["CarbonIntensityHook"]
