"""Stored Spotify refresh tokens, encrypted with the keys of `wrapped_token_secret`.

The Variable holds Fernet keys, comma-separated, newest first (MultiFernet): the first
encrypts, every one decrypts. To roll a new key in, an operator sets `NEW,OLD`; `rotate`
re-encrypts every stored token with NEW (the `rotate_token_keys` task at the start of each
`spotify_ingest` run), after which OLD can be dropped (README, "Secrets and keys").

A token no configured key opens raises `TokenUndecryptable`, whose message never carries the
token or a key: callers mark the user `needs_reauth` with `TokenUndecryptable.REASON`.
"""

from __future__ import annotations

import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from weekly_wrapped import db

log = logging.getLogger(__name__)

ROTATE_BATCH = 500  # users per transaction while re-encrypting


class TokenUndecryptable(ValueError):
    """A stored token that none of the configured keys decrypts (wrong key, or damaged)."""

    REASON = "refresh token cannot be decrypted with the configured keys: reconnect"

    def __init__(self) -> None:
        super().__init__(self.REASON)


def keys(token_secret: str) -> list[Fernet]:
    """The configured keys, newest first; a malformed key is an error that shows no key."""
    parts = [k.strip() for k in (token_secret or "").split(",") if k.strip()]
    if not parts:
        raise ValueError("wrapped_token_secret holds no Fernet key")
    fernets = []
    for position, key in enumerate(parts, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            raise ValueError(f"wrapped_token_secret: key {position} of {len(parts)} is not a Fernet key "
                             "(32 url-safe base64-encoded bytes)") from None
    return fernets


def encrypt(token_secret: str, text: str) -> str:
    """`text` encrypted with the newest key."""
    return MultiFernet(keys(token_secret)).encrypt(text.encode()).decode()


def decrypt(token_secret: str, text: str) -> str:
    """`text` decrypted with whichever configured key opens it; TokenUndecryptable if none does."""
    try:
        return MultiFernet(keys(token_secret)).decrypt(text.encode()).decode()
    except InvalidToken:
        raise TokenUndecryptable() from None  # no chained exception: nothing of the token in tracebacks


def needs_rotation(fernets: list[Fernet], text: str) -> bool:
    """Whether a stored token is not (readably) under the newest key; an HMAC check, no more."""
    try:
        fernets[0].decrypt(text.encode())
        return False
    except InvalidToken:
        return True


def rotate(dsn: str, token_secret: str) -> int:
    """Re-encrypt every stored refresh token not under the newest key; returns how many were.

    With one key there is nothing older to move away from, so nothing is read. Idempotent: a
    second call finds nothing to do. One transaction per batch of users; a row changed meanwhile
    (a new token saved by onboarding or polling) is left alone, since it is already under the
    newest key. Tokens no key decrypts stay as they are (their users are asked to reconnect).
    """
    fernets = keys(token_secret)
    if len(fernets) == 1:
        return 0
    newest_first = MultiFernet(fernets)
    rotated = undecryptable = 0
    after = ""
    while True:
        with db.transaction(dsn) as cur:
            cur.execute("select user_id, refresh_token_encrypted from app.users "
                        "where refresh_token_encrypted is not null and user_id > %s "
                        "order by user_id limit %s", (after, ROTATE_BATCH))
            rows = cur.fetchall()
            for user_id, stored in rows:
                if not needs_rotation(fernets, stored):
                    continue
                try:
                    fresh = newest_first.rotate(stored.encode()).decode()
                except InvalidToken:
                    undecryptable += 1
                    continue
                cur.execute("update app.users set refresh_token_encrypted = %s, updated_at = now() "
                            "where user_id = %s and refresh_token_encrypted = %s", (fresh, user_id, stored))
                rotated += cur.rowcount
        if len(rows) < ROTATE_BATCH:
            break
        after = rows[-1][0]
    log.info("token keys: %d refresh tokens re-encrypted with the newest key, %d no key decrypts",
             rotated, undecryptable)
    return rotated
