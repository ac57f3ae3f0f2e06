"""Price sources: where electricity-price forecasts come from, next to (never mixed with) intensity.

Each returns a :class:`~carbon_sensors.prices.PriceForecast` in its stated currency per MWh:

- :class:`TariffPrices`: your tariff, flat or time-of-use bands in local time (offline, no key);
- :class:`FilePrices`: a CSV or Parquet file of prices;
- :class:`~carbon_sensors.signals.prices.entsoe.EntsoePrices`: ENTSO-E day-ahead prices (European
  bidding zones, a security token).

The live ones load their HTTP code only when first used: ``price_source_from_spec("entsoe")``.

>>> price_source_from_spec({"kind": "tariff", "flat": 95.0, "currency": "EUR"}).currency
'EUR'
"""

from __future__ import annotations

from carbon_sensors.signals.prices.base import (
    BUILTIN_PRICE_KINDS,
    PriceSource,
    price_source_from_spec,
    price_source_kinds,
    register_price_source_kind,
)
from carbon_sensors.signals.prices.file import FilePrices
from carbon_sensors.signals.prices.tariff import TariffPrices

__all__ = [
    "BUILTIN_PRICE_KINDS",
    "FilePrices",
    "PriceSource",
    "TariffPrices",
    "price_source_from_spec",
    "price_source_kinds",
    "register_price_source_kind",
]
