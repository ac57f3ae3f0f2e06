"""The Airflow runtime the adapters share: ``settings`` (the ``[carbon_sensors]`` config, kill switch, force
Variable) and ``runtime`` (one gate inside one task try). Only the Airflow adapters import it."""
