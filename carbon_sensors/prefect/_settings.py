"""Gate settings for Prefect: the same flat keywords as the Airflow sensor, with ``block=`` for ``conn_id=``.

Also the JSON form a gate travels in (a flow run label), and :class:`BlockSource`, which wraps a
credentialed source whose key lives in a Prefect block so that its errors name the block to fix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from carbon_sensors.clock import default_clock
from carbon_sensors.deadlines import DeadlineSpec
from carbon_sensors.errors import ConfigurationError, SourceAuthError
from carbon_sensors.forecast import Forecast
from carbon_sensors.gate import GATE_SETTINGS as CORE_GATE_SETTINGS
from carbon_sensors.gate import CarbonGate
from carbon_sensors.planning import DEFAULT_MIN_SAVING_PCT
from carbon_sensors.prefect._block_names import BLOCK_NAME as _BLOCK_NAME
from carbon_sensors.prefect._block_names import BLOCK_PREFIX
from carbon_sensors.signals import Source, source_from_spec

__all__ = [
    "BLOCK_PREFIX",
    "CREDENTIAL_KINDS",
    "GATE_SETTINGS",
    "BlockSource",
    "build_gate",
    "build_gate_from",
    "gate_from_dict",
    "gate_to_dict",
    "prefect_source",
]

#: Source kinds that need credentials, hence take a block.
CREDENTIAL_KINDS = ("electricitymaps", "watttime", "carbon_aware_sdk")


def build_gate(
    *,
    zone: str | None = None,
    zones: Sequence[str] | None = None,
    deadline: DeadlineSpec,
    expected_duration: timedelta,
    source: Source | str | dict[str, Any] = "embedded",
    max_delay: timedelta | None = None,
    threshold: float | None = None,
    min_saving_pct: float = DEFAULT_MIN_SAVING_PCT,
    safety_margin: timedelta | None = None,
    on_source_error: str = "run_now",
    check_interval: timedelta = timedelta(minutes=1),
    block: str | None = None,
    fallbacks: Sequence[Source | str | dict[str, Any]] | None = None,
    price_source: Any = None,
    max_cost_increase_pct: float | None = None,
    objective: str = "carbon",
    max_intensity: float | None = None,
    carbon_price_per_tonne: float | None = None,
    currency: str | None = None,
    persistence_prior: bool = True,
) -> CarbonGate:
    """A :class:`~carbon_sensors.gate.CarbonGate` from the flat keywords the Prefect adapter takes.

    The same settings as the Airflow sensor; ``block`` (the name of a credentials block, see
    :mod:`carbon_sensors.prefect.blocks`) stands where the sensor takes ``conn_id``. A source spec may
    also carry it: ``source={"kind": "electricitymaps", "block": "em-prod"}``. ``price_source`` and
    the cost settings (``max_cost_increase_pct``, ``objective``, ``max_intensity``,
    ``carbon_price_per_tonne``, ``currency``) and ``persistence_prior`` are the sensor's too.
    """
    settings = {name: value for name, value in locals().items() if name in CORE_GATE_SETTINGS}
    settings["source"] = prefect_source(source, block=block)
    settings["fallbacks"] = tuple(prefect_source(f) for f in fallbacks or ())
    settings["price_source"] = prefect_price_source(price_source)
    gate = CarbonGate.from_settings(**settings)
    gate.check_not_past(default_clock().now())
    return gate


#: The keywords :func:`build_gate` takes (the Airflow sensor's, ``block`` in place of ``conn_id``).
GATE_SETTINGS = frozenset(CORE_GATE_SETTINGS) | {"block"}


def build_gate_from(caller: str, settings: dict[str, Any]) -> CarbonGate:
    """:func:`build_gate` for an entry point that forwards ``**settings``: a misspelt one is named, not a TypeError."""
    unknown = sorted(set(settings) - GATE_SETTINGS)
    if unknown:
        raise ConfigurationError(
            f"{caller} got unknown gate setting(s) {', '.join(unknown)}; the settings are {', '.join(sorted(GATE_SETTINGS))}"
        )
    return build_gate(**settings)


#: The price source kinds that read a credentials block (:class:`~carbon_sensors.prefect.blocks.EntsoeCredentials`).
PRICE_CREDENTIAL_KINDS = ("entsoe",)


def prefect_price_source(source: Any) -> Any:
    """A price source spec naming a credentials block (``{"kind": "entsoe", "block": "entsoe-prod"}``), as
    the spec the price source reads it from (its ``conn_id`` names the block); anything else as it is."""
    if not isinstance(source, dict) or "block" not in source:
        return source
    spec = dict(source)
    name = spec.pop("block")
    if spec.get("conn_id"):
        raise ConfigurationError(f"the price source names the block {name!r} and conn_id={spec['conn_id']!r}; "
                                 "in Prefect name only the block")
    if spec.get("kind") not in PRICE_CREDENTIAL_KINDS:
        raise ConfigurationError(f"the {spec.get('kind')!r} price source needs no credentials; remove the block {name!r} "
                                 f"(price blocks are for {', '.join(PRICE_CREDENTIAL_KINDS)})")
    if not isinstance(name, str) or not _BLOCK_NAME.match(name):
        raise ConfigurationError(
            f"block must be a Prefect block document name (lower-case letters, digits and dashes), got {name!r}"
        )
    return {**spec, "conn_id": BLOCK_PREFIX + name}


def prefect_source(source: Source | str | dict[str, Any], *, block: str | None = None) -> Source:
    """A source from a spec, a kind name or a source; a block name (in the spec or ``block=``) wraps it."""
    if isinstance(source, BlockSource):
        if block is not None and block != source.block:
            raise ConfigurationError(f"the source already names the block {source.block!r}; remove block={block!r}")
        return source
    if isinstance(source, str):
        source = {"kind": source}
    if not isinstance(source, dict):
        if block is None and not _names_block(getattr(source, "conn_id", None)):
            return source_from_spec(source)
        if not hasattr(source, "to_spec"):
            raise ConfigurationError(f"source must be a spec dict, a kind name or a Source, got {type(source).__name__}")
        source = source.to_spec()
    spec = dict(source)
    name = spec.pop("block", None)
    conn_id = spec.get("conn_id")
    if _names_block(conn_id):
        name = name or conn_id[len(BLOCK_PREFIX):]
    elif conn_id:
        raise ConfigurationError(
            f"conn_id={conn_id!r} names an Airflow connection; in Prefect name a credentials block instead: "
            f"{{'kind': {spec.get('kind')!r}, 'block': 'my-block'}}"
        )
    if block is not None:
        if name is not None and name != block:
            raise ConfigurationError(f"the source names the block {name!r} and block={block!r}; give one")
        name = block
    if name is None:
        return source_from_spec(spec)
    kind = spec.get("kind")
    if kind not in CREDENTIAL_KINDS:
        raise ConfigurationError(
            f"the {kind!r} source needs no credentials; remove the block {name!r} "
            f"(blocks are for {', '.join(CREDENTIAL_KINDS)})"
        )
    if not isinstance(name, str) or not _BLOCK_NAME.match(name):
        raise ConfigurationError(
            f"block must be a Prefect block document name (lower-case letters, digits and dashes), got {name!r}"
        )
    spec["conn_id"] = BLOCK_PREFIX + name
    return BlockSource(source_from_spec(spec), name)


def _names_block(conn_id: Any) -> bool:
    return isinstance(conn_id, str) and conn_id.startswith(BLOCK_PREFIX)


class BlockSource:
    """A credentialed source whose key is read from a Prefect block when it fetches.

    Delegates everything to ``inner``; a refused or missing key becomes a
    :class:`~carbon_sensors.errors.SourceAuthError` that names the block and says how to fix it.
    ``to_spec()`` carries the block's name, never its contents.
    """

    def __init__(self, inner: Source, block: str) -> None:
        self.inner, self.block = inner, block
        self.kind = inner.kind
        self.signal = inner.signal
        self.refresh_interval = inner.refresh_interval

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        try:
            return await self.inner.fetch(zone, start, end, now=now)
        except SourceAuthError as exc:
            raise SourceAuthError(block_hint(str(exc), self.kind, self.block)) from None

    def check_zone(self, zone: str) -> None:
        self.inner.check_zone(zone)

    def to_spec(self) -> dict[str, Any]:
        spec = self.inner.to_spec()
        spec.pop("conn_id", None)
        spec["block"] = self.block
        return spec

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlockSource) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.kind, self.block))

    def __repr__(self) -> str:
        return f"BlockSource({self.inner!r}, block={self.block!r})"


def block_hint(message: str, kind: str, block: str) -> str:
    """``message`` (a source's auth error) with its fix-it advice replaced by where the key really is."""
    from carbon_sensors.prefect.blocks import block_class_for

    cls = block_class_for(kind)
    what = "username and password" if kind == "watttime" else "API key"
    head = message.split("; ", 1)[0]
    return (
        f"{head}; check the {what} in the Prefect block {block!r} (type {cls.get_block_type_slug()!r}): "
        f"update it in the UI under Blocks, or run {cls.__name__}(...).save({block!r}, overwrite=True)"
    )


def gate_to_dict(gate: CarbonGate) -> dict[str, Any]:
    """A gate's settings, JSON-able (no deadline: a run carries its absolute deadline apart)."""
    return gate.to_dict()


def gate_from_dict(data: dict[str, Any] | str, deadline: datetime) -> CarbonGate:
    """Rebuild a gate written by :func:`gate_to_dict` (or its JSON text), with an absolute ``deadline``."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            raise ConfigurationError(f"the carbon gate settings on this run are not JSON: {data[:80]!r}") from None
    try:
        # A source spec may name a credentials block: prefect_source turns it back into a BlockSource.
        return CarbonGate.from_dict(data, deadline=deadline, source_from=prefect_source)
    except (KeyError, TypeError) as exc:
        raise ConfigurationError(f"the carbon gate settings on this run are incomplete ({exc!r})") from None
