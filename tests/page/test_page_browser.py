"""A listener's page in a real browser, through the REAL api-server (the plugin mounts /wrapped/me).

Debian's headless `chromium`, driven over the DevTools protocol (tests/people/test_people_browser.py),
opens the "your page" link of a delivered recap e-mail, sees the week so far, then the listener
plays more on a fake Spotify, the ingest code path polls (Kafka, the stack's streaming consumer,
raw.plays), and the reloaded page shows the new plays. Screenshots at desktop and phone widths
are kept in test-artifacts/page/ (git-ignored).

The listener is a user of this test's own in the stack's warehouse (a fake Spotify of its own in a
thread, a unique id), removed with everything it left at the end.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests

from tests.people.conftest import mailbox  # noqa: F401  (the SMTP sink fixture)
from tests.people.test_people_browser import Page, chromium  # noqa: F401  (the browser fixture)
from tests.support.postgres import sql

from weekly_wrapped.ingest import poll as ingest
from weekly_wrapped.recap.job import compose
from weekly_wrapped.recap.mailer import message_bytes, send_stored
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.users import accounts, leaving
from wrapped_dev.config import REPO_ROOT
from wrapped_dev.demo_users import authorize_on_fake
from wrapped_dev.fakes.spotify_server import FakeSpotify, make_server

ARTIFACTS = REPO_ROOT / "test-artifacts" / "page"
DESKTOP = {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


@pytest.fixture
def consumer(settings, postgres, kafka, spark, airflow):
    """The stack's streaming consumer, running (the spark_consumers DAG starts it every few minutes; a
    fresh stack may not have run it yet). Stopped afterwards only if this started it."""
    from weekly_wrapped.streaming import supervisor

    was_running = supervisor.is_running(settings.consumer)
    if not was_running:
        supervisor.ensure_running(settings.consumer)
    yield
    if not was_running and os.environ.get("WRAPPED_KEEP_STACK") != "1":
        supervisor.stop(settings.consumer)


@pytest.fixture
def listener(settings, consumer):
    """A fake Spotify in a thread with one listener, onboarded into the stack's warehouse (confirmed
    address); yields (fake base URL, SpotifyApp, user id); deletes the user's data afterwards."""
    prefix = f"p{uuid.uuid4().hex[:6]}-"
    server = make_server(0, fake=FakeSpotify(n_users=1, user_prefix=prefix))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    app = spotify.SpotifyApp("demo-client-id", "demo-client-secret", f"{base}/v1/", base,
                             settings.spotify_redirect_uri)
    user_id = f"{prefix}demo-ana"
    verifier, challenge = spotify.pkce_pair()
    code = authorize_on_fake(app, user_id, challenge)
    accounts.onboard_with_code(settings.warehouse_dsn, settings.token_secret, app, code=code, code_verifier=verifier,
                               email=f"{user_id}@example.org", time_zone="Europe/Berlin")
    sql(settings.warehouse_dsn, "update app.users set email_confirmed_at = now(), pending_email = null "
                                "where user_id = %s", (user_id,))
    try:
        yield base, app, user_id
    finally:
        leaving.delete_user_data(settings.warehouse_dsn, user_id)
        server.shutdown()
        server.server_close()


def poll_and_load(settings, app, user_id: str, timeout_s: float = 180) -> int:
    """One poll of the listener, as the spotify_ingest DAG's task runs it, then wait until the stack's
    streaming consumer has put every polled play in raw.plays; returns how many plays the poll produced."""
    def held() -> int:
        return sql(settings.warehouse_dsn, "select count(*) from raw.plays where user_id = %s", (user_id,))[0][0]

    before = held()
    cfg = ingest.IngestConfig(dsn=settings.warehouse_dsn, kafka_config={"bootstrap.servers": settings.kafka_bootstrap},
                              app=app, token_secret=settings.token_secret)
    [outcome] = ingest.ingest_users(cfg, [user_id], run_id=f"page-browser-{uuid.uuid4().hex[:6]}")
    assert outcome.outcome == "ok" and outcome.plays > 0, outcome
    deadline = time.monotonic() + timeout_s
    while held() < before + outcome.plays:
        assert time.monotonic() < deadline, "the streaming consumer did not load the polled plays in time"
        time.sleep(0.5)
    return outcome.plays


def show(page: Page, metrics: dict) -> None:
    page.call("Emulation.setDeviceMetricsOverride", **metrics)


def screenshot(page: Page, name: str) -> None:
    png = base64.b64decode(page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
    assert png.startswith(b"\x89PNG") and len(png) > 5_000, f"{name}: a blank screenshot?"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.png").write_bytes(png)


def plays_shown(page: Page) -> int:
    return int(page.js("document.querySelector('[data-figure=plays] b').textContent"))


def test_the_page_from_a_recap_email_shows_new_plays_after_a_poll(chromium, listener, settings, mailbox):
    from tests.recap.recap_helpers import make_row

    fake_base, app, user_id = listener
    poll_and_load(settings, app, user_id)

    # A recap e-mail, delivered: its footer links to the page on the api-server.
    email = f"{user_id}@example.org"
    message, _ = compose(make_row(user_id=user_id, email=email), None, "Weekly Wrapped <wrapped@localhost>", 1.0,
                         link_secret=settings.link_secret, public_url=settings.public_url)
    send_stored(message_bytes(message), "wrapped@localhost", email)
    [delivered] = mailbox.to(email)
    link = re.search(r"(http://\S+/wrapped/me/link\?token=[\w.\-]+)", delivered.get_body(("plain",)).get_content())
    assert link and link.group(1).startswith(settings.public_url)

    page = chromium
    show(page, DESKTOP)
    page.goto(link.group(1))
    page.wait_for("location.pathname === '/wrapped/me/' && !!document.querySelector('#week')")
    assert "token" not in page.js("location.href")  # the session cookie, not the URL, says who this is
    text = page.text()
    assert "Your week so far" in text and email in text and "could not be shown" not in text
    before = plays_shown(page)
    screenshot(page, "1-desktop-week-so-far")
    show(page, PHONE)
    page.goto(f"{settings.public_url}/wrapped/me/")
    page.wait_for("!!document.querySelector('#week')")
    assert page.js("document.documentElement.scrollWidth <= window.innerWidth"), "the phone layout scrolls sideways"
    smallest_button = "Math.min(...[...document.querySelectorAll('button')].map(b => b.getBoundingClientRect().height))"
    assert page.js(smallest_button) >= 44, "buttons smaller than 44 px on a phone"
    screenshot(page, "2-phone-week-so-far")

    # Five more plays on the fake Spotify, a poll, and the page changes.
    requests.post(f"{fake_base}/_control/burst", json={"user_id": user_id, "count": 5}, timeout=10).raise_for_status()
    # The burst ends now and reaches 2 minutes back; a synthetic play the first poll already saw can
    # end inside that span, and then the plays before it are behind the poll's cursor (CI saw 4).
    added = poll_and_load(settings, app, user_id)
    assert added >= 1
    show(page, DESKTOP)
    page.goto(f"{settings.public_url}/wrapped/me/")
    page.wait_for("!!document.querySelector('#week')")
    after = plays_shown(page)
    assert after == before + added, (before, added, after, datetime.now(timezone.utc))
    screenshot(page, "3-desktop-after-more-plays")
    show(page, PHONE)
    page.goto(f"{settings.public_url}/wrapped/me/")
    page.wait_for("!!document.querySelector('#week')")
    screenshot(page, "4-phone-after-more-plays")
