"""Signal sources: where carbon-intensity forecasts come from.

Every source returns the same :class:`~carbon_sensors.forecast.Forecast`. A source is described by
a JSON-able spec (``source.to_spec()``) so an Airflow trigger can carry it; never a secret.

>>> source_from_spec("embedded")
EmbeddedProfileSource()
"""

from __future__ import annotations

from typing import Any

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.signals.base import Source, run_sync
from carbon_sensors.signals.embedded import EMBEDDED_SOURCE_NAME, EmbeddedProfileSource, embedded_zones
from carbon_sensors.signals.file import FileSource

__all__ = [
    "EMBEDDED_SOURCE_NAME",
    "EmbeddedProfileSource",
    "FileSource",
    "Source",
    "embedded_zones",
    "run_sync",
    "source_from_spec",
]


def source_from_spec(spec: str | dict[str, Any] | Source) -> Source:
    """A source from its spec: ``"embedded"``, ``{"kind": "file", "path": ...}``, or a source itself."""
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict):
        if isinstance(spec, Source):
            return spec
        raise ConfigurationError(f"source must be a spec dict, a kind name or a Source, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind == "embedded":
        return EmbeddedProfileSource()
    if kind == "neso":
        from carbon_sensors.signals.neso import NesoSource

        return NesoSource.from_spec(spec)
    if kind == "carbon_aware_sdk":
        from carbon_sensors.signals.carbon_aware_sdk import CarbonAwareSdkSource

        return CarbonAwareSdkSource.from_spec(spec)
    if kind == "file":
        if not spec.get("path"):
            raise ConfigurationError("a file source needs a path: {'kind': 'file', 'path': '/data/intensity.csv'}")
        return FileSource.from_spec(spec)
    raise ConfigurationError(f"unknown source kind {kind!r}; use 'embedded', 'file' or 'neso'")
