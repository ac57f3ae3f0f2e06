"""The cache live price sources share (same single flight and stale-while-error as the carbon sources').

Behind it, the deployment-wide shared cache (:mod:`carbon_sensors.signals.shared_cache`), where one is
configured: one price request per zone per refresh for every triggerer, worker and the UI, as for
carbon. Keys start with the price kind, so they never meet carbon entries.

>>> PRICE_CACHE.max_entries
512
"""

from __future__ import annotations

from carbon_sensors.signals.cache import ForecastCache

__all__ = ["PRICE_CACHE"]

PRICE_CACHE = ForecastCache(shared="configured")
