"""The warehouse: one way to open a transaction, and our own tables (raw, ops, app) created once.

dbt owns the `staging`, `intermediate` and `marts` schemas; `sql/schema.sql` owns the rest.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg2
import psycopg2.extensions

SCHEMA_SQL = Path(__file__).resolve().parent / "sql" / "schema.sql"
CONNECT_TIMEOUT_S = 10


def connect(dsn: str, **kwargs) -> psycopg2.extensions.connection:
    """A connection that gives up after 10 s instead of hanging on an unreachable server."""
    return psycopg2.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, **kwargs)


@contextmanager
def transaction(dsn: str) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor in one transaction: committed when the block ends, rolled back if it raises, then closed."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def apply_schema(dsn: str) -> None:
    """Create the raw/ops/app tables; idempotent, and safe when several processes do it at once."""
    with transaction(dsn) as cur:
        cur.execute("select pg_advisory_xact_lock(hashtext('weekly_wrapped.schema'))")
        cur.execute(SCHEMA_SQL.read_text())
