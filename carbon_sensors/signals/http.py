"""HTTP plumbing shared by live sources: bounded timeouts and retries, Retry-After, errors mapped at the boundary.

httpx errors never leave this module: they become :class:`~carbon_sensors.errors.SourceUnavailableError`
(timeouts, refused connections, 5xx and 429 after bounded retries),
:class:`~carbon_sensors.errors.SourceAuthError` (401/403, naming the connection to fix) or
:class:`~carbon_sensors.errors.SourceDataError` (other 4xx, malformed or truncated JSON). Messages
never contain credentials: only the path, never headers or query strings with keys.

>>> HttpSettings().read_timeout_s
20.0
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from carbon_sensors.errors import ConfigurationError, SourceAuthError, SourceDataError, SourceUnavailableError

__all__ = ["HttpClient", "HttpSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Timeouts (seconds) and retry bounds for one source. Every wait is bounded."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 20.0
    max_retries: int = 3
    backoff_s: float = 0.5
    max_retry_after_s: float = 60.0

    def to_spec(self) -> dict[str, float]:
        """JSON-able form, for a source's spec."""
        return {"connect_timeout_s": self.connect_timeout_s, "read_timeout_s": self.read_timeout_s,
                "max_retries": self.max_retries, "backoff_s": self.backoff_s, "max_retry_after_s": self.max_retry_after_s}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> HttpSettings:
        """Settings from a source spec; missing keys take the defaults."""
        defaults = cls()
        return cls(**{k: type(getattr(defaults, k))(spec[k]) for k in defaults.to_spec() if spec.get(k) is not None})

    def __post_init__(self) -> None:
        if min(self.connect_timeout_s, self.read_timeout_s) <= 0 or self.max_retries < 0 or self.backoff_s < 0:
            raise ConfigurationError("timeouts must be positive, retries and backoff zero or more")


class HttpClient:
    """One source's HTTP client: ``await client.get_json(path, params)`` (or ``get_text``); lazily opens an httpx.AsyncClient."""

    def __init__(
        self,
        base_url: str,
        *,
        what: str,
        settings: HttpSettings | None = None,
        transport: Any = None,
        credentials_hint: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.what, self.settings, self.transport = what, settings or HttpSettings(), transport
        self.credentials_hint = credentials_hint
        self._client: Any = None
        self._loop: Any = None  # a weak reference to the loop the client's connections belong to

    def _http(self) -> Any:
        import weakref

        import httpx

        loop = asyncio.get_running_loop()
        # Sync callers (the CLI, the run recorder, Prefect) run each call in a new loop; pooled
        # connections of a closed loop cannot be reused, so each loop gets its own client.
        if self._client is None or self._client.is_closed or self._loop is None or self._loop() is not loop:
            timeout = httpx.Timeout(self.settings.read_timeout_s, connect=self.settings.connect_timeout_s)
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=self.transport,
                                             headers={"Accept": "application/json"}, follow_redirects=False,
                                             verify=_ssl_context())
            self._loop = weakref.ref(loop)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def get_json(self, path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        where = f"{self.what} ({self.base_url}{path})"
        response = await self._get(path, params, headers)
        try:
            return response.json()
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder goes
            raise SourceDataError(f"{where} returned malformed or truncated JSON ({len(response.content)} bytes)") from None

    async def get_text(
        self, path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
        *, pass_statuses: frozenset[int] = frozenset(),
    ) -> tuple[int, str]:
        """``(status, body)`` of a GET, with the same retries and error mapping as :meth:`get_json`.

        A 4xx status in ``pass_statuses`` is returned rather than raised, for APIs (ENTSO-E) that
        explain a refusal in a document of their own.
        """
        response = await self._get(path, params, headers, pass_statuses=pass_statuses)
        return response.status_code, response.text

    async def _get(self, path: str, params: dict[str, Any] | None, headers: dict[str, str] | None,
                   *, pass_statuses: frozenset[int] = frozenset()) -> Any:
        import httpx

        where = f"{self.what} ({self.base_url}{path})"
        failure: Exception | None = None
        for attempt in range(self.settings.max_retries + 1):
            started = time.monotonic()
            try:
                # httpx's read timeout bounds each read, not the whole answer: a server dripping a byte at a
                # time would hold the gate for ever. One attempt may take connect + 3 x read timeout in all.
                response = await asyncio.wait_for(self._http().get(path, params=params, headers=headers),
                                                  timeout=self.settings.connect_timeout_s + 3 * self.settings.read_timeout_s)
            except TimeoutError:
                failure = SourceUnavailableError(
                    f"{where} sent its answer too slowly (more than "
                    f"{self.settings.connect_timeout_s + 3 * self.settings.read_timeout_s:g} s in all); "
                    "it may be overloaded: the gate falls back as on_source_error says"
                )
            except httpx.TimeoutException as exc:
                failure = SourceUnavailableError(
                    f"{where} did not answer within {self.settings.read_timeout_s:g} s ({type(exc).__name__}); "
                    "it may be down: the gate falls back as on_source_error says"
                )
            except httpx.HTTPError as exc:  # refused, reset, truncated bodies (RemoteProtocolError), ...
                failure = SourceUnavailableError(f"{where} failed: {type(exc).__name__}; check the URL and the network")
            else:
                status = response.status_code
                if status in (401, 403):
                    raise SourceAuthError(
                        f"{where} refused the credentials (HTTP {status}); {self.credentials_hint or 'check the API key'}"
                    )
                if status == 429:
                    delay = _retry_after(response.headers.get("Retry-After"))
                    if delay is None or delay > self.settings.max_retry_after_s or attempt == self.settings.max_retries:
                        raise SourceUnavailableError(
                            f"{where} is rate-limiting (HTTP 429, retry after {delay if delay is not None else '?'} s); "
                            "raise the cache TTL or your plan's quota"
                        )
                    await asyncio.sleep(delay + random.uniform(0, self.settings.backoff_s))
                    continue
                if status >= 500:
                    failure = SourceUnavailableError(f"{where} answered HTTP {status} after {attempt + 1} attempt(s)")
                elif status >= 400 and status not in pass_statuses:
                    raise SourceDataError(f"{where} answered HTTP {status}: {response.text[:200]!r}; check the zone or region")
                else:
                    return response
            log.debug("%s: attempt %d failed after %.2f s", where, attempt + 1, time.monotonic() - started)
            if attempt < self.settings.max_retries:
                await asyncio.sleep(self.settings.backoff_s * 2**attempt * random.uniform(0.5, 1.5))
        assert failure is not None
        raise failure


@lru_cache(maxsize=1)
def _ssl_context() -> Any:
    """One verified SSL context per process: building one reads the CA bundle (~18 ms on the event loop)."""
    import ssl

    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())
