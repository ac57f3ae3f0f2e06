"""The Airflow-side settings: the ``[carbon_sensors]`` config section, the kill switch and the force-start Variable.

Operators, triggers, sensors, decorators and plugins read them here, and nowhere else. Every reader
treats an unreadable option as unset: a broken config never blocks work.

- ``[carbon_sensors] ledger_url`` (``AIRFLOW__CARBON_SENSORS__LEDGER_URL``): where records and decisions go;
- ``[carbon_sensors] kill_switch`` or ``CARBON_SENSORS_KILL_SWITCH=1``: every gate passes at once;
- ``[carbon_sensors] force_variable`` (default ``carbon_sensors_force``): the Variable whose patterns
  (``*``, ``dag_id`` or ``dag_id.task_id``) force-start gates; the DAG run conf key of the same name;
- ``record_decisions``, ``strict_recording``, ``prices_file``, ``ui_source``, ``ui_zones``, ``shared_cache*``.

An option that was renamed (:data:`carbon_sensors.renames.RENAMED_OPTIONS`) is still read by its old
name, with a :class:`~carbon_sensors.errors.RenamedSettingWarning` naming the new one; the new one wins.
"""

from __future__ import annotations

import logging
from typing import Any

from carbon_sensors.overrides import Override, kill_switch_from_env, match_force
from carbon_sensors.renames import RENAMED_OPTIONS, resolve_renamed

__all__ = [
    "FORCE_CONF_KEY",
    "conf",
    "force_variable_name",
    "kill_switch",
    "ledger_url",
    "match_force_variable",
    "match_run_conf",
    "option_name",
    "prices_file",
    "read_force_variable",
    "record_decisions",
    "strict_recording",
]

log = logging.getLogger(__name__)

#: DAG run conf key that force-starts gates in that run (and the force Variable's default name).
FORCE_CONF_KEY = "carbon_sensors_force"
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def conf(key: str, fallback: Any = None) -> Any:
    """``[carbon_sensors] key`` (or an old name of it), else ``fallback`` when it is unset, empty or unreadable."""
    try:
        from airflow.sdk.configuration import conf as airflow_conf
    except Exception:  # noqa: BLE001 - no Airflow configuration: every option is unset
        return fallback

    def read(option: str) -> Any:
        try:
            return airflow_conf.get("carbon_sensors", option, fallback=None)
        except Exception:  # noqa: BLE001 - an unreadable option is an unset one
            return None

    value = resolve_renamed(key, read, RENAMED_OPTIONS, describe=option_name)
    return fallback if value is None else value


def option_name(key: str) -> str:
    """How messages name an option: ``[carbon_sensors] key (AIRFLOW__CARBON_SENSORS__KEY)``."""
    return f"[carbon_sensors] {key} (AIRFLOW__CARBON_SENSORS__{key.upper()})"


def ledger_url() -> str | None:
    """``[carbon_sensors] ledger_url`` (``AIRFLOW__CARBON_SENSORS__LEDGER_URL``), else the ledger's own default."""
    return conf("ledger_url") or None


def record_decisions() -> bool:
    """``[carbon_sensors] record_decisions`` (default True): write the decision trail."""
    return str(conf("record_decisions", "True")).strip().lower() not in _OFF


def strict_recording() -> bool:
    """``[carbon_sensors] strict_recording`` (default False): a record that cannot be written fails the task."""
    return str(conf("strict_recording", "False")).strip().lower() in _ON


def prices_file() -> str | None:
    """``[carbon_sensors] prices_file``: the electricity and token price table, if any."""
    return conf("prices_file") or None


def kill_switch() -> Override | None:
    """The global kill switch, from the environment or Airflow's ``[carbon_sensors] kill_switch``."""
    if (switch := kill_switch_from_env()) is not None:
        return switch
    value = str(conf("kill_switch", "False")).split("#")[0].strip().lower()
    if value in _ON or value == "t":
        return Override("kill_switch", "the kill switch [carbon_sensors] kill_switch is on")
    if value not in _OFF and value != "f":
        log.warning("cannot read [carbon_sensors] kill_switch (%r is not True or False); treating it as off", value)
    return None


def force_variable_name() -> str:
    """``[carbon_sensors] force_variable``, the name of the force-start Variable."""
    return conf("force_variable", FORCE_CONF_KEY)


def read_force_variable() -> Any:
    """The force-start Variable's value, or None when unset."""
    from airflow.sdk import Variable

    return Variable.get(force_variable_name(), default=None)


def match_force_variable(value: Any, dag_id: str, task_id: str) -> Override | None:
    """An override when the Variable's patterns match ``dag_id`` or ``dag_id.task_id``."""
    return match_force(value, (dag_id, f"{dag_id}.{task_id}"), f"the Variable {force_variable_name()!r}")


def match_run_conf(run_conf: Any, task_id: str) -> Override | None:
    """An override when the DAG run conf's ``carbon_sensors_force`` is true or names this task."""
    value = run_conf.get(FORCE_CONF_KEY) if isinstance(run_conf, dict) else None
    if match_force(value, (task_id,), "") is not None:
        return Override("manual", f"the DAG run conf {FORCE_CONF_KEY!r} force-starts this task")
    return None
