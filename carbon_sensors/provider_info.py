"""Airflow provider metadata, found through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from carbon_sensors import __version__


def get_provider_info() -> dict[str, Any]:
    """What ``airflow providers list`` shows about this package; an Airflow below the floor gets a VersionError.

    Airflow calls this first, through the entry point, so the floor is named here before any module
    of the provider is imported (Airflow logs the error and leaves the provider out).
    """
    from carbon_sensors.compat import require

    require("airflow")
    return {
        "package-name": "carbon-sensors",
        "name": "Carbon Sensors",
        "description": "Carbon-aware sensors, triggers and gates: wait for low-carbon windows, always meet the deadline.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Carbon Sensors",
                "external-doc-url": "https://pypi.org/project/carbon-sensors/",
                "tags": ["software"],
            }
        ],
        "sensors": [
            {"integration-name": "Carbon Sensors", "python-modules": ["carbon_sensors.sensors.carbon"]},
        ],
        "triggers": [
            {"integration-name": "Carbon Sensors", "python-modules": ["carbon_sensors.triggers.carbon"]},
        ],
        "operators": [
            {"integration-name": "Carbon Sensors", "python-modules": ["carbon_sensors.operators.carbon"]},
        ],
        "hooks": [
            {"integration-name": "Carbon Sensors", "python-modules": ["carbon_sensors.hooks.carbon"]},
        ],
        "connection-types": [
            {"connection-type": "carbon_intensity", "hook-class-name": "carbon_sensors.hooks.carbon.CarbonIntensityHook"},
        ],
        "task-decorators": [
            {"name": "carbon_aware", "class-name": "carbon_sensors.decorators.carbon.carbon_aware"},
        ],
        "config": {
            "carbon_sensors": {
                "description": "carbon-sensors settings.",
                "options": {
                    "kill_switch": {
                        "description": "When True, every carbon gate passes at once (emergency off switch).",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "False",
                    },
                    "force_variable": {
                        "description": "Name of the Airflow Variable that force-starts matching gates.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "carbon_sensors_force",
                        "default": "carbon_sensors_force",
                    },
                    "ledger_url": {
                        "description": "SQLAlchemy URL of the run ledger (PostgreSQL in production). Empty: "
                        "CARBON_SENSORS_LEDGER_URL, else a SQLite file under AIRFLOW_HOME.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "postgresql+psycopg://carbon@db/carbon",
                        "default": "",
                    },
                    "shared_cache": {
                        "description": "The deployment-wide forecast cache behind each process's own: off, "
                        "ledger (the ledger's database), an SQL URL or a Redis URL. Empty: CARBON_SENSORS_SHARED_CACHE, "
                        "else off. A store that is down only costs a warning: each process fetches for itself.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "redis://redis:6379/2",
                        "default": "",
                    },
                    "shared_cache_timeout_s": {
                        "description": "Seconds one shared-cache call may take before the store counts as down. "
                        "Empty: CARBON_SENSORS_SHARED_CACHE_TIMEOUT_S, else 1.0.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "1.0",
                        "default": "",
                    },
                    "shared_cache_wait_s": {
                        "description": "Seconds a process waits for another's fetch before fetching itself. "
                        "Empty: CARBON_SENSORS_SHARED_CACHE_WAIT_S, else 5.0.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "5.0",
                        "default": "",
                    },
                    "prices_file": {
                        "description": "JSON or TOML price table: usd_per_kwh or price_file, usd_per_gpu_hour, "
                        "usd_per_1k_tokens per model. Empty: CARBON_SENSORS_PRICES_FILE.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/etc/carbon-sensors/prices.toml",
                        "default": "",
                    },
                    "record_decisions": {
                        "description": "When True, every gate decision (each re-plan) goes to the ledger's "
                        "decision trail, which the Carbon page shows; written from a background thread.",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "ui_zones": {
                        "description": "Zones the Carbon page charts even when no gate waits there, comma separated.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "DE,GB",
                        "default": "",
                    },
                    "ui_source": {
                        "description": "Source of those charts: a source kind or a JSON source spec (default: embedded).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "neso",
                        "default": "",
                    },
                    "strict_recording": {
                        "description": "When True, a gated task fails if its run record cannot be written "
                        "(by default it logs a warning and spools the record).",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "False",
                    },
                },
            }
        },
    }
