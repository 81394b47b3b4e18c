"""People: onboarding through Spotify's Authorization Code flow, consent, status.

A user row holds what Spotify cannot tell us in 2026 (the recap e-mail address and
the IANA time zone, asked for at onboarding), the refresh token encrypted with the keys
of `wrapped_token_secret` (`users.tokens`) and when consent was given. Ingestion polls
only `active` users; `invalid_grant`, or a stored token no configured key decrypts, flips
a user to `needs_reauth` until they connect again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from spotipy.exceptions import SpotifyOauthError

from weekly_wrapped import db
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.users import addresses, invites, tokens


class OnboardingError(ValueError):
    """The onboarding input or the OAuth exchange was not acceptable."""


@dataclass(frozen=True)
class User:
    user_id: str
    display_name: str | None
    email: str
    time_zone: str
    status: str


def encrypt_token(token_secret: str, token: str) -> str:
    """`token` encrypted with the newest key of `token_secret` (keys comma-separated, newest first)."""
    return tokens.encrypt(token_secret, token)


def decrypt_token(token_secret: str, encrypted: str) -> str:
    """Raises `tokens.TokenUndecryptable` when no configured key opens it."""
    return tokens.decrypt(token_secret, encrypted)


def check_profile(email: str, time_zone: str) -> str:
    """The address, normalized; OnboardingError unless it is exactly one valid address (email-validator,
    no DNS look-up) and the time zone a real IANA name."""
    try:
        email = addresses.normalized(email)
    except addresses.AddressError as exc:
        raise OnboardingError(str(exc)) from None
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise OnboardingError(f"not an IANA time zone: {time_zone!r}") from exc
    return email


def save_user(dsn: str, token_secret: str, *, user_id: str, display_name: str | None, email: str,
              time_zone: str, refresh_token: str, consent_at: datetime | None = None,
              invite_sha256: str | None = None) -> bool:
    """Store a freshly consented user as active with the encrypted refresh token; True if new.

    A new user gets `email` unconfirmed (`users.addresses.ask_to_confirm` mails it). An existing
    user's address is never replaced here, only the token, consent, status and time zone: a new
    address must be confirmed first. With `invite_sha256`, the invite is claimed for this user in
    the same transaction (`invites.InviteError` if it is revoked or another account's).
    """
    email = check_profile(email, time_zone)
    consent_at = consent_at or datetime.now(timezone.utc)
    with db.transaction(dsn) as cur:
        cur.execute(
            """
            insert into app.users (user_id, display_name, email, time_zone, refresh_token_encrypted,
                                   consent_at, status, status_reason)
            values (%s, %s, %s, %s, %s, %s, 'active', null)
            on conflict (user_id) do update set
                display_name = excluded.display_name, time_zone = excluded.time_zone,
                refresh_token_encrypted = excluded.refresh_token_encrypted,
                consent_at = excluded.consent_at, status = 'active', status_reason = null,
                updated_at = now()
            returning (xmax = 0)
            """,
            (user_id, display_name, email, time_zone, encrypt_token(token_secret, refresh_token), consent_at),
        )
        created = cur.fetchone()[0]
        # Someone who deleted their data and joins again: their plays load again (streaming.sink).
        cur.execute("delete from app.deleted_users where user_id_sha256 = encode(sha256(convert_to(%s, 'UTF8')), "
                    "'hex')", (user_id,))
        if invite_sha256:
            invites.claim(cur, invite_sha256, user_id)
    return created


def exchange_code(app: spotify.SpotifyApp, code: str, code_verifier: str | None = None) -> tuple[dict, str]:
    """Trade an authorization code (with its PKCE verifier) for tokens; returns (the Spotify
    profile from /me, refresh token). OnboardingError when Spotify refuses."""
    if not code:
        raise OnboardingError("Spotify sent no authorization code")
    try:
        tokens_ = spotify.request_tokens(app, code, code_verifier)
    except SpotifyOauthError as exc:
        raise OnboardingError(f"Spotify refused the authorization code: {exc.error}") from None
    refresh_token = tokens_.get("refresh_token")
    if not refresh_token:
        raise OnboardingError("Spotify returned no refresh token")
    profile = spotify.client_for_access_token(app, tokens_["access_token"]).me()
    return profile, refresh_token


def onboard_with_code(dsn: str, token_secret: str, app: spotify.SpotifyApp, *, code: str, email: str,
                      time_zone: str, code_verifier: str | None = None, invite_sha256: str | None = None,
                      only_user_id: str | None = None) -> str:
    """The onboarding page's back end: code from Spotify's redirect + e-mail + time zone -> user id.

    See `save_user`: an existing user's address is kept; the caller asks to confirm a new one.
    With `only_user_id` (a reconnect link), any other Spotify account is refused.
    """
    email = check_profile(email, time_zone)  # before spending the one-time code
    profile, refresh_token = exchange_code(app, code, code_verifier)
    if only_user_id is not None and profile["id"] != only_user_id:
        raise OnboardingError("this reconnect link is for another Spotify account")
    save_user(dsn, token_secret, user_id=profile["id"], display_name=profile.get("display_name"),
              email=email, time_zone=time_zone, refresh_token=refresh_token, invite_sha256=invite_sha256)
    return profile["id"]


def save_refresh_token(dsn: str, token_secret: str, user_id: str, refresh_token: str) -> None:
    """Store a rotated refresh token (Spotify sometimes returns a new one on refresh)."""
    with db.transaction(dsn) as cur:
        cur.execute("update app.users set refresh_token_encrypted = %s, updated_at = now() where user_id = %s",
                    (encrypt_token(token_secret, refresh_token), user_id))


def mark_needs_reauth(dsn: str, user_id: str, reason: str) -> None:
    with db.transaction(dsn) as cur:
        cur.execute("update app.users set status = 'needs_reauth', status_reason = %s, updated_at = now() "
                    "where user_id = %s", (reason[:500], user_id))


def refresh_token_of(dsn: str, token_secret: str, user_id: str) -> str | None:
    """The user's refresh token, None if none is stored; `tokens.TokenUndecryptable` if no key opens it."""
    with db.transaction(dsn) as cur:
        cur.execute("select refresh_token_encrypted from app.users where user_id = %s", (user_id,))
        row = cur.fetchone()
    return decrypt_token(token_secret, row[0]) if row and row[0] else None


def list_active_users(dsn: str) -> list[str]:
    """Ids of users ingestion should poll, in a stable order."""
    with db.transaction(dsn) as cur:
        cur.execute("select user_id from app.users where status = 'active' "
                    "and refresh_token_encrypted is not null order by user_id")
        ids = [r[0] for r in cur.fetchall()]
    return ids


def get_user(dsn: str, user_id: str) -> User | None:
    with db.transaction(dsn) as cur:
        cur.execute("select user_id, display_name, email, time_zone, status from app.users where user_id = %s",
                    (user_id,))
        row = cur.fetchone()
    return User(*row) if row else None
