"""Carbon and cost of a run: intensities over the real interval, the counterfactual, prices, re-pricing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from carbon_sensors.accounting import Prices, apply_carbon, apply_cost, reprice_with_actuals, run_intensities
from carbon_sensors.errors import PricingError
from carbon_sensors.forecast import Forecast
from carbon_sensors.records import RunKey, RunRecord, TokenUsage
from carbon_sensors.signals import FileSource

T0 = datetime(2026, 6, 15, tzinfo=UTC)
H = timedelta(hours=1)
KEY = RunKey("python", "nightly", "enrich", "r1")


def hourly(values, *, measured=False, signal="average"):
    points = [(T0 + i * H, v) for i, v in enumerate(values)]
    end = T0 + len(values) * H
    return Forecast.from_points(points, zone="DE", source="test", signal=signal, resolution=H,
                                measured_until=end if measured else None)


def test_intensity_is_time_weighted_over_the_actual_interval():
    """A run from 00:30 to 02:00 over 400/100 g/kWh hours sees (0.5*400 + 1*100) / 1.5."""
    got, counterfactual, basis = run_intensities(hourly([400, 100, 50]), submitted_at=None,
                                                 started_at=T0 + H / 2, ended_at=T0 + 2 * H)
    assert got == pytest.approx((0.5 * 400 + 100) / 1.5)
    assert counterfactual is None and basis == "forecast"


def test_counterfactual_is_an_equally_long_run_from_submission():
    """Submitted at 00:00 and run 02:00-03:00: the counterfactual is the 00:00-01:00 hour."""
    got, counterfactual, basis = run_intensities(hourly([400, 300, 100], measured=True), submitted_at=T0,
                                                 started_at=T0 + 2 * H, ended_at=T0 + 3 * H)
    assert (got, counterfactual, basis) == (100.0, 400.0, "measured")


def test_forecast_not_reaching_back_to_submission_gives_no_counterfactual():
    """A live forecast starting at the run's start cannot say what submission would have met."""
    got, counterfactual, _ = run_intensities(hourly([200, 100]), submitted_at=T0 - 3 * H,
                                             started_at=T0, ended_at=T0 + H)
    assert got == 200.0 and counterfactual is None


def test_apply_carbon_multiplies_energy_and_computes_the_saving():
    """2 kWh at 100 g/kWh against 400 g/kWh: 200 g emitted, 800 g counterfactual, 600 g saved."""
    record = RunRecord(key=KEY, energy_kwh=2.0)
    out = apply_carbon(record, intensity=100.0, counterfactual=400.0, signal="average", source="test", basis="forecast")
    assert (out.carbon_g, out.counterfactual_carbon_g, out.saved_carbon_g) == (200.0, 800.0, 600.0)
    assert out.carbon_signal == "average" and record.carbon_g is None  # the input is not mutated


def test_unknown_energy_leaves_carbon_unknown_not_zero():
    """No energy reading means no carbon figure, never a made-up zero."""
    out = apply_carbon(RunRecord(key=KEY), intensity=100.0, counterfactual=400.0, signal="average",
                       source="test", basis="forecast")
    assert out.carbon_g is None and out.saved_carbon_g is None and out.intensity_g_per_kwh == 100.0


def test_costs_add_energy_tokens_and_gpu_time():
    """0.5 kWh at 0.2 $/kWh, 2k+1k tokens at 0.15/0.6 $ per 1k, two GPUs for 30 min at 2 $/h."""
    record = RunRecord(key=KEY, energy_kwh=0.5, started_at=T0, ended_at=T0 + H / 2,
                       tokens=(TokenUsage("gpt-4o-mini-2024-07-18", 2000, 1000),))
    prices = Prices(usd_per_kwh=0.2, usd_per_gpu_hour=2.0, usd_per_1k_tokens={"gpt-4o-mini": (0.15, 0.6)})
    out = apply_cost(record, prices, gpu_count=2)
    assert out.cost_energy_usd == pytest.approx(0.1)
    assert out.cost_tokens_usd == pytest.approx(0.3 + 0.6)
    assert out.cost_gpu_usd == pytest.approx(2.0)
    assert out.cost_usd == pytest.approx(0.1 + 0.9 + 2.0)


def test_longest_model_prefix_wins():
    """gpt-4o-mini-2024 takes gpt-4o-mini's price, not gpt-4o's; a bare prefix without a separator does not match."""
    prices = Prices(usd_per_1k_tokens={"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6)})
    assert prices.model_price("gpt-4o-mini-2024-07-18") == (0.15, 0.6)
    assert prices.model_price("gpt-4o-2024-08-06") == (2.5, 10.0)
    with pytest.raises(PricingError, match="gpt-4oX"):
        prices.model_price("gpt-4oX")


def test_unknown_model_leaves_a_note_or_raises_when_strict():
    """An unpriced model costs nothing silently: the record says so, and strict mode raises."""
    record = RunRecord(key=KEY, tokens=(TokenUsage("mystery-model", 10, 5),))
    out = apply_cost(record, Prices(usd_per_1k_tokens={"gpt-4o": (2.5, 10.0)}))
    assert out.cost_tokens_usd is None and out.cost_usd is None
    assert any("mystery-model" in n and "usd_per_1k_tokens" in n for n in out.notes)
    with pytest.raises(PricingError, match="mystery-model"):
        apply_cost(record, Prices(), strict=True)


def test_price_signal_is_time_weighted(tmp_path):
    """A price file of 0.1 then 0.3 $/kWh gives 0.2 for a run straddling the change equally."""
    (tmp_path / "prices.csv").write_text("time,usd_per_kwh\n2026-06-15T00:00Z,0.1\n2026-06-15T01:00Z,0.3\n")
    (tmp_path / "prices.toml").write_text('price_file = "prices.csv"\n[usd_per_1k_tokens]\n"m" = {prompt = 1, completion = 2}\n')
    prices = Prices.load(tmp_path / "prices.toml")
    assert prices.energy_price(T0 + H / 2, T0 + H * 1.5) == pytest.approx(0.2)
    assert prices.energy_price(T0 - H, T0) == pytest.approx(0.1)  # the first price holds before it starts
    assert prices.model_price("m") == (1.0, 2.0)


def test_bad_price_tables_say_what_to_fix(tmp_path, monkeypatch):
    """Unknown keys, negative prices, unreadable files and bad env values raise PricingError with a hint."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"usd_per_kwh": 0.2, "usd_per_kWh": 0.3}))
    with pytest.raises(PricingError, match=r"unknown keys.*usd_per_kWh"):
        Prices.load(bad)
    with pytest.raises(PricingError, match="non-negative"):
        Prices(usd_per_1k_tokens={"m": (-1, 0)})
    with pytest.raises(PricingError, match="cannot read"):
        Prices.load(tmp_path / "missing.json")
    monkeypatch.setenv("CARBON_SENSORS_USD_PER_KWH", "cheap")
    with pytest.raises(PricingError, match="CARBON_SENSORS_USD_PER_KWH"):
        Prices.from_env()
    monkeypatch.setenv("CARBON_SENSORS_USD_PER_KWH", "0.25")
    assert Prices.from_env().usd_per_kwh == 0.25


def test_reprice_with_a_measured_file_marks_what_changed(tmp_path):
    """A forecast-priced record re-priced from a file of actuals becomes measured and lists the changes."""
    path = tmp_path / "actuals.csv"
    path.write_text("time,intensity\n" + "".join(f"{(T0 + i * H).isoformat()},{v}\n" for i, v in enumerate([300, 250, 90])))
    source = FileSource(path, measured=True)
    record = RunRecord(
        key=KEY, status="success", zone="DE", submitted_at=T0, started_at=T0 + 2 * H, ended_at=T0 + 3 * H,
        energy_kwh=1.0, source_spec=source.to_spec(),
    )
    record = apply_carbon(record, intensity=100.0, counterfactual=280.0, signal="average", source="file", basis="forecast")
    now = T0 + 5 * H
    out = reprice_with_actuals(record, now=now)
    assert out is not None and out.carbon_basis == "measured" and out.repriced_at == now
    assert out.carbon_g == 90.0 and out.counterfactual_carbon_g == 300.0 and out.saved_carbon_g == 210.0
    assert out.changes["carbon_g"] == [100.0, 90.0] and out.changes["carbon_basis"] == ["forecast", "measured"]
    assert reprice_with_actuals(out, now=now) is None  # measured already: nothing more to do


def test_reprice_refuses_forecasts_and_the_other_signal(tmp_path):
    """A source without measurements, or one speaking marginal for an average record, re-prices nothing."""
    path = tmp_path / "forecast.csv"
    path.write_text("time,intensity\n2026-06-15T00:00Z,300\n2026-06-15T01:00Z,200\n")
    base = RunRecord(key=KEY, status="success", zone="DE", submitted_at=T0, started_at=T0, ended_at=T0 + H,
                     energy_kwh=1.0, carbon_signal="average", carbon_basis="forecast")
    from dataclasses import replace

    assert reprice_with_actuals(replace(base, source_spec=FileSource(path).to_spec()), now=T0 + 3 * H) is None
    marginal = FileSource(path, measured=True, signal="marginal").to_spec()
    assert reprice_with_actuals(replace(base, source_spec=marginal), now=T0 + 3 * H) is None
    assert reprice_with_actuals(replace(base, source_spec=None), now=T0 + 3 * H) is None
