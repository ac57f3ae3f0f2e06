"""Airflow operators: gate any existing operator on a low-carbon window (``carbon_gated``).

Airflow adapter: DAG files import it; the core and Prefect never do.
"""

from carbon_sensors.compat import require

require("airflow")  # a clear error on an Airflow older than the floor

from carbon_sensors.operators.carbon import DECISION_XCOM_KEY, CarbonGateMixin, carbon_gated  # noqa: E402 - after the version check

__all__ = ["DECISION_XCOM_KEY", "CarbonGateMixin", "carbon_gated"]
