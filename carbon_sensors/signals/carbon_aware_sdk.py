"""The Green Software Foundation's Carbon Aware SDK WebAPI, for teams that run their own deployment.

``base_url`` is required: the SDK is self-hosted, there is no public default. Zones are the SDK's
location names (``"eastus"``, ``"westus"``, ``"CAISO_NORTH"``, ...: the keys its location files or
data source know), or any label of yours when ``location`` pins one location for the source.

What this source calls, and where that comes from
-------------------------------------------------
``GET {base_url}/emissions/forecasts/current?location=<name>``; the response is a JSON array of
forecasts, one per requested location, each with ``generatedAt``, ``requestedAt``, ``location``,
``dataStartAt``, ``dataEndAt``, ``windowSize``, ``optimalDataPoints`` and ``forecastData``, a list of
``{"location", "timestamp", "duration" (minutes), "value" (gCO2/kWh)}``. Sources, in the SDK repository
(github.com/Green-Software-Foundation/carbon-aware-sdk):

- ``casdk-docs/docs/tutorial-basics/carbon-aware-webapi.md``, section "GET emissions/forecasts/current"
  (path, the parameters ``location``, ``dataStartAt``, ``dataEndAt``, ``windowSize``, an example response);
- ``src/CarbonAware.WebApi/src/Controllers/CarbonAwareController.cs`` (``[HttpGet("forecasts/current")]``,
  ``[FromQuery(Name = "location")] string[]``) and ``Models/Parameters.EmissionsForecastCurrentDTO.cs``;
- ``src/CarbonAware.WebApi/src/Models/EmissionsForecastDTO.cs`` and ``EmissionsDataDTO.cs`` (the JSON
  names above; ``duration`` is whole minutes);
- ``src/GSF.CarbonAware/src/Handlers/ForecastHandler.cs`` and ``CarbonAware.Extensions.RollingAverage``:
  without ``windowSize`` the points are returned as the data source gave them (no rolling average).

Only ``location`` is sent. ``dataStartAt``/``dataEndAt`` must lie within the forecast's own time range
or the SDK answers 400 (``EmissionsForecast.Validate``), and the range a gate needs (until its deadline)
often reaches past it; ``windowSize`` would turn the points into rolling averages the planner would
average again. Without them the whole raw forecast comes back, so one request per location serves every
waiting gate whatever its deadline or duration (the shared :class:`~carbon_sensors.signals.cache.ForecastCache`).
The WebAPI docs' example names the optimum ``optimalDataPoint`` and ``EmissionsForecastDTO.cs``
``optimalDataPoints`` (the name changed between releases); this source reads neither.

Signal
------
The SDK's controller documents its forecasts as *marginal* carbon intensity, and its WattTime data
source requests WattTime's marginal signal (``co2_moer``, hard-coded until at least SDK 1.7, says
``casdk-docs/docs/architecture/decisions/0017-watt-time-signal-type.md``, which proposes making
``co2_aoer``, the average, configurable). With the Electricity Maps data sources the values are
average (Electricity Maps publishes average intensities). The response does not say which, so
``signal`` is a constructor argument: ``"marginal"`` by default (the SDK's documented meaning and
WattTime's default), ``"average"`` for a deployment on Electricity Maps or on WattTime ``co2_aoer``.
Gates refuse to compare average with marginal forecasts.

Not confirmed from the SDK's documentation: how often forecasts change (WattTime publishes a new one
every 5 minutes, Electricity Maps about hourly; ``refresh_interval`` defaults to 15 minutes), and any
forecast error figure (``error_24h`` below is an assumption, not a published number).

Authentication
--------------
The SDK's WebAPI defines none; deployments that put it behind a gateway may need a key. Give
``conn_id`` (an Airflow connection of type ``carbon_intensity``, the key in its Password) or set
``CARBON_SENSORS_CARBON_AWARE_SDK_API_KEY``; the key is sent in the header ``api_key_header``
(``X-API-Key`` by default) and resolved when a request is made, never stored in the spec. Without a key
no header is sent. The connection's Host is not used: ``base_url`` decides where requests go.

>>> CarbonAwareSdkSource(base_url="http://casdk:8080").to_spec()["signal"]
'marginal'
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from carbon_sensors.errors import ConfigurationError, SourceDataError, UnknownZoneError
from carbon_sensors.forecast import SIGNALS, Forecast, Signal
from carbon_sensors.signals._common import to_float, utc_moment
from carbon_sensors.signals.cache import DEFAULT_CACHE, ForecastCache
from carbon_sensors.signals.credentials import env_prefix, resolve_credentials
from carbon_sensors.signals.http import HttpClient, HttpSettings
from carbon_sensors.signals.registry import register_source_kind
from carbon_sensors.timeutil import as_utc

__all__ = ["CARBON_AWARE_SDK_PROVIDER", "FORECAST_PATH", "CarbonAwareSdkSource", "parse_carbon_aware_sdk"]

CARBON_AWARE_SDK_PROVIDER = "carbon_aware_sdk"
FORECAST_PATH = "/emissions/forecasts/current"
#: Location names as query values: letters, digits, ``_``, ``-``, ``.``; never ``/``, ``?``, ``&``, ``#``, ``%``.
_LOCATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
#: An HTTP header name (RFC 9110 token), so no header can be injected.
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~\-]{1,64}$")
#: An assumption, not a published figure: the relative error 24 h ahead of a grid forecast of this kind.
CARBON_AWARE_SDK_ERROR_24H = 0.15
_WHAT = "the Carbon Aware SDK WebAPI"


def _check_base_url(base_url: Any) -> str:
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigurationError("base_url is required: the URL of your Carbon Aware SDK WebAPI, e.g. 'http://casdk:8080'")
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if parts.query or parts.fragment or "?" in base_url or "#" in base_url:
        raise ConfigurationError(f"base_url must not have a query or fragment, got {base_url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError("base_url must not hold credentials (user:password@); use conn_id for a key")
    return base_url.strip().rstrip("/")


def _check_location(location: Any, what: str = "location") -> str:
    if not isinstance(location, str) or not _LOCATION.match(location):
        raise ConfigurationError(
            f"{what} must be a Carbon Aware SDK location name such as 'eastus' or 'CAISO_NORTH' "
            f"(letters, digits, '_', '-', '.'), got {location!r}"
        )
    return location


class CarbonAwareSdkSource:
    """Forecasts from a Carbon Aware SDK WebAPI deployment (``/emissions/forecasts/current``)."""

    kind = "carbon_aware_sdk"
    provider = CARBON_AWARE_SDK_PROVIDER

    def __init__(
        self,
        *,
        base_url: str,
        location: str | None = None,
        signal: Signal = "marginal",
        conn_id: str | None = None,
        api_key_header: str = "X-API-Key",
        refresh_interval: timedelta = timedelta(minutes=15),
        settings: HttpSettings | None = None,
        transport: Any = None,
        cache: ForecastCache | None = None,
        max_stale: timedelta = timedelta(hours=3),
    ) -> None:
        self.base_url = _check_base_url(base_url)
        self.location = None if location is None else _check_location(location)
        if signal not in SIGNALS:
            raise ConfigurationError(
                f"signal must be 'marginal' (WattTime, the SDK's default) or 'average' (Electricity Maps), got {signal!r}"
            )
        if conn_id is not None and (not isinstance(conn_id, str) or not conn_id.strip()):
            raise ConfigurationError(f"conn_id must be an Airflow connection id or None, got {conn_id!r}")
        if not isinstance(api_key_header, str) or not _HEADER.match(api_key_header):
            raise ConfigurationError(f"api_key_header must be an HTTP header name such as 'X-API-Key', got {api_key_header!r}")
        if not isinstance(refresh_interval, timedelta) or refresh_interval < timedelta(minutes=1):
            raise ConfigurationError(f"refresh_interval must be a timedelta of a minute or more, got {refresh_interval!r}")
        self.signal: Signal = signal
        self.conn_id = conn_id
        self.api_key_header = api_key_header
        self.refresh_interval = refresh_interval
        self.settings = settings or HttpSettings()
        self.cache = cache or DEFAULT_CACHE
        self.max_stale = max_stale
        hint = (f"check the API key in the Airflow connection {conn_id!r}" if conn_id
                else f"set {env_prefix(self.provider)}API_KEY or give conn_id")
        self._client = HttpClient(self.base_url, what=_WHAT, settings=self.settings, transport=transport,
                                  credentials_hint=hint)

    def _location_for(self, zone: str) -> str:
        return self.location if self.location is not None else zone

    def check_zone(self, zone: str) -> None:
        if self.location is not None:
            return  # the zone is a label; the pinned location was checked at construction
        try:
            _check_location(zone, "zone")
        except ConfigurationError as exc:
            raise UnknownZoneError(
                f"{exc}; zones of a Carbon Aware SDK source are its location names, or pass location= and any label"
            ) from None

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        self.check_zone(zone)
        now = as_utc(now, "now")
        location = self._location_for(zone)
        key = (self.kind, self.base_url, location, self.signal, self.conn_id, "current")

        async def download() -> Forecast:
            credentials = await resolve_credentials(self.provider, self.conn_id)
            headers = {self.api_key_header: credentials.api_key} if credentials.api_key else None
            payload = await self._client.get_json(FORECAST_PATH, params={"location": location}, headers=headers)
            return parse_carbon_aware_sdk(payload, zone=zone, location=location, signal=self.signal, now=now)

        forecast = await self.cache.get(key, download, ttl_s=self.refresh_interval.total_seconds(),
                                        max_stale_s=self.max_stale.total_seconds())
        return forecast if forecast.zone == zone else replace(forecast, zone=zone)

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "base_url": self.base_url, "location": self.location, "signal": self.signal,
                "conn_id": self.conn_id, "api_key_header": self.api_key_header,
                "refresh_interval_s": self.refresh_interval.total_seconds(),
                **self.settings.to_spec()}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> CarbonAwareSdkSource:
        settings = HttpSettings.from_spec(spec)
        return cls(base_url=spec.get("base_url"), location=spec.get("location"),  # type: ignore[arg-type]
                   signal=spec.get("signal", "marginal"), conn_id=spec.get("conn_id"),
                   api_key_header=spec.get("api_key_header") or "X-API-Key",
                   refresh_interval=timedelta(seconds=float(spec.get("refresh_interval_s", 900.0))), settings=settings)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CarbonAwareSdkSource) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.kind, self.base_url, self.location, self.signal, self.conn_id))

    def __repr__(self) -> str:
        where = f", location={self.location!r}" if self.location else ""
        return f"CarbonAwareSdkSource(base_url={self.base_url!r}{where}, signal={self.signal!r})"


def parse_carbon_aware_sdk(payload: Any, *, zone: str, location: str, signal: Signal, now: datetime) -> Forecast:
    """A Forecast from a ``/emissions/forecasts/current`` response; malformed payloads raise SourceDataError."""
    now = as_utc(now, "now")
    if not isinstance(payload, list):
        raise SourceDataError(f"{_WHAT} returned {type(payload).__name__}, not a list of forecasts")
    entries = [e for e in payload if isinstance(e, dict)]
    matching = [e for e in entries if str(e.get("location", "")).lower() == location.lower()]
    entry = matching[0] if matching else entries[0] if len(entries) == 1 and len(payload) == 1 else None
    if entry is None:
        raise SourceDataError(f"{_WHAT} returned no forecast for location {location!r} ({len(payload)} entries)")
    data = entry.get("forecastData")
    if not isinstance(data, list):
        raise SourceDataError(f"{_WHAT}: the forecast for {location!r} has no 'forecastData' list")
    if not data:
        raise SourceDataError(f"{_WHAT} returned an empty forecast for {location!r}")
    points: list[tuple[datetime, float]] = []
    duration_min: Any = None
    for i, point in enumerate(data):
        try:
            start = datetime.fromisoformat(str(point["timestamp"]).replace("Z", "+00:00"))
            value = point["value"]
        except (KeyError, TypeError, ValueError):
            raise SourceDataError(f"{_WHAT}: point {i} for {location!r} lacks timestamp/value: {str(point)[:120]}") from None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SourceDataError(f"{_WHAT}: point {i} for {location!r} has a non-numeric value {value!r}")
        points.append((utc_moment(start, f"point {i} for {location!r}", _WHAT),
                       to_float(value, f"point {i} for {location!r}", _WHAT)))
        duration_min = point.get("duration")
    if isinstance(duration_min, int | float) and not isinstance(duration_min, bool) and duration_min > 0:
        minutes = to_float(duration_min, "the last point's duration", _WHAT)
        if not (math.isfinite(minutes) and 1 / 60 <= minutes <= 24 * 60):
            raise SourceDataError(f"{_WHAT}: the last point for {location!r} lasts {minutes!r} minutes; expected 1 s to a day")
        resolution: timedelta | None = timedelta(minutes=minutes)
    elif len(points) >= 2:
        resolution = None  # the step before the last point
    else:
        raise SourceDataError(f"{_WHAT}: a single point for {location!r} without a positive 'duration'")
    forecast = Forecast.from_points(points, zone=zone, source="carbon_aware_sdk", signal=signal,
                                    resolution=resolution, error_24h=CARBON_AWARE_SDK_ERROR_24H,
                                    issued_at=_issued_at(entry.get("generatedAt"), points[0][0], now))
    if forecast.end_s <= now.timestamp():
        raise SourceDataError(
            f"{_WHAT} returned a forecast for {location!r} that ended at {forecast.end.isoformat()}, "
            f"before now ({now.isoformat()}): stale"
        )
    return forecast


def _issued_at(generated: Any, first: datetime, now: datetime) -> datetime:
    """``generatedAt`` where it parses (never later than now), else the first point's time."""
    try:
        issued = as_utc(datetime.fromisoformat(str(generated).replace("Z", "+00:00")))
    except (ConfigurationError, ValueError, OverflowError):
        issued = first
    return min(issued, now)


register_source_kind(CarbonAwareSdkSource.kind, CarbonAwareSdkSource.from_spec)
