"""Airflow TaskFlow decorators."""

from carbon_sensors.decorators.carbon import carbon_aware

__all__ = ["carbon_aware"]
