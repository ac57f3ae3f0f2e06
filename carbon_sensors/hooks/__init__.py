"""Airflow hooks."""

from carbon_sensors.hooks.carbon import CarbonIntensityHook

__all__ = ["CarbonIntensityHook"]
