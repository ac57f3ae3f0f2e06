"""The public API is exactly what __all__ says; a change here is a deliberate API change."""

from __future__ import annotations

import carbon_sensors

EXPECTED = {
    "After", "CarbonGate", "CarbonSensorsError", "Clock", "ConfigurationError", "DeadlineError", "Decision",
    "EmbeddedProfileSource", "FilePrices", "FileSource", "Forecast", "ForecastCoverageError", "ForecastError", "GateError",
    "InvalidForecastError", "LedgerError", "LedgerSchemaError", "NextLocalTime", "Prices", "PricingError",
    "RecordingError", "RunKey", "RunRecord", "RunRecorder", "Override", "Plan", "Policy", "SignalMismatchError", "Source",
    "SourceAuthError", "SourceDataError", "SourceError", "SourceSettingsError", "SourceUnavailableError", "SystemClock",
    "TariffPrices",
    "UnknownZoneError", "__version__", "decide", "latest_start", "plan", "resolve_deadline",
    "wait_for_window",
}


def test_all_is_pinned():
    """__all__ lists exactly the public names."""
    assert set(carbon_sensors.__all__) == EXPECTED


def test_every_exported_member_exists_and_says_where_it_lives():
    """Each name in __all__ resolves, and classes and functions come from our own modules."""
    for name in carbon_sensors.__all__:
        member = getattr(carbon_sensors, name)
        if callable(member) and name != "Source":
            assert member.__module__.startswith("carbon_sensors."), (name, member.__module__)


def test_every_error_derives_from_the_root():
    """Every exception the package exports is a CarbonSensorsError, so one except clause catches them all."""
    errors = [getattr(carbon_sensors, n) for n in carbon_sensors.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, carbon_sensors.CarbonSensorsError) for e in errors)
