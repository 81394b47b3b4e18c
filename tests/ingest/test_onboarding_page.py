"""The onboarding page as Airflow serves it: the plugin loads, and the page's flow reaches an active user.

The attacks on the page (forged, replayed and foreign states, cross-site posts, invites, rate
limits, the access log) are in tests/people/test_joining.py.
"""

import re
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from urllib.parse import parse_qs, urlparse

import requests
from fastapi.testclient import TestClient

from tests.support.postgres import sql
from weekly_wrapped.users import accounts as users
from weekly_wrapped.users.onboarding import create_app
from wrapped_dev.config import REPO_ROOT
from wrapped_dev.fakes.spotify_server import FakeSpotify, make_server


def test_connect_spotify_with_email_and_time_zone(postgres, settings, monkeypatch):
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    server = make_server(0, fake=FakeSpotify(n_users=1, user_prefix=prefix))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    local = replace(settings, spotify_api_base=f"{base}/v1/", spotify_accounts_base=base)
    asked = []
    monkeypatch.setattr("weekly_wrapped.users.addresses.ask_to_confirm",
                        lambda config, user_id, email: asked.append((user_id, email)))
    page = TestClient(create_app(lambda: replace(local.onboarding, demo_mode=True)))
    user_id = f"{prefix}demo-ana"
    try:
        form = page.get("/connect")
        assert "Connect Spotify" in form.text
        csrf = re.search(r"name='csrf' value='([^']+)'", form.text).group(1)
        bad = page.post("/connect", data={"csrf": csrf, "email": "nope", "time_zone": "Mars/Olympus"})
        assert bad.status_code == 400 and "not an e-mail address" in bad.text

        sent = page.post("/connect", data={"csrf": csrf, "email": "ana@example.org", "time_zone": "Europe/Berlin"},
                         follow_redirects=False)
        assert sent.status_code == 303
        authorize = sent.headers["location"]
        assert authorize.startswith(f"{base}/authorize?") and "redirect_uri=" in authorize
        # the user logs in and agrees on (fake) Spotify, which redirects back with a code
        consent = requests.get(authorize + f"&fake_user={user_id}", allow_redirects=False, timeout=10)
        back = urlparse(consent.headers["Location"])
        assert back.path == "/wrapped/callback"
        done = page.get("/callback", params={k: v[0] for k, v in parse_qs(back.query).items()})
        assert done.status_code == 200 and "ana@example.org" in done.text
        assert asked == [(user_id, "ana@example.org")]

        user = users.get_user(settings.warehouse_dsn, user_id)
        assert (user.email, user.time_zone, user.status) == ("ana@example.org", "Europe/Berlin", "active")
        assert users.refresh_token_of(settings.warehouse_dsn, settings.token_secret, user_id).startswith("fake-rt-")
    finally:
        server.shutdown()
        server.server_close()
        sql(settings.warehouse_dsn, "delete from app.users where user_id = %s", (user_id,))


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
