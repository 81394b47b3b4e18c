"""Joining safely: the onboarding page and the OAuth flow, driven as a browser and as an attacker would.

The page runs in-process (FastAPI's TestClient, which keeps cookies like a browser), the fake
Spotify on a free port over HTTP, the warehouse is a private database with the real schema, and
confirmation e-mails land in a private SMTP sink (tests/people/conftest.py).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap
import threading
import uuid
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from fastapi.testclient import TestClient

from tests.support.postgres import sql
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.users import accounts, invites, links
from weekly_wrapped.users.onboarding import STATE_COOKIE, create_app
from wrapped_dev.config import REPO_ROOT
from wrapped_dev.fakes.spotify_server import FakeSpotify, make_server

REDIRECT_URI = "http://wrapped.test/wrapped/callback"


@pytest.fixture(scope="module")
def fake_spotify():
    """A fake Spotify of this module's own, its users' ids unique to this run."""
    prefix = f"j{uuid.uuid4().hex[:6]}-"
    server = make_server(0, fake=FakeSpotify(n_users=3, user_prefix=prefix))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield base, [f"{prefix}demo-ana", f"{prefix}demo-marcus", f"{prefix}demo-yuki"]
    server.shutdown()
    server.server_close()


@pytest.fixture
def config(people_config, fake_spotify, mailbox):
    base, _ = fake_spotify
    app = spotify.SpotifyApp("demo-client-id", "demo-client-secret", f"{base}/v1/", base, REDIRECT_URI)
    return dataclasses.replace(people_config, spotify_app=app, demo_mode=True)


@pytest.fixture
def users_of(fake_spotify, people_db):
    """The fake's user ids; their rows (and invites, attempts) are removed afterwards."""
    yield fake_spotify[1]
    sql(people_db, "delete from app.users where user_id = any(%s)", (fake_spotify[1],))
    sql(people_db, "delete from app.invites")
    sql(people_db, "delete from app.onboarding_attempts")


def browser(config, **kwargs) -> TestClient:
    return TestClient(create_app(lambda: config), **kwargs)


def put_state_cookie(page: TestClient, value: str) -> None:
    """Replace the browser's state cookie, as an attacker with access to it would."""
    for cookie in [c for c in page.cookies.jar if c.name == STATE_COOKIE]:
        page.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)
    page.cookies.set(STATE_COOKIE, value, domain="testserver.local", path="/")


def form_token(page: TestClient) -> str:
    form = page.get("/connect")
    assert form.status_code == 200, form.text
    return re.search(r"name='csrf' value='([^']+)'", form.text).group(1)


def start(page: TestClient, email="ana@example.org", time_zone="Europe/Berlin", invite=None, headers=None):
    """Load the form and send it, as a person would; the response (303 to Spotify when all is well)."""
    data = {"csrf": form_token(page), "email": email, "time_zone": time_zone}
    if invite is not None:
        data["invite"] = invite
    return page.post("/connect", data=data, headers=headers or {}, follow_redirects=False)


def consent(authorize_url: str, user_id: str) -> dict:
    """Log in and agree on the (fake) Spotify; the query it sends the browser back with."""
    answer = requests.get(authorize_url + f"&fake_user={user_id}", allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = urlparse(answer.headers["Location"])
    assert f"http://{back.netloc}{back.path}" == REDIRECT_URI
    return {k: v[0] for k, v in parse_qs(back.query).items()}


def user_row(dsn: str, user_id: str):
    rows = sql(dsn, "select email, email_confirmed_at, pending_email, status, time_zone from app.users "
                    "where user_id = %s", (user_id,))
    return rows[0] if rows else None


def test_join_then_check_the_inbox(config, users_of, mailbox, people_db):
    ana = users_of[0]
    page = browser(config)
    sent = start(page)
    assert sent.status_code == 303
    authorize = sent.headers["location"]
    query = parse_qs(urlparse(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert "ana" not in authorize and "example.org" not in authorize  # the address stays home
    cookie = next(c for c in page.cookies.jar if c.name == STATE_COOKIE)
    assert cookie.has_nonstandard_attr("HttpOnly") and "lax" in str(cookie._rest).lower()

    done = page.get("/callback", params=consent(authorize, ana))
    assert done.status_code == 200 and "Check your inbox" in done.text and "ana@example.org" in done.text
    assert STATE_COOKIE not in page.cookies  # cleared
    email, confirmed_at, pending, status, time_zone = user_row(people_db, ana)
    assert (email, confirmed_at, pending, status, time_zone) == (
        "ana@example.org", None, "ana@example.org", "active", "Europe/Berlin")
    assert accounts.refresh_token_of(people_db, config.token_secret, ana).startswith("fake-rt-")
    [message] = mailbox.to("ana@example.org")
    assert "/wrapped/account/confirm?token=" in message.get_body(("plain",)).get_content()


def test_an_existing_users_address_is_never_overwritten(config, users_of, mailbox, people_db):
    ana = users_of[0]
    page = browser(config)
    page.get("/callback", params=consent(start(page).headers["location"], ana))
    sql(people_db, "update app.users set email_confirmed_at = now(), pending_email = null where user_id = %s", (ana,))

    # Someone who controls Ana's Spotify login asks for the recaps elsewhere: only a confirmation goes there.
    other = browser(config)
    done = other.get("/callback", params=consent(start(other, email="eve@example.org").headers["location"], ana))
    assert done.status_code == 200 and "current address" in done.text
    email, confirmed_at, pending, *_ = user_row(people_db, ana)
    assert (email, pending) == ("ana@example.org", "eve@example.org") and confirmed_at is not None
    assert len(mailbox.to("eve@example.org")) == 1

    # Reconnecting with the address in use sends nothing.
    again = browser(config)
    done = again.get("/callback", params=consent(start(again).headers["location"], ana))
    assert done.status_code == 200 and "connected again" in done.text
    assert len(mailbox.to("ana@example.org")) == 1  # the first confirmation only


def test_a_forged_state_is_refused(config, users_of, people_db):
    page = browser(config)
    back = consent(start(page).headers["location"], users_of[1])
    forged = page.get("/callback", params={**back, "state": "forged"})
    assert forged.status_code == 400 and "does not belong" in forged.text

    # A cookie signed with another secret (or for another purpose) is not ours either.
    other = browser(config)
    back = consent(start(other).headers["location"], users_of[1])
    put_state_cookie(other, links.sign("another-secret", "oauth_state", {"state": back["state"]}))
    refused = other.get("/callback", params=back)
    assert refused.status_code == 400 and "not ours" in refused.text
    assert user_row(people_db, users_of[1]) is None
    odd = browser(config)
    start(odd)
    assert odd.get("/callback", params={"code": "x", "state": "état-forgé"}).status_code == 400


def test_an_expired_state_is_refused(config, users_of, people_db, monkeypatch):
    page = browser(config)
    back = consent(start(page).headers["location"], users_of[1])
    monkeypatch.setitem(links.MAX_AGE_S, "oauth_state", -1)  # as if 15 minutes had passed
    expired = page.get("/callback", params=back)
    assert expired.status_code == 400 and "longer than 15 minutes" in expired.text
    assert user_row(people_db, users_of[1]) is None


def test_a_replayed_callback_fails_even_with_the_cookie(config, users_of, people_db):
    page = browser(config)
    authorize = start(page).headers["location"]
    cookie = page.cookies[STATE_COOKIE]
    assert page.get("/callback", params=consent(authorize, users_of[1])).status_code == 200
    sql(people_db, "delete from app.users where user_id = %s", (users_of[1],))

    # Someone who copied the cookie and the state gets a fresh code for that same state from Spotify.
    put_state_cookie(page, cookie)
    replay = page.get("/callback", params=consent(authorize, users_of[1]))
    assert replay.status_code == 400 and "already used" in replay.text
    assert user_row(people_db, users_of[1]) is None


def test_a_state_from_another_browser_is_refused(config, users_of, people_db):
    attacker = browser(config)
    # The attacker consents with their own Spotify account and sends the callback link to a victim.
    back = consent(start(attacker, email="eve@example.org").headers["location"], users_of[2])

    victim = browser(config)  # no cookie at all
    refused = victim.get("/callback", params=back)
    assert refused.status_code == 400 and "did not start" in refused.text

    busy_victim = browser(config)  # in the middle of joining, with a cookie of their own
    start(busy_victim, email="vic@example.org")
    refused = busy_victim.get("/callback", params=back)
    assert refused.status_code == 400 and "does not belong" in refused.text
    assert user_row(people_db, users_of[2]) is None


def test_cross_site_posts_are_refused(config, users_of):
    page = browser(config)
    token = form_token(page)
    data = {"csrf": token, "email": "ana@example.org", "time_zone": "UTC"}
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Referer": "https://evil.example/form.html"}, {"Sec-Fetch-Site": "cross-site"}):
        refused = page.post("/connect", data=data, headers=headers, follow_redirects=False)
        assert refused.status_code == 403 and "Weekly Wrapped's own page" in refused.text, headers

    # Without the form's token (a page elsewhere cannot read it), or with another browser's.
    no_token = page.post("/connect", data={**data, "csrf": ""}, follow_redirects=False)
    assert no_token.status_code == 403 and "send it again" in no_token.text
    stranger = browser(config)
    stranger.get("/connect")
    foreign = stranger.post("/connect", data=data, follow_redirects=False)
    assert foreign.status_code == 403

    # The page itself, as the browser reached it or under the public address, may post.
    for origin in ("http://testserver", config.public_url):
        assert page.post("/connect", data=data, headers={"Origin": origin},
                         follow_redirects=False).status_code == 303, origin


def test_spotifys_answer_without_a_code_or_with_an_error_is_a_friendly_page(config, users_of):
    page = browser(config)
    back = consent(start(page).headers["location"], users_of[0])
    missing = page.get("/callback", params={"state": back["state"]})
    assert missing.status_code == 400 and "no code" in missing.text and "<html>" in missing.text
    assert page.get("/callback").status_code == 400
    denied = page.get("/callback", params={"error": "access_denied", "state": back["state"]})
    assert denied.status_code == 400 and "access_denied" in denied.text

    # A code Spotify refuses (here: already spent) is a friendly page too.
    spent = browser(config)
    back = consent(start(spent).headers["location"], users_of[0])
    cookie = spent.cookies[STATE_COOKIE]
    verifier = links.verify(config.link_secret, "oauth_state", cookie)["verifier"]
    spotify.request_tokens(config.spotify_app, back["code"], verifier)  # someone else spent it first
    refused = spent.get("/callback", params=back)
    assert refused.status_code == 400 and "Spotify refused" in refused.text


def test_a_database_that_does_not_answer_is_a_friendly_page(config, users_of):
    down = dataclasses.replace(config, dsn="host=127.0.0.1 port=1 dbname=x user=x password=x connect_timeout=2",
                               demo_mode=False)
    page = browser(down)
    refused = start(page, invite="anything")
    assert refused.status_code == 503 and "try again later" in refused.text
    back = consent(start(browser(config)).headers["location"], users_of[0])
    page.cookies.set(STATE_COOKIE, "x")
    assert page.get("/callback", params=back).status_code == 400  # not ours: no database needed
    broken = browser(dataclasses.replace(config, dsn=down.dsn))
    back = consent(start(broken).headers["location"], users_of[0])
    answer = broken.get("/callback", params=back)
    assert answer.status_code == 503 and "try again later" in answer.text


def test_exactly_one_valid_address(config, users_of):
    page = browser(config)
    for address in ("a@b.c,root", "a@b.c root@x.org", "nope", "ana@localhost", "<ana@example.org>"):
        refused = start(page, email=address)
        assert refused.status_code == 400 and "not an e-mail address" in refused.text, address
    with pytest.raises(accounts.OnboardingError):
        accounts.check_profile("a@b.c,root", "UTC")
    assert accounts.check_profile("Ana@Example.ORG", "UTC") == "Ana@example.org"


def test_outside_demo_mode_an_invite_is_required(config, users_of, people_db):
    config = dataclasses.replace(config, demo_mode=False)
    page = browser(config, client=("203.0.113.9", 50000))
    assert "Invite code" in page.get("/connect").text
    assert start(page).status_code == 403
    wrong = start(page, invite="guess")
    assert wrong.status_code == 403 and "invite code is not right" in wrong.text

    code = invites.create(people_db, "ana")
    prefilled = page.get("/connect", params={"invite": code})
    assert code in prefilled.text and "action='connect'" in prefilled.text
    sent = start(page, invite=code)
    assert sent.status_code == 303
    done = page.get("/callback", params=consent(sent.headers["location"], users_of[0]))
    assert done.status_code == 200
    [invite] = invites.list_invites(people_db)
    assert (invite.label, invite.used_by) == ("ana", users_of[0])

    # Ana may reconnect with it; another Spotify account may not join with Ana's code.
    again = start(page, invite=code)
    assert page.get("/callback", params=consent(again.headers["location"], users_of[0])).status_code == 200
    other = start(page, invite=code)
    refused = page.get("/callback", params=consent(other.headers["location"], users_of[1]))
    assert refused.status_code == 403 and "another Spotify account" in refused.text
    assert user_row(people_db, users_of[1]) is None


def test_a_revoked_invite_no_longer_opens_the_door(config, users_of, people_db):
    config = dataclasses.replace(config, demo_mode=False)
    page = browser(config)
    code = invites.create(people_db, "marcus")
    sent = start(page, invite=code)
    assert sent.status_code == 303
    assert invites.revoke(people_db, "marcus") == "marcus"
    assert start(page, invite=code).status_code == 403
    # Revoked between the form and Spotify's answer: the callback refuses too.
    refused = page.get("/callback", params=consent(sent.headers["location"], users_of[1]))
    assert refused.status_code == 403 and user_row(people_db, users_of[1]) is None


def test_wrong_invite_codes_are_rate_limited(config, users_of, people_db):
    config = dataclasses.replace(config, demo_mode=False)
    page = browser(config)
    code = invites.create(people_db, "yuki")
    for _ in range(invites.MAX_FAILURES_PER_CODE):
        assert start(page, invite="same-guess").status_code == 403
    limited = start(page, invite="same-guess")
    assert limited.status_code == 429 and "Too many" in limited.text
    assert start(page, invite="another-guess").status_code == 403  # not closed for everyone yet
    assert start(page, invite=code).status_code == 303

    for n in range(invites.MAX_FAILURES_OVERALL - invites.MAX_FAILURES_PER_CODE - 1):
        start(page, invite=f"guess-{n}")
    assert start(page, invite=code).status_code == 429  # now closed for everyone, for a while
    sql(people_db, "update app.onboarding_attempts set at = at - interval '16 minutes'")
    assert start(page, invite=code).status_code == 303


def test_a_reconnect_link_stands_in_for_the_invite_for_that_user_only(config, users_of, people_db):
    from weekly_wrapped.users.onboarding import reconnect_url

    from weekly_wrapped.users import leaving

    config = dataclasses.replace(config, demo_mode=False)
    # Ana joined earlier; her token has died, and an e-mail brought her this link.
    accounts.save_user(people_db, config.token_secret, user_id=users_of[0], display_name=None,
                    email="ana@example.org", time_zone="UTC", refresh_token="dead")
    url = reconnect_url(config.public_url, config.link_secret, users_of[0])
    token = parse_qs(urlparse(url).query)["reconnect"][0]
    page = browser(config)
    form = page.get("/connect", params={"reconnect": token})
    assert "Invite code" not in form.text
    csrf = re.search(r"name='csrf' value='([^']+)'", form.text).group(1)
    data = {"csrf": csrf, "email": "ana@example.org", "time_zone": "UTC", "reconnect": token}
    sent = page.post("/connect", data=data, follow_redirects=False)
    assert sent.status_code == 303
    refused = page.get("/callback", params=consent(sent.headers["location"], users_of[1]))
    assert refused.status_code == 400 and "another Spotify account" in refused.text
    assert user_row(people_db, users_of[1]) is None
    sent = page.post("/connect", data=data, follow_redirects=False)
    assert page.get("/callback", params=consent(sent.headers["location"], users_of[0])).status_code == 200

    forged = links.sign("another-secret", "reconnect", {"user_id": users_of[1]})
    assert "Invite code" in page.get("/connect", params={"reconnect": forged}).text
    assert page.post("/connect", data={**data, "reconnect": forged}, follow_redirects=False).status_code == 403

    # Once she deleted her data, the link in her old e-mail no longer lets anyone in uninvited.
    leaving.delete_user_data(people_db, users_of[0])
    assert "Invite code" in page.get("/connect", params={"reconnect": token}).text


def test_demo_mode_needs_no_invite(config, users_of):
    page = browser(config, client=("203.0.113.9", 50000))  # no trust in addresses, either way
    form = page.get("/connect")
    assert form.status_code == 200 and "Invite code" not in form.text
    assert start(page).status_code == 303


def test_the_fake_spotify_checks_pkce(config, fake_spotify):
    from wrapped_dev.demo_users import authorize_on_fake

    app = config.spotify_app
    user = fake_spotify[1][0]
    verifier, challenge = spotify.pkce_pair()
    code = authorize_on_fake(app, user, challenge)
    with pytest.raises(accounts.OnboardingError, match="invalid_grant"):
        accounts.exchange_code(app, code, spotify.pkce_pair()[0])  # the wrong verifier
    code = authorize_on_fake(app, user, challenge)
    with pytest.raises(accounts.OnboardingError, match="invalid_request"):
        accounts.exchange_code(app, code)  # none
    code = authorize_on_fake(app, user, challenge)
    profile, refresh = accounts.exchange_code(app, code, verifier)
    assert profile["id"] == user and refresh.startswith("fake-rt-")
    plain = authorize_on_fake(app, user)  # no challenge: no verifier needed (plain code flow)
    assert accounts.exchange_code(app, plain)[0]["id"] == user


# Airflow 3's api-server logs each request with its query (structlog, `http.access`); uvicorn's
# own access log (`uvicorn.access`) does too when it is on. Both run here as in the api-server.
ACCESS_LOG_PROBE = textwrap.dedent("""
    import logging, sys
    import airflow  # configures Airflow's logging, as in the api-server
    from airflow import plugins_manager
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from airflow.api_fastapi.common.http_access_log import HttpAccessLogMiddleware

    [page] = [a for a in plugins_manager.get_fastapi_plugins()[0] if a["url_prefix"] == "/wrapped"]
    root = FastAPI()  # as airflow.api_fastapi.app mounts plugin apps, with its access log outermost
    root.mount("/wrapped", page["app"])
    root.add_middleware(HttpAccessLogMiddleware)
    for client_side in ("httpx", "httpx2"):  # the test client's own request log is not the server's
        logging.getLogger(client_side).setLevel(logging.WARNING)
    client = TestClient(root, raise_server_exceptions=False)
    client.get("/wrapped/callback", params={"code": "SECRET-CODE-1", "state": "SECRET-STATE-1"})
    client.get("/elsewhere", params={"page": "KEEP-ME"})
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.addHandler(logging.StreamHandler(sys.stdout))
    uvicorn_access.setLevel(logging.INFO)
    uvicorn_access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET",
                        "/wrapped/callback?code=SECRET-CODE-2&state=SECRET-STATE-2", "1.1", 200)
    sys.stdout.flush()
""")


def test_codes_and_states_stay_out_of_the_access_log():
    """The plugin, loaded by Airflow's plugins manager, behind Airflow's own access-log middleware."""
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(REPO_ROOT / ".local" / "airflow-parse"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run([sys.executable, "-c", ACCESS_LOG_PROBE], capture_output=True, text=True, env=env,
                         timeout=120)
    logged = out.stdout + out.stderr
    assert out.returncode == 0, logged[-3000:]
    assert "path=/wrapped/callback" in logged and "/wrapped/callback?[redacted]" in logged, logged[-3000:]
    assert "KEEP-ME" in logged  # other paths keep their query
    assert "SECRET" not in logged, logged[-3000:]


def test_an_invite_code_never_starts_like_a_command_line_option(monkeypatch):
    drawn = iter(["-starts-like-an-option", "plainCode_-x"])
    monkeypatch.setattr(invites.secrets, "token_urlsafe", lambda n: next(drawn))
    assert invites.new_code() == "plainCode_-x"


def test_the_operators_invite_command(people_db, capsys):
    assert invites.main(["create", "--label", "zoe"], dsn=people_db, public_url="https://w.example") == 0
    printed = capsys.readouterr().out
    code = re.search(r"invite for zoe: (\S+)", printed).group(1)
    assert f"https://w.example/wrapped/connect?invite={code}" in printed
    assert code not in str(sql(people_db, "select * from app.invites"))  # only its hash is kept
    assert invites.main(["create", "--label", "zoe"], dsn=people_db, public_url="x") == 1  # labels are unique
    assert invites.main(["list"], dsn=people_db) == 0 and "zoe" in capsys.readouterr().out
    assert invites.main(["revoke", code], dsn=people_db) == 0
    assert not invites.usable(people_db, code)
    sql(people_db, "delete from app.invites where label = 'zoe'")
