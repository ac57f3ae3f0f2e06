"""Energy and carbon for people: a unit chosen by magnitude, plain digits, never e-notation.

Records and JSON keep the base units (kWh, grams); only text meant to be read changes. A single
figure gets its own unit; a column shares one, chosen by its largest value and named in its header.

>>> format_energy(7.348e-10), format_energy(0.0123), format_energy(2.5), format_carbon(1520.0)
('0.735 µWh', '12.3 Wh', '2.50 kWh', '1.52 kg')
>>> unit = carbon_unit([0.004, 0.0125, None])
>>> unit.symbol, [unit.number(v) for v in (0.004, 0.0125)]
('mg', ['4.00', '12.5'])
>>> plain_number(3.2e-08), plain_number(1234567.8), plain_number(0.5, digits=2)
('0.0000000320', '1,234,568', '0.50')
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CARBON_UNITS",
    "ENERGY_UNITS",
    "Unit",
    "carbon_unit",
    "energy_unit",
    "format_carbon",
    "format_energy",
    "pick_unit",
    "plain_number",
]

#: Decimals beyond which a figure is shown as 0 (far below anything a meter resolves).
MAX_DECIMALS = 12


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit of a quantity: its symbol and how many base units (kWh, g) one of it is."""

    symbol: str
    size: float

    def number(self, base_value: float, digits: int = 3) -> str:
        """``base_value`` (in base units) in this unit, without the symbol: see :func:`plain_number`."""
        return plain_number(base_value / self.size, digits)

    def format(self, base_value: float, digits: int = 3) -> str:
        """``base_value`` in this unit, with the symbol: ``12.3 Wh``."""
        return f"{self.number(base_value, digits)} {self.symbol}"


#: Energy, base kWh: µWh to GWh (a metered CPU second is about a mWh; a training run, MWh).
ENERGY_UNITS: tuple[Unit, ...] = (
    Unit("µWh", 1e-9), Unit("mWh", 1e-6), Unit("Wh", 1e-3), Unit("kWh", 1.0), Unit("MWh", 1e3), Unit("GWh", 1e6),
)
#: Carbon (CO2e), base g: µg to t.
CARBON_UNITS: tuple[Unit, ...] = (
    Unit("µg", 1e-6), Unit("mg", 1e-3), Unit("g", 1.0), Unit("kg", 1e3), Unit("t", 1e6),
)
_BASE = {ENERGY_UNITS: ENERGY_UNITS[3], CARBON_UNITS: CARBON_UNITS[2]}


def plain_number(value: float, digits: int = 3) -> str:
    """``value`` with at least ``digits`` significant digits, thousands separated, in plain decimals.

    Integers are never cut (``1,234,568``); a value too small for :data:`MAX_DECIMALS` decimals is
    ``0``. NaN and infinities are written as Python writes them; callers show their own dash.
    """
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    rounded = float(f"{value:.{max(0, digits - 1)}e}")  # 0.9999996 is 1.00, not 1.000
    magnitude = math.floor(math.log10(abs(rounded)))
    decimals = min(MAX_DECIMALS, max(0, digits - 1 - magnitude))
    text = f"{value:,.{decimals}f}"
    if float(text.replace(",", "")) == 0:
        return "0"
    return text


def pick_unit(values: Iterable[float | None], units: tuple[Unit, ...]) -> Unit:
    """The largest unit in which the largest finite ``|value|`` is at least 1 (the smallest unit if none is).

    Unknown and zero values do not count; with none left, the base unit (kWh, g).
    """
    largest = max((abs(v) for v in values if v is not None and math.isfinite(v)), default=0.0)
    if largest == 0:
        return _BASE.get(units, units[0])
    chosen = units[0]
    for unit in units:
        # a whisker of tolerance: 999.9996 Wh, which prints as 1,000, still picks kWh
        if largest >= unit.size * (1 - 5e-4):
            chosen = unit
    return chosen


def energy_unit(values_kwh: Iterable[float | None]) -> Unit:
    """The unit of a column of energies in kWh."""
    return pick_unit(values_kwh, ENERGY_UNITS)


def carbon_unit(values_g: Iterable[float | None]) -> Unit:
    """The unit of a column of carbon masses in grams."""
    return pick_unit(values_g, CARBON_UNITS)


def format_energy(kwh: float, digits: int = 3) -> str:
    """One energy, in kWh, in its own unit: ``0.735 µWh``, ``12.3 Wh``, ``2.50 kWh``."""
    return energy_unit([kwh]).format(kwh, digits)


def format_carbon(grams: float, digits: int = 3) -> str:
    """One carbon mass, in grams, in its own unit: ``450 mg``, ``12.0 g``, ``1.52 kg``."""
    return carbon_unit([grams]).format(grams, digits)
