"""The household taste match on a real Postgres with the marts built by a real dbt run.

Three people in two time zones: Ana (Berlin) and Kenji (Tokyo) opt in, Zed (Berlin) never
does. Every number is checked against an independent computation from the raw plays below
(docs/recap.md's minutes rule, redone in Python), and the recap e-mail is rendered through
the real job code path (`send_weekly_recap`, with a capturing `send`).
"""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from contextlib import closing
from email import message_from_bytes, policy
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import psycopg2
import pytest

from weekly_wrapped.marts.dbt_runner import Warehouse, dbt_command, dbt_env, default_dbt_bin, run_dbt
from weekly_wrapped.page.household import set_opt_in, taste_match
from weekly_wrapped.recap.job import send_weekly_recap
from tests.support.postgres import private_database
from wrapped_dev.fakes.gemini_server import make_server

WEEK = date(2026, 11, 16)  # a Monday
ESTIMATE_MS = 210_000  # var('estimated_play_ms')

USERS = [
    # user_id, display_name, e-mail, time zone, opted in
    ("hh-ana", "Ana", "ana@example.com", "Europe/Berlin", True),
    ("hh-kenji", "Kenji", "kenji@example.com", "Asia/Tokyo", True),
    ("hh-zed", "Zed", "zed@example.com", "Europe/Berlin", False),
]
ARTISTS = [("a_bjork", "Björk"), ("a_massive", "Massive Attack"), ("a_portis", "Portishead"), ("a_tricky", "Tricky")]
TRACKS = [
    # track_id, name, duration_ms, artist_ids
    ("t_hyper", "Hyperballad", 300_000, ["a_bjork"]),
    ("t_joga", "Jóga", 240_000, ["a_bjork"]),
    ("t_teardrop", "Teardrop", 330_000, ["a_massive"]),
    ("t_karma", "Karmacoma", 360_000, ["a_massive", "a_tricky"]),
    ("t_roads", "Roads", 300_000, ["a_portis"]),
]
PLAYS = [
    # user_id, played_at (UTC, end of play), track_id, ms_played (None: estimated)
    # before the week: who heard what first
    ("hh-ana", "2026-10-01 18:00:00+00", "t_teardrop", None),  # Ana found Massive Attack first
    ("hh-kenji", "2026-09-20 12:00:00+00", "t_hyper", None),  # Kenji found Björk first
    ("hh-zed", "2026-08-01 12:00:00+00", "t_hyper", None),  # Zed earlier still: must not count
    # Ana's week of Mon 16 Nov in Berlin = 2026-11-15 23:00 .. 2026-11-22 23:00 UTC
    ("hh-ana", "2026-11-16 07:00:00+00", "t_hyper", None),
    ("hh-ana", "2026-11-16 07:02:00+00", "t_joga", None),  # 2 min after the last ended: capped
    ("hh-ana", "2026-11-17 19:00:00+00", "t_teardrop", 200_000),
    ("hh-ana", "2026-11-18 19:00:00+00", "t_karma", None),
    ("hh-ana", "2026-11-19 19:00:00+00", "t_roads", None),
    ("hh-ana", "2026-11-22 22:30:00+00", "t_hyper", None),  # Sun 23:30 Berlin: still Ana's week
    # Kenji (Tokyo): one play in his own week but before Ana's window, one after it
    ("hh-kenji", "2026-11-15 16:00:00+00", "t_roads", None),  # Mon 01:00 JST, not in Ana's window
    ("hh-kenji", "2026-11-16 12:00:00+00", "t_hyper", 150_000),
    ("hh-kenji", "2026-11-18 12:00:00+00", "t_teardrop", None),
    ("hh-kenji", "2026-11-20 12:00:00+00", "t_hyper", None),
    ("hh-kenji", "2026-11-22 23:30:00+00", "t_teardrop", None),  # Mon 08:30 JST: after Ana's window
    # Zed shares everything with both of them, and never opts in
    ("hh-zed", "2026-11-16 09:00:00+00", "t_hyper", None),
    ("hh-zed", "2026-11-17 09:00:00+00", "t_teardrop", None),
    ("hh-zed", "2026-11-18 09:00:00+00", "t_roads", None),
]


def seed(conn) -> None:
    with conn.cursor() as cur:
        for user_id, name, email, tz, opted_in in USERS:
            cur.execute(
                "insert into app.users (user_id, display_name, email, time_zone, consent_at, email_confirmed_at,"
                " household_opt_in) values (%s, %s, %s, %s, now(), now(), %s)",
                (user_id, name, email, tz, opted_in),
            )
        for artist_id, name in ARTISTS:
            cur.execute("insert into raw.artists (artist_id, name, fetched_at) values (%s, %s, now())", (artist_id, name))
        cur.execute("insert into raw.albums (album_id, name, artist_ids, fetched_at) values ('al', 'Mix', '{a_bjork}', now())")
        for track_id, name, duration_ms, artist_ids in TRACKS:
            cur.execute(
                "insert into raw.tracks (track_id, name, duration_ms, album_id, artist_ids, fetched_at)"
                " values (%s, %s, %s, 'al', %s, now())",
                (track_id, name, duration_ms, artist_ids),
            )
        for user_id, played_at, track_id, ms_played in PLAYS:
            cur.execute(
                "insert into raw.plays (user_id, played_at, track_id, source, ms_played, ingested_at)"
                " values (%s, %s, %s, 'api', %s, now())",
                (user_id, played_at, track_id, ms_played),
            )


@pytest.fixture(scope="module")
def household_db(postgres, tmp_path_factory):
    """A private database with the schema, the three people's plays, and the marts built by dbt."""
    with private_database(postgres.dsn, "wrapped_household", schema=True) as (name, dsn):
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        seed(conn)
        conn.close()
        warehouse = Warehouse(postgres.host, postgres.port, postgres.user, postgres.password, name)
        artifacts = tmp_path_factory.mktemp("dbt_household")
        # Only what the household and the recap read: no data tests (tests/dbt runs those).
        run_dbt(dbt_command(default_dbt_bin(), ("run", "--select", "+wrapped_weekly"), artifacts_dir=artifacts),
                dbt_env(warehouse), log=lambda line: None)
        yield dsn


@pytest.fixture(scope="module")
def gemini():
    """The fake Gemini in a thread: (settings for the job, the server, whose requests are logged)."""
    from weekly_wrapped.airflow.connections import GeminiApi

    server = make_server("127.0.0.1", 0, "household-key")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield GeminiApi("household-key", "gemini-2.5-flash", f"http://127.0.0.1:{server.server_port}"), server
    server.shutdown()
    server.server_close()


@pytest.fixture
def opted_in(household_db):
    """Ana and Kenji opted in again after any test that opted someone out."""
    for user_id, *_, opted in USERS:
        set_opt_in(household_db, user_id, opted)
    return household_db


# ---- the independent computation, from the raw plays ---------------------------------------


def listened_ms(user_id: str) -> list[tuple[datetime, str, int]]:
    """(played_at, track, ms) of each play: ms_played, else the track's length; capped by the time since
    the previous play ended."""
    durations = {t: d for t, _, d, _ in TRACKS}
    plays = sorted((datetime.fromisoformat(at), t, ms) for u, at, t, ms in PLAYS if u == user_id)
    result, previous = [], None
    for at, track, ms in plays:
        ms = ms if ms is not None else durations.get(track, ESTIMATE_MS)
        if previous is not None:
            ms = min(ms, int((at - previous).total_seconds() * 1000))
        result.append((at, track, ms))
        previous = at
    return result


def window(user_time_zone: str) -> tuple[datetime, datetime]:
    tz = ZoneInfo(user_time_zone)
    return (datetime(WEEK.year, WEEK.month, WEEK.day, tzinfo=tz).astimezone(timezone.utc),
            datetime.combine(WEEK + timedelta(days=7), datetime.min.time(), tz).astimezone(timezone.utc))


def artist_ms(user_id: str, start: datetime, end: datetime) -> dict[str, int]:
    credits = {t: artists for t, _, _, artists in TRACKS}
    totals: dict[str, int] = {}
    for at, track, ms in listened_ms(user_id):
        if start <= at < end:
            for artist in credits[track]:
                totals[artist] = totals.get(artist, 0) + ms
    return totals


def track_plays(user_id: str, start: datetime, end: datetime) -> dict[str, int]:
    counts: dict[str, int] = {}
    for at, track, _ in listened_ms(user_id):
        if start <= at < end:
            counts[track] = counts.get(track, 0) + 1
    return counts


def expected_score(a: dict[str, int], b: dict[str, int]) -> int:
    keys = set(a) | set(b)
    both = sum(min(a.get(k, 0), b.get(k, 0)) for k in keys)
    either = sum(max(a.get(k, 0), b.get(k, 0)) for k in keys)
    ratio = Decimal(100 * both) / either
    return int(ratio.quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def to_minutes(ms: int) -> Decimal:
    return (Decimal(ms) / 60_000).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


NAMES = {a: n for a, n in ARTISTS} | {t: n for t, n, _, _ in TRACKS}


# ---- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("me, other, tz", [("hh-ana", "hh-kenji", "Europe/Berlin"), ("hh-kenji", "hh-ana", "Asia/Tokyo")])
def test_the_match_equals_an_independent_computation_from_the_raw_plays(opted_in, me, other, tz):
    match = taste_match(opted_in, me, WEEK)
    start, end = window(tz)
    assert (match.window_from, match.window_to) == (start, end)
    assert [m.name for m in match.housemates] == ["Kenji" if other == "hh-kenji" else "Ana"]
    (mate,) = match.housemates

    mine, theirs = artist_ms(me, start, end), artist_ms(other, start, end)
    assert mate.score_percent == expected_score(mine, theirs)
    shared = set(mine) & set(theirs)
    assert mate.shared_artist_count == len(shared)
    assert {a.name: (a.your_minutes, a.their_minutes) for a in mate.shared_artists} == {
        NAMES[a]: (to_minutes(mine[a]), to_minutes(theirs[a])) for a in shared
    }
    my_tracks, their_tracks = track_plays(me, start, end), track_plays(other, start, end)
    shared_tracks = set(my_tracks) & set(their_tracks)
    assert mate.shared_track_count == len(shared_tracks)
    assert {t.name: (t.your_plays, t.their_plays) for t in mate.shared_tracks} == {
        NAMES[t]: (my_tracks[t], their_tracks[t]) for t in shared_tracks
    }
    # Who heard each shared artist first, from the first plays held (Zed's earlier Björk does not count).
    first = {a.name: a.first_heard_by for a in mate.shared_artists}
    assert first["Björk"] == ("them" if me == "hh-ana" else "you")
    assert first["Massive Attack"] == ("you" if me == "hh-ana" else "them")


def test_the_week_is_the_requesting_users_in_utc_instants(opted_in):
    """Hand-checked for Ana's Berlin week: Kenji's plays at Mon 01:00 JST (before it) and after it do
    not count, so Portishead is not shared from Ana's side, though it is in Kenji's own week."""
    (mate,) = taste_match(opted_in, "hh-ana", WEEK).housemates
    assert [a.name for a in mate.shared_artists] == ["Björk", "Massive Attack"]
    # Ana: Björk 300000 + 120000 (capped) + 300000 = 12.0 min; Kenji: 150000 + 300000 = 7.5 min
    assert (mate.shared_artists[0].your_minutes, mate.shared_artists[0].their_minutes) == (Decimal("12.0"), Decimal("7.5"))
    (kenji_view,) = taste_match(opted_in, "hh-kenji", WEEK).housemates
    assert "Portishead" in [a.name for a in kenji_view.shared_artists]


def test_whoever_has_not_opted_in_appears_nowhere(opted_in):
    assert taste_match(opted_in, "hh-zed", WEEK) is None
    for me in ("hh-ana", "hh-kenji"):
        match = taste_match(opted_in, me, WEEK)
        assert "Zed" not in repr(match) and "hh-zed" not in repr(match)


def test_opting_out_removes_the_person_at_once(opted_in):
    assert set_opt_in(opted_in, "hh-kenji", False)
    assert taste_match(opted_in, "hh-ana", WEEK) is None  # nobody else opted in
    assert taste_match(opted_in, "hh-kenji", WEEK) is None
    assert set_opt_in(opted_in, "hh-zed", True)  # Zed joins: Ana now matches Zed, never Kenji
    assert [m.name for m in taste_match(opted_in, "hh-ana", WEEK).housemates] == ["Zed"]
    assert not set_opt_in(opted_in, "hh-nobody", True)


def render_recap(dsn: str, user_id: str, gemini=None) -> tuple[dict, EmailMessage | None]:
    """The recap of WEEK through the real job path; the message as it was sent."""
    sent = []
    outcome = send_weekly_recap(dsn, user_id, WEEK, gemini=gemini, from_addr="Wrapped <wrapped@localhost>",
                                send=lambda data, recipient: sent.append(data))
    return outcome, (message_from_bytes(sent[0], policy=policy.default) if sent else None)


def bodies(message) -> tuple[str, str]:
    return (message.get_body(("html",)).get_content(), message.get_body(("plain",)).get_content())


def test_the_recap_has_the_household_section_only_for_those_who_opted_in(opted_in, gemini):
    settings, server = gemini
    outcome, ana = render_recap(opted_in, "hh-ana", settings)
    assert outcome["status"] == "sent" and outcome["recap_source"] == "gemini"
    asked = json.dumps(server.state.logged_requests(), ensure_ascii=False)
    assert "WEEK (JSON)" in asked and "Kenji" not in asked  # the housemate's name never reaches Gemini
    html, text = bodies(ana)
    (mate,) = taste_match(opted_in, "hh-ana", WEEK).housemates
    for body in (html, text):
        assert "Your household this week" in body or "YOUR HOUSEHOLD THIS WEEK" in body
        assert f"{mate.score_percent}% taste match" in body and "Kenji heard them first" in body
        assert "Zed" not in body and "kenji@example.com" not in body
    assert "(you 12.0 min, Kenji 7.5 min; Kenji heard them first)" in text

    _, zed = render_recap(opted_in, "hh-zed")
    for body in bodies(zed):
        assert "household" not in body.lower() and "Kenji" not in body and "Ana" not in body

    # Kenji opts out: his next recap has no section; Ana's, already sent, stays as it was sent.
    set_opt_in(opted_in, "hh-kenji", False)
    _, kenji = render_recap(opted_in, "hh-kenji")
    assert all("household" not in body.lower() for body in bodies(kenji))
    again, _ = render_recap(opted_in, "hh-ana")
    assert again["status"] == "already_sent"
    with closing(psycopg2.connect(opted_in)) as conn, conn.cursor() as cur:
        cur.execute("select message from app.sent_emails where user_id = 'hh-ana' and week_start = %s", (WEEK,))
        stored = message_from_bytes(bytes(cur.fetchone()[0]), policy=policy.default)
    assert "Kenji heard them first" in bodies(stored)[1]


def test_the_score_is_a_weighted_jaccard_rounded_half_up():
    from weekly_wrapped.page.household import score_percent

    assert score_percent({}, {}) == 0  # neither played a known artist
    assert score_percent({"a": 5}, {"b": 5}) == 0
    assert score_percent({"a": 3, "b": 1}, {"a": 3, "b": 1}) == 100
    assert score_percent({"a": 1}, {"a": 8}) == 13  # 12.5% rounds half up
    assert score_percent({"a": 2, "b": 2}, {"a": 1}) == 25  # min 1 / max (2 + 2)
