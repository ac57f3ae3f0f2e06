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


_interned: dict[str, Source] = {}


def source_from_spec(spec: str | dict[str, Any] | Source) -> Source:
    """A source from its spec: ``"embedded"``, ``{"kind": "file", "path": ...}``, or a source itself.

    Equal specs give the same source object: ten thousand waiting triggers over ten zones hold ten
    sources (with their HTTP clients and file caches), not ten thousand.
    """
    if isinstance(spec, str):
        spec = {"kind": spec}
    if isinstance(spec, dict):
        import json

        try:
            key = json.dumps(spec, sort_keys=True)
        except (TypeError, ValueError):
            key = None
        if key is not None:
            source = _interned.get(key)
            if source is None:
                source = _build(spec)
                if len(_interned) >= 4096:
                    _interned.clear()
                _interned[key] = source
            return source
    return _build(spec)


def _build(spec: dict[str, Any] | Source) -> Source:
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
    if kind == "electricitymaps":
        from carbon_sensors.signals.electricitymaps import ElectricityMapsSource

        return ElectricityMapsSource.from_spec(spec)
    if kind == "watttime":
        from carbon_sensors.signals.watttime import WattTimeSource

        return WattTimeSource.from_spec(spec)
    if kind == "carbon_aware_sdk":
        from carbon_sensors.signals.carbon_aware_sdk import CarbonAwareSdkSource

        return CarbonAwareSdkSource.from_spec(spec)
    if kind == "file":
        if not spec.get("path"):
            raise ConfigurationError("a file source needs a path: {'kind': 'file', 'path': '/data/intensity.csv'}")
        return FileSource.from_spec(spec)
    raise ConfigurationError(
        f"unknown source kind {kind!r}; use 'embedded', 'file', 'neso', 'electricitymaps', 'watttime' or 'carbon_aware_sdk'"
    )
