"""A test clock that lets a test act at a given moment while a gate sleeps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from carbon_sensors.testing import FrozenClock


class ScriptedClock(FrozenClock):
    """A FrozenClock that runs ``actions[moment](clock)`` once the clock reaches each moment."""

    def __init__(self, start: datetime, actions: dict[datetime, Callable[[ScriptedClock], None]] | None = None):
        super().__init__(start)
        self.actions = dict(sorted((actions or {}).items()))
        self.decisions_at: list[datetime] = []

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        for moment in [m for m in self.actions if m <= self.now()]:
            self.actions.pop(moment)(self)
