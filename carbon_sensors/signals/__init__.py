"""Signal sources: where carbon-intensity forecasts come from.
Core: the gate, the CLI and both adapters import it; it never imports Airflow or Prefect.

Every source returns the same :class:`~carbon_sensors.forecast.Forecast`; price sources
(:mod:`carbon_sensors.signals.prices`) return a :class:`~carbon_sensors.prices.PriceForecast`. A source is described by
a JSON-able spec (``source.to_spec()``) so an Airflow trigger can carry it; never a secret. The
spec's ``kind`` picks the factory that builds it (:mod:`carbon_sensors.signals.registry`): a new
source is one module that registers its kind.

>>> source_from_spec("embedded")
EmbeddedProfileSource()
"""

from __future__ import annotations

from typing import Any

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.signals.base import Source, run_sync
from carbon_sensors.signals.embedded import EMBEDDED_SOURCE_NAME, EmbeddedProfileSource, embedded_zones
from carbon_sensors.signals.file import FileSource
from carbon_sensors.signals.prices import FilePrices, PriceSource, TariffPrices, price_source_from_spec
from carbon_sensors.signals.registry import source_factory

__all__ = [
    "EMBEDDED_SOURCE_NAME",
    "EmbeddedProfileSource",
    "FilePrices",
    "FileSource",
    "PriceSource",
    "Source",
    "TariffPrices",
    "embedded_zones",
    "price_source_from_spec",
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
    return source_factory(spec.get("kind"))(spec)
