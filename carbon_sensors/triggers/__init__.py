"""Airflow triggers."""

from carbon_sensors.triggers.carbon import CarbonWindowTrigger

__all__ = ["CarbonWindowTrigger"]
