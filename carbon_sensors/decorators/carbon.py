"""``@carbon_aware``: gate a TaskFlow task on a low-carbon window; the task defers itself, then runs.

Stack it on ``@task`` (or any ``@task.<flavour>``), or use it alone on a plain function:

>>> from datetime import timedelta
>>> from airflow.sdk import task
>>> from carbon_sensors import After
>>> @carbon_aware(zone="GB", deadline=After(hours=8), expected_duration=timedelta(hours=1))
... @task(retries=2)
... def enrich_catalog():
...     return "enriched"
>>> enrich_catalog.operator_class.__name__
'CarbonGatedPythonDecoratedOperator'

The decision goes to XCom under ``carbon_decision``; the task's return value is untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from carbon_sensors.airflow.runtime import GATE_KWARGS, RECORD_KWARGS, build_gate
from carbon_sensors.gate import CarbonGate
from carbon_sensors.operators.carbon import carbon_gated

__all__ = ["carbon_aware"]


def carbon_aware(python_callable: Callable | None = None, *, gate: CarbonGate | None = None, **kwargs: Any) -> Any:
    """Gate a TaskFlow task: ``@carbon_aware(zone=..., deadline=..., expected_duration=...)``.

    Takes the sensor's gate settings (or a ready ``gate=CarbonGate(...)``), ``record_run`` and
    ``strict_recording`` (see :mod:`carbon_sensors.operators.carbon`); any other keyword goes to
    ``@task`` when decorating a plain function (``retries=2``, ``pool=...``).
    """
    gate_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in GATE_KWARGS}
    record_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in RECORD_KWARGS}
    if gate is None:
        gate = build_gate(**gate_kwargs)
    elif gate_kwargs:
        raise TypeError(f"give either gate= or the gate settings, not both ({', '.join(gate_kwargs)})")
    task_kwargs = kwargs

    def wrap(target: Any) -> Any:
        from airflow.sdk.bases.decorator import task_decorator_factory

        if not _is_task_decorator(target):
            from airflow.sdk import task

            target = task(target, **task_kwargs)
        elif task_kwargs:
            target = target.override(**task_kwargs)
        return task_decorator_factory(
            python_callable=target.function,
            multiple_outputs=target.multiple_outputs,
            decorated_operator_class=carbon_gated(target.operator_class),
            carbon=gate,
            **record_kwargs,
            **target.kwargs,
        )

    return wrap(python_callable) if python_callable is not None else wrap


def _is_task_decorator(target: Any) -> bool:
    return all(hasattr(target, name) for name in ("function", "operator_class", "kwargs", "override"))
