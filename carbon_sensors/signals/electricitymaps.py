"""Electricity Maps (API v3): a zone's average carbon-intensity forecast, with its current measured value.

Endpoints used (``GET``, base ``https://api.electricitymap.org``, header ``auth-token: <key>``):

``/v3/carbon-intensity/forecast``
    ``zone`` (or ``lat`` + ``lon``), ``horizonHours``, ``emissionFactorType``, ``temporalGranularity``;
    answers ``{"zone", "forecast": [{"carbonIntensity", "datetime"}, ...], "updatedAt"}``.
``/v3/carbon-intensity/latest``
    same location and factor parameters; answers one ``{"zone", "carbonIntensity", "datetime",
    "updatedAt", "createdAt", "emissionFactorType", "isEstimated", "estimationMethod"}``. It gives
    the current slot's value: where it is measured (``isEstimated`` false) and the forecast has the
    same slot, the forecast reports its current error (``recent_error``); where the forecast starts
    after now, it fills the current slot.
``/v3/carbon-intensity/history``
    same parameters; answers ``{"zone", "history": [<latest-shaped entries>]}`` for the past 24 h.
    :meth:`ElectricityMapsSource.fetch_history` returns it as a measured Forecast.

Sources: the ``auth-token`` header, the base URL, the paths, ``zone``/``lat``/``lon``/
``horizonHours``/``emissionFactorType`` and the JSON fields above are as Electricity Maps' own client
code uses them (github.com/electricitymaps/carbon-aware-sdk, ``ElectricityMapsClient.cs``,
``QueryStrings.cs``, ``Model/ForecastedCarbonIntensityData.cs``, ``Model/HistoryCarbonIntensityData.cs``;
github.com/electricitymaps/if-electricitymaps, ``electricitymaps-api.ts``) and the API reference at
https://portal.electricitymaps.com/docs/api describes. ``temporalGranularity`` and its values
(``hourly``, ``15_minutes``, ``5_minutes``) and the exact ``horizonHours`` values accepted are from the
published API reference as quoted by third parties; not confirmed in official client code, so the
default request (``hourly``) leaves ``temporalGranularity`` out.

Zones: the zone name passed to ``fetch`` is your label. The Electricity Maps zone comes from
``zone_key=`` (e.g. ``"US-CAL-CISO"``) or ``lat``/``lon`` when given, and otherwise from the zone name
itself, which must then be an Electricity Maps zone key such as ``"DE"`` or ``"DK-DK2"``.

Values are average (consumption-based) intensities in gCO2eq/kWh, so ``signal`` is ``"average"``.
The API key is resolved when fetching (``conn_id``, else ``CARBON_SENSORS_ELECTRICITYMAPS_API_KEY``);
it is never part of the spec, the repr, a log line or an error message.

>>> ElectricityMapsSource(zone_key="DE").to_spec()["zone_key"]
'DE'
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime, timedelta
from typing import Any

from carbon_sensors.errors import ConfigurationError, SourceDataError, SourceError, UnknownZoneError
from carbon_sensors.forecast import Forecast
from carbon_sensors.signals._common import number_text as _num
from carbon_sensors.signals._common import parse_time, to_float
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.credentials import Credentials
from carbon_sensors.signals.http import HttpSettings
from carbon_sensors.signals.keyed_http import KeyedHttpSource, check_horizon_hours, coordinate_pair
from carbon_sensors.signals.registry import register_source_kind
from carbon_sensors.timeutil import as_utc

__all__ = [
    "ELECTRICITYMAPS_BASE_URL",
    "ElectricityMapsSource",
    "parse_electricitymaps",
    "parse_electricitymaps_history",
]

log = logging.getLogger(__name__)

PROVIDER = "electricitymaps"
ELECTRICITYMAPS_BASE_URL = "https://api.electricitymap.org"
_FORECAST_PATH = "/v3/carbon-intensity/forecast"
_LATEST_PATH = "/v3/carbon-intensity/latest"
_HISTORY_PATH = "/v3/carbon-intensity/history"
_WHERE = "the Electricity Maps API"

#: Zone keys: "DE", "GB", "DK-DK2", "US-CAL-CISO", "ES-CN-FVLZ": upper-case letters, then up to three
#: dash-separated parts. Strict, so a zone can never carry a path or query into the request.
_ZONE_KEY = re.compile(r"^[A-Z]{2,4}(?:-[A-Z0-9]{1,12}){0,3}$")
_GRANULARITIES = {"hourly": timedelta(hours=1), "15_minutes": timedelta(minutes=15), "5_minutes": timedelta(minutes=5)}
_EMISSION_FACTORS = ("lifecycle", "direct")

#: The forecast's typical relative error 24 h ahead (1 sigma). Electricity Maps publishes no single
#: accuracy figure that we could find; 0.10 is the day-ahead error of a comparable average-intensity
#: forecast (the NESO API's, ~10 % mean absolute error at 24 h), an assumption, not a measurement.
ELECTRICITYMAPS_ERROR_24H = 0.10


class ElectricityMapsSource(KeyedHttpSource):
    """A zone's average carbon-intensity forecast from the Electricity Maps API (v3).

    ``refresh_interval`` is one slot of ``temporal_granularity`` (1 h by default): Electricity Maps
    recomputes forecasts as live data arrive, and the cache keys on the current slot, so each zone
    costs two requests (forecast + latest) per slot however many tasks wait on it.
    """

    kind = "electricitymaps"
    signal = "average"
    provider = PROVIDER
    what = _WHERE
    default_base_url = ELECTRICITYMAPS_BASE_URL
    hint_given = "the api_key given to ElectricityMapsSource(credentials=...)"
    hint_conn = "the API key in the Airflow connection {conn_id!r} (Password field)"
    hint_env = "the environment variable {prefix}API_KEY (or set conn_id= to an Airflow connection)"
    hint = "check {where}; HTTP 403 can also mean your plan does not cover this zone or endpoint"

    def __init__(
        self,
        *,
        zone_key: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        horizon_hours: int = 24,
        temporal_granularity: str = "hourly",
        emission_factor_type: str = "lifecycle",
        conn_id: str | None = None,
        credentials: Credentials | None = None,
        base_url: str = ELECTRICITYMAPS_BASE_URL,
        settings: HttpSettings | None = None,
        transport: Any = None,
        cache: ForecastCache | None = None,
        max_stale: timedelta = timedelta(hours=3),
    ) -> None:
        if zone_key is not None and (lat is not None or lon is not None):
            raise ConfigurationError("give zone_key or lat/lon, not both")
        if zone_key is not None:
            if not isinstance(zone_key, str) or not _ZONE_KEY.match(zone_key):
                raise ConfigurationError(
                    f"zone_key must be an Electricity Maps zone key such as 'DE' or 'US-CAL-CISO', got {zone_key!r}"
                )
        lat, lon = coordinate_pair(("lat", "lon"), lat, lon)
        # The API reference lists 6, 24, 48 and 72 (default 24); other values are left to the API to refuse.
        check_horizon_hours(horizon_hours)
        if temporal_granularity not in _GRANULARITIES:
            raise ConfigurationError(
                f"temporal_granularity must be one of {', '.join(map(repr, _GRANULARITIES))}, got {temporal_granularity!r}"
            )
        if emission_factor_type not in _EMISSION_FACTORS:
            raise ConfigurationError(f"emission_factor_type must be 'lifecycle' or 'direct', got {emission_factor_type!r}")
        super().__init__(conn_id=conn_id, credentials=credentials, base_url=base_url, settings=settings,
                         transport=transport, cache=cache, max_stale=max_stale)
        self.zone_key, self.lat, self.lon = zone_key, lat, lon
        self.horizon_hours, self.temporal_granularity = horizon_hours, temporal_granularity
        self.emission_factor_type = emission_factor_type
        self.resolution = _GRANULARITIES[temporal_granularity]
        self.refresh_interval = self.resolution

    # -- where -----------------------------------------------------------------------------------

    def check_zone(self, zone: str) -> None:
        if not isinstance(zone, str) or not zone:
            raise UnknownZoneError(f"zone must be a non-empty name, got {zone!r}")
        if self.zone_key is None and self.lat is None and not _ZONE_KEY.match(zone):
            raise UnknownZoneError(
                f"{zone!r} is not an Electricity Maps zone key (such as 'DE' or 'US-CAL-CISO'); "
                "name the zone by its key, or give the source zone_key= or lat=/lon="
            )

    def _zone_key(self, zone: str) -> str | None:
        """The Electricity Maps zone asked for: zone_key=, else the zone name; None when located by lat/lon."""
        return None if self.lat is not None else self.zone_key or zone

    def _location(self, zone: str) -> dict[str, str]:
        if self.lat is not None:
            return {"lat": _num(self.lat), "lon": _num(self.lon)}
        return {"zone": self.zone_key or zone}

    def _params(self, zone: str, **extra: str) -> dict[str, str]:
        params = {**self._location(zone), **extra, "emissionFactorType": self.emission_factor_type}
        if self.temporal_granularity != "hourly":
            params["temporalGranularity"] = self.temporal_granularity
        return params

    def _headers(self, creds: Credentials) -> dict[str, str]:
        return {"auth-token": creds.api_key or ""}

    # -- fetching --------------------------------------------------------------------------------

    def _cache_where(self, zone: str) -> Any:
        return (self._zone_key(zone), self.lat, self.lon)

    def _cache_options(self) -> tuple[Any, ...]:
        return (self.emission_factor_type, self.temporal_granularity, self.horizon_hours)

    async def _download(self, zone: str, now: datetime, creds: Credentials, base_url: str) -> Forecast:
        forecast = await self._get(base_url, creds, _FORECAST_PATH, self._params(zone, horizonHours=str(self.horizon_hours)))
        try:  # the current slot's value is a refinement: the forecast serves without it
            latest = await self._get(base_url, creds, _LATEST_PATH, self._params(zone))
        except SourceError as exc:
            log.info("%s: no current value from %s (%s); going on without it", _WHERE, _LATEST_PATH, type(exc).__name__)
            latest = None
        return self._parsed(
            base_url, creds, parse_electricitymaps, forecast, latest, zone=zone, now=now, resolution=self.resolution,
            emission_factor_type=self.emission_factor_type, zone_key=self._zone_key(zone),
        )

    async def fetch_history(self, zone: str, *, now: datetime) -> Forecast:
        """The past 24 h of the zone's intensity (``/v3/carbon-intensity/history``) as a measured Forecast."""
        self.check_zone(zone)
        now = as_utc(now, "now")
        creds, base_url = await self._auth()
        payload = await self._get(base_url, creds, _HISTORY_PATH, self._params(zone))
        return self._parsed(
            base_url, creds, parse_electricitymaps_history, payload, zone=zone, now=now, resolution=self.resolution,
            emission_factor_type=self.emission_factor_type, zone_key=self._zone_key(zone),
        )

    # -- spec ------------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        return self._spec(zone_key=self.zone_key, lat=self.lat, lon=self.lon, horizon_hours=self.horizon_hours,
                          temporal_granularity=self.temporal_granularity, emission_factor_type=self.emission_factor_type)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ElectricityMapsSource:
        return cls(zone_key=spec.get("zone_key"), lat=spec.get("lat"), lon=spec.get("lon"),
                   horizon_hours=spec.get("horizon_hours", 24),
                   temporal_granularity=spec.get("temporal_granularity") or "hourly",
                   emission_factor_type=spec.get("emission_factor_type") or "lifecycle",
                   **cls._spec_kwargs(spec))

    def __repr__(self) -> str:
        where = (f"zone_key={self.zone_key!r}" if self.zone_key else
                 f"lat={self.lat}, lon={self.lon}" if self.lat is not None else "zone from the zone name")
        conn = f", conn_id={self.conn_id!r}" if self.conn_id else ""
        return f"ElectricityMapsSource({where}, {self.emission_factor_type}, {self.temporal_granularity}{conn})"


# -- helpers ---------------------------------------------------------------------------------------


def _value(entry: Any, what: str) -> tuple[datetime, float]:
    try:
        stamp, value = entry["datetime"], entry["carbonIntensity"]
    except (KeyError, TypeError):
        raise SourceDataError(f"{_WHERE}: {what} lacks datetime/carbonIntensity: {str(entry)[:120]}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SourceDataError(f"{_WHERE}: {what} has a non-numeric carbonIntensity {value!r}")
    return _time(stamp, what), to_float(value, f"{what}'s carbonIntensity", _WHERE)


def _check_entry(entry: dict, what: str, *, emission_factor_type: str, zone_key: str | None) -> None:
    found = entry.get("emissionFactorType")
    if found is not None and found != emission_factor_type:
        raise SourceDataError(f"{_WHERE}: {what} is {found!r} data, but {emission_factor_type!r} was asked for")
    if zone_key is not None and entry.get("zone") not in (None, zone_key):
        raise SourceDataError(f"{_WHERE}: {what} is for zone {entry.get('zone')!r}, not {zone_key!r}")


# -- parsing (pure) --------------------------------------------------------------------------------


def parse_electricitymaps(
    forecast: Any,
    latest: Any,
    *,
    zone: str,
    now: datetime,
    resolution: timedelta = timedelta(hours=1),
    emission_factor_type: str = "lifecycle",
    zone_key: str | None = None,
) -> Forecast:
    """A Forecast from a ``/forecast`` response and (optionally, may be None) a ``/latest`` response.

    The forecast is cut to start at the slot that holds ``now``. Where it starts after ``now`` (by at
    most one slot), the ``/latest`` value for the current slot fills the gap. Where both a forecast and
    a measured (not estimated) value exist for the current slot, ``recent_error`` is their ratio less
    one, taken as made one slot ahead (``recent_error_lead_h``: the API does not say when each point
    was forecast, only when the whole forecast was updated). Malformed, empty, stale or misdated
    payloads raise SourceDataError.
    """
    now = as_utc(now, "now")
    if not isinstance(forecast, dict) or not isinstance(forecast.get("forecast"), list):
        raise SourceDataError(f"{_WHERE} returned no 'forecast' list; the response was not a forecast")
    if not forecast["forecast"]:
        raise SourceDataError(f"{_WHERE} returned an empty forecast for {now:%Y-%m-%dT%H:%MZ}")
    _check_entry(forecast, "the forecast", emission_factor_type=emission_factor_type, zone_key=zone_key)
    points: list[tuple[datetime, float]] = []
    for i, entry in enumerate(forecast["forecast"]):
        if isinstance(entry, dict):
            _check_entry(entry, f"forecast point {i}", emission_factor_type=emission_factor_type, zone_key=zone_key)
        points.append(_value(entry, f"forecast point {i}"))
    current = None
    if isinstance(latest, dict):
        try:
            _check_entry(latest, "the latest value", emission_factor_type=emission_factor_type, zone_key=zone_key)
            current = (*_value(latest, "the latest value"), latest.get("isEstimated") is True)
        except SourceDataError:  # a refinement only: ignore a bad one (its message may quote the payload: not logged)
            log.info("%s: ignoring an unusable %s value", _WHERE, _LATEST_PATH)
    step = resolution.total_seconds()
    for i in range(1, len(points)):
        if not points[i][0] > points[i - 1][0]:
            raise SourceDataError(f"{_WHERE}: forecast point {i} ({points[i][0].isoformat()}) is out of time order")
    # From the point that holds now (the last one starting at or before now) onwards.
    held = [i for i, (t, _) in enumerate(points) if t <= now]
    points = points[held[-1]:] if held else points
    start, end = points[0][0], points[-1][0] + resolution
    if end <= now:
        raise SourceDataError(f"{_WHERE} returned a forecast ending {end.isoformat()}, before now ({now.isoformat()}): stale")
    recent_error = measured_until = None
    if start > now:  # the forecast begins with the next slot: the current value fills the current one
        if current is None or not (current[0] <= now < start and (start - current[0]).total_seconds() <= step):
            raise SourceDataError(
                f"{_WHERE} returned a forecast starting {start.isoformat()}, after now ({now.isoformat()}), "
                "and no current value to fill the gap: misdated"
            )
        points.insert(0, (current[0], current[1]))
        measured_until = None if current[2] else start
    elif current is not None and not current[2] and current[0] == start and current[1] > 0:
        ratio = points[0][1] / current[1] - 1.0  # what the forecast says for the current slot vs. what was measured
        recent_error = ratio if math.isfinite(ratio) and ratio > -1.0 else None  # a freak value is ignored
    issued_at = now
    if forecast.get("updatedAt"):
        issued_at = min(now, _time(forecast["updatedAt"], "the forecast's updatedAt"))
    return Forecast.from_points(
        points, zone=zone, source=PROVIDER, signal="average", issued_at=issued_at, resolution=resolution,
        measured_until=measured_until, error_24h=ELECTRICITYMAPS_ERROR_24H, recent_error=recent_error,
        recent_error_lead_h=step / 3600.0,
    )


def parse_electricitymaps_history(
    payload: Any,
    *,
    zone: str,
    now: datetime,
    resolution: timedelta = timedelta(hours=1),
    emission_factor_type: str = "lifecycle",
    zone_key: str | None = None,
) -> Forecast:
    """A measured Forecast (``error_24h`` 0) from a ``/history`` response; entries without a value are skipped."""
    now = as_utc(now, "now")
    if not isinstance(payload, dict) or not isinstance(payload.get("history"), list):
        raise SourceDataError(f"{_WHERE} returned no 'history' list; the response was not a history")
    _check_entry(payload, "the history", emission_factor_type=emission_factor_type, zone_key=zone_key)
    points = []
    for i, entry in enumerate(payload["history"]):
        if isinstance(entry, dict) and entry.get("carbonIntensity") is None and "datetime" in entry:
            continue  # a gap in the data: the API reports null
        if isinstance(entry, dict):
            _check_entry(entry, f"history point {i}", emission_factor_type=emission_factor_type, zone_key=zone_key)
        points.append(_value(entry, f"history point {i}"))
    if not points:
        raise SourceDataError(f"{_WHERE} returned an empty history for {zone!r}")
    end = points[-1][0] + resolution
    return Forecast.from_points(
        points, zone=zone, source=PROVIDER, signal="average", issued_at=min(now, end), resolution=resolution,
        measured_until=end, error_24h=0.0,
    )


def _time(value: Any, what: str) -> datetime:
    return parse_time(value, what, _WHERE)


register_source_kind(ElectricityMapsSource.kind, ElectricityMapsSource.from_spec)
