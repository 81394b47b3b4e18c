"""Page latency: p95 time to render a listener's whole page with 5 years of history.

A private database (dropped afterwards) gets, by COPY, what the consumer and the app write:
a listener in Europe/Berlin with five years of plays (about 100,000: four years imported from
an export with ms_played and its skip events, then a year polled from the API without it; a
few plays of tracks still being looked up), four other listeners with a year each, a
catalogue of 9,000 tracks, 2,500 albums and 1,500 artists (popularity skewed as real
listening is), and 250 recaps stored as sent (the real rendered e-mail's bytes). Then the
real dbt project is run there (`dbt run`: the models; their tests run in tests/dbt), and the
last 30 hours of plays arrive after it, so the week so far reads the marts AND raw rows.

The page is `weekly_wrapped.page.app.create_page_app` (the web helper's FastAPI app), asked for
`/` with a valid session cookie through Starlette's TestClient, in process: the week so far,
past recaps, the year view with its SVGs, the household and settings sections, all of it.
Without that app it times the data functions and SVGs alone. 5 warm-up requests (the first,
timed and printed, computes the top artists by month, which are then kept until the marts
change), then `--requests` (default 40) timed ones.

    .local/venv/bin/python bench/page_latency.py [--requests 40] [--keep]

The last line is `page_latency: ratio=<p95 seconds / 0.300> (target <= 1)`.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402

from tests.support import unique  # noqa: E402
from tests.support.postgres import create_database, private_database  # noqa: E402
from weekly_wrapped.marts.dbt_runner import Warehouse, dbt_command, dbt_env, default_dbt_bin, run_dbt  # noqa: E402
from wrapped_dev.config import load_settings  # noqa: E402

TARGET_S = 0.300
USER_ID = "bench-page-listener"
ZONE = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 18, 21, 30, tzinfo=ZONE).astimezone(timezone.utc)  # a Wednesday evening
YEARS = 5
ARRIVED_AFTER_BUILD = timedelta(hours=30)
OTHERS = {"bench-page-tokyo": "Asia/Tokyo", "bench-page-ny": "America/New_York",
          "bench-page-sydney": "Australia/Sydney", "bench-page-utc": "UTC"}
N_TRACKS, N_ALBUMS, N_ARTISTS = 9_000, 2_500, 1_500
LINK_SECRET = "bench-page-link-secret-0123456789abcdef"


# ---------------------------------------------------------------- the history, in raw shapes

def catalogue(rng: random.Random):
    artists = [(f"ar{i:05d}", f"Artist {i}", "{" + ",".join(rng.sample(["rock", "jazz", "ambient", "pop", "folk"], rng.randint(0, 2))) + "}",
                f"https://i.scdn.co/image/ar{i:05d}" if i % 4 else "") for i in range(N_ARTISTS)]
    albums = [(f"al{i:05d}", f"Album {i}", "{" + ",".join(f"ar{rng.randrange(N_ARTISTS):05d}" for _ in range(rng.randint(1, 2))) + "}",
               f"https://i.scdn.co/image/al{i:05d}") for i in range(N_ALBUMS)]
    tracks = []
    for i in range(N_TRACKS):
        album = rng.randrange(N_ALBUMS)
        credited = "{" + ",".join(f"ar{(album * 7 + k * 13) % N_ARTISTS:05d}" for k in range(rng.choice([1, 1, 1, 2, 3]))) + "}"
        duration = "" if i % 97 == 0 else str(rng.randint(120_000, 360_000))
        tracks.append((f"tr{i:05d}", f"Track {i} \"quoted\" & <angled>", duration, f"al{album:05d}", credited))
    return artists, albums, tracks


def sessions(rng: random.Random, user_id: str, zone: ZoneInfo, start: date, end: date, plays_per_day: float,
             durations: dict[str, int | None], weights: list[float], track_ids: list[str]):
    """(user_id, played_at, track_id, source, ms_played) rows: listening sessions at local times,
    each play ending when it has played after the one before; export rows before the last
    year (ms_played known, skips under 30 s among them), API rows after (ms_played unknown)."""
    api_from = end - timedelta(days=365)
    cum = list(_accumulate(weights))
    day = start
    while day <= end:
        source = "api" if day >= api_from else "export"
        n = max(0, int(rng.gauss(plays_per_day, plays_per_day / 3)))
        left = n
        while left > 0:
            size = min(left, rng.randint(5, 20))
            left -= size
            at = datetime.combine(day, datetime.min.time(), tzinfo=zone).replace(
                hour=rng.choice([7, 8, 12, 13, 17, 18, 20, 21, 22]), minute=rng.randint(0, 59)).astimezone(timezone.utc)
            for track in rng.choices(track_ids, cum_weights=cum, k=size):
                length = durations.get(track) or 210_000
                skipped = rng.random() < 0.06
                listened = rng.randint(2_000, 29_000) if skipped else (length if rng.random() < 0.85 else rng.randint(30_000, length))
                at += timedelta(milliseconds=listened + rng.randint(0, 15_000))
                at = at.replace(microsecond=0)
                if source == "api" and skipped:
                    continue  # the API does not report skips
                yield (user_id, at, track, source, listened if source == "export" else None)
        day += timedelta(days=1)


def _accumulate(values):
    total = 0.0
    for v in values:
        total += v
        yield total


def copy_rows(cur, table: str, columns: list[str], rows) -> int:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    count = 0
    for row in rows:
        writer.writerow(["" if v is None else (v.isoformat() if isinstance(v, datetime) else v) for v in row])
        count += 1
    buffer.seek(0)
    cur.copy_expert(f"copy {table} ({', '.join(columns)}) from stdin with (format csv)", buffer)
    return count


def seed(dsn: str, rng: random.Random) -> tuple[list[tuple], int]:
    """Everything but the plays of the last 30 hours, which are returned to arrive after the build."""
    artists, albums, tracks = catalogue(rng)
    durations = {t[0]: int(t[2]) if t[2] else None for t in tracks}
    track_ids = [t[0] for t in tracks] + [f"pending{i:03d}" for i in range(40)]  # never fetched
    weights = [1 / (i + 1) ** 0.9 for i in range(len(track_ids))]
    rng.shuffle(weights)
    local_now = NOW.astimezone(ZONE).date()
    plays = list(sessions(rng, USER_ID, ZONE, local_now - timedelta(days=365 * YEARS), local_now, 58,
                          durations, weights, track_ids))
    for user_id, zone in OTHERS.items():
        plays += sessions(rng, user_id, ZoneInfo(zone), local_now - timedelta(days=365), local_now, 50,
                          durations, weights[::-1], track_ids)
    plays = [p for p in plays if p[1] <= NOW]
    unique = {(p[0], p[1], p[2]): p for p in plays}
    plays = sorted(unique.values(), key=lambda p: (p[0], p[1]))
    late = [p for p in plays if p[1] > NOW - ARRIVED_AFTER_BUILD]
    early = [p for p in plays if p[1] <= NOW - ARRIVED_AFTER_BUILD]
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        created = datetime(2021, 1, 1, tzinfo=timezone.utc)
        copy_rows(cur, "app.users", ["user_id", "display_name", "email", "time_zone", "consent_at", "email_confirmed_at", "created_at"],
                  [(u, u, f"{u}@example.com", z, created, created, created)
                   for u, z in {USER_ID: ZONE.key, **OTHERS}.items()])
        copy_rows(cur, "raw.artists", ["artist_id", "name", "genres", "image_url", "fetched_at"],
                  [(a, n, g, img or None, created) for a, n, g, img in artists])
        copy_rows(cur, "raw.albums", ["album_id", "name", "artist_ids", "image_url", "fetched_at"],
                  [(*a, created) for a in albums])
        copy_rows(cur, "raw.tracks", ["track_id", "name", "duration_ms", "album_id", "artist_ids", "fetched_at"],
                  [(*t, created) for t in tracks])
        copy_rows(cur, "raw.plays", ["user_id", "played_at", "track_id", "source", "ms_played", "ingested_at"],
                  [(*p, created) for p in early])
        cur.execute("analyze")
    conn.close()
    return late, sum(1 for p in plays if p[0] == USER_ID)


def store_recaps(dsn: str) -> int:
    """250 of the listener's weeks as sent: the real e-mail of one week, its bytes under each."""
    from weekly_wrapped.recap.content import Intro
    from weekly_wrapped.recap.facts import facts_from_row
    from weekly_wrapped.recap.render import build_message

    conn = psycopg2.connect(dsn)
    with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("select * from marts.wrapped_weekly where user_id = %s order by week_start desc limit 250", (USER_ID,))
        weeks = cur.fetchall()
        message = build_message(facts_from_row(weeks[0]), Intro("Five years of listening.", "template"),
                                from_addr="wrapped@localhost", to_addr=f"{USER_ID}@example.com")
        body = message.as_bytes()
        for week in weeks:
            cur.execute("insert into app.sent_emails (user_id, week_start, recipient, message_id, subject, status, message,"
                        " rendered_at, sent_at) values (%s, %s, %s, %s, %s, 'sent', %s, now(), now())",
                        (USER_ID, week["week_start"], f"{USER_ID}@example.com", f"<{week['week_start']}@bench>",
                         f"Your Weekly Wrapped: {week['week_start']}", body))
    conn.close()
    return len(weeks)


# ---------------------------------------------------------------- timing

def page_renderer(dsn: str):
    """() -> the page's HTML: the web app through TestClient, or the data functions and SVGs."""
    try:
        from weekly_wrapped.page.app import create_page_app
    except ImportError:
        create_page_app = None
    if create_page_app is not None:
        from starlette.testclient import TestClient

        from weekly_wrapped.page import access
        from weekly_wrapped.spotify.client import SpotifyApp
        from weekly_wrapped.users.onboarding import OnboardingConfig

        class NoImports:
            def trigger(self, user_id, path):
                raise RuntimeError("no imports in the benchmark")

            def state(self, run_id):
                return "success", None

        config = OnboardingConfig(dsn=dsn, spotify_app=SpotifyApp("bench", "bench"), token_secret="",
                                  link_secret=LINK_SECRET, public_url="http://testserver/wrapped/me")
        app = create_page_app(lambda: config, runs_factory=NoImports, import_dir_factory=lambda: tempfile.gettempdir(),
                              clock=lambda: NOW)
        client = TestClient(app)
        client.cookies.set(access.SESSION_COOKIE, access.session_cookie(LINK_SECRET, USER_ID))

        def render() -> str:
            response = client.get("/")
            assert response.status_code == 200, response.status_code
            return response.text
        return "the web app (GET / with a session cookie, TestClient)", render

    from weekly_wrapped.page import history, svg
    from weekly_wrapped.page.week_so_far import week_so_far

    def render() -> str:
        week = week_so_far(dsn, USER_ID, NOW)
        year = history.year_view(dsn, USER_ID, NOW.astimezone(ZONE).year, now=NOW)
        recaps = history.past_recaps(dsn, USER_ID)
        return "".join([svg.listening_clock(week.this_week.listening_clock), svg.bars(week.this_week.top_artists, "Top"),
                        svg.heatmap(year.weeks, year.year), svg.heatmap_table(year.weeks, year.year),
                        "".join(r.subject for r in recaps)])
    return "the data functions and SVGs (no web app found)", render


@contextmanager
def kept_database(admin_dsn: str):
    from weekly_wrapped import db

    name = unique("wrapped_bench_page")
    dsn = create_database(admin_dsn, name)
    db.apply_schema(dsn)
    print(f"keeping database {name}")
    yield name, dsn


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (to look into it)")
    args = parser.parse_args(argv)
    settings = load_settings()
    rng = random.Random(2026)
    started = time.monotonic()
    with kept_database(settings.warehouse_dsn) if args.keep else \
            private_database(settings.warehouse_dsn, "wrapped_bench_page", schema=True) as (name, dsn):
        late, listener_plays = seed(dsn, rng)
        seeded = time.monotonic()
        print(f"seeded {name}: {listener_plays} plays of {USER_ID} over {YEARS} years (+ {len(OTHERS)} listeners)"
              f" in {seeded - started:.0f}s", flush=True)
        warehouse = Warehouse(settings.pg_host, settings.pg_port, settings.pg_user, settings.pg_password, name)
        with tempfile.TemporaryDirectory() as artifacts:
            statuses = run_dbt(dbt_command(default_dbt_bin(), ("run",), artifacts_dir=Path(artifacts)),
                               dbt_env(warehouse), log=lambda line: None,
                               run_results=Path(artifacts) / "target" / "run_results.json")
        if set(statuses) != {"success"}:
            print(f"dbt run failed: {statuses}", file=sys.stderr)
            return 1
        built = time.monotonic()
        print(f"dbt run: {statuses} in {built - seeded:.0f}s", flush=True)
        conn = psycopg2.connect(dsn)
        with conn, conn.cursor() as cur:
            copy_rows(cur, "raw.plays", ["user_id", "played_at", "track_id", "source", "ms_played", "ingested_at"],
                      [(*p, NOW) for p in late])
        conn.close()
        print(f"{len(late)} plays arrived after the build; {store_recaps(dsn)} recaps stored as sent", flush=True)

        what, render = page_renderer(dsn)
        t0 = time.perf_counter()
        page = render()
        first = time.perf_counter() - t0  # top artists by month not cached yet (history._MONTHS_CACHE)
        for _ in range(4):
            page = render()
        samples = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            render()
            samples.append(time.perf_counter() - t0)
        from weekly_wrapped.page.week_so_far import week_so_far

        week = week_so_far(dsn, USER_ID, NOW)
        print(f"timed {what}: {len(page)} characters; this week {week.this_week.plays} plays "
              f"({week.plays_since_build} since the build), {week.this_week.minutes} minutes", flush=True)
        print(f"first render after the build: {first * 1000:.0f} ms (then top artists by month are cached until "
              f"the marts change)")
        print(f"{args.requests} renders: median {statistics.median(samples) * 1000:.0f} ms, "
              f"p95 {p95(samples) * 1000:.0f} ms, max {max(samples) * 1000:.0f} ms; "
              f"whole bench {time.monotonic() - started:.0f}s")
    print(f"page_latency: ratio={p95(samples) / TARGET_S:.2f} (target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
