"""The price-source interface, the price kinds a spec may name, and the cache live price sources share.

A price source is built like a carbon source (:mod:`carbon_sensors.signals.base`): async ``fetch``,
``check_zone`` and a JSON-able ``to_spec()`` that never holds a secret. It returns a
:class:`~carbon_sensors.prices.PriceForecast` instead of a Forecast, and says its ``currency``
before it fetches, so a cost cap in another currency fails when the DAG is parsed.

Price kinds are their own registry: ``"file"`` as a price source is :class:`FilePrices`, never
the carbon :class:`~carbon_sensors.signals.file.FileSource`.

>>> price_source_from_spec({"kind": "tariff", "flat": 120.0, "currency": "USD"})
TariffPrices(flat=120.0, currency='USD')
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.prices import PriceForecast
from carbon_sensors.signals.registry import _choices

__all__ = [
    "BUILTIN_PRICE_KINDS",
    "PriceSource",
    "price_source_factory",
    "price_source_from_spec",
    "price_source_kinds",
    "register_price_source_kind",
]


@runtime_checkable
class PriceSource(Protocol):
    """Where price forecasts come from.

    ``fetch`` returns a :class:`PriceForecast` in ``currency`` per MWh covering ``[start, end]``
    where the source can, raising an error from :mod:`carbon_sensors.errors` where it cannot.
    """

    kind: str
    currency: str
    refresh_interval: timedelta | None

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> PriceForecast: ...

    def check_zone(self, zone: str) -> None: ...

    def to_spec(self) -> dict[str, Any]: ...


PriceSourceFactory = Callable[[dict[str, Any]], PriceSource]

#: The price kinds this package ships, and the module that registers each when imported.
BUILTIN_PRICE_KINDS: dict[str, str] = {
    "tariff": "carbon_sensors.signals.prices.tariff",
    "file": "carbon_sensors.signals.prices.file",
    "entsoe": "carbon_sensors.signals.prices.entsoe",
}

_factories: dict[str, PriceSourceFactory] = {}
_interned: dict[str, PriceSource] = {}


def register_price_source_kind(kind: str, factory: PriceSourceFactory) -> None:
    """Let price specs of ``kind`` be built by ``factory``; a later registration of the same kind replaces it."""
    if not isinstance(kind, str) or not kind.strip():
        raise ConfigurationError(f"a price source kind must be a non-empty name, got {kind!r}")
    if not callable(factory):
        raise ConfigurationError(f"the factory for price source kind {kind!r} must be callable")
    _factories[kind] = factory


def price_source_kinds() -> tuple[str, ...]:
    """Every kind a price spec may name: the built-in ones first, then those registered by other modules."""
    return (*BUILTIN_PRICE_KINDS, *(kind for kind in _factories if kind not in BUILTIN_PRICE_KINDS))


def price_source_factory(kind: Any) -> PriceSourceFactory:
    """The factory for ``kind``, importing its built-in module on first use."""
    if isinstance(kind, str) and kind not in _factories and kind in BUILTIN_PRICE_KINDS:
        importlib.import_module(BUILTIN_PRICE_KINDS[kind])
    factory = _factories.get(kind) if isinstance(kind, str) else None
    if factory is None:
        raise ConfigurationError(f"unknown price source kind {kind!r}; use {_choices(price_source_kinds())}")
    return factory


def price_source_from_spec(spec: str | dict[str, Any] | PriceSource) -> PriceSource:
    """A price source from its spec (``{"kind": "tariff", "flat": 120.0}``, ``"entsoe"``) or a price source itself.

    Equal specs give the same source object, as for carbon sources.
    """
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict):
        if isinstance(spec, PriceSource):
            return spec
        raise ConfigurationError(
            f"a price source must be a spec dict, a kind name or a price source, got {type(spec).__name__}")
    try:
        key: str | None = json.dumps(spec, sort_keys=True)
    except (TypeError, ValueError):
        key = None
    source = _interned.get(key) if key is not None else None
    if source is None:
        source = price_source_factory(spec.get("kind"))(spec)
        if key is not None:
            if len(_interned) >= 4096:
                _interned.clear()
            _interned[key] = source
    return source
