"""A person in a real browser: Debian's headless `chromium`, driven over the DevTools protocol,
joins on the onboarding page (through the fake Spotify's consent page), confirms the address
from the e-mail, then unsubscribes from the link a recap carries.

Both apps are served as the api-server mounts them (/wrapped/account, /wrapped) by an in-process
uvicorn on a free port; the fake Spotify runs in a thread, the e-mails land in the SMTP sink,
the warehouse is the private people database. Screenshots are kept as test artefacts in
test-artifacts/people/ (git-ignored), one per page.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import subprocess
import threading
import time
import uuid

import pytest
import uvicorn
from fastapi import FastAPI
from websockets.sync.client import connect

from tests.support.ports import free_port
from tests.support.postgres import sql

from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.users import leaving
from weekly_wrapped.users.account_pages import create_account_app
from weekly_wrapped.users.onboarding import create_app
from wrapped_dev.config import REPO_ROOT
from wrapped_dev.fakes.spotify_server import FakeSpotify, make_server

ARTIFACTS = REPO_ROOT / "test-artifacts" / "people"


class Page:
    """One browser tab over the Chrome DevTools protocol (a flattened session on the browser socket)."""

    def __init__(self, ws):
        self.ws = ws
        self.last_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=800, height=900, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if getattr(self, "session", None):
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:  # events arrive in between; only the reply matters here
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30):
        """Poll until `expression` is truthy in the page (loads and redirects happen meanwhile)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.js(f"document.readyState === 'complete' && ({expression})"):
                    return
            except RuntimeError:  # the page navigated away while evaluating
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression!r} at {self.js('location.href')}: "
                             f"{self.js('document.body && document.body.innerText')}")

    def heading_is(self, text: str) -> None:
        self.wait_for(f"document.querySelector('h1') && document.querySelector('h1').textContent === {json.dumps(text)}")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        return self.js("document.body.innerText")

    def screenshot(self, name: str) -> None:
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        assert png.startswith(b"\x89PNG") and len(png) > 5_000, f"{name}: a blank screenshot?"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{name}.png").write_bytes(png)


@pytest.fixture
def chromium(tmp_path):
    path = shutil.which("chromium")
    assert path, "headless Chromium is needed: apt-get install chromium (scripts/bootstrap.sh installs it)"
    process = subprocess.Popen(
        [path, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--disable-background-networking", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
         f"--user-data-dir={tmp_path / 'chromium'}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:  # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                break
        else:
            raise AssertionError("chromium did not start its DevTools endpoint")
        threading.Thread(target=process.stderr.read, daemon=True).start()  # keep its pipe drained
        with connect(found.group(1), max_size=None, open_timeout=30) as ws:
            yield Page(ws)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def fake_spotify():
    prefix = f"b{uuid.uuid4().hex[:6]}-"
    server = make_server(0, fake=FakeSpotify(n_users=1, user_prefix=prefix))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", f"{prefix}demo-ana"
    server.shutdown()
    server.server_close()


@pytest.fixture
def site(people_config, fake_spotify, mailbox):
    """Both apps mounted as the api-server's plugin mounts them, served by uvicorn; yields the base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    spotify_base, _ = fake_spotify
    app_of_spotify = spotify.SpotifyApp("demo-client-id", "demo-client-secret", f"{spotify_base}/v1/", spotify_base,
                                        f"{base}/wrapped/callback")
    config = dataclasses.replace(people_config, spotify_app=app_of_spotify, public_url=base, demo_mode=True)
    root = FastAPI()
    root.mount("/wrapped/account", create_account_app(lambda: config, lambda: {}))
    root.mount("/wrapped", create_app(lambda: config))
    server = uvicorn.Server(uvicorn.Config(root, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(timeout=30)


def test_join_confirm_and_unsubscribe_in_a_browser(chromium, site, fake_spotify, mailbox, people_db, people_config):
    _, user_id = fake_spotify
    email = f"{user_id}@example.org"
    page = chromium

    # The onboarding page: fill it in and connect Spotify.
    page.goto(f"{site}/wrapped/connect")
    page.heading_is("Weekly Wrapped")
    assert page.js("document.querySelector(\"a[href='account/delete']\").href") == f"{site}/wrapped/account/delete"
    page.js(f"document.querySelector('input[name=email]').value = {json.dumps(email)}")
    page.screenshot("1-onboarding")
    page.js("document.querySelector('form').requestSubmit()")
    page.wait_for("document.body.innerText.includes('Fake Spotify')")  # the (fake) consent page
    page.js("document.querySelector('a').click()")
    page.wait_for("location.pathname === '/wrapped/callback'")
    assert email in page.text() and "confirm" in page.text().lower()
    page.screenshot("2-check-your-inbox")
    [row] = sql(people_db, "select email_confirmed_at, pending_email from app.users where user_id = %s", (user_id,))
    assert row == (None, email)

    # The confirmation link from the e-mail: a page with a button, then confirmed.
    [message] = mailbox.to(email)
    link = re.search(r"http://127\.0\.0\.1:\d+/wrapped/account/confirm\?token=\S+",
                     message.get_body(("plain",)).get_content()).group(0)
    page.goto(link)
    page.heading_is("Confirm your address")
    assert email in page.text()
    page.screenshot("3-confirm-address")
    page.js("document.querySelector('button').click()")
    page.heading_is("Address confirmed")
    page.screenshot("4-address-confirmed")
    [row] = sql(people_db, "select email, email_confirmed_at is not null, pending_email, status from app.users "
                           "where user_id = %s", (user_id,))
    assert row == (email, True, None, "active")

    # The unsubscribe link a recap carries: opening it changes nothing, the button unsubscribes.
    page.goto(leaving.unsubscribe_url(people_config.link_secret, site, user_id))
    page.heading_is("Unsubscribe")
    page.screenshot("5-unsubscribe")
    assert sql(people_db, "select status from app.users where user_id = %s", (user_id,)) == [("active",)]
    page.js("document.querySelector('button').click()")
    page.heading_is("Unsubscribed")
    page.screenshot("6-unsubscribed")
    assert sql(people_db, "select status from app.users where user_id = %s", (user_id,)) == [("unsubscribed",)]
    sql(people_db, "delete from app.users where user_id = %s", (user_id,))
