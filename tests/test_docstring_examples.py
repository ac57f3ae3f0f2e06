"""The usage examples in the package's docstrings run, and say what they return.

(The Prefect adapters' examples need Prefect, which has its own environment: they are not run here.)
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import carbon_sensors

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(carbon_sensors.__path__, "carbon_sensors.")
    if not info.name.startswith("carbon_sensors.prefect")
)


@pytest.mark.parametrize("name", ["carbon_sensors", *MODULES])
def test_docstring_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed (see above)"
