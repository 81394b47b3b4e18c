"""The recap address is confirmed by its owner (double opt-in): a new address gets a signed link,
only a confirmed address gets recaps, and a changed address keeps the old one in use until the
new one is confirmed. Real Postgres (a private database), the SMTP sink through Airflow's SmtpHook."""

from __future__ import annotations

import re
from contextlib import closing

import psycopg2
import pytest

from tests.support import unique

from weekly_wrapped.recap import store
from weekly_wrapped.users import addresses, links


def add_user(dsn: str, email: str, confirmed: bool) -> str:
    """A user as the onboarding callback stores a new one (unconfirmed) or as one from before (confirmed)."""
    user_id = unique("addr")
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("insert into app.users (user_id, email, email_confirmed_at) values (%s, %s, %s)",
                    (user_id, email, "2026-11-01T00:00:00Z" if confirmed else None))
    return user_id


def account(dsn: str, user_id: str) -> dict:
    with closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("select email, email_confirmed_at, pending_email from app.users where user_id = %s", (user_id,))
        email, confirmed_at, pending = cur.fetchone()
    return {"email": email, "confirmed": confirmed_at is not None, "pending": pending}


def link_in(message) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(r"http://wrapped\.test/wrapped/account/confirm\?token=\S+", text).group(0)


def token_of(url: str) -> str:
    return url.split("token=", 1)[1]


def recap_recipients(dsn: str) -> set[str]:
    with closing(psycopg2.connect(dsn)) as conn:
        return {u["user_id"] for u in store.active_users(conn)}


def test_existing_rows_count_as_confirmed_and_new_ones_do_not(people_db):
    with closing(psycopg2.connect(people_db)) as conn, conn.cursor() as cur:
        cur.execute("select column_default from information_schema.columns "
                    "where table_schema = 'app' and table_name = 'users' and column_name = 'email_confirmed_at'")
        assert cur.fetchone() == (None,)  # the default filled the rows from before, then was dropped
    user_id = unique("addr")
    with closing(psycopg2.connect(people_db)) as conn, conn, conn.cursor() as cur:
        cur.execute("insert into app.users (user_id, email) values (%s, 'new@example.com')", (user_id,))
    assert account(people_db, user_id)["confirmed"] is False


def test_a_new_address_gets_a_link_and_recaps_only_once_confirmed(people_config, people_db, mailbox):
    user_id = add_user(people_db, "ada@example.com", confirmed=False)
    assert user_id not in recap_recipients(people_db)

    addresses.ask_to_confirm(people_config, user_id, "ada@example.com")
    [message] = mailbox.to("ada@example.com")
    assert "Confirm" in message["Subject"]
    assert account(people_db, user_id) == {"email": "ada@example.com", "confirmed": False,
                                           "pending": "ada@example.com"}
    assert user_id not in recap_recipients(people_db)

    outcome = addresses.confirm(people_db, people_config.link_secret, token_of(link_in(message)))
    assert outcome == addresses.Confirmation("confirmed", "ada@example.com")
    assert account(people_db, user_id) == {"email": "ada@example.com", "confirmed": True, "pending": None}
    assert user_id in recap_recipients(people_db)
    # clicking again changes nothing and says so
    assert addresses.confirm(people_db, people_config.link_secret, token_of(link_in(message))).outcome == "already"


def test_an_unconfirmed_user_gets_no_recap(people_db, mailbox):
    from tests.recap.recap_helpers import insert_week, make_row
    from weekly_wrapped.recap.job import send_weekly_recap

    user_id = add_user(people_db, "unconfirmed@example.com", confirmed=False)
    with closing(psycopg2.connect(people_db)) as conn, conn:
        insert_week(conn, make_row(user_id=user_id, user_week_id=f"{user_id}|2026-11-16"))
    outcome = send_weekly_recap(people_db, user_id, "2026-11-16", gemini=None, from_addr="wrapped@localhost")
    assert outcome["status"] == "not_active"
    assert mailbox.messages() == []


def test_a_changed_address_keeps_the_old_one_until_the_new_one_is_confirmed(people_config, people_db, mailbox):
    user_id = add_user(people_db, "old@example.com", confirmed=True)

    addresses.ask_to_confirm(people_config, user_id, "first-new@example.com")
    addresses.ask_to_confirm(people_config, user_id, "second-new@example.com")
    assert mailbox.to("old@example.com") == []
    assert account(people_db, user_id) == {"email": "old@example.com", "confirmed": True,
                                           "pending": "second-new@example.com"}
    assert user_id in recap_recipients(people_db)  # still to the old, confirmed address

    # the link for the address that was replaced since does nothing
    [first] = mailbox.to("first-new@example.com")
    outcome = addresses.confirm(people_db, people_config.link_secret, token_of(link_in(first)))
    assert outcome.outcome == "replaced"
    assert account(people_db, user_id)["email"] == "old@example.com"

    [second] = mailbox.to("second-new@example.com")
    addresses.confirm(people_db, people_config.link_secret, token_of(link_in(second)))
    assert account(people_db, user_id) == {"email": "second-new@example.com", "confirmed": True, "pending": None}


def test_asking_for_the_confirmed_address_again_sends_nothing(people_config, people_db, mailbox):
    user_id = add_user(people_db, "same@example.com", confirmed=True)
    addresses.ask_to_confirm(people_config, user_id, "other@example.com")
    addresses.ask_to_confirm(people_config, user_id, "same@example.com")  # changed their mind
    assert account(people_db, user_id)["pending"] is None
    assert mailbox.to("same@example.com") == []


def test_forged_and_foreign_links_are_refused(people_config, people_db, mailbox):
    user_id = add_user(people_db, "eve-victim@example.com", confirmed=True)
    forged = links.sign("another-secret", "confirm_email", {"user_id": user_id, "email": "eve@example.com"})
    foreign = links.sign(people_config.link_secret, "unsubscribe", {"user_id": user_id, "email": "eve@example.com"})
    for token in (forged, foreign, "", "garbage"):
        with pytest.raises(links.LinkError):
            addresses.confirm(people_db, people_config.link_secret, token)
    assert account(people_db, user_id)["email"] == "eve-victim@example.com"


@pytest.mark.parametrize("bad", ["a@b.c,root@localhost", "not-an-address", "a@b.c\nBcc: x@y.z", ""])
def test_only_one_valid_address_is_accepted(people_config, people_db, mailbox, bad):
    user_id = add_user(people_db, "fine@example.com", confirmed=True)
    with pytest.raises(addresses.AddressError):
        addresses.ask_to_confirm(people_config, user_id, bad)
    assert mailbox.messages() == []
