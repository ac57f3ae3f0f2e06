"""What the sources behind an API key or a login share: credentials, clients, cached fetches, scrubbed errors.

A :class:`KeyedHttpSource` subclass says which credentials it needs and where a user finds them
(``credential_fields`` and the ``hint_*`` texts), how a request is signed (:meth:`_headers`, or a
:meth:`_get` of its own), what its cache key holds (:meth:`_cache_where`, :meth:`_cache_options`)
and how one forecast is downloaded (:meth:`_download`). Everything else here is the same for every
vendor: the key is resolved when fetching (never stored in the spec), one HTTP client serves each
base URL, a secret a server echoes back never reaches an error message, and two sources with the
same spec are equal and share their cache entries.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from carbon_sensors.errors import ConfigurationError, SourceAuthError, SourceError
from carbon_sensors.forecast import Forecast
from carbon_sensors.signals._common import (
    MEASURED_REFRESH,
    check_base_url,
    coordinate,
    measured_window,
    relabel,
    scrubbed,
)
from carbon_sensors.signals.cache import DEFAULT_CACHE, ForecastCache
from carbon_sensors.signals.credentials import Credentials, env_prefix, resolve_credentials
from carbon_sensors.signals.http import HttpClient, HttpSettings
from carbon_sensors.timeutil import as_utc

__all__ = ["KeyedHttpSource", "check_horizon_hours", "coordinate_pair"]


def check_horizon_hours(value: Any) -> int:
    """A forecast horizon as whole hours from 1 to 72."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 72:
        raise ConfigurationError(f"horizon_hours must be a whole number of hours from 1 to 72, got {value!r}")
    return value


def coordinate_pair(names: tuple[str, str], lat: Any, lon: Any) -> tuple[float | None, float | None]:
    """A latitude and a longitude (named ``names`` in messages), both or neither."""
    if (lat is None) != (lon is None):
        raise ConfigurationError(f"give both {names[0]} and {names[1]}, or neither")
    if lat is None:
        return None, None
    return coordinate(lat, names[0], 90.0), coordinate(lon, names[1], 180.0)


class KeyedHttpSource:
    """The shared part of a credentialed HTTP source; subclasses add their vendor's requests and parsing."""

    kind: str
    refresh_interval: timedelta
    #: The provider name credentials are looked up under (``CARBON_SENSORS_<PROVIDER>_...``).
    provider: str
    #: The API, as messages name it: "the Electricity Maps API".
    what: str
    default_base_url: str
    #: The Credentials fields a request needs, and what the error says when one is missing.
    credential_fields: tuple[str, ...] = ("api_key",)
    missing_credentials: str = "an API key and none was found"
    #: Where the credentials are: given to the constructor, in a connection ({conn_id!r}), in the
    #: environment ({prefix}); and the advice around it ({where}).
    hint_given: str
    hint_conn: str
    hint_env: str
    hint: str = "check {where}"

    def __init__(
        self,
        *,
        conn_id: str | None,
        credentials: Credentials | None,
        base_url: str,
        settings: HttpSettings | None,
        transport: Any,
        cache: ForecastCache | None,
        max_stale: timedelta,
    ) -> None:
        if conn_id is not None and (not isinstance(conn_id, str) or not conn_id.strip()):
            raise ConfigurationError(f"conn_id must be an Airflow connection id, got {conn_id!r}")
        if credentials is not None and not isinstance(credentials, Credentials):
            raise ConfigurationError("credentials must be a carbon_sensors.signals.credentials.Credentials")
        self.conn_id = conn_id
        self.base_url = check_base_url(base_url)
        self.settings = settings or HttpSettings()
        self.cache = cache or DEFAULT_CACHE
        self.max_stale = max_stale
        self._credentials = credentials  # for tests and programmatic use; never in the spec or the repr
        self._transport = transport
        self._clients: dict[str, HttpClient] = {}

    # -- credentials and HTTP --------------------------------------------------------------------

    def _hint(self) -> str:
        if self._credentials is not None:
            where = self.hint_given
        elif self.conn_id:
            where = self.hint_conn.format(conn_id=self.conn_id)
        else:
            where = self.hint_env.format(prefix=env_prefix(self.provider))
        return self.hint.format(where=where)

    async def _auth(self) -> tuple[Credentials, str]:
        """The credentials (resolved now, never kept) and the base URL they point at."""
        creds = self._credentials or await resolve_credentials(self.provider, self.conn_id)
        if not all(getattr(creds, name) for name in self.credential_fields):
            raise SourceAuthError(f"{self.what} needs {self.missing_credentials}; {self._hint()}")
        return creds, check_base_url(creds.base_url) if creds.base_url else self.base_url

    def _client(self, base_url: str) -> HttpClient:
        client = self._clients.get(base_url)
        if client is None:
            client = self._clients[base_url] = HttpClient(
                base_url, what=self.what, settings=self.settings, transport=self._transport, credentials_hint=self._hint()
            )
        return client

    def _headers(self, creds: Credentials) -> dict[str, str]:
        """The headers that sign a request; a source that logs in overrides :meth:`_get` instead."""
        raise NotImplementedError

    async def _request(
        self, base_url: str, creds: Credentials, path: str, params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None, *, secrets: tuple[str, ...] = (),
    ) -> Any:
        """GET JSON; an error's message has the credentials and ``secrets`` replaced by ``***``."""
        try:
            return await self._client(base_url).get_json(path, params, headers=headers)
        except SourceError as exc:
            raise scrubbed(exc, (*creds.secrets(), *secrets)) from None

    async def _get(self, base_url: str, creds: Credentials, path: str, params: dict[str, str]) -> Any:
        return await self._request(base_url, creds, path, params, self._headers(creds))

    def _secrets(self, base_url: str, creds: Credentials) -> tuple[str, ...]:
        """Every secret an error message might quote: the credentials, and any token they bought."""
        return creds.secrets()

    def _parsed(self, base_url: str, creds: Credentials, parse: Any, /, *args: Any, **kwargs: Any) -> Forecast:
        """``parse(*args, **kwargs)``; a payload quoted in its error could hold an echoed secret, so it is scrubbed."""
        try:
            return parse(*args, **kwargs)
        except SourceError as exc:
            raise scrubbed(exc, self._secrets(base_url, creds)) from None

    # -- fetching --------------------------------------------------------------------------------

    def _cache_where(self, zone: str) -> Any:
        """Where a forecast is for, as the cache key holds it."""
        raise NotImplementedError

    def _cache_options(self) -> tuple[Any, ...]:
        """The source's settings that change what a request returns."""
        raise NotImplementedError

    async def _download(self, zone: str, now: datetime, creds: Credentials, base_url: str) -> Forecast:
        """One forecast from the API (the cache decides when)."""
        raise NotImplementedError

    def check_zone(self, zone: str) -> None:
        raise NotImplementedError

    async def fetch(self, zone: str, start: datetime, end: datetime, *, now: datetime) -> Forecast:
        self.check_zone(zone)
        now = as_utc(now, "now")
        step = self.refresh_interval.total_seconds()
        slot = datetime.fromtimestamp(now.timestamp() // step * step, UTC)
        key = (self.kind, self.base_url, self.conn_id, self._cache_where(zone), *self._cache_options(), slot)

        async def download() -> Forecast:
            creds, base_url = await self._auth()
            return await self._download(zone, now, creds, base_url)

        forecast = await self.cache.get(key, download, ttl_s=self.refresh_interval.total_seconds(),
                                        max_stale_s=self.max_stale.total_seconds())
        return relabel(forecast, zone)

    async def _cached_measured(self, zone: str, start: datetime, end: datetime, now: datetime,
                               download: Any) -> Forecast:
        """Measured history for the persistence prior, asked once per zone per hour (deployment-wide).

        The window is moved to whole hours before ``now`` so every gate of the zone asks the same
        question; ``download(zone, start, end, creds, base_url)`` makes the request.
        """
        self.check_zone(zone)
        since, until = measured_window(start, end, now)
        key = (self.kind, "measured", self.base_url, self.conn_id, self._cache_where(zone), *self._cache_options(),
               since, until)

        async def fetch() -> Forecast:
            creds, base_url = await self._auth()
            return await download(zone, since, until, creds, base_url)

        forecast = await self.cache.get(key, fetch, ttl_s=MEASURED_REFRESH.total_seconds(),
                                        max_stale_s=self.max_stale.total_seconds())
        return relabel(forecast, zone)

    # -- spec ------------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        raise NotImplementedError

    def _spec(self, **fields: Any) -> dict[str, Any]:
        """A spec: the kind, the vendor's ``fields``, then the connection, base URL and HTTP settings."""
        return {"kind": self.kind, **fields, "conn_id": self.conn_id, "base_url": self.base_url,
                **self.settings.to_spec()}

    @classmethod
    def _spec_kwargs(cls, spec: dict[str, Any]) -> dict[str, Any]:
        """The constructor keywords :meth:`_spec` wrote: connection, base URL and HTTP settings."""
        return {"settings": HttpSettings.from_spec(spec), "conn_id": spec.get("conn_id"),
                "base_url": spec.get("base_url") or cls.default_base_url}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyedHttpSource) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.to_spec().items())))
