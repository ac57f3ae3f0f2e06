"""Airflow triggers (``CarbonWindowTrigger``): the wait that runs in the triggerer.

Airflow adapter: the sensors, operators and decorators import it; the core and Prefect never do.
"""

from carbon_sensors.compat import require

require("airflow")  # a clear error on an Airflow older than the floor

from carbon_sensors.triggers.carbon import CarbonWindowTrigger  # noqa: E402 - after the version check

__all__ = ["CarbonWindowTrigger"]
