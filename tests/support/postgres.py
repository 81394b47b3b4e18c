"""Throwaway databases on a shared Postgres server, so tests run beside the stack's other users.

A test creates a database with a unique name through the server's admin DSN (any
database the role may connect to), works in it, and drops it afterwards (with force:
a consumer or a pool may still hold connections).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import psycopg2
import psycopg2.errors

from tests.support import unique


def dsn_for(base_dsn: str, database: str) -> str:
    """`base_dsn` (key=value form) pointed at another database on the same server."""
    parts = [p for p in base_dsn.split() if not p.startswith("dbname=")]
    return " ".join(parts + [f"dbname={database}"])


def _admin(admin_dsn: str):
    conn = psycopg2.connect(admin_dsn, connect_timeout=10)
    conn.autocommit = True
    return conn


def create_database(admin_dsn: str, name: str, replace: bool = False) -> str:
    """Create database `name` (dropping an old one first if `replace`); returns its DSN."""
    conn = _admin(admin_dsn)
    try:
        with conn.cursor() as cur:
            if replace:
                cur.execute(f'drop database if exists "{name}" with (force)')
            cur.execute(f'create database "{name}"')
    finally:
        conn.close()
    return dsn_for(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database `name` if it exists, closing whatever is still connected to it."""
    conn = _admin(admin_dsn)
    try:
        with conn.cursor() as cur:
            # FORCE cannot end a superuser's backend: an autovacuum worker still busy with the
            # rows just written (a million plays in a benchmark). It ends soon; try again.
            deadline = time.monotonic() + 60
            while True:
                try:
                    cur.execute(f'drop database if exists "{name}" with (force)')
                    return
                except psycopg2.errors.InsufficientPrivilege:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
    finally:
        conn.close()


@contextmanager
def private_database(admin_dsn: str, prefix: str = "wrapped_test", schema: bool = False) -> Iterator[tuple[str, str]]:
    """A fresh database of the caller's own: yields (name, dsn); dropped afterwards.

    `schema=True` applies the platform's tables (raw, ops, app) as the product does.
    """
    name = unique(prefix)
    dsn = create_database(admin_dsn, name)
    try:
        if schema:
            from weekly_wrapped import db

            db.apply_schema(dsn)
        yield name, dsn
    finally:
        drop_database(admin_dsn, name)


def sql(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    """Run one statement in autocommit; its rows, if it returns any."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()
