"""A value for every gate setting, none of them the default: what the gate-settings tests build gates from."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

#: One non-default value per name in carbon_sensors.gate.GATE_SETTINGS (``zone`` aside: ``zones`` stands for both).
SAMPLE = {
    "zones": ["DE", "GB"],
    "deadline": datetime(2040, 1, 15, 8, tzinfo=UTC),
    "expected_duration": timedelta(minutes=90),
    "source": {"kind": "file", "path": "/data/intensity.csv", "zone_column": "zone"},
    "max_delay": timedelta(hours=3),
    "threshold": 120.0,
    "min_saving_pct": 5.0,
    "safety_margin": timedelta(minutes=20),
    "on_source_error": "embedded",
    "check_interval": timedelta(minutes=2),
    "fallbacks": [{"kind": "neso", "region_id": 13}, "embedded"],
    "price_source": {"kind": "tariff", "flat": 95.0, "currency": "EUR"},
    "max_cost_increase_pct": 10.0,
    "objective": "cost",
    "max_intensity": 300.0,
    "carbon_price_per_tonne": 80.0,
    "currency": "EUR",
    "persistence_prior": False,
}
#: What a setting needs beside it to be valid alone: the cost settings need a price source, and the NESO
#: fallback serves GB only (a fallback that serves none of the gate's zones is refused at parse).
NEEDS = {name: {"price_source": SAMPLE["price_source"]}
         for name in ("max_cost_increase_pct", "objective", "carbon_price_per_tonne")}
NEEDS["fallbacks"] = {"zones": ["GB"]}
#: The least a gate needs, from which each sample value is changed in turn.
BASE = {"zones": ["DE"], "deadline": SAMPLE["deadline"], "expected_duration": timedelta(hours=1)}


def keyword_names(function) -> set[str]:
    """The keyword arguments ``function`` names in its signature (not ``**kwargs``)."""
    import inspect

    return {name for name, p in inspect.signature(function).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name != "self"}


def undocumented(doc: str | None, names) -> list[str]:
    """The ``names`` a docstring never mentions as a word."""
    return sorted(name for name in names if not re.search(rf"\b{re.escape(name)}\b", doc or ""))
