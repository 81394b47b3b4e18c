"""A way out: every recap carries a signed unsubscribe link and RFC 8058 headers that stop the
e-mails at once, and "delete my data" (confirmed by e-mail) leaves no row in any table of any
schema that carries the user's id. Real Postgres (a private database with the real schema and
stand-ins of the dbt marts), the real recap send through Airflow's SmtpHook to the SMTP sink,
the real Kafka broker for the topics' retention, the pages through FastAPI's TestClient."""

from __future__ import annotations

import json
import re
from contextlib import closing
from datetime import date
from urllib.parse import urlsplit

import psycopg2
import pytest
from fastapi.testclient import TestClient

from tests.recap.recap_helpers import insert_week, make_row
from tests.support import unique
from tests.support.ports import free_port

from weekly_wrapped.recap import store
from weekly_wrapped.recap.job import send_weekly_recap
from weekly_wrapped.users import leaving, links
from weekly_wrapped.users.account_pages import create_account_app

PUBLIC_URL = "http://wrapped.test"  # people_config's public_url (conftest)
FROM = "Weekly Wrapped <wrapped@localhost>"
WEEK = date(2026, 11, 16)
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")


def sql(dsn: str, query: str, params=()) -> list[tuple]:
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def add_user(dsn: str, prefix: str) -> tuple[str, str]:
    """An active user with a confirmed address; returns (user id, address)."""
    user_id = unique(prefix)
    email = f"{user_id}@example.com"
    sql(dsn, "insert into app.users (user_id, display_name, email, time_zone, email_confirmed_at, consent_at) "
             "values (%s, 'Ada', %s, 'Europe/Berlin', now(), now())", (user_id, email))
    return user_id, email


def add_week(dsn: str, user_id: str, week: date = WEEK) -> None:
    with closing(psycopg2.connect(dsn)) as conn, conn:
        insert_week(conn, make_row(user_id=user_id, user_week_id=f"{user_id}|{week}", week_start=week,
                                   week_end=week.replace(day=week.day + 6)))


def send_recap(config, user_id: str, week: date = WEEK) -> dict:
    return send_weekly_recap(config.dsn, user_id, week.isoformat(), gemini=None, from_addr=FROM,
                             link_secret=config.link_secret, public_url=config.public_url)


def status_of(dsn: str, user_id: str) -> str:
    return sql(dsn, "select status from app.users where user_id = %s", (user_id,))[0][0]


def local_path(url: str) -> str:
    """A link from an e-mail as a path of the account app (mounted at /wrapped/account)."""
    assert url.startswith(f"{PUBLIC_URL}/wrapped/account/"), url
    parts = urlsplit(url)
    return parts.path.removeprefix("/wrapped/account") + (f"?{parts.query}" if parts.query else "")


@pytest.fixture
def pages(people_config, kafka):
    app = create_account_app(lambda: people_config, lambda: {"bootstrap.servers": kafka.bootstrap})
    return TestClient(app, raise_server_exceptions=False)


# ---------------------------------------------------------------------------------- unsubscribe

def test_a_delivered_recap_unsubscribes_in_one_click(people_config, people_db, mailbox, pages):
    user_id, email = add_user(people_db, "unsub")
    add_week(people_db, user_id)
    assert send_recap(people_config, user_id)["status"] == "sent"

    [recap] = mailbox.to(email)
    assert recap["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header_url = re.fullmatch(r"<(\S+)>", recap["List-Unsubscribe"]).group(1)
    assert header_url.startswith(f"{PUBLIC_URL}/wrapped/account/unsubscribe?token=")
    text = recap.get_body(("plain",)).get_content()
    html = recap.get_body(("html",)).get_content()
    for body in (text, html):
        assert header_url in body  # the footer's unsubscribe link
        assert f"{PUBLIC_URL}/wrapped/account/delete?token=" in body  # and "delete my data"

    # A GET (a mail scanner, a preview) shows a button and changes nothing.
    page = pages.get(local_path(header_url))
    assert page.status_code == 200 and "<button" in page.text and "Unsubscribe" in page.text
    assert status_of(people_db, user_id) == "active"

    # RFC 8058: the mail client POSTs the one-click body to the header's URL, no cookies, no CSRF token.
    done = pages.post(local_path(header_url), content="List-Unsubscribe=One-Click",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status_code == 200 and "no more recap e-mails" in done.text
    assert status_of(people_db, user_id) == "unsubscribed"

    # At once: the next week is not sent, nor even picked.
    add_week(people_db, user_id, date(2026, 11, 23))
    assert send_recap(people_config, user_id, date(2026, 11, 23))["status"] == "not_active"
    with closing(psycopg2.connect(people_db)) as conn:
        assert user_id not in {u["user_id"] for u in store.active_users(conn)}
    assert len(mailbox.to(email)) == 1


def test_the_unsubscribe_button_works_too(people_config, people_db, pages):
    user_id, _ = add_user(people_db, "unsub-button")
    token = links.sign(people_config.link_secret, "unsubscribe", {"user_id": user_id})
    done = pages.post("/unsubscribe", data={"token": token})
    assert done.status_code == 200
    assert status_of(people_db, user_id) == "unsubscribed"


def test_forged_or_foreign_unsubscribe_links_change_nothing(people_config, people_db, pages):
    user_id, _ = add_user(people_db, "unsub-forged")
    forged = links.sign("not-our-secret", "unsubscribe", {"user_id": user_id})
    foreign = links.sign(people_config.link_secret, "confirm_email", {"user_id": user_id})
    for token in (forged, foreign, "", "x" * 40):
        for response in (pages.get(f"/unsubscribe?token={token}"), pages.post(f"/unsubscribe?token={token}")):
            assert response.status_code == 400 and "not valid" in response.text
    assert status_of(people_db, user_id) == "active"


def test_a_database_failure_is_a_friendly_page(people_config, pages, caplog):
    import dataclasses

    broken = dataclasses.replace(people_config, dsn="host=127.0.0.1 port=1 dbname=nope user=x connect_timeout=2")
    client = TestClient(create_account_app(lambda: broken, lambda: {}), raise_server_exceptions=False)
    token = links.sign(people_config.link_secret, "unsubscribe", {"user_id": "someone"})
    response = client.post(f"/unsubscribe?token={token}")
    assert response.status_code == 503 and "try again" in response.text
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("weekly_wrapped")]
    assert ours and not any(token in line for line in ours)  # logged, without the token


# ------------------------------------------------------------------------------ delete my data

def user_id_tables(dsn: str) -> list[tuple[str, str]]:
    return sql(dsn, """
        select c.table_schema, c.table_name from information_schema.columns c
        join information_schema.tables t using (table_schema, table_name)
        where c.column_name = 'user_id' and t.table_type = 'BASE TABLE' and c.table_schema not in %s
        order by 1, 2""", (SYSTEM_SCHEMAS,))


def synthetic(data_type: str):
    """A value of the type for a NOT NULL column without a default (unique where it could be a key)."""
    if data_type in ("text", "character varying", "character"):
        return unique("x")
    if data_type in ("integer", "bigint", "smallint"):
        return int(unique("")[1:], 16) % 2_000_000_000
    if data_type in ("numeric", "double precision", "real"):
        return 1
    if data_type == "boolean":
        return False
    if data_type.startswith("timestamp"):
        return "2026-11-20T10:00:00Z"
    if data_type == "date":
        return WEEK
    if data_type in ("json", "jsonb"):
        return "{}"
    if data_type == "ARRAY":
        return "{}"
    if data_type == "bytea":
        return b"x"
    raise AssertionError(f"no synthetic value for {data_type}: teach the test this type")


def fill_every_table(dsn: str, user_id: str) -> None:
    """One row of `user_id` in every table with a user_id column that has none yet; the columns a
    row must have get synthetic values, the others their defaults."""
    for schema, table in user_id_tables(dsn):
        if sql(dsn, f'select 1 from "{schema}"."{table}" where user_id = %s limit 1', (user_id,)):
            continue
        columns = sql(dsn, """
            select column_name, data_type, is_nullable = 'YES', column_default is not null
            from information_schema.columns where table_schema = %s and table_name = %s""", (schema, table))
        names, values = [], []
        for name, data_type, nullable, has_default in columns:
            if name == "user_id":
                names.append(name)
                values.append(user_id)
            elif not nullable and not has_default:
                names.append(name)
                values.append(synthetic(data_type))
        sql(dsn, f'insert into "{schema}"."{table}" ({", ".join(names)}) values ({", ".join(["%s"] * len(names))})',
            values)


def fill_like_the_product(config, user_id: str, email: str) -> None:
    """What the product itself writes for a user: a delivered recap (app.sent_emails), plays,
    ingest state, and dead letters (a valid JSON message and a broken one, both naming the user)."""
    dsn = config.dsn
    add_week(dsn, user_id)
    assert send_recap(config, user_id)["status"] == "sent"
    sql(dsn, "insert into raw.plays (user_id, played_at, track_id, source, ingested_at) values "
             "(%s, '2026-11-17T08:00:00Z', 'track-1', 'api', now()), (%s, '2026-11-17T08:04:00Z', 'track-2', 'api', now())",
        (user_id, user_id))
    sql(dsn, "insert into app.ingest_cursors (user_id, after_ms) values (%s, 1)", (user_id,))
    sql(dsn, "insert into app.ingest_outcomes (user_id, outcome, plays) values (%s, 'ok', 2)", (user_id,))
    play = {"user_id": user_id, "played_at": "2026-11-17T08:00:00Z", "track_id": "t", "source": "api"}
    offset = int(unique("")[1:], 16) % 1_000_000_000
    sql(dsn, 'insert into ops.dead_letters (topic, "partition", "offset", payload, error) values '
             "('spotify.plays', 0, %s, %s, 'missing ingested_at'), ('spotify.plays', 1, %s, %s, 'malformed JSON')",
        (offset, json.dumps(play), offset, json.dumps(play)[:40]))
    # The operator's alerts name users in their keys and summaries (weekly_wrapped.alerts).
    sql(dsn, "insert into app.alerts (problem_key, summary) values (%s, %s)",
        (f"stale_poll:{user_id}", f"user {user_id} not polled successfully ever"))


def mentions(dsn: str, needle: str) -> dict[str, int]:
    """{"schema.table": rows} of every table and view in every schema whose row, as text, holds
    `needle` (every column: text, jsonb, arrays, ...), and of every bytea column that holds it."""
    found = {}
    relations = sql(dsn, "select table_schema, table_name from information_schema.tables "
                         "where table_schema not in %s and table_schema not like 'pg\\_%%'", (SYSTEM_SCHEMAS,))
    for schema, table in relations:
        name = f'"{schema}"."{table}"'
        [(rows,)] = sql(dsn, f"select count(*) from {name} as t where strpos(t::text, %s) > 0", (needle,))
        for (column,) in sql(dsn, "select column_name from information_schema.columns where table_schema = %s "
                                  "and table_name = %s and data_type = 'bytea'", (schema, table)):
            [(more,)] = sql(dsn, f'select count(*) from {name} where position(%s::bytea in "{column}") > 0',
                            (needle.encode(),))
            rows += more
        if rows:
            found[f"{schema}.{table}"] = rows
    return found


def test_delete_my_data_leaves_nothing_that_carries_the_id(people_config, people_db, mailbox, pages, kafka):
    leaver, leaver_email = add_user(people_db, "leaver")
    stayer, stayer_email = add_user(people_db, "stayer")
    for user_id, email in ((leaver, leaver_email), (stayer, stayer_email)):
        fill_like_the_product(people_config, user_id, email)
        fill_every_table(people_db, user_id)
    for schema, table in user_id_tables(people_db):  # every table holds rows of both, so the scan means something
        for user_id in (leaver, stayer):
            assert sql(people_db, f'select 1 from "{schema}"."{table}" where user_id = %s', (user_id,)), (table, user_id)
    assert set(mentions(people_db, leaver)) >= {"app.users", "raw.plays", "app.sent_emails", "ops.dead_letters",
                                                "marts.wrapped_weekly", "marts.fct_plays", "marts.dim_user"}
    stayer_before = mentions(people_db, stayer)
    leaver_email_before = mentions(people_db, leaver_email)
    assert "app.users" in leaver_email_before

    # From the recap's "delete my data" link: a page, then an e-mail to the account's address.
    [recap] = mailbox.to(leaver_email)
    request_url = re.search(r"http://wrapped\.test/wrapped/account/delete\?token=\S+",
                            recap.get_body(("plain",)).get_content()).group(0).rstrip(">")
    page = pages.get(local_path(request_url))
    assert page.status_code == 200 and "<button" in page.text
    token = urlsplit(request_url).query.removeprefix("token=")
    assert pages.post("/delete", data={"token": token}).status_code == 200
    [confirmation] = [m for m in mailbox.to(leaver_email) if "delete" in m["Subject"].lower()]
    confirm_url = re.search(r"http://wrapped\.test/wrapped/account/delete/confirm\?token=\S+",
                            confirmation.get_body(("plain",)).get_content()).group(0)

    # Opening the link (or a scanner doing so) deletes nothing; the button does.
    assert "Delete everything" in pages.get(local_path(confirm_url)).text
    assert mentions(people_db, leaver)
    confirm_token = urlsplit(confirm_url).query.removeprefix("token=")
    done = pages.post("/delete/confirm", data={"token": confirm_token})
    assert done.status_code == 200 and "Your data is gone" in done.text
    # It says how long Kafka keeps the plays, read from the real topic.
    retention = leaving.kafka_retention({"bootstrap.servers": kafka.bootstrap})
    assert retention.from_topic and retention.retention_ms > 0
    assert "(retention.ms)" in done.text and f"{retention.retention_ms / 86_400_000:g} days" in done.text

    assert mentions(people_db, leaver) == {}
    assert mentions(people_db, leaver_email) == {}
    assert mentions(people_db, stayer) == stayer_before  # the other user's rows are all there

    # The link again: nothing left, and it says so.
    again = pages.post("/delete/confirm", data={"token": confirm_token})
    assert again.status_code == 200 and "nothing left to delete" in again.text


def test_only_the_users_own_id_counts_not_ids_that_contain_it(people_db):
    leaver, _ = add_user(people_db, "short")
    lookalikes = [f"{leaver}.2", f"{leaver}-b", f"x{leaver}"]  # other users' ids that contain it
    for problem_key in [f"stale_poll:{leaver}", f"recap_left_out:{leaver}:2026-11-16"] + [
            f"stale_poll:{other}" for other in lookalikes]:
        sql(people_db, "insert into app.alerts (problem_key, summary) values (%s, 'x')", (problem_key,))
    deletion = leaving.delete_user_data(people_db, leaver)
    assert deletion.rows == {"app.users": 1, "app.alerts": 2}
    assert sorted(key for (key,) in sql(people_db, "select problem_key from app.alerts where problem_key like %s",
                                         (f"%{leaver}%",))) == sorted(f"stale_poll:{other}" for other in lookalikes)


def test_an_export_uploaded_and_not_imported_yet_is_deleted_too(people_db, tmp_path):
    leaver, _ = add_user(people_db, "uploader")
    upload = tmp_path / "my_spotify_data.zip"
    upload.write_bytes(b"PK\x05\x06" + bytes(18))
    sql(people_db, "insert into app.page_imports (run_id, user_id, path) values (%s, %s, %s)",
        (f"manual__{leaver}", leaver, str(upload)))
    assert leaving.delete_user_data(people_db, leaver).rows["app.page_imports"] == 1
    assert not upload.exists()


def test_asking_for_deletion_by_address_tells_nobody_who_has_an_account(people_config, people_db, mailbox, pages):
    user_id, email = add_user(people_db, "asker")
    known = pages.post("/delete", data={"email": email.upper()})
    unknown = pages.post("/delete", data={"email": "nobody-here@example.com"})
    assert known.status_code == unknown.status_code == 200 and known.text == unknown.text
    [message] = mailbox.to(email)
    assert "/wrapped/account/delete/confirm?token=" in message.get_body(("plain",)).get_content()
    assert mailbox.to("nobody-here@example.com") == []
    # Sent again at once: the same page, and no second e-mail (the page floods no inbox).
    assert pages.post("/delete", data={"email": email}).text == known.text
    assert len(mailbox.to(email)) == 1
    assert status_of(people_db, user_id) == "active"  # nothing deleted by asking


def test_a_delete_link_for_another_purpose_deletes_nothing(people_config, people_db, pages):
    user_id, _ = add_user(people_db, "keeper")
    for token in (links.sign(people_config.link_secret, "delete_request", {"user_id": user_id}),
                  links.sign(people_config.link_secret, "unsubscribe", {"user_id": user_id}),
                  links.sign("not-our-secret", "delete_data", {"user_id": user_id})):
        assert pages.post("/delete/confirm", data={"token": token}).status_code == 400
    assert status_of(people_db, user_id) == "active"


def test_dead_letters_count_when_they_carry_the_id():
    assert leaving.carries_id('{"user_id": "ana", "x": 1}', "ana")
    assert leaving.carries_id('{"user_id": "ana", "played_', "ana")  # broken JSON: the text counts
    assert not leaving.carries_id('{"user_id": "banana"}', "ana")  # another user whose id contains it
    assert not leaving.carries_id('{"track_id": "t", "name": "Ana"}', "ana")


def test_without_kafka_the_page_gives_the_documented_default():
    retention = leaving.kafka_retention({"bootstrap.servers": f"127.0.0.1:{free_port()}"}, timeout_s=1)
    assert not retention.from_topic and retention.retention_ms == 7 * 86_400_000
    assert "documented default is 7 days" in retention.describe()
