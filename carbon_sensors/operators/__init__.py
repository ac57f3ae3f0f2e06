"""Airflow operators: gate any existing operator on a low-carbon window."""

from carbon_sensors.operators.carbon import DECISION_XCOM_KEY, CarbonGateMixin, carbon_gated

__all__ = ["DECISION_XCOM_KEY", "CarbonGateMixin", "carbon_gated"]
