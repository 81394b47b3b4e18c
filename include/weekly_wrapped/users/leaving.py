"""A way out: unsubscribe from the recaps, or delete everything Weekly Wrapped holds about a person.

- Unsubscribe: every recap carries a signed link (`unsubscribe_url`, purpose "unsubscribe") and
  RFC 8058 headers (`list_unsubscribe_headers`); `unsubscribe` sets the user `unsubscribed` at
  once, so no further recap is sent (recap.store sends only to active users).
- Delete my data: from a recap's link (`delete_request_url`, purpose "delete_request") or by
  typing the address on the page, `request_deletion` mails the account's confirmed address a
  confirmation link (purpose "delete_data"); `delete_user_data` then removes, in one
  transaction, every row of every table in the warehouse that carries the user's id: tables
  with a `user_id` column (app, raw, ops, and dbt's staging/intermediate/marts tables, found in
  the catalogue so new tables are covered), rows that reference app.users without a
  `user_id` column, rows of our operational tables (app, ops) with the id as a whole token in
  a text column (alert keys such as `stale_poll:<id>`), and dead letters whose payload carries
  the id. Other users' rows that merely name this user (a play of their public playlist,
  `context_uri` spotify:user:<id>:...) are theirs and stay.

The marts stay deleted: they are rebuilt from raw.* and app.*, and the incremental models
(fct_plays, and the weekly models that read plays) only rebuild the days and weeks of plays
still in raw.plays, where this user has none left.
What it cannot delete is Kafka's copy of the plays, which ages out by the topics' retention
(`kafka_retention`); plays of the user still in Kafka are not loaded again, because the
consumer skips users in app.deleted_users (a SHA-256 of the id, removed if they join again).
"""

from __future__ import annotations

import graphlib
import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from weekly_wrapped import db
from weekly_wrapped.contracts import PLAYS_TOPIC
from weekly_wrapped.users import links, notices

if TYPE_CHECKING:
    from weekly_wrapped.users.onboarding import OnboardingConfig

log = logging.getLogger(__name__)

UNSUBSCRIBE_PATH = "/wrapped/account/unsubscribe"
DELETE_PATH = "/wrapped/account/delete"
DELETE_CONFIRM_PATH = "/wrapped/account/delete/confirm"

# "Delete my data" mails an account at most this often, however often the page is sent.
DELETE_MAIL_EVERY_S = 10 * 60

# Kafka's documented defaults (log.retention.hours=168, log.roll.hours=168), for when the
# topics cannot be asked.
KAFKA_DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
KAFKA_DEFAULT_SEGMENT_MS = 7 * 24 * 3600 * 1000


def _url(public_url: str, path: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{path}?token={token}"


def unsubscribe_url(link_secret: str, public_url: str, user_id: str) -> str:
    return _url(public_url, UNSUBSCRIBE_PATH, links.sign(link_secret, "unsubscribe", {"user_id": user_id}))


def delete_request_url(link_secret: str, public_url: str, user_id: str) -> str:
    """The recap's "delete my data" link: it asks for the e-mailed confirmation, it deletes nothing."""
    return _url(public_url, DELETE_PATH, links.sign(link_secret, "delete_request", {"user_id": user_id}))


def delete_confirm_url(link_secret: str, public_url: str, user_id: str) -> str:
    return _url(public_url, DELETE_CONFIRM_PATH, links.sign(link_secret, "delete_data", {"user_id": user_id}))


def list_unsubscribe_headers(link_secret: str, public_url: str, user_id: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe: mail clients POST `List-Unsubscribe=One-Click` to the URL."""
    return {"List-Unsubscribe": f"<{unsubscribe_url(link_secret, public_url, user_id)}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def unsubscribe(dsn: str, link_secret: str, token: str) -> bool:
    """Stop the recaps of the link's user at once; False when the user is gone. LinkError for a bad token."""
    user_id = links.verify(link_secret, "unsubscribe", token)["user_id"]
    with db.transaction(dsn) as cur:
        cur.execute("update app.users set status = 'unsubscribed', status_reason = 'unsubscribed by a recap link', "
                    "updated_at = now() where user_id = %s", (user_id,))
        return cur.rowcount == 1


def request_deletion(config: "OnboardingConfig", *, email: str = "", token: str = "") -> None:
    """Mail the account's address a link that confirms the deletion of its data.

    The account is the one a recap's link names (`token`, purpose "delete_request") or the one
    whose recap address is `email`. Nothing happens for an unknown address, nor when the
    account was mailed such a link less than DELETE_MAIL_EVERY_S ago; the caller says the same
    either way, so the page tells nobody who has an account and floods no inbox.
    """
    user_id = links.verify(config.link_secret, "delete_request", token)["user_id"] if token else None
    with db.transaction(config.dsn) as cur:
        cur.execute(
            """
            update app.users set delete_mail_sent_at = now()
            where user_id = (select user_id from app.users
                             where user_id = %(user_id)s or (%(user_id)s is null and lower(email) = lower(%(email)s))
                             order by user_id limit 1)
              and (delete_mail_sent_at is null or delete_mail_sent_at < now() - make_interval(secs => %(every)s))
            returning user_id, email
            """,
            {"user_id": user_id, "email": email.strip(), "every": DELETE_MAIL_EVERY_S})
        row = cur.fetchone()
    if row is None:
        return
    user_id, address = row
    url = delete_confirm_url(config.link_secret, config.public_url, user_id)
    hours = links.MAX_AGE_S["delete_data"] // 3600
    try:
        _mail_deletion_link(address, url, hours)
    except Exception:
        with db.transaction(config.dsn) as cur:  # not sent: the next request may try again at once
            cur.execute("update app.users set delete_mail_sent_at = null where user_id = %s", (user_id,))
        raise


def _mail_deletion_link(address: str, url: str, hours: int) -> None:
    notices.send_notice(
        to=address,
        subject="Confirm: delete your Weekly Wrapped data",
        text=(f"Someone (hopefully you) asked to delete everything Weekly Wrapped holds about your account.\n\n"
              f"To delete it, open this link within {hours} hours and press the button:\n{url}\n\n"
              "If it was not you, ignore this e-mail: nothing is deleted without it.\n"),
        html=(f"<p>Someone (hopefully you) asked to delete everything Weekly Wrapped holds about your account.</p>"
              f"<p><a href=\"{html.escape(url)}\">Delete my data</a> (within {hours} hours).</p>"
              "<p>If it was not you, ignore this e-mail: nothing is deleted without it.</p>"),
    )


# Every base table with a `user_id` column, outside Postgres's own schemas.
USER_ID_TABLES_SQL = """
select c.table_schema, c.table_name
from information_schema.columns c
join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
where c.column_name = 'user_id' and t.table_type = 'BASE TABLE'
  and c.table_schema not in ('pg_catalog', 'information_schema') and c.table_schema not like 'pg\\_%'
"""

# Single-column foreign keys to app.users: (schema, table, column, on delete action).
REFERENCES_TO_USERS_SQL = """
select n.nspname, t.relname, a.attname, k.confdeltype
from pg_constraint k
join pg_class t on t.oid = k.conrelid
join pg_namespace n on n.oid = t.relnamespace
join pg_attribute a on a.attrelid = k.conrelid and a.attnum = k.conkey[1]
where k.contype = 'f' and k.confrelid = 'app.users'::regclass and cardinality(k.conkey) = 1
"""

# Foreign keys between tables: (referencing schema, table, referenced schema, table).
TABLE_REFERENCES_SQL = """
select n.nspname, t.relname, fn.nspname, f.relname
from pg_constraint k
join pg_class t on t.oid = k.conrelid join pg_namespace n on n.oid = t.relnamespace
join pg_class f on f.oid = k.confrelid join pg_namespace fn on fn.oid = f.relnamespace
where k.contype = 'f' and k.conrelid <> k.confrelid
"""


# Text columns of our operational tables (app, ops): ids also hide in keys and messages there,
# e.g. app.alerts' `stale_poll:<user id>`.
OPERATIONAL_TEXT_COLUMNS_SQL = """
select c.table_schema, c.table_name, c.column_name
from information_schema.columns c
join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
where t.table_type = 'BASE TABLE' and c.table_schema in ('app', 'ops')
  and c.data_type in ('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY')
order by 1, 2, c.ordinal_position
"""


def _quoted_name(name: str) -> str:
    return '"{}"'.format(name.replace('"', '""'))


def _quoted(schema: str, table: str) -> str:
    return f"{_quoted_name(schema)}.{_quoted_name(table)}"


# Characters of Spotify user ids: a text holds the id as a whole token when none of these touches it.
ID_CHARACTERS = "A-Za-z0-9._-"


def id_token_pattern(user_id: str) -> str:
    """A Postgres regex matching `user_id` as a whole token ("stale_poll:ana", "user ana failed", but
    not "banana" nor "ana.b"): every character escaped, so the id is matched literally."""
    literal = "".join(c if c.isalnum() else f"\\{c}" for c in user_id)
    return f"(^|[^{ID_CHARACTERS}]){literal}($|[^{ID_CHARACTERS}])"


def carries_id(payload: str | None, user_id: str) -> bool:
    """Whether a dead letter's payload carries the user's id: as a string anywhere in it when it is
    JSON, anywhere in the text when it is not (a broken message may still name the user)."""
    if not payload:
        return False
    try:
        document = json.loads(payload)
    except ValueError:
        return user_id in payload

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    return any(s == user_id for s in strings(document))


@dataclass(frozen=True)
class Deletion:
    user_id: str
    rows: dict[str, int]  # "schema.table" -> rows deleted

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def delete_user_data(dsn: str, user_id: str) -> Deletion:
    """Delete every row that carries the user's id, in one transaction (all or nothing)."""
    rows: dict[str, int] = {}
    token = id_token_pattern(user_id)
    with db.transaction(dsn) as cur:
        cur.execute("select pg_advisory_xact_lock(hashtext('weekly_wrapped.delete_user'), hashtext(%s))", (user_id,))
        # Exports uploaded on the page and not imported yet: the files go too, once the rows are gone.
        cur.execute("select path from app.page_imports where user_id = %s", (user_id,))
        uploads = [Path(path) for (path,) in cur.fetchall()]
        # (schema, table) -> conditions (SQL, parameter), any of which makes a row the user's
        targets: dict[tuple[str, str], list[tuple[str, str]]] = {}
        cur.execute(USER_ID_TABLES_SQL)
        for schema, table in cur.fetchall():
            targets.setdefault((schema, table), []).append(('"user_id" = %s', user_id))
        cur.execute(REFERENCES_TO_USERS_SQL)
        for schema, table, column, on_delete in cur.fetchall():
            # 'n' set null, 'd' set default, 'c' cascade: deleting the user takes care of those rows
            if on_delete in ("a", "r"):
                targets.setdefault((schema, table), []).append((f"{_quoted_name(column)} = %s", user_id))
        cur.execute(OPERATIONAL_TEXT_COLUMNS_SQL)
        for schema, table, column in cur.fetchall():
            if (schema, table) != ("ops", "dead_letters"):  # below, more precisely
                targets.setdefault((schema, table), []).append((f"{_quoted_name(column)}::text ~ %s", token))
        # Referencing tables first, so no foreign key stops a delete; app.users last of all.
        cur.execute(TABLE_REFERENCES_SQL)
        order = graphlib.TopologicalSorter({table: set() for table in targets})
        for schema, table, ref_schema, ref_table in cur.fetchall():
            if (schema, table) in targets and (ref_schema, ref_table) in targets:
                order.add((ref_schema, ref_table), (schema, table))
        for schema, table in order.static_order():
            conditions = targets[(schema, table)]
            cur.execute(f"delete from {_quoted(schema, table)} where " + " or ".join(sql for sql, _ in conditions),
                        [param for _, param in conditions])
            if cur.rowcount:
                rows[f"{schema}.{table}"] = cur.rowcount
        # Dead letters: the id is inside the message that could not be loaded.
        cur.execute("select id, payload from ops.dead_letters where strpos(payload, %s) > 0", (user_id,))
        dead = [row_id for row_id, payload in cur.fetchall() if carries_id(payload, user_id)]
        if dead:
            cur.execute("delete from ops.dead_letters where id = any(%s)", (dead,))
            rows["ops.dead_letters"] = cur.rowcount
        # Plays still in Kafka are not loaded after this (streaming.sink); a hash, not the id.
        cur.execute("insert into app.deleted_users (user_id_sha256) values (encode(sha256(convert_to(%s, 'UTF8')), "
                    "'hex')) on conflict (user_id_sha256) do update set deleted_at = now()", (user_id,))
    for upload in uploads:
        upload.unlink(missing_ok=True)
    log.info("deleted the data of one user: %d rows in %d tables", sum(rows.values()), len(rows))
    return Deletion(user_id, rows)


def delete_confirmed(dsn: str, link_secret: str, token: str) -> Deletion:
    """The confirmation link's deletion. LinkError for a forged, foreign or expired token."""
    return delete_user_data(dsn, links.verify(link_secret, "delete_data", token)["user_id"])


@dataclass(frozen=True)
class Retention:
    retention_ms: int
    segment_ms: int
    from_topic: bool  # False: Kafka could not be asked, these are its documented defaults

    def describe(self) -> str:
        days = self.retention_ms / 86_400_000
        most = (self.retention_ms + self.segment_ms) / 86_400_000
        if self.retention_ms < 0:
            return "Kafka is set to keep messages forever on this installation: ask its operator to remove them."
        source = (f"this installation's topic {PLAYS_TOPIC} keeps messages for {days:g} days (retention.ms)"
                  if self.from_topic else
                  f"Kafka could not be asked just now; its documented default is {days:g} days "
                  "(log.retention.hours=168), unless the operator changed it")
        return (f"Your plays also passed through Kafka, which cannot delete single messages: they age out on "
                f"their own. {source[0].upper()}{source[1:]}, removed in whole segments, so at most about "
                f"{most:g} days after they were sent.")


def kafka_retention(kafka_config: dict | None, timeout_s: float = 5.0) -> Retention:
    """retention.ms and segment.ms of the plays topic (the topic that carries user ids), else the defaults."""
    if kafka_config:
        try:
            from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

            admin = AdminClient({**kafka_config, "socket.timeout.ms": int(timeout_s * 1000)})
            resource = ConfigResource(ResourceType.TOPIC, PLAYS_TOPIC)
            entries = admin.describe_configs([resource], request_timeout=timeout_s)[resource].result(timeout=timeout_s)
            return Retention(int(entries["retention.ms"].value), int(entries["segment.ms"].value), True)
        except Exception as exc:  # any failure: say so on the page, with the defaults
            log.warning("could not read the Kafka topic's retention: %s", type(exc).__name__)
    return Retention(KAFKA_DEFAULT_RETENTION_MS, KAFKA_DEFAULT_SEGMENT_MS, False)
