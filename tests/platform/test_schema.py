"""The warehouse's own tables (raw, ops, app): applied once per version of `sql/schema.sql`, so a
consumer restarting beside a dbt build does not queue an exclusive lock behind dbt's reads."""

from __future__ import annotations

import psycopg2
import pytest

from weekly_wrapped import db

from tests.support.postgres import private_database, sql


def test_a_warehouse_at_this_schema_is_left_alone_and_a_changed_file_is_applied(postgres, tmp_path, monkeypatch):
    with private_database(postgres.dsn, "wrapped_schema") as (_, dsn):
        db.apply_schema(dsn)
        [(applied,)] = sql(dsn, "select sha256 from ops.schema_applied")

        # A dbt model reading raw.plays holds its share lock while another consumer starts.
        reader = psycopg2.connect(dsn)
        try:
            with reader.cursor() as cur:
                cur.execute("select count(*) from raw.plays")  # the transaction stays open
            impatient = dsn + " options='-c lock_timeout=2000'"
            db.apply_schema(impatient)  # no ALTER TABLE: nothing to wait for

            changed = tmp_path / "schema.sql"
            changed.write_text(db.SCHEMA_SQL.read_text() + "\ncreate table if not exists app.added (id int);\n")
            monkeypatch.setattr(db, "SCHEMA_SQL", changed)
            with pytest.raises(psycopg2.errors.LockNotAvailable):
                db.apply_schema(impatient)  # a new version runs its DDL, and that waits for the reader
        finally:
            reader.close()
        db.apply_schema(dsn)
        [(now_applied,)] = sql(dsn, "select sha256 from ops.schema_applied")
        assert now_applied != applied
        assert sql(dsn, "select to_regclass('app.added') is not null") == [(True,)]
