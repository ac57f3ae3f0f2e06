"""Airflow TaskFlow decorators (``@carbon_aware``): a task that gates itself.

Airflow adapter: DAG files import it; the core and Prefect never do.
"""

from carbon_sensors.compat import require

require("airflow")  # a clear error on an Airflow older than the floor

from carbon_sensors.decorators.carbon import carbon_aware  # noqa: E402 - after the version check

__all__ = ["carbon_aware"]
