"""Many synthetic listeners at once: the fake Spotify serves them, the warehouse knows them as users.

`add_listeners` grows the fake Spotify to `count` listeners (the demo's three, then
`demo-user-004` ...) and onboards each one through the real OAuth code flow, as the demo
does (`demo_users.onboard_demo_users`): so every `app.users` row holds a refresh token,
encrypted with the stack's token secret, that the fake honours. Refresh tokens live in the
fake's memory: after the fake restarts, add the listeners again.

`remove_listeners` deletes the numbered listeners' data through the product's own deletion
(`users.leaving.delete_user_data`), so a benchmark leaves the shared warehouse as it found it
(the demo's three stay). Run: `wrapped listeners add --count 1000` / `wrapped listeners remove`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from weekly_wrapped import db
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.users import accounts
from weekly_wrapped.users.leaving import delete_user_data
from wrapped_dev.demo_users import authorize_on_fake, fake_demo_users

NUMBERED_PREFIX = "demo-user-"  # the fake's listeners after the demo's named three
ONBOARDING_THREADS = 8


def grow_fake(accounts_base: str, count: int) -> int:
    """Ask the fake Spotify to serve at least `count` listeners; returns how many it serves."""
    r = requests.post(f"{accounts_base.rstrip('/')}/_control/listeners", json={"count": count}, timeout=10)
    r.raise_for_status()
    return r.json()["listeners"]


def add_listeners(settings, count: int, dsn: str | None = None, app: spotify.SpotifyApp | None = None,
                  progress=print) -> list[str]:
    """Serve `count` listeners on the fake and onboard them all (idempotent); returns their ids."""
    dsn = dsn or settings.warehouse_dsn
    app = app or settings.spotify_app
    grow_fake(app.accounts, count)
    wanted = fake_demo_users(app.accounts)[:count]
    started = time.monotonic()

    def onboard(u: dict) -> str:
        verifier, challenge = spotify.pkce_pair()
        code = authorize_on_fake(app, u["user_id"], challenge)
        return accounts.onboard_with_code(dsn, settings.token_secret, app, code=code, code_verifier=verifier,
                                          email=u["email"], time_zone=u["time_zone"])

    with ThreadPoolExecutor(ONBOARDING_THREADS, thread_name_prefix="onboard") as pool:
        onboarded = list(pool.map(onboard, wanted))
    # Their addresses all land in the local SMTP sink: count them as confirmed, as the demo does.
    with db.transaction(dsn) as cur:
        cur.execute("update app.users set email_confirmed_at = coalesce(email_confirmed_at, now()), "
                    "pending_email = null where user_id = any(%s)", (onboarded,))
    progress(f"{len(onboarded)} listeners onboarded in {time.monotonic() - started:.1f}s")
    return onboarded


def remove_listeners(settings, dsn: str | None = None, progress=print) -> int:
    """Delete every numbered listener's data (the demo's three stay); returns how many were deleted."""
    dsn = dsn or settings.warehouse_dsn
    with db.transaction(dsn) as cur:
        cur.execute("select user_id from app.users where user_id like %s order by user_id", (NUMBERED_PREFIX + "%",))
        user_ids = [r[0] for r in cur.fetchall()]
    started = time.monotonic()
    with ThreadPoolExecutor(ONBOARDING_THREADS, thread_name_prefix="delete") as pool:
        list(pool.map(lambda user_id: delete_user_data(dsn, user_id), user_ids))
    progress(f"{len(user_ids)} listeners deleted in {time.monotonic() - started:.1f}s")
    return len(user_ids)


def main(args, settings) -> int:
    if args.action == "add":
        add_listeners(settings, args.count)
    else:
        remove_listeners(settings)
    return 0
