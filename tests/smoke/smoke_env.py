"""Shared by the smoke suite: it runs only against an installed wheel (``scripts/matrix.py`` sets it up).

In the source tree's own test run these modules skip: there ``carbon_sensors`` is the editable
install, and the point of the smoke suite is the built artefact in a clean venv.
"""

from __future__ import annotations

import os

import pytest

#: Set by scripts/matrix.py in each cell's clean venv.
ENABLE_ENV = "CARBON_SENSORS_WHEEL_SMOKE"


def require_wheel_cell() -> None:
    """Skip the calling module unless it runs in a matrix cell."""
    if os.environ.get(ENABLE_ENV) != "1":
        pytest.skip(f"the wheel smoke suite runs in a matrix cell (scripts/matrix.py sets {ENABLE_ENV}=1)",
                    allow_module_level=True)
