"""The ledger migrates from every earlier schema version, on SQLite and PostgreSQL, keeping every row.

Each database is built from the old schema's own DDL (``tests/fixtures/ledger/v<N>.<dialect>.sql``,
as that version created it, frozen) and rows as it wrote them (``v<N>.rows.json``); then the
current code opens it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

sa = pytest.importorskip("sqlalchemy")

from test_ledger import postgres_url  # noqa: E402, F401 - the fresh-database fixture

from carbon_sensors.ledger import DECISIONS_TABLE, RUNS_TABLE, SCHEMA_VERSION, Ledger  # noqa: E402
from carbon_sensors.records import RunKey  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "ledger"
OLD_VERSIONS = list(range(1, SCHEMA_VERSION))
KEY = ("orchestrator", "dag_id", "task_id", "run_id", "try_number", "map_index")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request, tmp_path):
    if request.param == "sqlite":
        return "sqlite", f"sqlite:///{tmp_path / 'ledger.db'}"
    return "postgresql", request.getfixturevalue("postgres_url")


def build_old_ledger(url: str, dialect: str, version: int) -> list[dict]:
    """Create schema ``version`` from its frozen DDL and insert its rows (runs, and decisions from v3); return the runs."""
    ddl = (FIXTURES / f"v{version}.{dialect}.sql").read_text()
    data = json.loads((FIXTURES / f"v{version}.rows.json").read_text())
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in ddl.split(";"):
            body = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
            if body:
                conn.exec_driver_sql(body)
        conn.execute(sa.text("INSERT INTO carbon_sensors_schema (id, version, migrated_at) VALUES (1, :v, :at)"),
                     {"v": version, "at": data["migrated_at"]})
        for row in data["runs"]:
            columns = ", ".join(row)
            conn.execute(sa.text(f"INSERT INTO {RUNS_TABLE} ({columns}) VALUES ({', '.join(':' + c for c in row)})"), row)
        for row in data.get("decisions", ()):
            columns = ", ".join(row)
            conn.execute(sa.text(f"INSERT INTO {DECISIONS_TABLE} ({columns}) VALUES ({', '.join(':' + c for c in row)})"),
                         row)
    engine.dispose()
    return data["runs"]


def normalised(value):
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        try:
            return datetime.fromisoformat(value).isoformat(timespec="microseconds")
        except ValueError:
            return value
    return value


def test_every_earlier_version_has_its_fixture():
    """A schema change adds the DDL and rows of the version it leaves behind, for both databases."""
    for version in OLD_VERSIONS:
        for name in ("sqlite.sql", "postgresql.sql", "rows.json"):
            assert (FIXTURES / f"v{version}.{name}").is_file(), f"v{version}.{name}"


@pytest.mark.parametrize("version", OLD_VERSIONS)
def test_an_old_ledger_migrates_and_keeps_every_row(backend, tmp_path, version):
    """Opened by the current code, a v1 or v2 ledger is upgraded and every row and value is still there."""
    dialect, url = backend
    rows = build_old_ledger(url, dialect, version)
    with Ledger(url, spool_dir=tmp_path / "spool") as ledger:
        assert ledger.schema_version() == version
        for row in rows:
            record = ledger.get(RunKey(*(row[k] for k in KEY)))  # the first use migrates
            assert record is not None and record.status == row["status"]
        assert ledger.schema_version() == SCHEMA_VERSION
        with ledger.engine.connect() as conn:
            stored = conn.execute(sa.text(f"SELECT * FROM {RUNS_TABLE} ORDER BY id")).mappings().all()
            tables = set(sa.inspect(conn).get_table_names())
        assert DECISIONS_TABLE in tables
        assert len(stored) == len(rows)
        for old, new in zip(rows, stored, strict=True):
            for column, value in old.items():
                got = new[column]
                if isinstance(value, bool) or isinstance(got, bool):
                    got, value = bool(got), bool(value)
                assert normalised(got) == normalised(value), (column, got, value)
        # v2's report columns are filled in from the stored records
        assert stored[0]["total_tokens"] == 1505 and stored[0]["duration_s"] is not None
        assert stored[2]["total_tokens"] == 12
        # and the current queries read the migrated rows (one successful try of nightly.enrich)
        assert len(ledger.durations("airflow", "nightly", "enrich")) == 1
        # a v3 trail is read back whole; the v4 price columns are empty (no price was known then)
        decisions = json.loads((FIXTURES / f"v{version}.rows.json").read_text()).get("decisions", [])
        trail = ledger.decisions(RunKey(*(rows[0][k] for k in KEY))) if decisions else []
        assert [(e.status, e.reason, e.intensity, e.origin) for e in trail] == [
            (d["status"], d["reason"], d["intensity"], d["origin"]) for d in decisions]
        assert all(e.price is None and e.price_currency is None for e in trail)
