"""The warehouse: one way to open a transaction, and our own tables (raw, ops, app) created once.

dbt owns the `staging`, `intermediate` and `marts` schemas; `sql/schema.sql` owns the rest.
"""

from __future__ import annotations

import hashlib
import threading
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


class SharedConnection:
    """One autocommit connection for a process's threads, one statement at a time: for statements
    made so often that a connection each (about 10 ms) would be most of their cost. Opened on first
    use, and again after it broke (psycopg2 marks a lost connection closed)."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.lock = threading.Lock()
        self.conn = None

    def query(self, sql: str, params: dict | tuple) -> list[tuple] | None:
        """The statement's rows (None when it returns none)."""
        with self.lock:
            if self.conn is None or self.conn.closed:
                self.conn = connect(self.dsn)
                self.conn.autocommit = True
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None

    def close(self) -> None:
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None


def apply_schema(dsn: str) -> None:
    """Create the raw/ops/app tables; idempotent, and safe when several processes do it at once.

    A warehouse already at this schema (ops.schema_applied holds the file's hash) is left alone:
    `alter table ... add column if not exists` takes an exclusive lock on its table even when the
    column exists, so a consumer restarting beside a dbt build queued behind dbt's reads of
    raw.plays, and every later reader behind it. Drop ops.schema_applied to apply the file again.
    """
    schema_sql = SCHEMA_SQL.read_text()
    sha256 = hashlib.sha256(schema_sql.encode()).hexdigest()
    with transaction(dsn) as cur:
        cur.execute("select pg_advisory_xact_lock(hashtext('weekly_wrapped.schema'))")
        cur.execute("select to_regclass('ops.schema_applied') is not null")
        if cur.fetchone()[0]:
            cur.execute("select sha256 from ops.schema_applied")
            if cur.fetchone() == (sha256,):
                return
        cur.execute(schema_sql)
        cur.execute("insert into ops.schema_applied (sha256, applied_at) values (%s, now()) "
                    "on conflict (singleton) do update set sha256 = excluded.sha256, applied_at = now()",
                    (sha256,))
