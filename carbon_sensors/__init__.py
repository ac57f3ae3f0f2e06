"""carbon-sensors: flexible batch work waits for low-carbon windows and always meets its deadline.

The core (this package's top level) imports neither Airflow nor Prefect nor pandas. The Airflow
adapters live in ``carbon_sensors.sensors``, ``.triggers``, ``.operators`` and ``.decorators``.

>>> from datetime import timedelta
>>> from carbon_sensors import After, CarbonGate
>>> CarbonGate(zones="GB", deadline=After(hours=8), expected_duration=timedelta(hours=1)).home_zone
'GB'
"""

from carbon_sensors.clock import Clock, SystemClock
from carbon_sensors.deadlines import After, NextLocalTime, resolve_deadline
from carbon_sensors.errors import (
    CarbonSensorsError,
    ConfigurationError,
    DeadlineError,
    ForecastCoverageError,
    ForecastError,
    GateError,
    InvalidForecastError,
    LedgerError,
    LedgerSchemaError,
    PricingError,
    RecordingError,
    SignalMismatchError,
    SourceAuthError,
    SourceDataError,
    SourceError,
    SourceSettingsError,
    SourceUnavailableError,
    UnknownZoneError,
)
from carbon_sensors.forecast import Forecast
from carbon_sensors.gate import CarbonGate, Decision, Override, decide, wait_for_window
from carbon_sensors.planning import Plan, Policy, latest_start, plan
from carbon_sensors.signals import EmbeddedProfileSource, FilePrices, FileSource, Source, TariffPrices

__version__ = "0.1.0"

# Recording is used when work runs, never when a DAG file is parsed: imported on first use.
_LAZY = {
    "Prices": "carbon_sensors.accounting",
    "RunKey": "carbon_sensors.records",
    "RunRecord": "carbon_sensors.records",
    "RunRecorder": "carbon_sensors.recording",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'carbon_sensors' has no attribute {name!r}")

__all__ = [
    "After",
    "CarbonGate",
    "CarbonSensorsError",
    "Clock",
    "ConfigurationError",
    "DeadlineError",
    "Decision",
    "EmbeddedProfileSource",
    "FilePrices",
    "FileSource",
    "Forecast",
    "ForecastCoverageError",
    "ForecastError",
    "GateError",
    "InvalidForecastError",
    "LedgerError",
    "LedgerSchemaError",
    "NextLocalTime",
    "Override",
    "Plan",
    "Policy",
    "Prices",
    "PricingError",
    "RecordingError",
    "RunKey",
    "RunRecord",
    "RunRecorder",
    "SignalMismatchError",
    "Source",
    "SourceAuthError",
    "SourceDataError",
    "SourceSettingsError",
    "SourceError",
    "SourceUnavailableError",
    "SystemClock",
    "TariffPrices",
    "UnknownZoneError",
    "__version__",
    "decide",
    "latest_start",
    "plan",
    "resolve_deadline",
    "wait_for_window",
]
