"""The onboarding page end to end: form -> (fake) Spotify consent -> callback -> an active user."""

import re
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from urllib.parse import parse_qs, urlparse

import requests
from fastapi.testclient import TestClient

from weekly_wrapped.users import accounts as users
from wrapped_dev.config import REPO_ROOT
from wrapped_dev.fakes.spotify_server import FakeSpotify, make_server
from weekly_wrapped.users.onboarding import create_app


def test_connect_spotify_with_email_and_time_zone(postgres, settings):
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    server = make_server(0, fake=FakeSpotify(n_users=1, user_prefix=prefix))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    local = replace(settings, spotify_api_base=f"{base}/v1/", spotify_accounts_base=base)
    page = TestClient(create_app(lambda: local.onboarding))
    user_id = f"{prefix}demo-ana"
    try:
        assert "Connect Spotify" in page.get("/connect").text
        bad = page.post("/connect", content="email=nope&time_zone=Mars%2FOlympus",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert bad.status_code == 400 and "not an e-mail address" in bad.text

        sent = page.post("/connect", content="email=ana%40example.org&time_zone=Europe%2FBerlin",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)
        assert sent.status_code == 303
        authorize = sent.headers["location"]
        assert authorize.startswith(f"{base}/authorize?") and "redirect_uri=" in authorize
        # the user logs in and agrees on (fake) Spotify, which redirects back with a code
        consent = requests.get(authorize + f"&fake_user={user_id}", allow_redirects=False, timeout=10)
        back = urlparse(consent.headers["Location"])
        assert back.path == "/wrapped/callback"
        done = page.get("/callback", params={k: v[0] for k, v in parse_qs(back.query).items()})
        assert done.status_code == 200 and "ana@example.org" in done.text

        user = users.get_user(settings.warehouse_dsn, user_id)
        assert (user.email, user.time_zone, user.status) == ("ana@example.org", "Europe/Berlin", "active")
        assert users.refresh_token_of(settings.warehouse_dsn, settings.token_secret, user_id).startswith("fake-rt-")
        # a tampered state is refused
        assert page.get("/callback", params={"code": "x", "state": "forged"}).status_code == 400
        assert page.get("/callback", params={"error": "access_denied"}).status_code == 400
    finally:
        server.shutdown()
        server.server_close()
        import psycopg2

        conn = psycopg2.connect(settings.warehouse_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("delete from app.users where user_id = %s", (user_id,))
        conn.close()


def test_airflow_loads_the_plugin():
    code = ("from airflow import plugins_manager as pm\n"
            "pm.ensure_plugins_loaded() if hasattr(pm, 'ensure_plugins_loaded') else None\n"
            "apps, _ = pm.get_fastapi_plugins()\n"
            "print([a['url_prefix'] for a in apps])\n")
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(REPO_ROOT / ".local" / "airflow-parse"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"'/wrapped'", out.stdout), out.stdout + out.stderr[-2000:]


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_without_an_invite_code_only_this_machine_may_connect(settings):
    config = replace(settings.onboarding, invite_code="")
    local = TestClient(create_app(lambda: config), client=("127.0.0.1", 50000))
    remote = TestClient(create_app(lambda: config), client=("203.0.113.9", 50000))
    assert local.get("/connect").status_code == 200
    assert remote.get("/connect").status_code == 403
    refused = remote.post("/connect", content="email=a%40b.org&time_zone=UTC", headers=FORM)
    assert refused.status_code == 403


def test_with_an_invite_code_the_form_asks_for_it(settings):
    config = replace(settings.onboarding, invite_code="family-2026")
    remote = TestClient(create_app(lambda: config), client=("203.0.113.9", 50000))
    assert "Invite code" in remote.get("/connect").text
    wrong = remote.post("/connect", content="email=a%40b.org&time_zone=UTC&invite=guess", headers=FORM)
    assert wrong.status_code == 403 and "invite code is not right" in wrong.text
    right = remote.post("/connect", content="email=a%40b.org&time_zone=UTC&invite=family-2026",
                        headers=FORM, follow_redirects=False)
    assert right.status_code == 303
