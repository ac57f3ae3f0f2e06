"""Credentials blocks for the carbon-intensity APIs, and the resolver that reads them.

One block type per provider that needs a key (NESO, the embedded profile and files need none):

- :class:`ElectricityMapsCredentials`: an API key (and optionally another base URL);
- :class:`WattTimeCredentials`: a username and a password;
- :class:`CarbonAwareSdkCredentials`: an optional API key for an SDK deployment behind a gateway;
- :class:`EntsoeCredentials`: an ENTSO-E Transparency Platform security token, for the ``entsoe``
  price source: ``price_source={"kind": "entsoe", "block": "entsoe-prod"}``.

Sources name a block, never a key: ``source={"kind": "electricitymaps", "block": "em-prod"}`` (or
``block="em-prod"``). The key is read from the block when the source fetches, so it never appears in
parameters, labels, states, logs or artifacts. Register the types with
``prefect block register -m carbon_sensors.prefect.blocks`` (the ``prefect.collections`` entry point
loads this module too), then create a block in the UI or in code::

    ElectricityMapsCredentials(api_key="...").save("em-prod")

Importing this module registers the block resolver for
:func:`carbon_sensors.signals.credentials.resolve_credentials`.
"""

from __future__ import annotations

import logging

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from carbon_sensors.errors import ConfigurationError, SourceUnavailableError
from carbon_sensors.prefect._block_names import BLOCK_PREFIX
from carbon_sensors.signals.credentials import Credentials, register_resolver

__all__ = ["CarbonAwareSdkCredentials", "ElectricityMapsCredentials", "EntsoeCredentials", "WattTimeCredentials",
           "block_class_for"]

log = logging.getLogger(__name__)


class ElectricityMapsCredentials(Block):
    """An Electricity Maps API key for carbon-sensors' ``electricitymaps`` source."""

    _block_type_name = "Electricity Maps Credentials (carbon-sensors)"
    _block_type_slug = "carbon-sensors-electricitymaps"
    _description = "An Electricity Maps API key, read by carbon-sensors' electricitymaps source when it fetches."
    _documentation_url = "https://pypi.org/project/carbon-sensors/"

    api_key: SecretStr = Field(
        default=...,
        description="The Electricity Maps API key (sent in the auth-token header).",
    )
    base_url: str | None = Field(
        default=None,
        description="Another API base URL (e.g. a proxy); leave empty for https://api.electricitymap.org.",
    )

    def credentials(self) -> Credentials:
        """The key as the source needs it."""
        return Credentials(api_key=self.api_key.get_secret_value() or None, base_url=self.base_url or None)


class WattTimeCredentials(Block):
    """A WattTime username and password for carbon-sensors' ``watttime`` source."""

    _block_type_name = "WattTime Credentials (carbon-sensors)"
    _block_type_slug = "carbon-sensors-watttime"
    _description = "A WattTime login, read by carbon-sensors' watttime source when it fetches."
    _documentation_url = "https://pypi.org/project/carbon-sensors/"

    username: str = Field(default=..., description="The WattTime username.")
    password: SecretStr = Field(default=..., description="The WattTime password.")
    base_url: str | None = Field(
        default=None,
        description="Another API base URL (e.g. a proxy); leave empty for https://api.watttime.org.",
    )

    def credentials(self) -> Credentials:
        """The login as the source needs it."""
        return Credentials(username=self.username or None, password=self.password.get_secret_value() or None,
                           base_url=self.base_url or None)


class CarbonAwareSdkCredentials(Block):
    """An API key for a Carbon Aware SDK deployment behind a gateway (the SDK itself needs none)."""

    _block_type_name = "Carbon Aware SDK Credentials (carbon-sensors)"
    _block_type_slug = "carbon-sensors-carbon-aware-sdk"
    _description = "An API key for a Carbon Aware SDK WebAPI behind a gateway; the source's base_url says where it is."
    _documentation_url = "https://pypi.org/project/carbon-sensors/"

    api_key: SecretStr | None = Field(
        default=None,
        description="The key sent in the source's api_key_header (X-API-Key by default); empty sends none.",
    )

    def credentials(self) -> Credentials:
        """The key as the source needs it (none when empty)."""
        return Credentials(api_key=self.api_key.get_secret_value() or None if self.api_key is not None else None)


class EntsoeCredentials(Block):
    """An ENTSO-E Transparency Platform security token for carbon-sensors' ``entsoe`` price source."""

    _block_type_name = "ENTSO-E Credentials (carbon-sensors)"
    _block_type_slug = "carbon-sensors-entsoe"
    _description = "An ENTSO-E Transparency Platform security token, read by carbon-sensors' entsoe price source."
    _documentation_url = "https://pypi.org/project/carbon-sensors/"

    api_key: SecretStr = Field(
        default=...,
        description="The ENTSO-E security token (sent as the securityToken query parameter, masked in logs).",
    )

    def credentials(self) -> Credentials:
        """The token as the price source needs it."""
        return Credentials(api_key=self.api_key.get_secret_value() or None)


_BLOCKS: dict[str, type[Block]] = {
    "electricitymaps": ElectricityMapsCredentials,
    "watttime": WattTimeCredentials,
    "carbon_aware_sdk": CarbonAwareSdkCredentials,
    "entsoe": EntsoeCredentials,
}


def block_class_for(kind: str) -> type[Block]:
    """The credentials block type for a source kind."""
    try:
        return _BLOCKS[kind]
    except KeyError:
        raise ConfigurationError(
            f"the {kind!r} source takes no credentials block; blocks are for {', '.join(_BLOCKS)}"
        ) from None


async def _resolve(conn_id: str, provider: str) -> Credentials | None:
    """Credentials from the block that ``conn_id`` names (``prefect-block:<name>``); None for other ids."""
    if not conn_id.startswith(BLOCK_PREFIX):
        return None
    name = conn_id[len(BLOCK_PREFIX):]
    cls = block_class_for(provider)
    create = f"{cls.__name__}(...).save({name!r})"
    try:
        block = await cls.aload(name)
    except ValueError as exc:
        # Never quote the exception: a validation error would echo the stored values.
        if "Unable to find block document" in str(exc):
            raise ConfigurationError(
                f"no Prefect block {name!r} of type {cls.get_block_type_slug()!r} exists; create it in the UI "
                f"under Blocks (after `prefect block register -m carbon_sensors.prefect.blocks`) or run {create}"
            ) from None
        raise ConfigurationError(
            f"the Prefect block {name!r} of type {cls.get_block_type_slug()!r} does not load as a "
            f"{cls.__name__} ({type(exc).__name__}); save it again with {create}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the Prefect API is unreachable: a source error, so the gate falls back
        raise SourceUnavailableError(
            f"could not read the Prefect block {name!r} ({type(exc).__name__}); check the Prefect API is reachable"
        ) from None
    return block.credentials()


register_resolver(_resolve)
