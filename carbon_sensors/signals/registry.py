"""Source kinds: the spec's ``kind`` names a factory that builds the source from the spec.

A source module registers its kind when it is imported (``register_source_kind``). The built-in
kinds are listed in :data:`BUILTIN_KINDS` with the module that registers each, and that module is
imported only when its kind is first used, so parsing a DAG loads no HTTP client it does not need.

>>> source_factory("embedded")({"kind": "embedded"})
EmbeddedProfileSource()
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.signals.base import Source

__all__ = ["BUILTIN_KINDS", "SourceFactory", "register_source_kind", "source_factory", "source_kinds"]

#: Builds a source from its spec (a dict with ``kind``); raises ConfigurationError for a bad spec.
SourceFactory = Callable[[dict[str, Any]], Source]

#: The kinds this package ships, in the order the error message lists them, and the module that
#: registers each when imported.
BUILTIN_KINDS: dict[str, str] = {
    "embedded": "carbon_sensors.signals.embedded",
    "file": "carbon_sensors.signals.file",
    "neso": "carbon_sensors.signals.neso",
    "electricitymaps": "carbon_sensors.signals.electricitymaps",
    "watttime": "carbon_sensors.signals.watttime",
    "carbon_aware_sdk": "carbon_sensors.signals.carbon_aware_sdk",
}

_factories: dict[str, SourceFactory] = {}


def register_source_kind(kind: str, factory: SourceFactory) -> None:
    """Let specs of ``kind`` be built by ``factory``; a later registration of the same kind replaces it."""
    if not isinstance(kind, str) or not kind.strip():
        raise ConfigurationError(f"a source kind must be a non-empty name, got {kind!r}")
    if not callable(factory):
        raise ConfigurationError(f"the factory for source kind {kind!r} must be callable, got {type(factory).__name__}")
    _factories[kind] = factory


def source_kinds() -> tuple[str, ...]:
    """Every kind a spec may name: the built-in ones first, then those registered by other modules."""
    return (*BUILTIN_KINDS, *(kind for kind in _factories if kind not in BUILTIN_KINDS))


def source_factory(kind: Any) -> SourceFactory:
    """The factory for ``kind``, importing its built-in module on first use; unknown kinds are named with the choices."""
    if isinstance(kind, str) and kind not in _factories and kind in BUILTIN_KINDS:
        importlib.import_module(BUILTIN_KINDS[kind])
    factory = _factories.get(kind) if isinstance(kind, str) else None
    if factory is None:
        raise ConfigurationError(f"unknown source kind {kind!r}; use {_choices(source_kinds())}")
    return factory


def _choices(kinds: tuple[str, ...]) -> str:
    """``'a', 'b' or 'c'``."""
    quoted = [repr(kind) for kind in kinds]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
