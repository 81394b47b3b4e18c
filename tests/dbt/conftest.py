"""One real `dbt build` per session, into a database of its own.

`dbt_built` creates `wrapped_dbt_test` (WRAPPED_DBT_TEST_DATABASE) on the stack's Postgres,
applies the platform's schema.sql, seeds the small listening history of
`listening_history.py`, and runs `dbt build` of dbt_project/ there (models, data tests and
the dbt unit tests), so nothing collides with the shared `wrapped` database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg2.extras
import pytest

import weekly_wrapped
from weekly_wrapped.marts.dbt_runner import Warehouse, dbt_command, dbt_env, default_dbt_bin, run_dbt

from listening_history import seed_listening_history
from tests.support.postgres import create_database

SCHEMA_SQL = Path(weekly_wrapped.__file__).parent / "sql" / "schema.sql"


@dataclass
class DbtRun:
    warehouse: Warehouse
    artifacts_dir: Path
    statuses: dict[str, int]
    connect: object  # () -> psycopg2 connection to the test database
    wrapped_weekly: list[dict] | None = None  # marts.wrapped_weekly right after the build

    def dbt(self, *args: str) -> dict[str, int]:
        """Run another dbt command against the same test database."""
        command = dbt_command(default_dbt_bin(), args, artifacts_dir=self.artifacts_dir)
        return run_dbt(
            command,
            dbt_env(self.warehouse),
            run_results=self.artifacts_dir / "target" / "run_results.json",
        )

    def rows_then_rebuilt_whole(self, table: str, columns: str, order_by: str) -> tuple[list[dict], list[dict]]:
        """marts.<table>'s rows as an incremental build left them, then after `dbt run --full-refresh` of it."""
        query = f"select {columns} from marts.{table} order by {order_by}"
        incremental = self.rows(query)
        self.dbt("run", "--select", table, "--full-refresh")
        return incremental, self.rows(query)

    def rows(self, sql: str, params=()) -> list[dict]:
        with self.connect().cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return [dict(row) for row in cur.fetchall()]


@pytest.fixture(scope="session")
def dbt_test_database(postgres, warehouse) -> Warehouse:
    """The test database, made afresh (an old one is replaced) with the platform's schema.sql;
    kept after the session, to look at what dbt built."""
    name = os.environ.get("WRAPPED_DBT_TEST_DATABASE", "wrapped_dbt_test")
    dsn = create_database(postgres.dsn, name, replace=True)
    conn = warehouse(dsn)
    with conn.cursor() as cur:
        cur.execute(SCHEMA_SQL.read_text())
    return Warehouse(postgres.host, postgres.port, postgres.user, postgres.password, name)


@pytest.fixture(scope="session")
def dbt_built(dbt_test_database: Warehouse, warehouse, tmp_path_factory) -> DbtRun:
    conn = warehouse(_dsn(dbt_test_database))
    seed_listening_history(conn)
    artifacts_dir = tmp_path_factory.mktemp("dbt")
    run = DbtRun(dbt_test_database, artifacts_dir, {}, lambda: conn)
    run.statuses = run.dbt("build")
    run.wrapped_weekly = run.rows("select * from marts.wrapped_weekly")
    return run


def _dsn(w: Warehouse) -> str:
    return f"host={w.host} port={w.port} dbname={w.database} user={w.user} password={w.password}"
