"""ENTSO-E Transparency Platform: a European bidding zone's day-ahead prices (documentType A44).

Request (``GET https://web-api.tp.entsoe.eu/api``): ``documentType=A44``, ``in_Domain`` and
``out_Domain`` = the bidding zone's EIC code, ``periodStart``/``periodEnd`` as ``yyyyMMddHHmm`` in
UTC, and ``securityToken``. The answer is a ``Publication_MarketDocument`` (XML): ``TimeSeries``
with ``currency_Unit.name`` (EUR), ``price_Measure_Unit.name`` (MWH), ``curveType`` and ``Period``\\ s
of ``timeInterval`` (start, end), ``resolution`` (PT60M, PT30M or PT15M) and ``Point``\\ s of
``position`` and ``price.amount``. Curve type A03 leaves out a point that repeats the one before:
it is filled. Where a zone publishes both hourly and quarter-hourly series, the finer one wins.
A refusal or an empty answer is an ``Acknowledgement_MarketDocument`` whose ``Reason`` (code, text)
the error quotes. Shapes as the platform's Web API guide and its published examples describe them.

Zones: ``eic=`` names the bidding zone; otherwise the zone name, either one of :data:`BIDDING_ZONES`
(Electricity Maps-style keys such as ``"DE"``, ``"IT-NO"``, ``"DK-DK1"``) or a raw 16-character EIC
code. The token comes from ``conn_id`` (an Airflow connection of type ``carbon_intensity``, the
token in Password) or ``CARBON_SENSORS_ENTSOE_API_KEY``; it travels in the query string, as the
platform requires, and is never in the spec, the repr, an error message or a log line (httpx's
request log included).

>>> EntsoePrices().eic_for("DE"), EntsoePrices(eic="10YFR-RTE------C").eic_for("my-paris-dc")
('10Y1001A1001A82H', '10YFR-RTE------C')
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from carbon_sensors.errors import ConfigurationError, ForecastCoverageError, SourceDataError, UnknownZoneError
from carbon_sensors.prices import PriceForecast, check_currency
from carbon_sensors.signals._common import utc_moment
from carbon_sensors.signals.cache import ForecastCache
from carbon_sensors.signals.credentials import Credentials
from carbon_sensors.signals.http import HttpSettings
from carbon_sensors.signals.keyed_http import KeyedHttpSource
from carbon_sensors.signals.prices.base import register_price_source_kind
from carbon_sensors.signals.prices.cache import PRICE_CACHE
from carbon_sensors.timeutil import as_utc

__all__ = ["BIDDING_ZONES", "ENTSOE_BASE_URL", "EntsoePrices", "parse_entsoe_prices"]

log = logging.getLogger(__name__)

PROVIDER = "entsoe"
ENTSOE_BASE_URL = "https://web-api.tp.entsoe.eu"
_PATH = "/api"
_WHERE = "the ENTSO-E Transparency Platform"
_EIC = re.compile(r"^[0-9]{2}[A-Z0-9][A-Z0-9-]{12}[A-Z0-9-]$")
_MAX_BYTES = 20_000_000

#: Bidding zones by common name (Electricity Maps zone keys, and ENTSO-E's short names) -> EIC code.
BIDDING_ZONES: dict[str, str] = {
    "DE": "10Y1001A1001A82H", "DE-LU": "10Y1001A1001A82H", "LU": "10Y1001A1001A82H",
    "AT": "10YAT-APG------L", "BE": "10YBE----------2", "BG": "10YCA-BULGARIA-R", "CH": "10YCH-SWISSGRIDZ",
    "CZ": "10YCZ-CEPS-----N", "EE": "10Y1001A1001A39I", "ES": "10YES-REE------0", "FI": "10YFI-1--------U",
    "FR": "10YFR-RTE------C", "GR": "10YGR-HTSO-----Y", "HR": "10YHR-HEP------M", "HU": "10YHU-MAVIR----U",
    "IE": "10Y1001A1001A59C", "IE-SEM": "10Y1001A1001A59C", "LT": "10YLT-1001A0008Q", "LV": "10YLV-1001A00074",
    "NL": "10YNL----------L", "PL": "10YPL-AREA-----S", "PT": "10YPT-REN------W", "RO": "10YRO-TEL------P",
    "RS": "10YCS-SERBIATSOV", "SI": "10YSI-ELES-----O", "SK": "10YSK-SEPS-----K",
    "DK-DK1": "10YDK-1--------W", "DK1": "10YDK-1--------W", "DK-DK2": "10YDK-2--------M", "DK2": "10YDK-2--------M",
    "NO-NO1": "10YNO-1--------2", "NO-NO2": "10YNO-2--------T", "NO-NO3": "10YNO-3--------J",
    "NO-NO4": "10YNO-4--------9", "NO-NO5": "10Y1001A1001A48H",
    "SE-SE1": "10Y1001A1001A44P", "SE-SE2": "10Y1001A1001A45N", "SE-SE3": "10Y1001A1001A46L",
    "SE-SE4": "10Y1001A1001A47J",
    "IT-NO": "10Y1001A1001A73I", "IT-North": "10Y1001A1001A73I", "IT-CNO": "10Y1001A1001A70O",
    "IT-CSO": "10Y1001A1001A71M", "IT-SO": "10Y1001A1001A788", "IT-SIC": "10Y1001A1001A75E",
    "IT-SAR": "10Y1001A1001A74G", "IT-CAL": "10Y1001C--00096J",
}
for _n in range(1, 6):
    BIDDING_ZONES[f"NO{_n}"] = BIDDING_ZONES[f"NO-NO{_n}"]
for _n in range(1, 5):
    BIDDING_ZONES[f"SE{_n}"] = BIDDING_ZONES[f"SE-SE{_n}"]


class _TokenFilter(logging.Filter):
    """Masks ``securityToken=...`` in records of httpx's request log (it logs the full URL at INFO)."""

    _TOKEN = re.compile(r"(securityToken=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(self._TOKEN.sub(r"\1***", str(a)) if "securityToken" in str(a) else a for a in args)
        if isinstance(record.msg, str) and "securityToken" in record.msg:
            record.msg = self._TOKEN.sub(r"\1***", record.msg)
        return True


def _mask_token_in_http_logs() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _TokenFilter) for f in logger.filters):
            logger.addFilter(_TokenFilter())


class EntsoePrices(KeyedHttpSource):
    """Day-ahead prices for a European bidding zone from the ENTSO-E Transparency Platform.

    Day-ahead prices are auction results, published once a day (around 12:45 CET for the next
    day), so ``refresh_interval`` is an hour and ``error_24h`` is 0. ``currency`` is what the
    prices must be quoted in (``"EUR"`` for the euro zones); a document in another currency is refused.
    """

    kind = "entsoe"
    refresh_interval = timedelta(hours=1)
    provider = PROVIDER
    what = _WHERE
    default_base_url = ENTSOE_BASE_URL
    missing_credentials = "a security token and none was found"
    hint_given = "the token given to EntsoePrices(credentials=Credentials(api_key=...))"
    hint_conn = "the security token in the Airflow connection {conn_id!r} (Password field)"
    hint_env = "the environment variable {prefix}API_KEY (or set conn_id= to an Airflow connection)"
    hint = "check {where}; tokens are issued under My Account Settings on transparency.entsoe.eu"

    def __init__(
        self,
        *,
        eic: str | None = None,
        currency: str = "EUR",
        conn_id: str | None = None,
        credentials: Credentials | None = None,
        base_url: str = ENTSOE_BASE_URL,
        settings: HttpSettings | None = None,
        transport: Any = None,
        cache: ForecastCache | None = None,
        max_stale: timedelta = timedelta(hours=12),
    ) -> None:
        if eic is not None and (not isinstance(eic, str) or not _EIC.match(eic)):
            raise ConfigurationError(f"eic must be a 16-character EIC code such as '10Y1001A1001A82H', got {eic!r}")
        super().__init__(conn_id=conn_id, credentials=credentials, base_url=base_url, settings=settings,
                         transport=transport, cache=cache or PRICE_CACHE, max_stale=max_stale)
        self.eic = eic
        self.currency = check_currency(currency)

    def eic_for(self, zone: str) -> str:
        """The EIC code asked for: ``eic=``, else the zone name's bidding zone, else the zone name as an EIC code."""
        self.check_zone(zone)
        return self.eic or BIDDING_ZONES.get(zone) or zone

    def check_zone(self, zone: str) -> None:
        if not isinstance(zone, str) or not zone:
            raise UnknownZoneError(f"zone must be a non-empty name, got {zone!r}")
        if self.eic is None and zone not in BIDDING_ZONES and not _EIC.match(zone):
            raise UnknownZoneError(
                f"{zone!r} is not a bidding zone ENTSO-E prices are known for here ({', '.join(sorted(BIDDING_ZONES)[:8])}, "
                "...); give the source eic= (e.g. '10YFR-RTE------C') or name the zone by its EIC code"
            )

    # -- fetching --------------------------------------------------------------------------------

    def _cache_where(self, zone: str) -> Any:
        return self.eic_for(zone)

    def _cache_options(self) -> tuple[Any, ...]:
        return (self.currency,)

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> PriceForecast:
        """Prices covering ``[start, end]`` as far as they are published (tomorrow's from about 12:45 CET)."""
        eic = self.eic_for(zone)
        start, end, now = as_utc(start, "start"), as_utc(end, "end"), as_utc(now, "now")
        # Whole UTC days from the day before the window (the platform answers in whole local days)
        # to two days after now: one request serves every gate of the zone this hour.
        first = datetime.combine((min(start, now) - timedelta(days=1)).date(), datetime.min.time(), UTC)
        last = datetime.combine((max(end, now) + timedelta(days=2)).date(), datetime.min.time(), UTC)
        # No time slot in the key: published prices stay right, so when a refresh fails the last good
        # answer serves (stale-while-error, up to max_stale) until the refresh succeeds.
        step = self.refresh_interval.total_seconds()
        key = (self.kind, self.base_url, self.conn_id, eic, self.currency, first, last)

        async def download() -> PriceForecast:
            creds, base_url = await self._auth()
            return await self._download_window(zone, eic, first, last, now, creds, base_url)

        prices = await self.cache.get(key, download, ttl_s=step, max_stale_s=self.max_stale.total_seconds())
        if not (prices.starts_s[0] <= end.timestamp() and start.timestamp() < prices.end_s):
            raise ForecastCoverageError(
                f"{_WHERE} has prices for {zone} from {prices.start.isoformat()} to {prices.end.isoformat()}, nothing of "
                f"{start.isoformat()} to {end.isoformat()}; day-ahead prices reach at most the end of tomorrow"
            )
        from dataclasses import replace

        return prices if prices.zone == zone else replace(prices, zone=zone)

    async def _download_window(self, zone: str, eic: str, first: datetime, last: datetime, now: datetime,
                               creds: Credentials, base_url: str) -> PriceForecast:
        _mask_token_in_http_logs()
        params = {"documentType": "A44", "in_Domain": eic, "out_Domain": eic,
                  "periodStart": first.strftime("%Y%m%d%H%M"), "periodEnd": last.strftime("%Y%m%d%H%M"),
                  "securityToken": creds.api_key or ""}
        from carbon_sensors.errors import SourceError
        from carbon_sensors.signals._common import scrubbed

        try:
            status, text = await self._client(base_url).get_text(
                _PATH, params, headers={"Accept": "application/xml, text/xml"}, pass_statuses=frozenset({400, 404}))
        except SourceError as exc:
            raise scrubbed(exc, creds.secrets()) from None
        return self._parsed(base_url, creds, parse_entsoe_prices, text, zone=zone, eic=eic, now=now,
                            currency=self.currency, status=status)

    # -- spec ------------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        return self._spec(eic=self.eic, currency=self.currency)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> EntsoePrices:
        return cls(eic=spec.get("eic"), currency=spec.get("currency") or "EUR", **cls._spec_kwargs(spec))

    def __repr__(self) -> str:
        where = f"eic={self.eic!r}" if self.eic else "zone from the zone name"
        conn = f", conn_id={self.conn_id!r}" if self.conn_id else ""
        return f"EntsoePrices({where}, currency={self.currency!r}{conn})"


# -- parsing (pure) --------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: Any, name: str) -> Any:
    return next((c for c in element if _local(c.tag) == name), None)


def _children(element: Any, name: str) -> list[Any]:
    return [c for c in element if _local(c.tag) == name]


def _text(element: Any, name: str) -> str | None:
    child = _child(element, name)
    return None if child is None or child.text is None else child.text.strip()


def _moment(value: str | None, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat((value or "").replace("Z", "+00:00"))
    except ValueError:
        raise SourceDataError(f"{_WHERE}: {what} has a bad timestamp {str(value)[:40]!r}") from None
    return utc_moment(moment, what, _WHERE)


_RESOLUTION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?$")


def _resolution(value: str | None) -> int:
    found = _RESOLUTION.match(value or "")
    seconds = (int(found.group(1) or 0) * 3600 + int(found.group(2) or 0) * 60) if found else 0
    if not 0 < seconds <= 86400 or 86400 % seconds:
        raise SourceDataError(f"{_WHERE}: resolution {value!r} is not one a price curve uses (PT15M, PT30M, PT60M)")
    return seconds


def acknowledgement_reason(root: Any) -> str:
    """``"<code>: <text>"`` of an Acknowledgement_MarketDocument's Reason(s)."""
    reasons = [f"{_text(r, 'code') or '?'}: {_text(r, 'text') or 'no reason given'}" for r in _children(root, "Reason")]
    return "; ".join(reasons) or "no reason given"


def parse_entsoe_prices(
    text: str, *, zone: str, eic: str, now: datetime, currency: str = "EUR", status: int = 200,
) -> PriceForecast:
    """A PriceForecast from an A44 ``Publication_MarketDocument``; an acknowledgement or a bad document raises SourceDataError."""
    import xml.etree.ElementTree as ET

    now = as_utc(now, "now")
    if len(text) > _MAX_BYTES:
        raise SourceDataError(f"{_WHERE} answered {len(text)} characters for {zone}; ask for a shorter period")
    if "<!DOCTYPE" in text[:2000] or "<!ENTITY" in text:
        raise SourceDataError(f"{_WHERE} answered a document with a DOCTYPE or entities; refused, it is not an A44 document")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise SourceDataError(f"{_WHERE} answered malformed or truncated XML ({exc}) for {zone} (HTTP {status})") from None
    kind = _local(root.tag)
    if kind == "Acknowledgement_MarketDocument":
        reason = acknowledgement_reason(root)
        if "No matching data" in reason:
            raise SourceDataError(
                f"{_WHERE} has no day-ahead prices for {zone} ({eic}) in the period asked ({reason}); check the "
                "zone's EIC code, or the prices are not published yet (about 12:45 CET for the next day)"
            )
        raise SourceDataError(f"{_WHERE} refused the request for {zone} ({eic}), HTTP {status}: {reason}; "
                              "check the zone's EIC code and the period")
    if kind != "Publication_MarketDocument":
        raise SourceDataError(f"{_WHERE} answered a {kind[:60]!r} document for {zone}, not a Publication_MarketDocument")
    if status >= 400:
        raise SourceDataError(f"{_WHERE} answered HTTP {status} for {zone} ({eic}); check the zone's EIC code")
    doc_type = _text(root, "type")
    if doc_type not in (None, "A44"):
        raise SourceDataError(f"{_WHERE} answered document type {doc_type!r} for {zone}, not A44 (day-ahead prices)")
    series = []
    for i, ts in enumerate(_children(root, "TimeSeries")):
        what = f"TimeSeries {i + 1}"
        found_currency = _text(ts, "currency_Unit.name")
        if found_currency is not None and found_currency != currency:
            raise SourceDataError(
                f"{_WHERE} quotes {zone} in {found_currency}, not {currency}; prices are never converted: "
                f"pass currency={found_currency!r} to the source (and state cost caps in {found_currency})"
            )
        unit = _text(ts, "price_Measure_Unit.name")
        if unit is not None and unit != "MWH":
            raise SourceDataError(f"{_WHERE}: {what} for {zone} is priced per {unit!r}, not per MWH")
        fill = _text(ts, "curveType") == "A03"
        sequence = _text(ts, "classificationSequence_AttributeInstanceComponent.position")
        rank = int(sequence) if sequence and sequence.isdigit() else 1
        for period in _children(ts, "Period"):
            interval = _child(period, "timeInterval")
            if interval is None:
                raise SourceDataError(f"{_WHERE}: {what} has a Period without a timeInterval")
            p_start = _moment(_text(interval, "start"), f"{what}'s period start")
            p_end = _moment(_text(interval, "end"), f"{what}'s period end")
            step = _resolution(_text(period, "resolution"))
            span = (p_end - p_start).total_seconds()
            if span <= 0 or span % step:
                raise SourceDataError(f"{_WHERE}: {what}'s period {p_start:%Y-%m-%dT%H:%MZ} to {p_end:%Y-%m-%dT%H:%MZ} "
                                      f"is not a whole number of {step // 60}-minute steps")
            count = int(span // step)
            by_position: dict[int, float] = {}
            for point in _children(period, "Point"):
                raw_pos, raw_price = _text(point, "position"), _text(point, "price.amount")
                if raw_pos is None or not raw_pos.isdigit() or not 1 <= int(raw_pos) <= count:
                    raise SourceDataError(f"{_WHERE}: {what} has a point at position {raw_pos!r}, outside 1..{count}")
                moment = p_start + timedelta(seconds=(int(raw_pos) - 1) * step)
                try:
                    price = float(raw_price or "")
                except ValueError:
                    price = math.nan
                if not math.isfinite(price):
                    raise SourceDataError(f"{_WHERE}: {what} has price {raw_price!r} at {moment:%Y-%m-%dT%H:%MZ} for {zone}")
                if int(raw_pos) in by_position:
                    raise SourceDataError(f"{_WHERE}: {what} has two points at {moment:%Y-%m-%dT%H:%MZ}")
                by_position[int(raw_pos)] = price
            if not by_position:
                continue
            values: list[float] = []
            for position in range(1, count + 1):
                if position in by_position:
                    values.append(by_position[position])
                elif fill and values:
                    values.append(values[-1])  # A03: an omitted point repeats the one before
                else:
                    moment = p_start + timedelta(seconds=(position - 1) * step)
                    raise SourceDataError(
                        f"{_WHERE}: {what} has no price at {moment:%Y-%m-%dT%H:%MZ} for {zone} (curve type "
                        f"{_text(ts, 'curveType') or 'A01'} leaves no point out)"
                    )
            series.append((step, rank, p_start.timestamp(), values))
    if not series:
        raise SourceDataError(f"{_WHERE} answered a document without prices for {zone} ({eic})")
    grid = math.gcd(*(s[0] for s in series))
    slots: dict[float, float] = {}
    for step, _, first_s, values in sorted(series, key=lambda s: (s[0], s[1])):  # finest, then first sequence, wins
        for k, value in enumerate(values):
            for j in range(step // grid):
                slots.setdefault(first_s + k * step + j * grid, value)
    runs: list[list[float]] = []
    for start_s in sorted(slots):
        if runs and start_s - runs[-1][-1] == grid:
            runs[-1].append(start_s)
        else:
            runs.append([start_s])
    # Where a day is missing, the unbroken run that holds now (else the next one, else the last) serves.
    now_s = now.timestamp()
    starts = next((r for r in runs if r[0] <= now_s < r[-1] + grid), None) or \
        next((r for r in runs if r[0] > now_s), runs[-1])
    if len(runs) > 1:
        log.info("%s: the prices for %s have gaps; using %s to %s", _WHERE, zone,
                 datetime.fromtimestamp(starts[0], UTC).isoformat(), datetime.fromtimestamp(starts[-1] + grid, UTC).isoformat())
    created = _text(root, "createdDateTime")
    issued_at = min(now, _moment(created, "createdDateTime")) if created else now
    return PriceForecast(zone=zone, source=PROVIDER, currency=currency, issued_at=issued_at, starts_s=tuple(starts),
                         values=tuple(slots[s] for s in starts), end_s=starts[-1] + grid, error_24h=0.0)


register_price_source_kind(EntsoePrices.kind, EntsoePrices.from_spec)
