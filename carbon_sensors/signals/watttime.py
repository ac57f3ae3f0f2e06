"""WattTime (API v3): a grid region's marginal (MOER) or average (AOER) emissions forecast.

Endpoints used (``GET``, base ``https://api.watttime.org``):

``/login``
    HTTP Basic auth with the WattTime username and password; answers ``{"token": "<JWT>"}``, a bearer
    token valid for 30 minutes. Tokens are cached per process (per base URL and user) and renewed
    before they expire; a data request refused with 401/403 logs in again once, then gives up with
    SourceAuthError naming the connection or environment variables to fix.
``/v3/region-from-loc``
    ``latitude``, ``longitude``, ``signal_type``; answers ``{"region", "region_full_name", "signal_type"}``.
    Used when the source has ``latitude``/``longitude`` instead of a ``region``; cached per process.
``/v3/forecast``
    ``region``, ``signal_type``, ``horizon_hours`` (0-72); answers ``{"data": [{"point_time", "value"}, ...],
    "meta": {"region", "signal_type", "units", "generated_at", "data_point_period_seconds", ...}}``.
``/v3/historical``
    ``region``, ``signal_type``, ``start``, ``end`` (ISO 8601); answers the same ``{"data", "meta"}`` shape.
    :meth:`WattTimeSource.fetch_historical` returns it as a measured Forecast; ``fetch`` uses it for the
    current 5-minute value only when a forecast starts after now.

Units: both data endpoints return ``meta.units`` = ``"lbs_co2_per_mwh"`` (pounds of CO2 per MWh) for
``co2_moer`` and ``co2_aoer``; values are converted to gCO2/kWh (1 lb/MWh = 453.59237 g / 1000 kWh =
0.45359237 g/kWh). Any other unit (e.g. ``health_damage``'s) is refused rather than guessed.

Signals: ``signal_type="co2_moer"`` (default) gives ``signal="marginal"``; ``"co2_aoer"`` gives
``"average"``. The planner never mixes the two in one decision.

Regions: the zone name passed to ``fetch`` is your label. The WattTime region comes from
``region=`` (e.g. ``"CAISO_NORTH"``), else from ``latitude``/``longitude`` through
``/v3/region-from-loc``, else from the zone name itself, which must then be a WattTime region id.

Sources: paths, parameters, Basic-auth login, the bearer header, the 30-minute token life and the
``data``/``meta`` fields are those of WattTime's official Python client
(github.com/WattTime/watttime-python-client, ``watttime/api.py``) and https://docs.watttime.org.

Credentials are resolved when fetching (``conn_id``, else ``CARBON_SENSORS_WATTTIME_USERNAME`` and
``CARBON_SENSORS_WATTTIME_PASSWORD``); neither they nor the token ever appear in the spec, the repr,
a log line or an error message.

>>> WattTimeSource(region="CAISO_NORTH").signal
'marginal'
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
import time
from datetime import datetime, timedelta
from typing import Any

from carbon_sensors.errors import ConfigurationError, SourceAuthError, SourceDataError, SourceError, UnknownZoneError
from carbon_sensors.forecast import Forecast
from carbon_sensors.signals._common import number_text as _num
from carbon_sensors.signals._common import parse_time, to_float
from carbon_sensors.signals._common import scrubbed as _scrubbed
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.credentials import Credentials
from carbon_sensors.signals.http import HttpSettings
from carbon_sensors.signals.keyed_http import KeyedHttpSource, check_horizon_hours, coordinate_pair
from carbon_sensors.signals.registry import register_source_kind
from carbon_sensors.timeutil import as_utc

__all__ = [
    "LBS_PER_MWH_TO_G_PER_KWH",
    "WATTTIME_BASE_URL",
    "WattTimeSource",
    "clear_watttime_tokens",
    "parse_watttime",
]

log = logging.getLogger(__name__)

PROVIDER = "watttime"
WATTTIME_BASE_URL = "https://api.watttime.org"
_LOGIN_PATH = "/login"
_REGION_PATH = "/v3/region-from-loc"
_FORECAST_PATH = "/v3/forecast"
_HISTORICAL_PATH = "/v3/historical"
_WHERE = "the WattTime API"

#: 1 lb/MWh in g/kWh: 453.59237 g per lb, 1000 kWh per MWh.
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
_UNITS = {"lbs_co2_per_mwh": LBS_PER_MWH_TO_G_PER_KWH}
_SIGNALS = {"co2_moer": "marginal", "co2_aoer": "average"}
#: Region ids such as "CAISO_NORTH", "PJM_NJ", "ERCOT_EASTTX": upper-case letters, digits, "_" and "-".
_REGION = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,63}$")
_PERIOD = timedelta(minutes=5)  # WattTime's data_point_period_seconds is 300 for MOER
#: The official client treats a token as valid for 30 minutes; renew a minute early.
_TOKEN_LIFE_S = 30 * 60 - 60
#: Typical relative error of a MOER forecast 24 h ahead (1 sigma). WattTime publishes accuracy per
#: region and model rather than one figure; marginal units switch abruptly, so marginal forecasts err
#: more than average-intensity ones (taken as 0.10). 0.20 is an assumption, not a measurement.
WATTTIME_ERROR_24H = {"co2_moer": 0.20, "co2_aoer": 0.10}

# Per-process caches: (base_url, username, password fingerprint) -> (token, monotonic expiry), and
# (base_url, latitude, longitude, signal_type) -> region. Never logged, never in a spec.
_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
_regions: dict[tuple[str, float, float, str], str] = {}


def clear_watttime_tokens() -> None:
    """Forget the cached login tokens and regions (tests; a rotated password)."""
    _tokens.clear()
    _regions.clear()


class WattTimeSource(KeyedHttpSource):
    """A WattTime region's MOER (marginal) or AOER (average) forecast, in gCO2/kWh.

    ``refresh_interval`` is 5 minutes: WattTime regenerates its forecast every 5 minutes and a
    marginal signal can change within one; the cache keys on the current 5-minute slot, so each
    region costs one forecast request per slot (plus a login every ~30 minutes) however many tasks wait.
    """

    kind = "watttime"
    provider = PROVIDER
    what = _WHERE
    default_base_url = WATTTIME_BASE_URL
    credential_fields = ("username", "password")
    missing_credentials = "a username and a password and did not get both"
    hint_given = "WattTimeSource(credentials=...)"
    hint_conn = "the Airflow connection {conn_id!r} (Login: username, Password: password)"
    hint_env = "the environment variables {prefix}USERNAME and {prefix}PASSWORD (or set conn_id=)"
    hint = ("check the WattTime username and password in {where}; HTTP 403 can also mean your plan "
            "does not cover this region or signal_type (see /v3/my-access)")

    def __init__(
        self,
        *,
        region: str | None = None,
        latitude: float | None = None,
        longitude: float | None = None,
        signal_type: str = "co2_moer",
        horizon_hours: int = 24,
        conn_id: str | None = None,
        credentials: Credentials | None = None,
        base_url: str = WATTTIME_BASE_URL,
        settings: HttpSettings | None = None,
        transport: Any = None,
        cache: ForecastCache | None = None,
        max_stale: timedelta = timedelta(hours=1),
    ) -> None:
        if region is not None and (latitude is not None or longitude is not None):
            raise ConfigurationError("give region or latitude/longitude, not both")
        if region is not None and (not isinstance(region, str) or not _REGION.match(region)):
            raise ConfigurationError(f"region must be a WattTime region id such as 'CAISO_NORTH', got {region!r}")
        latitude, longitude = coordinate_pair(("latitude", "longitude"), latitude, longitude)
        if signal_type not in _SIGNALS:
            raise ConfigurationError(
                f"signal_type must be 'co2_moer' (marginal) or 'co2_aoer' (average), got {signal_type!r}"
            )
        check_horizon_hours(horizon_hours)
        super().__init__(conn_id=conn_id, credentials=credentials, base_url=base_url, settings=settings,
                         transport=transport, cache=cache, max_stale=max_stale)
        self.region, self.latitude, self.longitude = region, latitude, longitude
        self.signal_type, self.horizon_hours = signal_type, horizon_hours
        self.signal = _SIGNALS[signal_type]
        self.refresh_interval = _PERIOD

    # -- where -----------------------------------------------------------------------------------

    def check_zone(self, zone: str) -> None:
        if not isinstance(zone, str) or not zone:
            raise UnknownZoneError(f"zone must be a non-empty name, got {zone!r}")
        if self.region is None and self.latitude is None and not _REGION.match(zone):
            raise UnknownZoneError(
                f"{zone!r} is not a WattTime region id (such as 'CAISO_NORTH'); name the zone by its region, "
                "or give the source region= or latitude=/longitude="
            )

    # -- token ------------------------------------------------------------------------------------

    @staticmethod
    def _token_key(base_url: str, creds: Credentials) -> tuple[str, str, str]:
        fingerprint = hashlib.sha256(f"{creds.username}\0{creds.password}".encode()).hexdigest()
        return base_url, creds.username or "", fingerprint

    def _secrets(self, base_url: str, creds: Credentials) -> tuple[str, ...]:
        cached = _tokens.get(self._token_key(base_url, creds))
        return (*creds.secrets(), *((cached[0],) if cached else ()))

    async def _login(self, base_url: str, creds: Credentials) -> str:
        basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        payload = await self._request(base_url, creds, _LOGIN_PATH, headers={"Authorization": f"Basic {basic}"},
                                      secrets=(basic,))
        token = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceAuthError(f"{_WHERE} ({base_url}{_LOGIN_PATH}) gave no token; {self._hint()}")
        _tokens[self._token_key(base_url, creds)] = (token, time.monotonic() + _TOKEN_LIFE_S)
        return token

    async def _token(self, base_url: str, creds: Credentials) -> str:
        cached = _tokens.get(self._token_key(base_url, creds))
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        return await self._login(base_url, creds)

    async def _get(self, base_url: str, creds: Credentials, path: str, params: dict[str, str]) -> Any:
        """GET with the bearer token; on a refusal, log in again once, then raise SourceAuthError."""
        for attempt in (1, 2):
            token = await self._token(base_url, creds) if attempt == 1 else await self._login(base_url, creds)
            try:
                return await self._request(base_url, creds, path, params, {"Authorization": f"Bearer {token}"},
                                           secrets=(token,))
            except SourceAuthError as exc:
                _tokens.pop(self._token_key(base_url, creds), None)
                if attempt == 2:
                    raise _scrubbed(SourceAuthError(f"{exc} (after a fresh login)"), (*creds.secrets(), token)) from None
                log.info("%s refused the token for %s; logging in again", _WHERE, path)
        raise AssertionError("unreachable")

    async def _region(self, base_url: str, creds: Credentials, zone: str) -> str:
        if self.region is not None:
            return self.region
        if self.latitude is None:
            return zone  # check_zone made sure it is a region id
        key = (base_url, self.latitude, self.longitude, self.signal_type)
        if key not in _regions:
            payload = await self._get(base_url, creds, _REGION_PATH, {
                "latitude": _num(self.latitude), "longitude": _num(self.longitude), "signal_type": self.signal_type})
            region = payload.get("region") if isinstance(payload, dict) else None
            if not isinstance(region, str) or not _REGION.match(region):
                raise SourceDataError(f"{_WHERE} ({_REGION_PATH}) returned no usable region: {str(payload)[:120]}")
            _regions[key] = region
        return _regions[key]

    # -- fetching --------------------------------------------------------------------------------

    def _cache_where(self, zone: str) -> Any:
        return self.region or ((self.latitude, self.longitude) if self.latitude is not None else zone)

    def _cache_options(self) -> tuple[Any, ...]:
        return (self.signal_type, self.horizon_hours)

    async def _download(self, zone: str, now: datetime, creds: Credentials, base_url: str) -> Forecast:
        region = await self._region(base_url, creds, zone)
        params = {"region": region, "signal_type": self.signal_type, "horizon_hours": str(self.horizon_hours)}
        payload = await self._get(base_url, creds, _FORECAST_PATH, params)
        current = None
        if _starts_after(payload, now):  # rare: fill the current slot with its real-time value
            try:
                history = await self._historical(base_url, creds, region, now - timedelta(hours=1), now)
                current = _last_at_or_before(history, now, self.signal_type, region)
            except SourceError as exc:
                log.info("%s: no current value from %s (%s)", _WHERE, _HISTORICAL_PATH, type(exc).__name__)
        return self._parsed(base_url, creds, parse_watttime, payload, zone=zone, now=now, signal_type=self.signal_type,
                            region=region, current=current)

    async def _historical(self, base_url: str, creds: Credentials, region: str, start: datetime, end: datetime) -> Any:
        params = {"region": region, "signal_type": self.signal_type,
                  "start": as_utc(start, "start").isoformat(), "end": as_utc(end, "end").isoformat()}
        return await self._get(base_url, creds, _HISTORICAL_PATH, params)

    async def fetch_historical(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        """Measured values from ``start`` to ``end`` (``/v3/historical``) as a Forecast with ``error_24h`` 0."""
        self.check_zone(zone)
        now = as_utc(now, "now")
        creds, base_url = await self._auth()
        region = await self._region(base_url, creds, zone)
        payload = await self._historical(base_url, creds, region, start, end)
        return self._parsed(base_url, creds, parse_watttime, payload, zone=zone, now=now, signal_type=self.signal_type,
                            region=region, measured=True)

    async def fetch_measured(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        """Measured values up to the last whole hour (``/v3/historical``), cached an hour: the gate's persistence prior."""

        async def download(zone: str, since: datetime, until: datetime, creds: Credentials, base_url: str) -> Forecast:
            region = await self._region(base_url, creds, zone)
            payload = await self._historical(base_url, creds, region, since, until)
            return self._parsed(base_url, creds, parse_watttime, payload, zone=zone, now=until,
                                signal_type=self.signal_type, region=region, measured=True)

        return await self._cached_measured(zone, start, end, now, download)

    # -- spec ------------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        return self._spec(region=self.region, latitude=self.latitude, longitude=self.longitude,
                          signal_type=self.signal_type, horizon_hours=self.horizon_hours)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> WattTimeSource:
        return cls(region=spec.get("region"), latitude=spec.get("latitude"), longitude=spec.get("longitude"),
                   signal_type=spec.get("signal_type") or "co2_moer", horizon_hours=spec.get("horizon_hours", 24),
                   **cls._spec_kwargs(spec))

    def __repr__(self) -> str:
        where = (f"region={self.region!r}" if self.region else
                 f"latitude={self.latitude}, longitude={self.longitude}" if self.latitude is not None
                 else "region from the zone name")
        conn = f", conn_id={self.conn_id!r}" if self.conn_id else ""
        return f"WattTimeSource({where}, signal_type={self.signal_type!r}{conn})"


# -- helpers ---------------------------------------------------------------------------------------


def _starts_after(payload: Any, now: datetime) -> bool:
    try:
        return _time(payload["data"][0]["point_time"], "the first point") > now
    except (KeyError, IndexError, TypeError, SourceDataError):
        return False  # parse_watttime reports what is wrong


def _last_at_or_before(payload: Any, now: datetime, signal_type: str, region: str) -> tuple[datetime, float] | None:
    measured = parse_watttime(payload, zone=region, now=now, signal_type=signal_type, region=region, measured=True)
    points = [(t, v) for t, v in measured.points() if t <= now]
    return points[-1] if points else None


# -- parsing (pure) --------------------------------------------------------------------------------


def parse_watttime(
    payload: Any,
    *,
    zone: str,
    now: datetime,
    signal_type: str = "co2_moer",
    region: str | None = None,
    current: tuple[datetime, float] | None = None,
    measured: bool = False,
) -> Forecast:
    """A Forecast in gCO2/kWh from a ``/v3/forecast`` (or, ``measured=True``, ``/v3/historical``) response.

    Values are converted from ``meta.units`` (``lbs_co2_per_mwh``); ``meta.signal_type`` and
    ``meta.region``, where present, must be what was asked for. A forecast is cut to start at the
    point that holds ``now``; where it starts after ``now`` by at most one period, ``current`` (a
    real-time value in g/kWh, e.g. from ``/v3/historical``) fills the gap. Malformed, empty, stale or
    misdated payloads raise SourceDataError.
    """
    now = as_utc(now, "now")
    if signal_type not in _SIGNALS:
        raise ConfigurationError(f"signal_type must be 'co2_moer' or 'co2_aoer', got {signal_type!r}")
    data = payload.get("data") if isinstance(payload, dict) else None
    meta = payload.get("meta") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise SourceDataError(f"{_WHERE} returned no 'data' list; the response was not a forecast")
    if not data:
        raise SourceDataError(f"{_WHERE} returned an empty {'history' if measured else 'forecast'} for {zone!r}")
    meta = meta if isinstance(meta, dict) else {}
    units = meta.get("units", "lbs_co2_per_mwh")  # the documented unit for co2_moer and co2_aoer
    if not isinstance(units, str) or units not in _UNITS:
        raise SourceDataError(f"{_WHERE} returned values in {units!r}; only lbs_co2_per_mwh is understood")
    if meta.get("signal_type") not in (None, signal_type):
        raise SourceDataError(f"{_WHERE} returned {meta['signal_type']!r} data, but {signal_type!r} was asked for")
    if region is not None and meta.get("region") not in (None, region):
        raise SourceDataError(f"{_WHERE} returned data for region {meta['region']!r}, not {region!r}")
    factor = _UNITS[units]
    period = _PERIOD
    if isinstance(meta.get("data_point_period_seconds"), int | float) and meta["data_point_period_seconds"] > 0:
        seconds = to_float(meta["data_point_period_seconds"], "meta.data_point_period_seconds", _WHERE)
        if not (math.isfinite(seconds) and 1 <= seconds <= 86400):
            raise SourceDataError(f"{_WHERE} returned data_point_period_seconds {seconds!r}; expected 1 s to a day")
        period = timedelta(seconds=seconds)
    points: list[tuple[datetime, float]] = []
    for i, entry in enumerate(data):
        try:
            stamp, value = entry["point_time"], entry["value"]
        except (KeyError, TypeError):
            raise SourceDataError(f"{_WHERE}: point {i} lacks point_time/value: {str(entry)[:120]}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SourceDataError(f"{_WHERE}: point {i} has a non-numeric value {value!r}")
        moment = _time(stamp, f"point {i}")
        if points and not moment > points[-1][0]:
            raise SourceDataError(f"{_WHERE}: point {i} ({moment.isoformat()}) is out of time order")
        points.append((moment, to_float(value, f"point {i}'s value", _WHERE) * factor))
    source = PROVIDER
    if measured:
        end = points[-1][0] + period
        return Forecast.from_points(points, zone=zone, source=source, signal=_SIGNALS[signal_type],
                                    issued_at=min(now, end), resolution=period, measured_until=end, error_24h=0.0)
    held = [i for i, (t, _) in enumerate(points) if t <= now]
    points = points[held[-1]:] if held else points
    start, end = points[0][0], points[-1][0] + period
    if end <= now:
        raise SourceDataError(f"{_WHERE} returned a forecast ending {end.isoformat()}, before now ({now.isoformat()}): stale")
    measured_until = None
    if start > now:
        if current is None or not (current[0] <= now < start and start - current[0] <= period):
            raise SourceDataError(
                f"{_WHERE} returned a forecast starting {start.isoformat()}, after now ({now.isoformat()}), "
                "and no current value to fill the gap: misdated"
            )
        points.insert(0, current)
        measured_until = start
    issued_at = now
    if meta.get("generated_at"):
        issued_at = min(now, _time(meta["generated_at"], "meta.generated_at"))
    # recent_error stays None: the first point is WattTime's nowcast for the current period, and
    # /v3/historical's value for it is the same model's real-time estimate, not a later measurement.
    return Forecast.from_points(
        points, zone=zone, source=source, signal=_SIGNALS[signal_type], issued_at=issued_at, resolution=period,
        measured_until=measured_until, error_24h=WATTTIME_ERROR_24H[signal_type],
    )


def _time(value: Any, what: str) -> datetime:
    return parse_time(value, what, _WHERE)


register_source_kind(WattTimeSource.kind, WattTimeSource.from_spec)
