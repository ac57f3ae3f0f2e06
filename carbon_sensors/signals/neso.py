"""The UK Carbon Intensity API (NESO): Great Britain's 48-hour forecast in 30-minute slots, no key needed.

National by default; one region with ``region_id`` (1-18) or the region of a ``postcode`` (outward
code, e.g. ``"RG10"``). Zone names are ``GB`` or ``GB-...`` (a label of your choice for a region).
Values are average intensities in gCO2/kWh. The national endpoint returns ``actual`` beside
``forecast`` for the current slot when it is known: the forecast then reports its current error
(``recent_error``). :meth:`NesoSource.fetch_measured` reads the national ``actual`` values of a past
range from ``/intensity/{from}/{to}`` (at most 14 days a request) for the gate's persistence prior.

>>> NesoSource(region_id=13).to_spec()["region_id"]
13
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from carbon_sensors.errors import ConfigurationError, SourceDataError, UnknownZoneError
from carbon_sensors.forecast import Forecast
from carbon_sensors.signals._common import MEASURED_REFRESH, measured_window, relabel, to_float, utc_moment
from carbon_sensors.signals.cache import DEFAULT_CACHE, ForecastCache
from carbon_sensors.signals.http import HttpClient, HttpSettings
from carbon_sensors.signals.registry import register_source_kind
from carbon_sensors.timeutil import as_utc

__all__ = ["NESO_BASE_URL", "NesoSource", "parse_neso", "parse_neso_actuals"]

NESO_BASE_URL = "https://api.carbonintensity.org.uk"
_SLOT = timedelta(minutes=30)
#: The longest range ``/intensity/{from}/{to}`` serves in one request.
_MAX_RANGE = timedelta(days=14)
_OUTWARD_CODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
#: The forecast's typical relative error 24 h ahead: about 24 g/kWh mean absolute error on a
#: ~190 g/kWh national average in a long-run tracking of this API (2023-2024).
NESO_ERROR_24H = 0.10


class NesoSource:
    """Great Britain's carbon intensity forecast from the NESO Carbon Intensity API."""

    kind = "neso"
    signal = "average"
    refresh_interval = timedelta(minutes=30)

    def __init__(
        self,
        *,
        region_id: int | None = None,
        postcode: str | None = None,
        base_url: str = NESO_BASE_URL,
        settings: HttpSettings | None = None,
        transport: Any = None,
        cache: ForecastCache | None = None,
        max_stale: timedelta = timedelta(hours=3),
    ) -> None:
        if region_id is not None and postcode is not None:
            raise ConfigurationError("give region_id or postcode, not both")
        if region_id is not None and (isinstance(region_id, bool) or not isinstance(region_id, int)
                                      or not 1 <= region_id <= 18):
            raise ConfigurationError(f"region_id must be a NESO region number 1-18, got {region_id!r}")
        if postcode is not None:
            postcode = str(postcode).strip().upper()
            if not _OUTWARD_CODE.match(postcode):
                raise ConfigurationError(f"postcode must be an outward code such as 'RG10' or 'SW1A', got {postcode!r}")
        if not base_url.startswith(("https://", "http://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.region_id, self.postcode, self.base_url = region_id, postcode, base_url.rstrip("/")
        self.settings = settings or HttpSettings()
        self.cache = cache or DEFAULT_CACHE
        self.max_stale = max_stale
        self._client = HttpClient(self.base_url, what="the NESO Carbon Intensity API", settings=self.settings,
                                  transport=transport)

    def check_zone(self, zone: str) -> None:
        if zone != "GB" and not zone.startswith("GB-"):
            raise UnknownZoneError(
                f"the NESO Carbon Intensity API covers Great Britain only (zone 'GB' or 'GB-...'), not {zone!r}"
            )

    def _path(self, slot: datetime) -> str:
        stamp = slot.strftime("%Y-%m-%dT%H:%MZ")
        if self.region_id is not None:
            return f"/regional/intensity/{stamp}/fw48h/regionid/{self.region_id}"
        if self.postcode is not None:
            return f"/regional/intensity/{stamp}/fw48h/postcode/{self.postcode}"
        return f"/intensity/{stamp}/fw48h"

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        self.check_zone(zone)
        now = as_utc(now, "now")
        slot = datetime.fromtimestamp(now.timestamp() // 1800 * 1800, UTC)
        key = (self.kind, self.base_url, self.region_id, self.postcode, self.signal, "PT30M", slot)

        async def download() -> Forecast:
            return parse_neso(await self._client.get_json(self._path(slot)), zone=zone, requested=slot, now=now)

        forecast = await self.cache.get(key, download, ttl_s=self.refresh_interval.total_seconds(),
                                        max_stale_s=self.max_stale.total_seconds())
        return relabel(forecast, zone)

    async def fetch_measured(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        """Great Britain's measured (``actual``) national intensity up to the last whole hour: the persistence prior.

        ``/intensity/{from}/{to}`` serves at most 14 days per request, so a longer window is asked in
        14-day pieces; the whole is cached for an hour (one set of requests per hour, not per gate).
        Regional forecasts carry no measurements: a regional source raises SourceDataError.
        """
        self.check_zone(zone)
        if self.region_id is not None or self.postcode is not None:
            raise SourceDataError("the NESO regional endpoints publish no measured intensity; the national one does")
        since, until = measured_window(start, end, now)
        key = (self.kind, "measured", self.base_url, since, until)

        async def download() -> Forecast:
            pieces, at = [], since
            while at < until:
                upto = min(until, at + _MAX_RANGE)
                pieces.append(await self._client.get_json(f"/intensity/{at:%Y-%m-%dT%H:%MZ}/{upto:%Y-%m-%dT%H:%MZ}"))
                at = upto
            return parse_neso_actuals(pieces, zone=zone, since=since, until=until)

        forecast = await self.cache.get(key, download, ttl_s=MEASURED_REFRESH.total_seconds(),
                                        max_stale_s=self.max_stale.total_seconds())
        return relabel(forecast, zone)

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "region_id": self.region_id, "postcode": self.postcode, "base_url": self.base_url,
                **self.settings.to_spec()}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> NesoSource:
        return cls(region_id=spec.get("region_id"), postcode=spec.get("postcode"),
                   base_url=spec.get("base_url") or NESO_BASE_URL, settings=HttpSettings.from_spec(spec))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NesoSource) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.kind, self.region_id, self.postcode, self.base_url))

    def __repr__(self) -> str:
        where = f"region_id={self.region_id}" if self.region_id else f"postcode={self.postcode!r}" if self.postcode else ""
        return f"NesoSource({where})"


def parse_neso(payload: Any, *, zone: str, requested: datetime, now: datetime) -> Forecast:
    """A Forecast from a national or regional ``fw48h`` response; malformed payloads raise SourceDataError."""
    where = "the NESO Carbon Intensity API"
    data = payload.get("data") if isinstance(payload, dict) else None
    if isinstance(data, dict):  # regional: {"data": {"regionid": .., "data": [...]}}
        data = data.get("data")
    elif isinstance(data, list) and data and isinstance(data[0], dict) and "regionid" in data[0]:
        data = data[0].get("data")
    if not isinstance(data, list):
        raise SourceDataError(f"{where} returned no 'data' list; the response was not a forecast")
    if not data:
        raise SourceDataError(f"{where} returned an empty forecast for {requested:%Y-%m-%dT%H:%MZ}")
    points: list[tuple[datetime, float]] = []
    recent_error = None
    for i, slot in enumerate(data):
        try:
            start = datetime.fromisoformat(str(slot["from"]).replace("Z", "+00:00"))
            intensity = slot["intensity"]
            value = intensity["forecast"]
        except (KeyError, TypeError, ValueError):
            raise SourceDataError(f"{where}: slot {i} lacks from/intensity.forecast: {str(slot)[:120]}") from None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SourceDataError(f"{where}: slot {i} has a non-numeric forecast {value!r}")
        actual = intensity.get("actual") if isinstance(intensity, dict) else None
        start = utc_moment(start, f"slot {i}", where)
        value = to_float(value, f"slot {i}'s forecast", where)
        if i == 0 and isinstance(actual, int | float) and not isinstance(actual, bool) and value >= 0:
            try:
                error = value / float(actual) - 1.0 if actual > 0 else math.nan
            except OverflowError:
                error = math.nan
            recent_error = error if math.isfinite(error) else None  # a refinement: a freak actual is ignored
        points.append((start, value))
    first = points[0][0]
    if first > requested + _SLOT or first < requested - timedelta(hours=2):
        raise SourceDataError(
            f"{where} returned a forecast starting {first.isoformat()} for {requested.isoformat()}: stale or misdated"
        )
    return Forecast.from_points(
        points, zone=zone, source="neso", signal="average", issued_at=min(as_utc(now), first + _SLOT),
        resolution=_SLOT, error_24h=NESO_ERROR_24H,
        recent_error=recent_error if recent_error is None or recent_error > -1 else None, recent_error_lead_h=0.5,
    )


def parse_neso_actuals(payloads: list[Any], *, zone: str, since: datetime, until: datetime) -> Forecast:
    """A measured Forecast from ``/intensity/{from}/{to}`` responses: each slot's ``actual`` in ``[since, until)``.

    The API answers from the slot that ends at ``from``, and a recent slot may have no ``actual`` yet:
    slots outside the window or without an actual are left out (the series steps over them).
    """
    where = "the NESO Carbon Intensity API"
    points: dict[datetime, float] = {}
    for payload in payloads:
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise SourceDataError(f"{where} returned no 'data' list for a measured range")
        for i, slot in enumerate(data):
            try:
                start = utc_moment(datetime.fromisoformat(str(slot["from"]).replace("Z", "+00:00")), f"slot {i}", where)
                actual = slot["intensity"].get("actual")
            except (KeyError, TypeError, ValueError, AttributeError):
                raise SourceDataError(f"{where}: slot {i} lacks from/intensity: {str(slot)[:120]}") from None
            if isinstance(actual, bool) or not isinstance(actual, int | float) or not since <= start < until:
                continue
            points[start] = to_float(actual, f"slot {i}'s actual", where)
    if not points:
        raise SourceDataError(f"{where} returned no measured intensity between {since.isoformat()} and {until.isoformat()}")
    ordered = sorted(points.items())
    return Forecast.from_points(ordered, zone=zone, source="neso-actual", signal="average", issued_at=until,
                                resolution=_SLOT, measured_until=min(until, ordered[-1][0] + _SLOT), error_24h=0.0)


register_source_kind(NesoSource.kind, NesoSource.from_spec)
