"""The listener's page (/wrapped/me) through FastAPI's TestClient, mounted as the api-server mounts
it, on the page tests' private database (real marts from one dbt run: tests/page/conftest.py).

Access: a signed page link or login link opens a session and redirects to a URL without the
token; an expired, forged or foreign link, a cookie of another purpose or secret, and a cookie of
a deleted user are refused; a user id anywhere in the URL changes nothing. Settings, pausing
(and the recap job skipping paused users), household opt-in, the import upload, past recaps as
sent, CSRF on every POST, and the colours' contrast.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import time
import zipfile
from contextlib import closing
from datetime import date, datetime, timezone
from email.message import EmailMessage
from email.utils import make_msgid

import itsdangerous.timed
from itsdangerous.encoding import base64_decode, base64_encode
import psycopg2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.people.conftest import mailbox  # noqa: F401  (the SMTP sink fixture)
from tests.support import unique
from tests.support.postgres import sql

from weekly_wrapped.page import access, app as page_app
from weekly_wrapped.page.app import PALETTE, contrast_ratio, create_page_app
from weekly_wrapped.recap import store
from weekly_wrapped.users import links

BASE = "http://wrapped.test"
NOW = datetime(2026, 12, 3, 0, 0, tzinfo=timezone.utc)  # tokyo's week of Monday 2026-11-30 is under way


class FakeRuns:
    """Stands in for Airflow's DAG runs: records triggers, reports a finished import."""

    def __init__(self):
        self.triggered: list[tuple[str, str]] = []

    def trigger(self, user_id: str, path: str) -> str:
        self.triggered.append((user_id, path))
        return f"page_import__test_{unique('run')}"

    def state(self, run_id: str):
        return "success", {"plays": 1234, "skip_events": 56, "files": {"read": 3, "ignored": 2},
                           "skipped": {"podcast": 7}, "first_played_at": "2019-01-02T03:04:05+00:00",
                           "last_played_at": "2024-05-06T07:08:09+00:00"}


@pytest.fixture
def config(settings, page_db):
    return dataclasses.replace(settings.onboarding, dsn=page_db.dsn, public_url=BASE)


@pytest.fixture
def runs():
    return FakeRuns()


@pytest.fixture
def client(config, runs, tmp_path):
    root = FastAPI()
    root.mount("/wrapped/me", create_page_app(lambda: config, runs_factory=lambda: runs,
                                              import_dir_factory=lambda: str(tmp_path / "imports"),
                                              clock=lambda: NOW))
    with TestClient(root, base_url=BASE) as test_client:
        yield test_client


@pytest.fixture
def person(page_db):
    """A user of this test's own (the shared histories' users are only read): yields the id; removed after."""
    user_id = unique("page")
    sql(page_db.dsn, "insert into app.users (user_id, email, time_zone, display_name, email_confirmed_at) "
                     "values (%s, %s, 'Europe/Berlin', %s, now())",
        (user_id, f"{user_id}@example.org", f"Name {user_id}"))
    yield user_id
    for table in ("app.page_imports", "app.sent_emails", "app.users"):
        sql(page_db.dsn, f"delete from {table} where user_id = %s", (user_id,))


def sign_in(client: TestClient, config, user_id: str) -> None:
    response = client.get(f"/wrapped/me/link?token={links.sign(config.link_secret, 'page_link', {'user_id': user_id})}",
                          follow_redirects=False)
    assert response.status_code == 303


def csrf_of(client: TestClient) -> str:
    page = client.get("/wrapped/me/").text
    return re.search(r"name='csrf' value='([0-9a-f]+)'", page).group(1)


def post(client: TestClient, path: str, data: dict, **kwargs):
    return client.post(f"/wrapped/me{path}", data=data, headers={"Origin": BASE}, follow_redirects=False, **kwargs)


def user_row(dsn: str, user_id: str, columns: str):
    return sql(dsn, f"select {columns} from app.users where user_id = %s", (user_id,))[0]


# --- access ------------------------------------------------------------------------------------

def test_a_recap_link_opens_the_page_and_leaves_no_token_in_the_url(client, config):
    url = access.page_link_url(BASE, config.link_secret, "tokyo")
    response = client.get(url.removeprefix(BASE), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/wrapped/me/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{access.SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/wrapped/me/" in cookie and "Secure" not in cookie  # public_url is http here
    page = client.get("/wrapped/me/")
    assert page.status_code == 200
    assert "Your week so far" in page.text and "tokyo@example.com" in page.text
    assert "Late Track" in page.text  # tokyo's plays since the last build count
    assert "could not be shown" not in page.text  # every section rendered
    assert page.text.count("<svg") >= 2 and "Minutes listened each week of 2026" in page.text  # clock, heatmap
    for section in ("week", "recaps", "year", "household", "settings"):
        assert f"<section id='{section}'" in page.text
    assert "Listening data from <b>Spotify</b>" in page.text and "https://open.spotify.com" in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"


def test_a_secure_cookie_when_the_site_is_https(config, runs, tmp_path, person):
    secure = dataclasses.replace(config, public_url="https://wrapped.example.org")
    root = FastAPI()
    root.mount("/wrapped/me", create_page_app(lambda: secure, runs_factory=lambda: runs,
                                              import_dir_factory=lambda: str(tmp_path), clock=lambda: NOW))
    with TestClient(root, base_url="https://wrapped.example.org") as https_client:
        token = links.sign(secure.link_secret, "page_link", {"user_id": person})
        response = https_client.get(f"/wrapped/me/link?token={token}", follow_redirects=False)
    assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]


def expired_token(secret: str, purpose: str, payload: dict, monkeypatch) -> str:
    with monkeypatch.context() as m:
        past = int(time.time()) - links.MAX_AGE_S[purpose] - 60
        m.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: past)
        return links.sign(secret, purpose, payload)


def test_expired_forged_and_foreign_links_are_refused(client, config, person, monkeypatch):
    good = links.sign(config.link_secret, "page_link", {"user_id": person})
    refused = {
        "expired": expired_token(config.link_secret, "page_link", {"user_id": person}, monkeypatch),
        "forged": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "another secret": links.sign("another-secret", "page_link", {"user_id": person}),
        "another purpose": links.sign(config.link_secret, "unsubscribe", {"user_id": person}),
        "a session cookie as a link": access.session_cookie(config.link_secret, person),
        "empty": "",
    }
    for why, token in refused.items():
        response = client.get(f"/wrapped/me/link?token={token}", follow_redirects=False)
        assert response.status_code == 400, why
        assert access.SESSION_COOKIE not in response.headers.get("set-cookie", ""), why
        assert "E-mail me a link" in response.text, why
    expired_login = expired_token(config.link_secret, "page_login", {"user_id": person}, monkeypatch)
    assert client.get(f"/wrapped/me/login?token={expired_login}").status_code == 400
    # a page link is not a login link, and the other way round
    assert client.get(f"/wrapped/me/login?token={good}").status_code == 400
    login = links.sign(config.link_secret, "page_login", {"user_id": person})
    assert client.get(f"/wrapped/me/link?token={login}").status_code == 400
    assert client.get(f"/wrapped/me/login?token={login}", follow_redirects=False).status_code == 303


def test_cookies_of_another_purpose_secret_or_a_deleted_user_are_refused(client, config, person, page_db):
    def shows_page(cookie: str) -> bool:
        client.cookies.clear()
        client.cookies.set(access.SESSION_COOKIE, cookie, path="/wrapped/me/")
        return "Your week so far" in client.get("/wrapped/me/").text

    assert shows_page(access.session_cookie(config.link_secret, person))
    assert not shows_page(links.sign(config.link_secret, "page_link", {"user_id": person}))
    assert not shows_page(links.sign(config.link_secret, "session", {"connect_form": "x" * 20}))  # onboarding's
    assert not shows_page(links.sign("another-secret", "session", {"user_id": person, "issued": time.time()}))
    assert not shows_page(access.session_cookie(config.link_secret, person)[:-2] + "xx")
    # a cookie stolen for user A cannot be edited to say user B: the signature covers the payload
    payload, stamp, signature = access.session_cookie(config.link_secret, person).split(".")
    edited = base64_decode(payload).replace(person.encode(), b"tokyo")
    assert not shows_page(".".join((base64_encode(edited).decode(), stamp, signature)))

    old_cookie = access.session_cookie(config.link_secret, person)
    sql(page_db.dsn, "delete from app.users where user_id = %s", (person,))
    assert not shows_page(old_cookie)
    # the same Spotify account joins again later: the cookie from before stays refused
    time.sleep(access.CLOCK_SLACK_S + 0.5)
    sql(page_db.dsn, "insert into app.users (user_id, email, email_confirmed_at) values (%s, %s, now())",
        (person, f"{person}@example.org"))
    assert not shows_page(old_cookie)
    assert shows_page(access.session_cookie(config.link_secret, person))


def test_another_users_id_anywhere_in_the_url_changes_nothing(client, config, person):
    sign_in(client, config, person)
    for path in ("/wrapped/me/?user_id=tokyo", "/wrapped/me/?user=tokyo&id=tokyo", "/wrapped/me/tokyo",
                 "/wrapped/me/tokyo/", "/wrapped/me/users/tokyo", "/wrapped/me/?token=" +
                 links.sign(config.link_secret, "page_link", {"user_id": "tokyo"})):
        response = client.get(path)
        assert "tokyo@example.com" not in response.text, path
        assert "Late Track" not in response.text, path
        if response.status_code == 200:
            assert f"{person}@example.org" in response.text, path
    # the session decides: still this person's page
    assert f"{person}@example.org" in client.get("/wrapped/me/").text


def test_without_a_session_the_page_offers_a_link_by_email(client):
    response = client.get("/wrapped/me/")
    assert response.status_code == 200 and "E-mail me a link" in response.text
    assert "Your week so far" not in response.text


# --- "send me a link" ----------------------------------------------------------------------------

def test_send_me_a_link_answers_the_same_and_mails_only_known_addresses_once(client, config, person, mailbox):
    known = client.post("/wrapped/me/login", data={"email": f"{person.upper()}@example.org"},
                        headers={"Origin": BASE})
    unknown = client.post("/wrapped/me/login", data={"email": "nobody@example.org"}, headers={"Origin": BASE})
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    again = client.post("/wrapped/me/login", data={"email": f"{person}@example.org"}, headers={"Origin": BASE})
    assert again.text == known.text
    [message] = mailbox.messages()  # one e-mail: the unknown address got none, the second ask was too soon
    assert message["To"] == f"{person}@example.org"
    url = re.search(r"http://wrapped\.test/wrapped/me/login\?token=\S+", message.get_body(("plain",)).get_content())
    response = client.get(url.group(0).removeprefix(BASE), follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/wrapped/me/"
    assert f"{person}@example.org" in client.get("/wrapped/me/").text
    cross_site = client.post("/wrapped/me/login", data={"email": f"{person}@example.org"},
                             headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403


# --- settings ------------------------------------------------------------------------------------

def test_pause_and_resume_and_the_recap_job_skips_paused_users(client, config, person, page_db):
    def recap_users() -> set[str]:
        with closing(psycopg2.connect(page_db.dsn)) as conn:
            return {u["user_id"] for u in store.active_users(conn)}

    sign_in(client, config, person)
    assert person in recap_users()
    response = post(client, "/settings/pause", {"csrf": csrf_of(client), "paused": "true"})
    assert response.status_code == 303 and response.headers["location"] == "/wrapped/me/?done=paused"
    assert user_row(page_db.dsn, person, "recaps_paused") == (True,)
    assert person not in recap_users()
    assert "Resume e-mails" in client.get("/wrapped/me/?done=paused").text
    post(client, "/settings/pause", {"csrf": csrf_of(client), "paused": "false"})
    assert user_row(page_db.dsn, person, "recaps_paused") == (False,)
    assert person in recap_users()


def test_time_zone_and_household_settings(client, config, person, page_db):
    sign_in(client, config, person)
    assert post(client, "/settings/time-zone", {"csrf": csrf_of(client), "time_zone": "Asia/Tokyo"}).status_code == 303
    assert user_row(page_db.dsn, person, "time_zone") == ("Asia/Tokyo",)
    bad = post(client, "/settings/time-zone", {"csrf": csrf_of(client), "time_zone": "Mars/Olympus"})
    assert bad.status_code == 400 and "not a time zone" in bad.text
    assert user_row(page_db.dsn, person, "time_zone") == ("Asia/Tokyo",)

    assert "Join the household" in client.get("/wrapped/me/").text
    post(client, "/settings/household", {"csrf": csrf_of(client), "on": "true"})
    assert user_row(page_db.dsn, person, "household_opt_in") == (True,)
    assert "Leave the household" in client.get("/wrapped/me/").text
    post(client, "/settings/household", {"csrf": csrf_of(client), "on": "false"})
    assert user_row(page_db.dsn, person, "household_opt_in") == (False,)


def test_a_new_address_is_asked_to_confirm(client, config, person, page_db, mailbox):
    sign_in(client, config, person)
    response = post(client, "/settings/email", {"csrf": csrf_of(client), "email": "new-address@example.org"})
    assert response.status_code == 303
    assert user_row(page_db.dsn, person, "email, pending_email") == (f"{person}@example.org", "new-address@example.org")
    [message] = mailbox.to("new-address@example.org")
    assert "/wrapped/account/confirm?token=" in message.get_body(("plain",)).get_content()
    assert "new-address@example.org" in client.get("/wrapped/me/").text  # waiting for confirmation
    bad = post(client, "/settings/email", {"csrf": csrf_of(client), "email": "not an address"})
    assert bad.status_code == 400


def test_every_post_needs_this_sites_form_token_and_origin(client, config, person, page_db):
    sign_in(client, config, person)
    token = csrf_of(client)
    forms = {"/settings/pause": {"paused": "true"}, "/settings/time-zone": {"time_zone": "Asia/Tokyo"},
             "/settings/household": {"on": "true"}, "/settings/email": {"email": "x@example.org"}, "/logout": {},
             "/import": {}}
    other_session = access.form_token(config.link_secret, access.session_cookie(config.link_secret, "tokyo"))
    for path, data in forms.items():
        assert post(client, path, data).status_code == 403, f"{path}: no token"
        assert post(client, path, {**data, "csrf": other_session}).status_code == 403, f"{path}: another session's"
        cross = client.post(f"/wrapped/me{path}", data={**data, "csrf": token},
                            headers={"Origin": "https://evil.example"}, follow_redirects=False)
        assert cross.status_code == 403, f"{path}: cross-site"
        fetch = client.post(f"/wrapped/me{path}", data={**data, "csrf": token},
                            headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False)
        assert fetch.status_code == 403, f"{path}: Sec-Fetch-Site"
    assert user_row(page_db.dsn, person, "recaps_paused, time_zone, household_opt_in, pending_email") == \
        (False, "Europe/Berlin", False, None)
    client.cookies.clear()
    assert post(client, "/settings/pause", {"csrf": token, "paused": "true"}).status_code == 403  # no session
    assert user_row(page_db.dsn, person, "recaps_paused") == (False,)


def test_sign_out_ends_the_session(client, config, person):
    sign_in(client, config, person)
    response = post(client, "/logout", {"csrf": csrf_of(client)})
    assert response.status_code == 303
    assert 'wrapped_session=""' in response.headers["set-cookie"] or "Max-Age=0" in response.headers["set-cookie"]
    assert "E-mail me a link" in client.get("/wrapped/me/").text


# --- import --------------------------------------------------------------------------------------

def export_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Spotify Extended Streaming History/Streaming_History_Audio_2024.json", "[]")
    return buffer.getvalue()


def test_an_uploaded_export_is_saved_and_imported_for_this_user_only(client, config, person, runs, page_db, tmp_path):
    sign_in(client, config, person)
    # one zip, uploaded and compared: a zip built again holds the time it was built (to 2 s)
    upload = export_zip()
    response = post(client, "/import", {"csrf": csrf_of(client)},
                    files={"export": ("my_spotify_data.zip", upload, "application/zip")})
    assert response.status_code == 303 and response.headers["location"] == "/wrapped/me/?done=import"
    [(user_id, path)] = runs.triggered
    assert user_id == person and path.startswith(str(tmp_path / "imports")) and person not in path
    with open(path, "rb") as saved:
        assert saved.read() == upload
    assert sql(page_db.dsn, "select count(*) from app.page_imports where user_id = %s", (person,)) == [(1,)]
    page = client.get("/wrapped/me/").text
    assert "data-import-state='success'" in page
    assert not os.path.exists(path)  # the run finished: the saved export is deleted
    assert "1234 plays and 56 skips imported from 3 files, played 2019-01-02 to 2024-05-06; 7 rows skipped" in page

    not_a_zip = post(client, "/import", {"csrf": csrf_of(client)},
                     files={"export": ("notes.txt", b"hello", "text/plain")})
    assert not_a_zip.status_code == 400 and "not a zip" in not_a_zip.text
    assert len(runs.triggered) == 1
    # another listener's page shows nothing of it
    sign_in(client, config, "tokyo")
    assert "data-import-state" not in client.get("/wrapped/me/").text


# --- past recaps ---------------------------------------------------------------------------------

PICTURE = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def store_recap(dsn: str, user_id: str, week: date) -> None:
    message = EmailMessage()
    message["Subject"] = f"Your week of {week}"
    message["Message-ID"] = make_msgid()
    message.set_content("plain text recap")
    message.add_alternative("<html><body><h1>Recap of the week</h1><img src='cid:clock@wrapped' alt='clock'>"
                            "<script>alert(1)</script></body></html>", subtype="html")
    message.get_payload()[1].add_related(PICTURE, "image", "png", cid="<clock@wrapped>")
    sql(dsn, "insert into app.sent_emails (user_id, week_start, recipient, message_id, subject, message, status, "
             "rendered_at, sent_at) values (%s, %s, %s, %s, %s, %s, 'sent', now(), now())",
        (user_id, week, f"{user_id}@example.org", message["Message-ID"], message["Subject"], message.as_bytes()))


def test_past_recaps_as_sent_on_a_sandboxed_page_of_their_own(client, config, person, page_db):
    week = date(2026, 11, 16)
    store_recap(page_db.dsn, person, week)
    sign_in(client, config, person)
    assert "/wrapped/me/recaps/2026-11-16" in client.get("/wrapped/me/").text
    recap = client.get("/wrapped/me/recaps/2026-11-16")
    assert recap.status_code == 200 and "Recap of the week" in recap.text
    policy = recap.headers["content-security-policy"]
    assert policy.startswith("sandbox") and "allow-scripts" not in policy and "frame-ancestors 'none'" in policy
    src = re.search(r"<img src='([^']+)'", recap.text).group(1)
    assert src.startswith("/wrapped/me/recaps/2026-11-16/parts/")
    picture = client.get(src)
    assert picture.status_code == 200 and picture.content == PICTURE and picture.headers["content-type"] == "image/png"
    assert client.get("/wrapped/me/recaps/2026-11-23").status_code == 404
    assert client.get("/wrapped/me/recaps/not-a-week").status_code == 404

    sign_in(client, config, "tokyo")  # another listener: not theirs
    assert client.get("/wrapped/me/recaps/2026-11-16").status_code == 404
    assert client.get(src).status_code == 404
    client.cookies.clear()
    assert client.get("/wrapped/me/recaps/2026-11-16").status_code == 403
    assert client.get(src).status_code == 403


# --- the recap e-mail's link, the look -------------------------------------------------------

def test_every_recap_email_carries_the_page_link(config):
    from tests.recap.recap_helpers import make_row
    from weekly_wrapped.recap.job import compose

    message, _ = compose(make_row(), None, "Weekly Wrapped <wrapped@localhost>", 1.0,
                         link_secret=config.link_secret, public_url=BASE)
    for kind in ("plain", "html"):
        body = message.get_body((kind,)).get_content()
        token = re.search(r"http://wrapped\.test/wrapped/me/link\?token=([\w.\-]+)", body).group(1)
        assert links.verify(config.link_secret, "page_link", token)["user_id"] == make_row()["user_id"]


def test_colours_meet_wcag_aa_and_targets_are_large_enough():
    for name, (foreground, background) in PALETTE.items():
        assert contrast_ratio(foreground, background) >= 4.5, name
    assert contrast_ratio("#1db954", "#ffffff") < 4.5  # the check can fail: Spotify green on white does
    style = page_app.STYLE
    assert "button{font-size:1rem;min-height:44px" in style and "nav a{display:inline-flex;align-items:center;" \
                                                                 "min-height:44px" in style
    assert "input,select{font-size:1rem;min-height:44px" in style


# --- the import through the real api-server and Airflow --------------------------------------

def test_an_export_uploaded_to_the_api_server_is_imported_and_reported(settings, airflow, kafka, tmp_path):
    """The plugin's page in the running api-server: the upload triggers spotify_history_import for this
    user (airflow.api.common.trigger_dag), and the page shows the run's state, then its report (XCom)."""
    import requests

    from tests.history_import.exports import dumps, extended, write_zip
    from weekly_wrapped.users import leaving
    from wrapped_dev.airflow_client import AirflowClient
    from wrapped_dev.stack import airflow as local_airflow

    AirflowClient(airflow, "admin", local_airflow.admin_password(settings)).unpause("spotify_history_import")
    user_id = unique("page-import")
    dsn = settings.warehouse_dsn
    sql(dsn, "insert into app.users (user_id, email, email_confirmed_at) values (%s, %s, now())",
        (user_id, f"{user_id}@example.org"))
    rows = [extended(f"2024-03-0{day}T10:00:00Z", 200_000, uri=f"spotify:track:{'4uLU6hMCjMI75M1A2tKUQ'}{day}")
            for day in range(1, 4)]
    export = write_zip(tmp_path / "my_spotify_data.zip",
                       {"Spotify Extended Streaming History/Streaming_History_Audio_2024.json": dumps(rows)})
    site = settings.public_url.rstrip("/")
    browser = requests.Session()
    try:
        token = links.sign(settings.link_secret, "page_link", {"user_id": user_id})
        assert browser.get(f"{site}/wrapped/me/link?token={token}", timeout=30).status_code == 200
        csrf = re.search(r"name='csrf' value='([0-9a-f]+)'", browser.get(f"{site}/wrapped/me/", timeout=30).text)
        with open(export, "rb") as upload:
            response = browser.post(f"{site}/wrapped/me/import", data={"csrf": csrf.group(1)},
                                    files={"export": ("my_spotify_data.zip", upload, "application/zip")},
                                    headers={"Origin": site}, allow_redirects=False, timeout=60)
        assert response.status_code == 303, response.text[:500]
        [(run_id,)] = sql(dsn, "select run_id from app.page_imports where user_id = %s", (user_id,))
        assert run_id.startswith("page_import__")
        deadline = time.monotonic() + 240
        while "data-import-state='success'" not in (page := browser.get(f"{site}/wrapped/me/", timeout=30).text):
            assert "data-import-state='failed'" not in page
            assert time.monotonic() < deadline, "the import run did not finish in time"
            time.sleep(2)
        assert "3 plays and 0 skips imported from 1 files, played 2024-03-01 to 2024-03-03" in page
    finally:
        for (path,) in sql(dsn, "select path from app.page_imports where user_id = %s", (user_id,)):
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        leaving.delete_user_data(dsn, user_id)


def test_the_household_shows_only_people_who_opted_in(client, config, page_db):
    people = [unique("page-house") for _ in range(3)]
    for user_id, opted_in in zip(people, (True, True, False)):
        sql(page_db.dsn, "insert into app.users (user_id, email, display_name, email_confirmed_at, household_opt_in) "
                         "values (%s, %s, %s, now(), %s)",
            (user_id, f"{user_id}@example.org", f"Name {user_id}", opted_in))
    try:
        sign_in(client, config, people[0])
        section = client.get("/wrapped/me/").text.split("<section id='household'")[1].split("</section>")[0]
        assert f"Name {people[1]}" in section and "taste match" in section
        assert f"Name {people[2]}" not in section and people[2] not in section
        assert f"{people[1]}@example.org" not in section  # named, never by address
        sign_in(client, config, people[2])  # not in the household: sees nobody
        section = client.get("/wrapped/me/").text.split("<section id='household'")[1].split("</section>")[0]
        assert "Join the household" in section and "Name page-house" not in section
    finally:
        sql(page_db.dsn, "delete from app.users where user_id = any(%s)", (people,))


def test_a_database_that_does_not_answer_is_a_friendly_page(config, runs, tmp_path, person):
    broken = dataclasses.replace(config, dsn="host=127.0.0.1 port=1 dbname=nothing user=nobody connect_timeout=2")
    root = FastAPI()
    root.mount("/wrapped/me", create_page_app(lambda: broken, runs_factory=lambda: runs,
                                              import_dir_factory=lambda: str(tmp_path), clock=lambda: NOW))
    with TestClient(root, base_url=BASE) as broken_client:
        token = links.sign(config.link_secret, "page_link", {"user_id": person})
        response = broken_client.get(f"/wrapped/me/link?token={token}")
        assert response.status_code == 503 and "try again in a few minutes" in response.text
        assert token not in response.text


def test_page_links_stay_out_of_the_access_log():
    from weekly_wrapped.users.access_log import redact_path

    assert redact_path("/wrapped/me/link?token=secret") == "/wrapped/me/link?[redacted]"
    assert redact_path("/wrapped/me/login?token=secret") == "/wrapped/me/login?[redacted]"


def test_a_listener_whose_spotify_token_was_refused_is_asked_to_reconnect(client, config, person, page_db):
    sign_in(client, config, person)
    assert "Connect Spotify again" not in client.get("/wrapped/me/").text
    sql(page_db.dsn, "update app.users set status = 'needs_reauth' where user_id = %s", (person,))
    page = client.get("/wrapped/me/").text
    token = re.search(r"href='http://wrapped\.test/wrapped/connect\?reconnect=([^']+)'>Connect Spotify again", page)
    assert links.verify(config.link_secret, "reconnect", token.group(1))["user_id"] == person


def test_the_address_without_its_slash_leads_to_the_page(config, runs, tmp_path):
    """Mounted as the plugin mounts them: /wrapped/me (no slash) falls to the onboarding app."""
    from weekly_wrapped.users.onboarding import create_app

    root = FastAPI()
    root.mount("/wrapped/me", create_page_app(lambda: config, runs_factory=lambda: runs,
                                              import_dir_factory=lambda: str(tmp_path / "imports"),
                                              clock=lambda: NOW))
    root.mount("/wrapped", create_app(lambda: config))
    with TestClient(root, base_url=BASE) as browser:
        answer = browser.get("/wrapped/me")
        assert answer.url == f"{BASE}/wrapped/me/"
        assert answer.status_code == 200 and "link" in answer.text.lower()
