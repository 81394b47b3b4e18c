"""The main job on the real stack: the demo runs every DAG through Airflow, and every play
the fake Spotify served (API and export) arrives exactly once in marts.fct_plays, the week's
discoveries are the artists really first heard that week (the export holds 10 weeks before it),
the top artists have genres from the fake MusicBrainz, and the SMTP sink holds one recap per
listener for the week."""

from __future__ import annotations

import datetime as dt
from email import policy
from zoneinfo import ZoneInfo
from email.parser import BytesParser

import pytest

from wrapped_dev import demo, listeners
from wrapped_dev.fakes import demo_listener as dl

SEED, USERS = 7, 3
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def demo_run(stack):
    """Run the demo twice: the second run must change nothing (re-running is safe), even after
    the fake Spotify was grown past the demo's three (`wrapped listeners add` does that)."""
    assert demo.run_demo(stack, timeout=600) == 0
    assert listeners.grow_fake(stack.spotify_accounts_base, USERS + 1) == USERS + 1
    assert demo.run_demo(stack, timeout=600) == 0
    clock = demo.demo_clock(dt.datetime.now(dt.timezone.utc))
    return stack, clock


def test_every_served_play_is_in_fct_plays_exactly_once(demo_run, warehouse):
    settings, clock = demo_run
    end_ms = int(clock.timestamp() * 1000)
    start_ms = end_ms - demo.EXPORT_DAYS * DAY_MS
    cur = warehouse().cursor()
    for user in dl.demo_users(USERS):
        served = {(p.track_id, p.played_at_ms // 1000) for p in dl.plays_between(SEED, user, start_ms, end_ms)}
        cur.execute("select track_id, floor(extract(epoch from played_at))::bigint from marts.fct_plays "
                    "where user_id = %s", (user.user_id,))
        landed = cur.fetchall()
        assert len(landed) == len(set(landed)), "a play landed twice"
        assert set(landed) == served, user.user_id


def test_the_demo_week_lists_artists_really_first_heard_that_week(demo_run, warehouse):
    settings, clock = demo_run
    week_start = demo.demo_week_start(clock)
    end_ms = int(clock.timestamp() * 1000)
    catalogue = dl.build_catalogue(SEED)
    cur = warehouse().cursor()
    for user in dl.demo_users(USERS):
        local_monday = dt.datetime.combine(week_start, dt.time(0), ZoneInfo(user.time_zone))
        week_from, week_to = (int(t.timestamp() * 1000) for t in (local_monday, local_monday + dt.timedelta(days=7)))
        first_heard: dict[str, int] = {}  # artist -> first play held (every credited artist counts)
        for play in dl.plays_between(SEED, user, end_ms - demo.EXPORT_DAYS * DAY_MS, end_ms):
            for artist_id in catalogue.tracks[play.track_id].artist_ids:
                first_heard.setdefault(artist_id, play.played_at_ms)
        new = {a for a, ms in first_heard.items() if week_from <= ms < week_to}
        cur.execute("select discoveries_available, new_artists, top_new_artists from marts.wrapped_weekly "
                    "where user_id = %s and week_start = %s", (user.user_id, week_start))
        available, new_artists, top_new_artists = cur.fetchone()
        assert available is True, f"{user.user_id}: the export's 10 weeks are history enough"
        assert new_artists == len(new) > 0, user.user_id
        assert {a["id"] for a in top_new_artists} <= new, user.user_id


def test_the_top_artists_have_genres_from_musicbrainz(demo_run, warehouse):
    settings, clock = demo_run
    assert settings.musicbrainz_genres, "the local stack looks genres up on the fake MusicBrainz"
    cur = warehouse().cursor()
    # Every artist of every recap's top list was looked up (found or not): the demo asks the fake,
    # a mirror without a rate limit, for all of them at once.
    cur.execute("select distinct top.artist->>'id' from marts.wrapped_weekly w "
                "cross join jsonb_array_elements(w.top_artists) as top (artist) where w.week_start = %s "
                "except select artist_id from app.artist_genres", (demo.demo_week_start(clock),))
    assert cur.fetchall() == []
    cur.execute("select user_id, top_genres from marts.wrapped_weekly where week_start = %s",
                (demo.demo_week_start(clock),))
    top_genres = dict(cur.fetchall())
    assert sorted(top_genres) == sorted(u.user_id for u in dl.demo_users(USERS))
    for user_id, genres in top_genres.items():
        assert genres and all(g["plays"] > 0 for g in genres), user_id


def test_api_and_export_copies_of_a_play_are_one_play(demo_run, warehouse):
    settings, clock = demo_run
    end_ms = int(clock.timestamp() * 1000)
    cur = warehouse().cursor()
    for user in dl.demo_users(USERS):
        polled = dl.latest_plays(SEED, user, end_ms, 50)
        polled_keys = {(p.track_id, p.played_at_ms) for p in polled}
        cur.execute("select track_id, (extract(epoch from played_at) * 1000)::bigint, source from raw.plays "
                    "where user_id = %s", (user.user_id,))
        rows = cur.fetchall()
        assert len(polled_keys) == 50 and polled_keys <= {(track, ms) for track, ms, _ in rows}
        # Every polled play is in the export too, to the second: a second raw row, the same fct row.
        # Unless its milliseconds are 000: then both copies share one natural key, and the raw row
        # is the copy that arrived first (the demo imports the export before it polls).
        twins = {key for key in polled_keys if key[1] % 1000}
        assert twins <= {(track, ms) for track, ms, source in rows if source == "api"} <= polled_keys
        cur.execute("select count(*) from marts.fct_plays where user_id = %s", (user.user_id,))
        assert len(rows) - cur.fetchone()[0] == len(twins)


def test_each_listener_got_one_recap_for_the_week(demo_run, warehouse):
    settings, clock = demo_run
    week_start = demo.demo_week_start(clock)
    cur = warehouse().cursor()
    cur.execute("select user_id, recipient, message_id from app.sent_emails where week_start = %s", (week_start,))
    sent = cur.fetchall()
    assert sorted(r[0] for r in sent) == sorted(u.user_id for u in dl.demo_users(USERS))
    messages = [BytesParser(policy=policy.default).parse(f.open("rb")) for f in settings.mail_dir.glob("*.eml")]
    for user_id, recipient, message_id in sent:
        copies = [m for m in messages if m["Message-ID"] == message_id]
        assert len(copies) == 1, f"{user_id}: {len(copies)} deliveries"
        message = copies[0]
        assert message["To"] == recipient
        cur.execute("select plays from marts.wrapped_weekly where user_id = %s and week_start = %s",
                    (user_id, week_start))
        plays = cur.fetchone()[0]
        assert plays > 0
        text = message.get_body(preferencelist=("plain",)).get_content()
        assert str(plays) in text
        assert message.get_body(preferencelist=("html",)) is not None


def test_dbt_build_ran_task_by_task_and_logged_where_the_variable_says(demo_run):
    settings, _ = demo_run
    # The local stack sets wrapped_dbt_artifacts_dir to .local/dbt: dbt's log is there, not in the repository.
    log = settings.state_dir / "dbt" / "logs" / "dbt.log"
    assert log.exists()
    text = log.read_text(errors="replace")
    for model in ("stg_spotify__plays", "fct_plays", "wrapped_weekly"):
        assert model in text
