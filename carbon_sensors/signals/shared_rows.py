"""The shared forecast cache's row format: a forecast (of intensity or of price) as JSON, with its schema version.

:mod:`carbon_sensors.signals.shared_cache` stores these rows; a row written by a newer release is
left alone, a corrupt one is fetched again and rewritten.
"""

from __future__ import annotations

import json
from datetime import datetime

from carbon_sensors.errors import ForecastError, SharedCacheError
from carbon_sensors.forecast import Forecast
from carbon_sensors.prices import PriceForecast

__all__ = ["SCHEMA", "decode_forecast", "encode_forecast"]

#: The row format this version writes; rows of a newer one are left alone.
SCHEMA = 1


def encode_forecast(forecast: Forecast | PriceForecast) -> str:
    """A forecast (of intensity, or of price) as the JSON text a shared-store row holds (with its schema version).

    A price forecast's row says ``"kind": "price"``; price keys start with the price source's kind,
    so a carbon key never reads a price row.

    >>> from datetime import datetime, timezone
    >>> f = Forecast.from_points([(datetime(2026, 6, 15, tzinfo=timezone.utc), 120.0)], zone="DE", source="x",
    ...                          resolution=__import__("datetime").timedelta(hours=1))
    >>> decode_forecast(encode_forecast(f)) == f
    True
    """
    if isinstance(forecast, PriceForecast):
        return json.dumps({
            "schema": SCHEMA, "kind": "price", "zone": forecast.zone, "source": forecast.source,
            "currency": forecast.currency, "issued_at": forecast.issued_at.isoformat(),
            "starts_s": list(forecast.starts_s), "values": list(forecast.values), "end_s": forecast.end_s,
            "error_24h": forecast.error_24h,
        }, separators=(",", ":"), allow_nan=False)
    return json.dumps({
        "schema": SCHEMA, "zone": forecast.zone, "source": forecast.source, "signal": forecast.signal,
        "issued_at": forecast.issued_at.isoformat(), "starts_s": list(forecast.starts_s),
        "values": list(forecast.values), "end_s": forecast.end_s,
        "measured_until": forecast.measured_until.isoformat() if forecast.measured_until else None,
        "error_24h": forecast.error_24h, "recent_error": forecast.recent_error,
        "recent_error_lead_h": forecast.recent_error_lead_h,
    }, separators=(",", ":"), allow_nan=False)


class _NewerRow(SharedCacheError):
    """The row was written by a newer carbon-sensors."""


def decode_forecast(text: str | bytes) -> Forecast | PriceForecast:
    """The forecast in a shared-store row; :class:`SharedCacheError` when it is corrupt, truncated or newer."""
    try:
        data = json.loads(text)
        schema = data["schema"]
    except (ValueError, TypeError, KeyError) as exc:
        raise SharedCacheError(f"unreadable row ({type(exc).__name__}: corrupt or truncated)") from None
    if not isinstance(schema, int) or schema > SCHEMA:
        raise _NewerRow(f"row of schema {schema!r}, newer than this carbon-sensors' {SCHEMA}; upgrade carbon-sensors "
                        "on every machine of the deployment")
    try:
        if data.get("kind") == "price":
            return PriceForecast(
                zone=data["zone"], source=data["source"], currency=data["currency"],
                issued_at=datetime.fromisoformat(data["issued_at"]), starts_s=tuple(float(s) for s in data["starts_s"]),
                values=tuple(float(v) for v in data["values"]), end_s=float(data["end_s"]),
                error_24h=float(data["error_24h"]),
            )
        until = data["measured_until"]
        return Forecast(
            zone=data["zone"], source=data["source"], signal=data["signal"],
            issued_at=datetime.fromisoformat(data["issued_at"]),
            starts_s=tuple(float(s) for s in data["starts_s"]), values=tuple(float(v) for v in data["values"]),
            end_s=float(data["end_s"]), measured_until=datetime.fromisoformat(until) if until else None,
            error_24h=float(data["error_24h"]), recent_error=data["recent_error"],
            recent_error_lead_h=float(data["recent_error_lead_h"]),
        )
    except (KeyError, TypeError, ValueError, ForecastError) as exc:  # ConfigurationError is a ValueError too
        raise SharedCacheError(f"unreadable row ({type(exc).__name__}: {str(exc)[:120]})") from None
