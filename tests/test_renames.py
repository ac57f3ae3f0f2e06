"""Renamed settings: the old name still works and warns once naming the new one; the new one wins."""

from __future__ import annotations

import warnings

import pytest

from carbon_sensors import renames
from carbon_sensors.errors import RenamedSettingWarning
from carbon_sensors.provider_info import get_provider_info


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    """Each test sees every old name warn afresh (a process warns once per old name)."""
    monkeypatch.setattr(renames, "_warned", set())


def _caught(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call()
    return value, [w for w in caught if issubclass(w.category, RenamedSettingWarning)]


# -- the mechanism -----------------------------------------------------------------------------------


def test_an_old_environment_name_still_works_and_names_the_new_one(monkeypatch):
    """Only the old variable set: its value is used, and one warning says which name to set instead."""
    monkeypatch.setitem(renames.RENAMED_ENV, "CARBON_SENSORS_OLD_SPOOL", "CARBON_SENSORS_NEW_SPOOL")
    value, caught = _caught(lambda: renames.env_setting("CARBON_SENSORS_NEW_SPOOL", {"CARBON_SENSORS_OLD_SPOOL": "/s"}))
    assert value == "/s"
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "CARBON_SENSORS_OLD_SPOOL is renamed CARBON_SENSORS_NEW_SPOOL" in message
    assert "set CARBON_SENSORS_NEW_SPOOL instead" in message


def test_the_new_name_wins_and_the_old_one_is_called_ignored(monkeypatch):
    """Both set: the new value is used, and the warning says the old one is ignored and can go."""
    monkeypatch.setitem(renames.RENAMED_ENV, "CARBON_SENSORS_OLD_SPOOL", "CARBON_SENSORS_NEW_SPOOL")
    env = {"CARBON_SENSORS_OLD_SPOOL": "/old", "CARBON_SENSORS_NEW_SPOOL": "/new"}
    value, caught = _caught(lambda: renames.env_setting("CARBON_SENSORS_NEW_SPOOL", env))
    assert value == "/new"
    assert [str(w.message) for w in caught] == [
        "CARBON_SENSORS_OLD_SPOOL is ignored: it is renamed CARBON_SENSORS_NEW_SPOOL, which is also set and wins; "
        "remove CARBON_SENSORS_OLD_SPOOL"
    ]


def test_each_old_name_warns_once_per_process(monkeypatch):
    """A setting read on every re-plan warns the first time only."""
    monkeypatch.setitem(renames.RENAMED_ENV, "CARBON_SENSORS_OLD_SPOOL", "CARBON_SENSORS_NEW_SPOOL")
    env = {"CARBON_SENSORS_OLD_SPOOL": "/s"}
    _, first = _caught(lambda: renames.env_setting("CARBON_SENSORS_NEW_SPOOL", env))
    values_and_warnings = [_caught(lambda: renames.env_setting("CARBON_SENSORS_NEW_SPOOL", env)) for _ in range(3)]
    assert len(first) == 1
    assert [v for v, _ in values_and_warnings] == ["/s"] * 3 and all(not w for _, w in values_and_warnings)


def test_unset_and_blank_values_are_unset_and_do_not_warn(monkeypatch):
    """A blank old value does not hide an unset new one, nor warn; an unrenamed name reads as before."""
    monkeypatch.setitem(renames.RENAMED_ENV, "CARBON_SENSORS_OLD_SPOOL", "CARBON_SENSORS_NEW_SPOOL")
    value, caught = _caught(lambda: renames.env_setting("CARBON_SENSORS_NEW_SPOOL", {"CARBON_SENSORS_OLD_SPOOL": " "}))
    assert value is None and not caught
    assert renames.env_setting("CARBON_SENSORS_OTHER", {"CARBON_SENSORS_OTHER": " x "}) == " x "
    assert renames.env_setting("CARBON_SENSORS_OTHER", {}) is None


def test_a_chain_of_renames_is_followed_latest_name_first():
    """a -> b -> c: asking for c finds b, then a."""
    table = {"A": "B", "B": "C"}
    assert renames.old_names("C", table) == ("B", "A")
    value, caught = _caught(lambda: renames.resolve_renamed("C", {"A": "1", "B": "2"}.get, table))
    assert value == "2" and "B is renamed C" in str(caught[0].message)


def test_the_warning_shows_by_default():
    """RenamedSettingWarning is a FutureWarning: Python's default filters show it (a DeprecationWarning they hide)."""
    assert issubclass(RenamedSettingWarning, FutureWarning)
    assert not issubclass(RenamedSettingWarning, DeprecationWarning)


# -- the readers use it ------------------------------------------------------------------------------


def test_the_ledger_url_is_read_by_an_old_name(monkeypatch):
    """A registered rename of CARBON_SENSORS_LEDGER_URL: the ledger finds its database by the old name."""
    from carbon_sensors.ledger import default_ledger_url

    monkeypatch.setitem(renames.RENAMED_ENV, "CARBON_SENSORS_LEDGER", "CARBON_SENSORS_LEDGER_URL")
    monkeypatch.setenv("CARBON_SENSORS_LEDGER", "sqlite:////tmp/renamed.db")
    value, caught = _caught(default_ledger_url)
    assert value == "sqlite:////tmp/renamed.db"
    assert "set CARBON_SENSORS_LEDGER_URL instead" in str(caught[0].message)
    monkeypatch.setenv("CARBON_SENSORS_LEDGER_URL", "sqlite:////tmp/new.db")
    value, caught = _caught(default_ledger_url)
    assert value == "sqlite:////tmp/new.db" and "CARBON_SENSORS_LEDGER is ignored" in str(caught[0].message)


def test_the_kill_switch_and_estimate_watts_are_read_by_old_names(monkeypatch):
    """The environment readers of the core go through the table: the kill switch and the meter's watts."""
    from carbon_sensors.metering.estimate import resolve_parameters
    from carbon_sensors.overrides import kill_switch_from_env

    monkeypatch.setitem(renames.RENAMED_ENV, "CARBON_SENSORS_STOP", "CARBON_SENSORS_KILL_SWITCH")
    monkeypatch.setitem(renames.RENAMED_ENV, "CARBON_SENSORS_CORE_WATTS", "CARBON_SENSORS_WATTS_PER_CORE")
    monkeypatch.setenv("CARBON_SENSORS_STOP", "1")
    switch, caught = _caught(kill_switch_from_env)
    assert switch is not None and switch.kind == "kill_switch" and caught
    params, caught = _caught(lambda: resolve_parameters(environ={"CARBON_SENSORS_CORE_WATTS": "7"},
                                                        cpuinfo_path="/nonexistent"))
    assert params.watts_per_core == 7.0 and "set CARBON_SENSORS_WATTS_PER_CORE instead" in str(caught[0].message)


def test_credentials_are_read_by_an_old_name_and_never_shown(monkeypatch):
    """A renamed key variable still resolves; the warning names the variables, never the key."""
    import asyncio

    from carbon_sensors.signals.credentials import resolve_credentials

    monkeypatch.setitem(renames.RENAMED_ENV, "CARBON_SENSORS_EMAPS_KEY", "CARBON_SENSORS_ELECTRICITYMAPS_API_KEY")
    monkeypatch.setenv("CARBON_SENSORS_EMAPS_KEY", "sekrit-123")
    creds, caught = _caught(lambda: asyncio.run(resolve_credentials("electricitymaps", None)))
    assert creds.api_key == "sekrit-123"
    assert caught and "sekrit" not in str(caught[0].message)


# -- Airflow's [carbon_sensors] section --------------------------------------------------------------


@pytest.fixture
def settings():
    """The Airflow settings module, its configuration (and logging set-up) loaded before a test records warnings."""
    from carbon_sensors.airflow import settings

    settings.conf("ledger_url")
    return settings


def test_an_old_airflow_option_still_works_and_names_the_new_one(settings, monkeypatch):
    """[carbon_sensors] ledger_uri (set as AIRFLOW__CARBON_SENSORS__LEDGER_URI) is read for ledger_url, with a warning."""
    monkeypatch.setitem(renames.RENAMED_OPTIONS, "ledger_uri", "ledger_url")
    monkeypatch.setenv("AIRFLOW__CARBON_SENSORS__LEDGER_URI", "sqlite:////tmp/old-option.db")
    value, caught = _caught(settings.ledger_url)
    assert value == "sqlite:////tmp/old-option.db"
    assert [str(w.message) for w in caught] == [
        "[carbon_sensors] ledger_uri (AIRFLOW__CARBON_SENSORS__LEDGER_URI) is renamed [carbon_sensors] ledger_url "
        "(AIRFLOW__CARBON_SENSORS__LEDGER_URL): set [carbon_sensors] ledger_url (AIRFLOW__CARBON_SENSORS__LEDGER_URL) "
        "instead (the old name still works for now)"
    ]


def test_the_new_airflow_option_wins(settings, monkeypatch):
    """Both options set: ledger_url is used, and the old one is called ignored."""
    monkeypatch.setitem(renames.RENAMED_OPTIONS, "ledger_uri", "ledger_url")
    monkeypatch.setenv("AIRFLOW__CARBON_SENSORS__LEDGER_URI", "sqlite:////tmp/old-option.db")
    monkeypatch.setenv("AIRFLOW__CARBON_SENSORS__LEDGER_URL", "sqlite:////tmp/new-option.db")
    value, caught = _caught(settings.ledger_url)
    assert value == "sqlite:////tmp/new-option.db"
    assert len(caught) == 1 and "ledger_uri (AIRFLOW__CARBON_SENSORS__LEDGER_URI) is ignored" in str(caught[0].message)


def test_the_shared_cache_options_are_read_by_old_names(settings, monkeypatch):
    """The shared cache's reader of Airflow's options goes through the same table."""
    from carbon_sensors.hooks.shared_cache import airflow_settings

    monkeypatch.setitem(renames.RENAMED_OPTIONS, "forecast_cache", "shared_cache")
    monkeypatch.setenv("AIRFLOW__CARBON_SENSORS__FORECAST_CACHE", "ledger")
    values, caught = _caught(airflow_settings)
    assert values["shared_cache"] == "ledger" and caught


def test_an_unset_option_falls_back_and_a_broken_kill_switch_is_off(settings, monkeypatch, caplog):
    """No option: the fallback; a kill switch that is not a boolean is off, with a warning that says so."""
    assert settings.conf("no_such_option", "fallback") == "fallback"
    monkeypatch.setenv("AIRFLOW__CARBON_SENSORS__KILL_SWITCH", "maybe")
    with caplog.at_level("WARNING", logger="carbon_sensors.airflow.settings"):
        assert settings.kill_switch() is None
    assert "'maybe' is not True or False" in caplog.text
    monkeypatch.setenv("AIRFLOW__CARBON_SENSORS__KILL_SWITCH", "True")
    assert settings.kill_switch() is not None


# -- the tables themselves ---------------------------------------------------------------------------


def table_problems(options: dict[str, str], env: dict[str, str], declared: dict[str, dict]) -> list[str]:
    """What is wrong with the rename tables, against the options ``provider_info`` declares."""
    problems = []
    for old, new in options.items():
        if old in declared:
            problems.append(f"[carbon_sensors] {old} is renamed but still declared (its default would hide {new})")
        if declared.get(new, {}).get("default", "") != "":
            problems.append(f"[carbon_sensors] {new} must default to empty so that {old} is read when {new} is unset")
    for old, new in env.items():
        if not (old.startswith("CARBON_SENSORS_") and new.startswith("CARBON_SENSORS_")):
            problems.append(f"{old} -> {new}: both names must start with CARBON_SENSORS_")
    for table in (options, env):
        for old in table:
            seen, name = {old}, table[old]
            while name in table and name not in seen:
                seen.add(name)
                name = table[name]
            if name in seen:
                problems.append(f"{old} is renamed in a circle")
    return problems


def test_the_rename_tables_are_consistent():
    """No renamed option is still declared, every new option defaults to empty, no circles."""
    declared = get_provider_info()["config"]["carbon_sensors"]["options"]
    assert table_problems(renames.RENAMED_OPTIONS, renames.RENAMED_ENV, declared) == []


def test_the_table_check_finds_a_bad_entry():
    """The check above can fail: a rename onto an option with a default, and a circle, are reported."""
    declared = {"force_variable": {"default": "carbon_sensors_force"}, "old": {"default": ""}}
    problems = table_problems({"old": "force_variable"}, {"CARBON_SENSORS_A": "CARBON_SENSORS_B",
                                                          "CARBON_SENSORS_B": "CARBON_SENSORS_A"}, declared)
    assert len(problems) == 4, problems


# -- the renames this release makes ------------------------------------------------------------------


def test_the_price_table_is_named_by_its_old_variable_with_a_warning(tmp_path, monkeypatch):
    """CARBON_SENSORS_PRICES (0.1.0's name) still loads the table and says to set CARBON_SENSORS_PRICES_FILE."""
    from carbon_sensors.accounting import PRICES_ENV, Prices

    table = tmp_path / "prices.toml"
    table.write_text("usd_per_kwh = 0.3\n")
    monkeypatch.setenv("CARBON_SENSORS_PRICES", str(table))
    prices, caught = _caught(Prices.from_env)
    assert PRICES_ENV == "CARBON_SENSORS_PRICES_FILE" and prices.usd_per_kwh == 0.3
    assert "set CARBON_SENSORS_PRICES_FILE instead" in str(caught[0].message)
    other = tmp_path / "other.toml"
    other.write_text("usd_per_kwh = 0.1\n")
    monkeypatch.setenv("CARBON_SENSORS_PRICES_FILE", str(other))
    prices, _ = _caught(Prices.from_env)
    assert prices.usd_per_kwh == 0.1
