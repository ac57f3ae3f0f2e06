"""Energy and carbon for people: units by magnitude, plain decimals, and what they read back as."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbon_sensors import units
from carbon_sensors.units import (
    CARBON_UNITS,
    ENERGY_UNITS,
    carbon_unit,
    energy_unit,
    format_carbon,
    format_energy,
    plain_number,
)

#: What e-notation looks like anywhere in a text: 1e-09, 7.348e-10, 2E+05.
E_NOTATION = re.compile(r"\d[eE][+-]?\d")
SYMBOLS = {u.symbol: u for u in (*ENERGY_UNITS, *CARBON_UNITS)}
#: Magnitudes a run can have: from a microjoule (about 3e-13 kWh) to a large training run, either sign.
figures = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-15, max_value=1e12).flatmap(lambda x: st.sampled_from([x, -x])),
)


def read_back(text: str) -> float:
    """A formatted figure back in base units: ``12.3 Wh`` -> 0.0123."""
    number, symbol = text.rsplit(" ", 1)
    return float(number.replace(",", "")) * SYMBOLS[symbol].size


@pytest.mark.parametrize(("kwh", "text"), [
    (7.348e-10, "0.735 µWh"), (1.01e-09, "1.01 µWh"), (2.5e-6, "2.50 mWh"), (0.0123, "12.3 Wh"),
    (0.9999996, "1.00 kWh"), (2.5, "2.50 kWh"), (1520.0, "1.52 MWh"), (0.0, "0 kWh"), (-0.004, "-4.00 Wh"),
])
def test_an_energy_gets_the_unit_its_magnitude_needs(kwh, text):
    """Wh for a small run, kWh for a large one, mWh and µWh below; zero stays in kWh."""
    assert format_energy(kwh) == text


@pytest.mark.parametrize(("grams", "text"), [
    (9.712e-08, "0.0971 µg"), (0.00045, "450 µg"), (0.45, "450 mg"), (12.0, "12.0 g"), (1520.0, "1.52 kg"),
    (2.5e6, "2.50 t"), (0.0, "0 g"), (-20.0, "-20.0 g"),
])
def test_a_carbon_mass_gets_the_unit_its_magnitude_needs(grams, text):
    """mg, g or kg as the magnitude needs (µg and t at the ends); a negative saving keeps its sign."""
    assert format_carbon(grams) == text


def test_a_column_shares_the_unit_of_its_largest_value():
    """One unit per column, chosen by its largest known value; unknown values do not count."""
    unit = energy_unit([0.0021, 0.04, None, float("nan")])
    assert unit.symbol == "Wh" and [unit.number(v) for v in (0.0021, 0.04)] == ["2.10", "40.0"]
    assert carbon_unit([0.2, 1500.0]).symbol == "kg" and carbon_unit([0.2, 1500.0]).number(0.2) == "0.000200"
    assert energy_unit([]).symbol == "kWh" and carbon_unit([None, 0.0]).symbol == "g"


def test_plain_numbers_keep_three_significant_digits_and_whole_integers():
    """3 significant digits at least, thousands separated, integers never cut, vanishing values 0."""
    assert [plain_number(x) for x in (0.000123456, 1.5, 15.64, 999.6, 1234567.8, -3.2e-8, 1e-20, 0.0)] == [
        "0.000123", "1.50", "15.6", "1,000", "1,234,568", "-0.0000000320", "0", "0"]


@given(figures)
def test_energies_never_print_e_notation_and_read_back_within_precision(kwh):
    """Any energy prints plain digits and a unit, and reads back within its three significant digits."""
    text = format_energy(kwh)
    assert not E_NOTATION.search(text), text
    back = read_back(text)
    unit = SYMBOLS[text.rsplit(" ", 1)[1]]
    assert math.isclose(back, kwh, rel_tol=5e-3, abs_tol=0.5 * 10 ** -units.MAX_DECIMALS * unit.size), (kwh, text)


@given(figures)
def test_carbon_never_prints_e_notation_and_reads_back_within_precision(grams):
    """Any mass prints plain digits and a unit, and reads back within its three significant digits."""
    text = format_carbon(grams)
    assert not E_NOTATION.search(text), text
    unit = SYMBOLS[text.rsplit(" ", 1)[1]]
    assert math.isclose(read_back(text), grams, rel_tol=5e-3, abs_tol=0.5 * 10 ** -units.MAX_DECIMALS * unit.size)


@given(st.lists(st.one_of(st.none(), figures), max_size=8))
def test_a_column_never_prints_e_notation_and_its_largest_value_reads_at_least_one(values):
    """In a column's unit every value is plain digits; the largest is at least 1 unless the smallest unit is too big."""
    unit = energy_unit(values)
    cells = [unit.number(v) for v in values if v is not None]
    assert not any(E_NOTATION.search(c) for c in cells), cells
    known = [abs(v) for v in values if v]
    if known and unit is not ENERGY_UNITS[0]:
        assert max(known) / unit.size >= 1 - 5e-4
    if known and unit is not ENERGY_UNITS[-1]:
        assert max(known) / unit.size < 1000


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15), st.integers(1, 6))
def test_plain_numbers_never_print_e_notation(value, digits):
    """Whatever the value and the digits asked for, no exponent is printed."""
    assert not E_NOTATION.search(plain_number(value, digits))
