"""Where API keys come from: an Airflow Connection (``conn_id``) or environment variables; never a spec.

Sources keep only a ``conn_id`` in their spec (trigger kwargs are stored in plain text) and resolve
credentials when they fetch: through a resolver registered by a framework adapter (the Airflow
adapter registers one that reads Connections asynchronously in the triggerer), or, without a
``conn_id``, from ``CARBON_SENSORS_<PROVIDER>_API_KEY`` / ``_USERNAME`` / ``_PASSWORD``.

>>> Credentials(api_key="secret-value")
Credentials(api_key='***', username=None, password=None, base_url=None)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.renames import env_setting

__all__ = ["Credentials", "env_prefix", "register_resolver", "resolve_credentials"]


@dataclass(frozen=True)
class Credentials:
    """An API key, or a username and password, and optionally a base URL. Its repr hides secrets."""

    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    base_url: str | None = None

    def __repr__(self) -> str:
        def hide(value: str | None) -> str:
            return "None" if value is None else "'***'"

        return (f"Credentials(api_key={hide(self.api_key)}, username={self.username!r}, "
                f"password={hide(self.password)}, base_url={self.base_url!r})")

    def secrets(self) -> tuple[str, ...]:
        """The secret values, e.g. for log masking."""
        return tuple(v for v in (self.api_key, self.password) if v)


Resolver = Callable[[str, str], Awaitable[Credentials | None]]
_resolvers: list[Resolver] = []


def register_resolver(resolver: Resolver) -> None:
    """Add a way to turn ``(conn_id, provider)`` into Credentials (None: not mine). Idempotent."""
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def env_prefix(provider: str) -> str:
    """``CARBON_SENSORS_<PROVIDER>_`` with the provider upper-cased, dashes as underscores."""
    return "CARBON_SENSORS_" + provider.upper().replace("-", "_") + "_"


async def resolve_credentials(provider: str, conn_id: str | None) -> Credentials:
    """The credentials for ``provider``: from the connection ``conn_id``, or else from the environment."""
    if conn_id:
        for resolver in _resolvers:
            found = await resolver(conn_id, provider)
            if found is not None:
                return found
        raise ConfigurationError(
            f"no connection {conn_id!r} could be read for {provider}; create it (conn type 'carbon_intensity') "
            f"or leave conn_id empty and set {env_prefix(provider)}API_KEY"
        )
    prefix = env_prefix(provider)
    return Credentials(
        api_key=env_setting(prefix + "API_KEY"),
        username=env_setting(prefix + "USERNAME"),
        password=env_setting(prefix + "PASSWORD"),
        base_url=env_setting(prefix + "BASE_URL"),
    )
