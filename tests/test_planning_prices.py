"""The three numbers of a job in the planner: deadline, cost ceiling, carbon ceiling (or a carbon price)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.forecast import Forecast
from carbon_sensors.planning import Policy, plan
from carbon_sensors.prices import PriceForecast

T0 = datetime(2026, 6, 15, 6, tzinfo=UTC)
H = timedelta(hours=1)


def carbon(values, zone="DE"):
    return Forecast.from_points([(T0 + i * H, v) for i, v in enumerate(values)], zone=zone, source="test")


def prices(values, zone="DE", currency="EUR"):
    return PriceForecast.from_points([(T0 + i * H, v) for i, v in enumerate(values)], zone=zone, source="tariff",
                                     currency=currency, resolution=H)


#   hour:      0    1    2    3    4    5
CARBON = [400, 380, 150, 200, 390, 400]  # cleanest at 2
PRICE = [100, 90, 160, 95, 300, 100]  # the cleanest hour costs 60 % more than now; hour 3 is cheaper and clean


def planned(policy, c=CARBON, p=PRICE, **kw):
    return plan(carbon(c), now=T0, deadline=T0 + 6 * H, expected_duration=H,
                policy=Policy(safety_margin=timedelta(0), **policy), prices=prices(p), **kw)


def test_carbon_only_reports_the_price_of_the_same_window():
    p = planned({})
    assert p.decision == "wait" and p.planned_start == T0 + 2 * H
    assert (p.price_now, p.price_planned, p.price_currency, p.price_source) == (100, 160, "EUR", "tariff")
    assert p.cost_change_pct == pytest.approx(60.0)
    assert "62% cleaner and 60% dearer than now" in p.reason
    d = p.to_dict()
    assert d["price"] == 160 and d["price_at_submission"] == 100 and d["cost_change_pct"] == 60.0
    assert d["price_degraded"] is False


def test_the_cost_cap_takes_the_cleanest_window_within_budget_and_says_what_it_passed_up():
    p = planned({"max_cost_increase_pct": 10})
    assert p.planned_start == T0 + 3 * H and p.intensity_planned == 200 and p.price_planned == 95
    assert "50% cleaner and 5% cheaper than now" in p.reason
    assert "the cleanest window within +10% of the cost now" in p.reason
    assert ("The cleanest window (2026-06-15 08:00 UTC, 150 g/kWh) costs 60% more than now, over the 10% allowed; "
            "taking the cleanest within budget.") in p.reason


def test_the_readme_shows_the_reason_the_planner_writes():
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    assert planned({"max_cost_increase_pct": 10}).reason in readme


def test_a_generous_cap_is_the_carbon_plan():
    assert planned({"max_cost_increase_pct": 60}).planned_start == planned({}).planned_start == T0 + 2 * H


def test_a_negative_cap_asks_for_a_cheaper_window():
    p = planned({"max_cost_increase_pct": -8})  # at most 92: hour 1 (90) only, 5 % cleaner
    assert p.planned_start == T0 + 1 * H and p.price_planned == 90


def test_the_cost_objective_takes_the_cheapest_window_under_the_carbon_ceiling():
    cheapest = planned({"objective": "cost"}, p=[100, 40, 160, 95, 300, 100])
    assert cheapest.planned_start == T0 + H and "the cheapest window" in cheapest.reason
    ceiling = planned({"objective": "cost", "max_intensity": 250}, p=[100, 40, 160, 95, 300, 100])
    assert ceiling.planned_start == T0 + 3 * H and ceiling.intensity_planned == 200
    assert "the cheapest window at or below 250 g/kWh" in ceiling.reason


def test_no_window_under_the_carbon_ceiling_takes_the_cleanest_and_says_so():
    p = planned({"objective": "cost", "max_intensity": 100})
    assert p.planned_start == T0 + 2 * H
    assert "No window stays at or below the 100 g/kWh ceiling; taking the cleanest." in p.reason


def test_now_over_the_ceiling_waits_whatever_the_minimum_saving():
    p = planned({"objective": "cost", "max_intensity": 390, "min_saving_pct": 50}, c=[400, 380, 390, 390, 390, 390],
                p=[100, 101, 101, 101, 101, 101])
    assert p.decision == "wait" and p.planned_start == T0 + H  # dearer, but under the ceiling


def test_a_carbon_price_folds_both_into_one_figure():
    # 100 EUR/t: 1 g/kWh costs 0.1 EUR/MWh. Hour 2: 160 + 15 = 175; hour 3: 95 + 20 = 115; now: 100 + 40 = 140.
    p = planned({"carbon_price_per_tonne": 100})
    assert p.planned_start == T0 + 3 * H
    assert "the lowest price with carbon at 100 EUR/t" in p.reason
    # At 10,000 EUR/t carbon dominates: hour 2 (160 + 1,500) beats hour 3 (95 + 2,000).
    assert planned({"carbon_price_per_tonne": 10_000}).planned_start == T0 + 2 * H


def test_the_minimum_saving_applies_to_the_figure_the_policy_minimises():
    p = planned({"objective": "cost", "min_saving_pct": 10}, p=[100, 95, 160, 97, 300, 100])
    assert p.decision == "run_now" and "would save only 5.0% cost, below the 10% worth waiting for" in p.reason


def test_negative_prices_are_costed_as_they_are():
    p = planned({"objective": "cost"}, p=[-5, 20, -40, 10, 30, 0])
    assert p.planned_start == T0 + 2 * H and p.price_planned == -40
    assert p.cost_change_pct == pytest.approx(-700.0)  # 35 below -5, seven times its size
    capped = planned({"max_cost_increase_pct": 0}, p=[-5, 20, -40, 10, 30, 0])  # at most -5 (now) -> hour 2
    assert capped.planned_start == T0 + 2 * H


def test_without_a_price_the_plan_is_carbon_only_and_says_so():
    p = plan(carbon(CARBON), now=T0, deadline=T0 + 6 * H, expected_duration=H,
             policy=Policy(safety_margin=timedelta(0), max_cost_increase_pct=0), prices=[])
    assert p.planned_start == T0 + 2 * H and p.price_degraded and p.price_now is None
    assert ("Planned on carbon alone: no price forecast for DE, so the policy's cost settings could not be applied."
            in p.reason)
    stale = PriceForecast.from_points([(T0 - 3 * H, 50.0)], zone="DE", source="tariff", resolution=H)
    q = plan(carbon(CARBON), now=T0, deadline=T0 + 6 * H, expected_duration=H,
             policy=Policy(safety_margin=timedelta(0), objective="cost"), prices=stale)
    assert q.price_degraded and "does not cover starting now" in q.reason and q.to_dict()["price_degraded"] is True


def test_the_deadline_still_wins():
    p = plan(carbon(CARBON), now=T0 + 5 * H, deadline=T0 + 6 * H, expected_duration=H,
             policy=Policy(safety_margin=timedelta(0), objective="cost"), prices=prices(PRICE))
    assert p.decision == "run_now" and p.latest_start_reached and p.price_planned == 100


def test_prices_that_end_early_cost_only_the_windows_they_cover():
    p = planned({"objective": "cost"}, p=[100, 90, 160])  # hours 3-5 are not priced, hour 3 is not a candidate
    assert p.planned_start == T0 + H
    assert "Prices are known until 2026-06-15 09:00 UTC; later windows were not costed." in p.reason


def test_another_zone_may_be_the_cheaper_one():
    fr = carbon([60, 60, 60, 60, 60, 60], zone="FR")
    p = plan([carbon(CARBON), fr], now=T0, deadline=T0 + 6 * H, expected_duration=H,
             policy=Policy(safety_margin=timedelta(0), objective="cost"),
             prices=[prices(PRICE), prices([50] * 6, zone="FR")])
    assert p.decision == "run_now" and p.zone == "FR" and p.price_planned == 50
    assert "Running now in FR instead of DE" in p.reason and "85% cleaner and 50% cheaper than now" in p.reason


def test_prices_are_never_converted():
    with pytest.raises(ConfigurationError, match="prices are in USD but the price forecast is in EUR"):
        planned({"max_cost_increase_pct": 0, "currency": "USD"})
    with pytest.raises(ConfigurationError, match="every zone's price source must quote one currency"):
        plan([carbon(CARBON), carbon(CARBON, zone="FR")], now=T0, deadline=T0 + 6 * H, expected_duration=H,
             prices=[prices(PRICE), prices(PRICE, zone="FR", currency="USD")])


@pytest.mark.parametrize(("settings", "message"), [
    ({"max_cost_increase_pct": -150}, "max_cost_increase_pct must be a number >= -100"),
    ({"max_intensity": -1}, "max_intensity must be a number >= 0"),
    ({"carbon_price_per_tonne": math.inf}, "carbon_price_per_tonne must be a number >= 0"),
    ({"objective": "money"}, "objective must be one of carbon, cost"),
    ({"currency": "euro"}, "ISO 4217"),
])
def test_bad_cost_settings_are_refused_when_the_policy_is_built(settings, message):
    with pytest.raises(ConfigurationError, match=message):
        Policy(**settings)


def test_the_cost_settings_travel_in_the_policys_dict_and_only_when_set():
    policy = Policy(max_cost_increase_pct=10, objective="cost", max_intensity=200, carbon_price_per_tonne=80,
                    currency="EUR")
    assert Policy.from_dict(policy.to_dict()) == policy
    assert set(Policy().to_dict()) == {"max_delay_s", "threshold", "min_saving_pct", "safety_margin_s"}
    assert "price" not in plan(carbon(CARBON), now=T0, deadline=T0 + 6 * H, expected_duration=H).to_dict()


HOURS = 30


@settings(max_examples=150, deadline=None)
@given(
    c=st.lists(st.floats(20, 900), min_size=HOURS, max_size=HOURS),
    p=st.lists(st.one_of(st.just(0.0), st.sampled_from([-50.0, 40.0]), st.floats(-200, 600)), min_size=HOURS,
               max_size=HOURS),
    duration_h=st.integers(1, 6),
    slack_h=st.integers(0, 20),
    cap=st.one_of(st.none(), st.floats(-50, 100)),
    objective=st.sampled_from(["carbon", "cost"]),
    ceiling=st.one_of(st.none(), st.floats(20, 900)),
)
# Found by Hypothesis: a price 6e-8 under zero once made the only window under the carbon ceiling
# count as over a cost ceiling it met to float noise.
@example(c=[20.0, 20.0, 21.0] + [20.0] * 27, p=[0.0, 0.0, -5.960464477539063e-08] + [0.0] * 27, duration_h=3,
         slack_h=3, cap=0.0, objective="cost", ceiling=20.0)
def test_every_plan_keeps_the_deadline_and_the_cost_ceiling(c, p, duration_h, slack_h, cap, objective, ceiling):
    duration = duration_h * H
    policy = Policy(safety_margin=timedelta(0), max_cost_increase_pct=cap, objective=objective, max_intensity=ceiling,
                    min_saving_pct=0)
    result = plan(carbon(c), now=T0, deadline=T0 + duration + slack_h * H, expected_duration=duration, policy=policy,
                  prices=prices(p))
    assert T0 <= result.planned_start <= result.latest_start
    assert "None" not in result.reason and "nan" not in result.reason
    assert result.price_planned == pytest.approx(prices(p).window_mean(result.planned_start, duration))
    if slack_h == 0:
        assert result.latest_start_reached  # the deadline decides, whatever the price
        return
    figures = [(carbon(c).window_mean(T0 + k * H, duration), prices(p).window_mean(T0 + k * H, duration))
               for k in range(slack_h + 1)]
    limit = None if cap is None else result.price_now + abs(result.price_now) * cap / 100
    if limit is not None:
        tolerance = 1e-6 * max(1, abs(limit))
        if any(f[1] <= limit + tolerance for f in figures):
            assert result.price_planned <= limit + tolerance
        else:  # nothing within the ceiling (a negative one): the cheapest window
            assert result.price_planned <= min(f[1] for f in figures) + tolerance
    # Brute force over the whole-hour starts: nothing eligible beats the plan on its own figure.
    score = (lambda cm, pm: pm) if objective == "cost" else (lambda cm, pm: cm)
    eligible = [f for f in figures if (limit is None or f[1] <= limit + 1e-6 * max(1, abs(limit)))
                and (ceiling is None or f[0] <= ceiling * (1 + 1e-9) + 1e-9)]
    if eligible:
        assert score(result.intensity_planned, result.price_planned) <= min(score(*f) for f in eligible) + 1e-6 * max(
            1, abs(min(score(*f) for f in eligible)))
        if ceiling is not None:
            assert result.intensity_planned <= ceiling * (1 + 1e-6) + 1e-6


def test_a_re_plan_keeps_the_budget_of_submission():
    """Measured against the price at submission (a waiting gate's), a dear "now" no longer qualifies itself."""
    p = planned({"max_cost_increase_pct": 0}, c=[100, 400, 150, 400, 400, 400], p=[300, 100, 50, 100, 100, 100],
                price_baseline=100.0)
    assert p.decision == "wait" and p.planned_start == T0 + 2 * H and p.price_planned == 50
    assert "the cleanest window within +0% of the cost at submission" in p.reason
    assert "costs 200% more than at submission, over the 0% allowed" in p.reason
    nothing = planned({"max_cost_increase_pct": 0}, p=[300] * 6, price_baseline=100.0)
    assert nothing.price_planned == 300 and (
        "No window stays within +0% of the 100.00 EUR/MWh at submission; taking the cheapest." in nothing.reason)


def test_a_zero_price_now_is_named_not_divided_by():
    """At a price of exactly 0 now no percentage exists; the reason gives the prices instead."""
    p = planned({"max_cost_increase_pct": 10}, p=[0, 90, 160, 0, 300, 100])
    assert p.planned_start == T0 + 3 * H and p.cost_change_pct is None
    assert "costs 160.00 EUR/MWh against 0.00 EUR/MWh now, over the 10% allowed" in p.reason
    assert "price not known" not in p.reason
