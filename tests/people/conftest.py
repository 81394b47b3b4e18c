"""Fixtures for the people tests: a private database with the real schema, the SMTP sink with
`smtp_default` (env connection) pointing at it, and the pages' configuration for that database.

Everything runs in-process on free ports or in a database of this session's own, so these
tests never disturb the shared stack or each other.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import closing
from email import policy
from email.parser import BytesParser

import psycopg2
import pytest
import yaml

from tests.support.ports import free_port
from tests.support.postgres import private_database

from wrapped_dev.config import REPO_ROOT
from wrapped_dev.fakes.smtp_sink import start_sink

PUBLIC_URL = "http://wrapped.test"
MARTS_DIR = REPO_ROOT / "dbt_project" / "models" / "marts"


def marts_stand_ins() -> str:
    """DDL for every dbt mart (all are tables) with exactly its contract's columns and types, in `marts`."""
    statements = ["create schema if not exists marts;"]
    for path in sorted(MARTS_DIR.glob("*.yml")):
        for model in yaml.safe_load(path.read_text())["models"]:
            body = ", ".join(f'"{c["name"]}" {c["data_type"]}' for c in model["columns"])
            statements.append(f'create table marts."{model["name"]}" ({body});')
    return "\n".join(statements)


@pytest.fixture(scope="session")
def people_db(postgres):
    """DSN of a private database on the warehouse's server: the real schema.sql, and stand-ins of
    the dbt marts (empty tables with the contracts' columns)."""
    with private_database(postgres.dsn, "wrapped_people_test", schema=True) as (_, dsn):
        with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
            cur.execute(marts_stand_ins())
        yield dsn


class Mailbox:
    """The .eml files the sink received, parsed."""

    def __init__(self, directory):
        self.directory = directory

    def messages(self) -> list:
        return [BytesParser(policy=policy.default).parsebytes(p.read_bytes())
                for p in sorted(self.directory.glob("*.eml"))]

    def to(self, address: str) -> list:
        return [m for m in self.messages() if address.lower() in str(m["To"]).lower()]


@pytest.fixture
def mailbox(tmp_path, monkeypatch) -> Mailbox:
    """The SMTP sink on a free port, `smtp_default` pointing at it; yields its mailbox."""
    port = free_port()
    directory = tmp_path / "mail"
    controller = start_sink(directory, "127.0.0.1", port, 0)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "Weekly Wrapped <wrapped@localhost>",
                  "timeout": 10, "retry_limit": 0}}))
    yield Mailbox(directory)
    controller.stop()


@pytest.fixture
def people_config(settings, people_db):
    """The pages' configuration (OnboardingConfig) on the private database, links to PUBLIC_URL."""
    return dataclasses.replace(settings.onboarding, dsn=people_db, public_url=PUBLIC_URL)
