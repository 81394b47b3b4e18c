"""Fixtures for the people tests: a private database with the real schema, the SMTP sink with
`smtp_default` (env connection) pointing at it, and the pages' configuration for that database.

Everything runs in-process on free ports or in a database of this session's own, so these
tests never disturb the shared stack or each other.
"""

from __future__ import annotations

import dataclasses
import json
from email import policy
from email.parser import BytesParser

import pytest

from tests.support.ports import free_port
from tests.support.postgres import private_database

from wrapped_dev.fakes.smtp_sink import start_sink

PUBLIC_URL = "http://wrapped.test"


@pytest.fixture(scope="session")
def people_db(postgres):
    """DSN of a private database on the warehouse's server with the real schema.sql applied."""
    with private_database(postgres.dsn, "wrapped_people_test", schema=True) as (_, dsn):
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
