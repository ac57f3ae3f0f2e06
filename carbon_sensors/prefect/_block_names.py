"""How a source's ``conn_id`` names a Prefect block, shared by the gate settings and the blocks modules."""

from __future__ import annotations

import re

__all__ = ["BLOCK_NAME", "BLOCK_PREFIX"]

#: A source's ``conn_id`` that names a Prefect block rather than an Airflow connection. Airflow
#: connection ids cannot hold a colon, so the two never collide.
BLOCK_PREFIX = "prefect-block:"
#: Prefect's own rule for block document names.
BLOCK_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
