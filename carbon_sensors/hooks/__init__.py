"""Airflow hooks."""

from carbon_sensors.compat import require

require("airflow")  # a clear error on an Airflow older than the floor

from carbon_sensors.hooks.carbon import CarbonIntensityHook  # noqa: E402 - after the version check

__all__ = ["CarbonIntensityHook"]
