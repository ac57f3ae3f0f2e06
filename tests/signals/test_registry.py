"""Source kinds come from one registry: built-in ones load on first use, a new one is one register call."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.signals import registry, source_from_spec
from carbon_sensors.signals.registry import BUILTIN_KINDS, register_source_kind, source_factory, source_kinds


class _PriceSource:
    kind = "test_prices"
    signal = "average"
    refresh_interval = timedelta(hours=1)

    def __init__(self, market: str) -> None:
        self.market = market

    async def fetch(self, zone, start, end, *, now):  # pragma: no cover - never fetched here
        raise NotImplementedError

    def check_zone(self, zone: str) -> None:
        pass

    def to_spec(self) -> dict:
        return {"kind": self.kind, "market": self.market}


@pytest.fixture
def registered(monkeypatch):
    """A kind registered for one test, gone afterwards."""
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    register_source_kind(_PriceSource.kind, lambda spec: _PriceSource(spec["market"]))


def test_the_unknown_kind_message_lists_the_registered_kinds(registered):
    """An unknown kind is named with every kind the registry holds, built-in ones first, in words."""
    with pytest.raises(ConfigurationError) as caught:
        source_from_spec({"kind": "crystal-ball"})
    assert str(caught.value) == (
        "unknown source kind 'crystal-ball'; use 'embedded', 'file', 'neso', 'electricitymaps', 'watttime', "
        "'carbon_aware_sdk' or 'test_prices'"
    )
    assert source_kinds() == (*BUILTIN_KINDS, "test_prices")


def test_a_registered_kind_is_built_from_its_spec(registered):
    """A source registered by its own module is built by source_from_spec like a built-in one."""
    source = source_from_spec({"kind": "test_prices", "market": "EPEX-DE"})
    assert isinstance(source, _PriceSource) and source.market == "EPEX-DE"


def test_every_builtin_kind_registers_itself_from_its_module():
    """Each built-in kind's module, once imported, has registered a factory for that kind."""
    for kind in BUILTIN_KINDS:
        assert callable(source_factory(kind))
        assert kind in registry._factories


def test_a_live_source_module_loads_when_its_kind_is_first_used():
    """Building the embedded source loads no live source; naming 'watttime' loads its module."""
    code = (
        "import sys\n"
        "from carbon_sensors.signals import source_from_spec\n"
        "source_from_spec('embedded')\n"
        "print('carbon_sensors.signals.watttime' in sys.modules)\n"
        "source_from_spec({'kind': 'watttime', 'region': 'CAISO_NORTH'})\n"
        "print('carbon_sensors.signals.watttime' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["False", "True"]


@pytest.mark.parametrize("kind", ["", "  ", None, 3])
def test_a_kind_must_be_a_name(kind):
    """register_source_kind refuses a kind that is not a non-empty name."""
    with pytest.raises(ConfigurationError, match="non-empty name"):
        register_source_kind(kind, lambda spec: None)  # type: ignore[arg-type]
