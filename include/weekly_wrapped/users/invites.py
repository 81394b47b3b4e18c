"""Invites: who may join outside demo mode, one code per person, revocable.

The operator makes a code for each person (`create`), hands it over, and can `revoke` it at
any time. Only the code's SHA-256 is stored (codes are random, so a fast hash is enough),
with a label saying whom it was for. The first Spotify account that joins with a code claims
it (`used_by`); the same account may use it again to reconnect, no other account can.

The onboarding page counts failed codes (`app.onboarding_attempts`) and refuses everyone for a
while after too many, overall and per code: guessing codes costs time, and the page trusts no
source address (behind a reverse proxy every client looks the same).

Operator's command (reads the warehouse from Airflow's `postgres_default`, like the DAGs):

    python -m weekly_wrapped.users.invites create --label ana
    python -m weekly_wrapped.users.invites list
    python -m weekly_wrapped.users.invites revoke CODE_OR_LABEL
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from weekly_wrapped import db

# Failed codes in the last ATTEMPT_WINDOW_MIN minutes that close the page for a while.
ATTEMPT_WINDOW_MIN = 15
MAX_FAILURES_OVERALL = 30
MAX_FAILURES_PER_CODE = 5


class InviteError(ValueError):
    """No such invite, or it cannot be used (revoked, or claimed by another account)."""


@dataclass(frozen=True)
class Invite:
    label: str
    created_at: datetime
    revoked_at: datetime | None
    used_by: str | None
    used_at: datetime | None


def code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def new_code() -> str:
    """A random code (96 bits) that does not start with "-": `revoke <code>` would read it as an option."""
    code = secrets.token_urlsafe(12)
    while code.startswith("-"):
        code = secrets.token_urlsafe(12)
    return code


def create(dsn: str, label: str) -> str:
    """A new code for `label` (unique); the code itself is returned once and never stored."""
    label = label.strip()
    if not label:
        raise InviteError("an invite needs a label (whom it is for)")
    code = new_code()
    with db.transaction(dsn) as cur:
        cur.execute("insert into app.invites (code_sha256, label) values (%s, %s) on conflict (label) do nothing",
                    (code_hash(code), label))
        if not cur.rowcount:
            raise InviteError(f"there is already an invite labelled {label!r}")
    return code


def list_invites(dsn: str) -> list[Invite]:
    with db.transaction(dsn) as cur:
        cur.execute("select label, created_at, revoked_at, used_by, used_at from app.invites order by created_at")
        return [Invite(*row) for row in cur.fetchall()]


def revoke(dsn: str, code_or_label: str) -> str:
    """Revoke an invite by its code or its label; returns the label. Its user, if any, stays."""
    with db.transaction(dsn) as cur:
        cur.execute("update app.invites set revoked_at = coalesce(revoked_at, now()) "
                    "where code_sha256 = %s or label = %s returning label",
                    (code_hash(code_or_label), code_or_label.strip()))
        row = cur.fetchone()
    if row is None:
        raise InviteError(f"no invite {code_or_label!r}")
    return row[0]


def usable(dsn: str, code: str) -> bool:
    """The code names an invite that is not revoked (claimed or not: its owner may reconnect)."""
    with db.transaction(dsn) as cur:
        cur.execute("select 1 from app.invites where code_sha256 = %s and revoked_at is null", (code_hash(code),))
        return cur.fetchone() is not None


def claim(cur, invite_sha256: str, user_id: str) -> None:
    """In the caller's transaction: the invite now belongs to `user_id`, InviteError if it cannot."""
    cur.execute("update app.invites set used_by = %s, used_at = coalesce(used_at, now()) "
                "where code_sha256 = %s and revoked_at is null and (used_by is null or used_by = %s)",
                (user_id, invite_sha256, user_id))
    if not cur.rowcount:
        raise InviteError("this invite was revoked or is already used by another Spotify account")


def too_many_failures(dsn: str, code: str) -> bool:
    """Too many wrong codes lately, overall or for this very code: refuse for now."""
    with db.transaction(dsn) as cur:
        cur.execute(
            "select count(*), count(*) filter (where code_sha256 = %s) from app.onboarding_attempts "
            "where not succeeded and at > now() - make_interval(mins => %s)",
            (code_hash(code), ATTEMPT_WINDOW_MIN))
        overall, this_code = cur.fetchone()
    return overall >= MAX_FAILURES_OVERALL or this_code >= MAX_FAILURES_PER_CODE


def record_attempt(dsn: str, code: str, succeeded: bool) -> None:
    with db.transaction(dsn) as cur:
        cur.execute("delete from app.onboarding_attempts where at < now() - interval '1 day'")
        cur.execute("insert into app.onboarding_attempts (code_sha256, succeeded) values (%s, %s)",
                    (code_hash(code) if code else None, succeeded))


def main(argv: list[str] | None = None, dsn: str | None = None, public_url: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weekly_wrapped.users.invites",
                                     description="Invite codes for Weekly Wrapped's onboarding page.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_create = sub.add_parser("create", help="a new code for one person (shown once)")
    p_create.add_argument("--label", required=True, help="whom it is for, e.g. ana")
    sub.add_parser("list", help="every invite: label, created, revoked, used by")
    p_revoke = sub.add_parser("revoke", help="revoke an invite by its code or label")
    p_revoke.add_argument("code_or_label")
    args = parser.parse_args(argv)
    if dsn is None or (args.command == "create" and public_url is None):
        from weekly_wrapped.airflow import connections as conns

        dsn = dsn or conns.warehouse_dsn()
        if public_url is None:
            public_url = conns.variable("wrapped_public_url")
    try:
        if args.command == "create":
            code = create(dsn, args.label)
            print(f"invite for {args.label.strip()}: {code}")
            print(f"they join at {public_url.rstrip('/')}/wrapped/connect?invite={code}")
        elif args.command == "list":
            for i in list_invites(dsn):
                state = ("revoked " + i.revoked_at.isoformat(timespec="minutes")) if i.revoked_at else "open"
                used = f"used by {i.used_by}" if i.used_by else "not used yet"
                print(f"{i.label}\tcreated {i.created_at.isoformat(timespec='minutes')}\t{state}\t{used}")
        else:
            print(f"revoked the invite for {revoke(dsn, args.code_or_label)}")
    except InviteError as exc:
        print(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
