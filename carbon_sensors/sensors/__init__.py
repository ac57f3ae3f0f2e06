"""Airflow sensors."""

from carbon_sensors.sensors.carbon import CarbonAwareSensor

__all__ = ["CarbonAwareSensor"]
