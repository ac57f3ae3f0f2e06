"""Backtests with price traces: the price forecast model, reading and matching traces, cost in every row."""

from __future__ import annotations

import json
import math
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from carbon_sensors import ConfigurationError, Forecast
from carbon_sensors.cli import main
from carbon_sensors.errors import ForecastCoverageError, SourceDataError
from carbon_sensors.forecast_models import MMFEForecasts, MMFEPriceForecasts
from carbon_sensors.planning import Policy
from carbon_sensors.price_traces import PriceTrace, load_price_traces, match_price_traces
from carbon_sensors.prices import PriceForecast
from carbon_sensors.simulate import WORKLOADS, SimulationSettings, Trace, run_trace, simulate

T0 = datetime(2022, 1, 3, tzinfo=UTC)
HOUR = 3600.0


def daily(days, low_hour, base=400.0, dip=100.0):
    return [dip if h % 24 == low_hour else base for h in range(24 * days)]


def carbon(values, zone="XX"):
    forecast = Forecast.from_points([(T0 + timedelta(hours=i), v) for i, v in enumerate(values)], zone=zone,
                                    source="test")
    return Trace(name=f"{zone}.csv", zone=zone, actual=forecast)


def price(values, zone="XX", currency="USD", start=T0):
    actual = PriceForecast.from_points([(start + timedelta(hours=i), v) for i, v in enumerate(values)], zone=zone,
                                       source="test", currency=currency)
    return PriceTrace(name=f"{zone}_prices.csv", zone=zone, actual=actual)


def write_csv(path, header, values, start=T0):
    path.write_text(header + "\n" + "".join(
        f"{(start + timedelta(hours=h)).strftime('%Y-%m-%d %H:%M:%S')},{v}\n" for h, v in enumerate(values)))
    return path


def test_price_forecasts_are_exact_at_issue_and_err_additively_at_the_price_level():
    """h = 0 is exact; at 24 h the error's spread is sigma24 times the level, the same for negative prices."""
    values = [-20.0 if h % 2 else 20.0 for h in range(24 * 40)]  # |price| = 20 everywhere, half negative
    model = MMFEPriceForecasts(price(values).actual, sigma24=0.2, rho=0.9, seed=1)
    errors = {"neg": [], "pos": []}
    for day in range(31, 38):
        for hour in range(0, 24, 3):
            t = T0.timestamp() + (day * 24 + hour) * HOUR
            issued = model.issued_at(t)
            assert issued.values[0] == values[day * 24 + hour] and issued.currency == "USD"
            target = day * 24 + hour + 24
            errors["neg" if values[target] < 0 else "pos"].append(issued.values[24] - values[target])
    for sample in errors.values():
        assert 0.5 * 0.2 * 20 < statistics.pstdev(sample) < 1.6 * 0.2 * 20


def test_price_errors_come_from_a_stream_of_their_own():
    """For the same seed and zone, price news and carbon news differ; the same seed repeats the prices."""
    values = [100.0] * (24 * 5)
    carbon_model = MMFEForecasts(carbon(values).actual, sigma24=0.1, rho=0.9, seed=3)
    one = MMFEPriceForecasts(price(values).actual, sigma24=0.1, rho=0.9, seed=3)
    two = MMFEPriceForecasts(price(values).actual, sigma24=0.1, rho=0.9, seed=3)
    carbon_errors = [carbon_model.issued_at(T0.timestamp()).values[h] / 100 - 1 for h in range(1, 48)]
    price_errors = [one.issued_at(T0.timestamp()).values[h] / 100 - 1 for h in range(1, 48)]
    assert one.issued_at(T0.timestamp()).values == two.issued_at(T0.timestamp()).values
    assert max(abs(a - b) for a, b in zip(carbon_errors, price_errors, strict=True)) > 1e-3


def test_a_price_trace_takes_its_zone_and_currency_from_its_names(tmp_path):
    """File name -> zone; 'price_eur_per_mwh' -> EUR; a zone column splits the file; negatives are kept."""
    (de,) = load_price_traces(write_csv(tmp_path / "DE_2022.csv", "datetime_utc,price_eur_per_mwh", [-5, 30, 40]))
    assert (de.zone, de.actual.currency, de.actual.values) == ("DE", "EUR", (-5.0, 30.0, 40.0))
    (za,) = load_price_traces(write_csv(tmp_path / "ZA_2022_usd_per_mwh.csv", "datetime_utc,price", [1, 2]))
    assert za.actual.currency == "USD"
    both = tmp_path / "two.csv"
    both.write_text("datetime_utc,zone,price,currency\n" + "".join(
        f"2022-01-03 0{h}:00:00,{z},{h},JPY\n" for h in range(3) for z in ("AA", "BB")))
    assert [(t.zone, t.actual.currency) for t in load_price_traces(both)] == [("AA", "JPY"), ("BB", "JPY")]


@pytest.mark.parametrize(("header", "values", "currency", "message"), [
    ("datetime_utc,price_usd_per_mwh", [10, "", 12], None, r"missing \(NaN\); fill the hour"),
    ("datetime_utc,price_usd_per_mwh", [10, "nan", 12], None, r"missing \(NaN\)"),
    ("datetime_utc,price", [10, 11], None, "does not say its currency"),
    ("datetime_utc,price_usd_per_kwh", [0.1, 0.2], None, "per kWh"),
    ("datetime_utc,price_usd_per_mwh", [10, 11], "EUR", "never converted"),
    ("datetime_utc,amount", [10, 11], None, "no price column"),
])
def test_bad_price_traces_say_what_to_do(tmp_path, header, values, currency, message):
    """NaN prices, an unknown or other currency, prices per kWh and a missing column are errors of our tree."""
    path = write_csv(tmp_path / "XX_trace.csv", header, values)
    with pytest.raises((SourceDataError, ConfigurationError), match=message):
        load_price_traces(path, currency=currency)


def test_price_traces_match_the_carbon_traces_by_zone_currency_and_span():
    """Every carbon zone needs one price trace in one currency (the policy's) that covers its span."""
    groups = [[carbon([100.0] * 48, "AA")], [carbon([100.0] * 48, "BB")]]
    prices = [price([1.0] * 48, "AA"), price([1.0] * 48, "BB")]
    assert set(match_price_traces(groups, prices, "USD")) == {"AA", "BB"}
    with pytest.raises(ConfigurationError, match="no price trace for zone"):
        match_price_traces(groups, prices[:1])
    with pytest.raises(ConfigurationError, match="no carbon trace there"):
        match_price_traces(groups[:1], prices)
    with pytest.raises(ConfigurationError, match="two price traces"):
        match_price_traces(groups[:1], [prices[0], prices[0]])
    with pytest.raises(ConfigurationError, match="quote EUR, USD"):
        match_price_traces(groups, [prices[0], price([1.0] * 48, "BB", currency="EUR")])
    with pytest.raises(ConfigurationError, match="policy's currency is EUR"):
        match_price_traces(groups, prices, "EUR")
    with pytest.raises(ForecastCoverageError, match="cut the carbon trace"):
        match_price_traces(groups, [prices[0], price([1.0] * 47, "BB")])


def test_every_row_has_the_window_price_and_the_energy_cost():
    """With a flat price every window costs the same: cost = jobs x kW x h x price, no cost saved."""
    out = simulate([[carbon(daily(6, 4))]], SimulationSettings(workloads=(WORKLOADS["nightly_enrichment"],), seeds=1,
                                                               power_kw=2.0),
                   prices=[price([50.0] * 24 * 6)], workers=1)
    for row in out["results"]:
        assert row["price_currency"] == "USD" and row["mean_price"] == pytest.approx(50.0)
        assert row["energy_kwh"] == pytest.approx(row["jobs"] * 2.0)
        assert row["energy_cost"] == pytest.approx(row["jobs"] * 2.0 * 50.0 / 1000)
        assert row["cost_per_mwh"] == pytest.approx(50.0) and row["cost_savings_vs_now"] == pytest.approx(0.0)
    assert out["summary"]["nightly_enrichment"]["oracle"]["cost_savings_vs_now"] == pytest.approx(0.0)
    assert out["prices"]["unit"] == "USD/MWh" and out["prices"]["price_sigma24"] == 0.10
    assert out["prices"]["forecast_model"].startswith("price mmfe (additive)")


def test_a_clean_hour_with_negative_prices_saves_cost_and_carbon():
    """Jobs moved into the clean hour at -10 USD/MWh cost less than starting at once at 100."""
    values = [-10.0 if h % 24 == 4 else 100.0 for h in range(24 * 6)]
    out = simulate([[carbon(daily(6, 4))]], SimulationSettings(workloads=(WORKLOADS["nightly_enrichment"],), seeds=1),
                   prices=[price(values)], workers=1)
    rows = {r["strategy"]: r for r in out["results"]}
    assert rows["now"]["mean_price"] == pytest.approx(100.0)
    assert rows["oracle"]["mean_price"] == pytest.approx(-10.0)
    assert rows["oracle"]["cost_savings_vs_now"] == pytest.approx(1.1)  # (100 - -10) / 100


def test_without_price_traces_the_rows_are_as_before():
    """No price trace: no price field in any row, no cost in the summary, no 'prices' section."""
    out = simulate([[carbon(daily(6, 4))]], SimulationSettings(workloads=(WORKLOADS["nightly_enrichment"],), seeds=1),
                   workers=1)
    assert "prices" not in out
    assert set(out["results"][0]) == {"trace", "zone", "workload", "strategy", "jobs", "mean_intensity",
                                      "savings_vs_now", "deadline_misses", "caused_misses", "mean_delay_h",
                                      "forced_rate"}
    assert set(out["summary"]["nightly_enrichment"]["now"]) == {"savings_vs_now", "fraction_of_oracle"}


def test_the_strategies_hand_the_price_forecasts_to_the_planner(monkeypatch):
    """commit_once, replan and the oracle pass the matching zone's prices to plan()."""
    import carbon_sensors.simulate_strategies as strategies

    real_plan, seen = strategies.plan, []

    def plan(forecasts, *, prices=None, **kwargs):
        seen.append((kwargs["now"], [p.zone for p in prices], [p.source for p in prices], prices[0].issued_at))
        return real_plan(forecasts, prices=prices, **kwargs)

    monkeypatch.setattr(strategies, "plan", plan)
    settings = SimulationSettings(workloads=(WORKLOADS["nightly_enrichment"],), seeds=1,
                                  strategies=("now", "commit_once", "replan", "oracle"))
    run_trace([carbon(daily(4, 4))], settings, seed=0, prices={"XX": price([20.0] * 96)})
    assert seen and all(zones == ["XX"] for _, zones, _, _ in seen)
    assert {source for _, _, (source,), _ in seen} == {"simulated-price-forecast", "test"}  # forecasts; the oracle's actuals
    assert all(issued <= now for now, _, (source,), issued in seen if source != "test")
    assert {"commit_once", "replan", "oracle"} <= set(strategies.strategies_on_prices(settings.strategies))


def test_the_simulate_command_prices_every_row(capsys, tmp_path):
    """--price-trace adds the price columns to the JSON rows and the table, explained under it."""
    trace = write_csv(tmp_path / "ZZ_trace.csv", "datetime_utc,carbon_intensity", daily(8, 4))
    prices = write_csv(tmp_path / "ZZ_2022_usd_per_mwh.csv", "datetime_utc,price_usd_per_mwh",
                       [-5.0 if h % 24 == 4 else 80.0 for h in range(24 * 8)])
    argv = ["simulate", "--trace", str(trace), "--price-trace", str(prices), "--workload", "nightly_enrichment",
            "--seeds", "1", "--workers", "1", "--price-sigma24", "0.2", "--power-kw", "3"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert all(r["price_currency"] == "USD" and math.isfinite(r["mean_price"]) for r in out["results"])
    assert out["prices"]["price_sigma24"] == 0.2 and out["prices"]["power_kw"] == 3.0
    assert out["summary"]["nightly_enrichment"]["oracle"]["cost_savings_vs_now"] > 1.0
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("Price forecasts: price mmfe")
    assert lines[2].split() == ["workload", "strategy", "saving_pct", "of_oracle", "misses", "caused_misses",
                                "mean_delay_h", "forced_pct", "cost_saving_pct", "mean_price", "zones"]
    assert "cost_saving_pct:" in lines[-1] and "(USD/MWh)" in lines[-1]


def test_the_simulate_command_refuses_bad_price_input(capsys, tmp_path):
    """NaN prices, a short price trace, another currency and cost settings without prices exit 2 with advice."""
    trace = write_csv(tmp_path / "ZZ_trace.csv", "datetime_utc,carbon_intensity", daily(4, 4))
    base = ["simulate", "--trace", str(trace), "--workload", "nightly_enrichment", "--seeds", "1", "--workers", "1"]
    nan = write_csv(tmp_path / "ZZ_nan_usd_per_mwh.csv", "datetime_utc,price", [1.0, "nan", *[1.0] * 94])
    assert main([*base, "--price-trace", str(nan)]) == 2
    assert "missing (NaN)" in capsys.readouterr().err
    short = write_csv(tmp_path / "ZZ_short_usd_per_mwh.csv", "datetime_utc,price", [1.0] * 50)
    assert main([*base, "--price-trace", str(short)]) == 2
    assert "not all of the carbon trace's" in capsys.readouterr().err
    full = write_csv(tmp_path / "ZZ_full_usd_per_mwh.csv", "datetime_utc,price", [1.0] * 96)
    assert main([*base, "--price-trace", str(full), "--currency", "EUR"]) == 2
    assert "never converted" in capsys.readouterr().err
    assert main([*base, "--max-cost-increase-pct", "10"]) == 2
    assert "no price trace" in capsys.readouterr().err


def test_a_cost_cap_moves_every_planning_strategy_to_the_clean_window_within_budget():
    """Cleanest at 04:00 but dear, nearly as clean and cheap at 06:00: under a +0 % cap every planning strategy
    takes 06:00, the re-planning ones too (their cap stays measured against the price at submission)."""
    hours = range(24 * 6)
    intensity = [100.0 if h % 24 == 4 else 150.0 if h % 24 == 6 else 400.0 for h in hours]
    prices = [300.0 if h % 24 == 4 else 50.0 if h % 24 == 6 else 100.0 for h in hours]
    for cap, expected_price in ((None, 300.0), (0.0, 50.0)):
        policy = Policy(min_saving_pct=0.0) if cap is None else Policy(min_saving_pct=0.0, max_cost_increase_pct=cap)
        settings = SimulationSettings(workloads=(WORKLOADS["nightly_enrichment"],), seeds=1, sigma24=0.0,
                                      price_sigma24=0.0, policy=policy)
        out = simulate([[carbon(intensity)]], settings, prices=[price(prices)], workers=1)
        rows = {r["strategy"]: r for r in out["results"]}
        assert out["prices"]["planned_on_prices"] == ["commit_once", "replan", "carbon_sensors", "oracle"]
        for strategy in ("commit_once", "replan", "carbon_sensors", "oracle"):
            assert rows[strategy]["mean_price"] == pytest.approx(expected_price), (cap, strategy)
        assert rows["now"]["mean_price"] == pytest.approx(100.0)
