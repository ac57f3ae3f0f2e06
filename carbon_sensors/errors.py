"""The exception tree. Every message says what went wrong and what to do next.

    CarbonSensorsError
    ├── ConfigurationError      a DAG author's argument is wrong (also a ValueError)
    │   ├── DeadlineError       naive, past or unreachable deadline; duration longer than the slack
    │   └── UnknownZoneError    the source has no data for that zone (also a LookupError)
    ├── ForecastError           a forecast cannot be used (also a ValueError)
    │   ├── InvalidForecastError    empty, unordered, NaN, negative or implausible values
    │   ├── ForecastCoverageError   the forecast does not cover the time asked about
    │   └── SignalMismatchError     average and marginal signals mixed in one decision
    ├── SourceError             a source could not deliver a forecast
    │   ├── SourceDataError     the source's data is malformed (missing columns, bad timestamps, bad JSON)
    │   ├── SourceAuthError     the source refused the credentials (401/403)
    │   └── SourceUnavailableError  timeouts, refused connections, 5xx or 429 after bounded retries
    ├── GateError               a carbon gate reported an error instead of a decision
    ├── VersionError            Airflow or Prefect is older than this package supports (also an ImportError)
    ├── SharedCacheError        the deployment-wide forecast cache is down or holds an unreadable row
    └── RecordingError          energy, tokens, cost or a run record could not be recorded
        ├── LedgerError         the ledger database cannot be reached or written
        ├── LedgerSchemaError   the ledger's schema is newer than this carbon-sensors
        └── PricingError        a model or price is missing from the price table (also a ValueError)

A recording error never fails the task unless the DAG author asked for strict recording; a shared-cache
error never does. One warning: ``RenamedSettingWarning`` (a FutureWarning), a setting read by its old name.
"""

from __future__ import annotations

__all__ = [
    "CarbonSensorsError",
    "ConfigurationError",
    "DeadlineError",
    "ForecastCoverageError",
    "ForecastError",
    "GateError",
    "InvalidForecastError",
    "LedgerError",
    "LedgerSchemaError",
    "PricingError",
    "RecordingError",
    "RenamedSettingWarning",
    "SharedCacheError",
    "SignalMismatchError",
    "SourceAuthError",
    "SourceDataError",
    "SourceSettingsError",
    "SourceError",
    "SourceUnavailableError",
    "UnknownZoneError",
    "VersionError",
]


class CarbonSensorsError(Exception):
    """Root of every error raised by carbon-sensors."""


class ConfigurationError(CarbonSensorsError, ValueError):
    """An argument given by the DAG author is invalid."""


class DeadlineError(ConfigurationError):
    """The deadline or the expected duration cannot work."""


class UnknownZoneError(ConfigurationError, LookupError):
    """The source knows no such zone."""


class ForecastError(CarbonSensorsError, ValueError):
    """A forecast cannot be used for a decision."""


class InvalidForecastError(ForecastError):
    """The forecast's points are empty, unordered or hold impossible values."""


class ForecastCoverageError(ForecastError):
    """The forecast does not cover the time the decision needs."""


class SignalMismatchError(ForecastError):
    """Average and marginal intensities were mixed in one decision."""


class SourceError(CarbonSensorsError):
    """A signal source could not deliver a forecast."""


class SourceDataError(SourceError):
    """A source's data is malformed."""


class SourceSettingsError(ConfigurationError, SourceDataError):
    """A source's settings do not match what it reads: a column the file does not have.

    A configuration error first: it fails the task instead of starting it by ``on_source_error``
    (a gate that already waits handles it as a source failure). Also a :class:`SourceDataError`,
    which it was before it had a name of its own.
    """


class SourceAuthError(SourceError):
    """The source refused the credentials; the message names the connection to fix."""


class SourceUnavailableError(SourceError):
    """The source did not answer usefully within the bounded retries."""


class GateError(CarbonSensorsError):
    """A carbon gate reported an error instead of a decision."""


class VersionError(CarbonSensorsError, ImportError):
    """The installed Airflow or Prefect is older than this carbon-sensors supports; the message names the floor."""


class SharedCacheError(CarbonSensorsError):
    """The shared forecast cache is unreachable, too slow, or holds a row this version cannot read.

    Never fails a task: the caller warns and fetches through the per-process cache instead.
    """


class RecordingError(CarbonSensorsError):
    """Energy, tokens, cost or a run record could not be recorded."""


class LedgerError(RecordingError):
    """The ledger database cannot be reached or written; the record is kept in the local spool."""


class LedgerSchemaError(LedgerError):
    """The ledger's schema is newer than this carbon-sensors understands; upgrade the package."""


class PricingError(RecordingError, ValueError):
    """A price is missing (e.g. an unknown model in the token price table) or invalid."""


class RenamedSettingWarning(FutureWarning):
    """A setting was read by a name it has been renamed from; the message names the new one.

    A FutureWarning, so that it shows by default: those who set configuration read it, not only
    those who write code (see :mod:`carbon_sensors.renames`).
    """
