"""Rows per second of the history import vs a bare `json.load` of the same files, same run.

    python bench/import_throughput.py [--rows 500000] [--rounds 3]

Generates an extended-history export in Spotify's real format: `Streaming_History_Audio_*.json`
files of ~16k rows each (indented, as Spotify writes them, ~12 MB), zipped as
`my_spotify_extended_streaming_history.zip` with its folder, with what real exports have: skips,
podcast and null rows, exact duplicates, unordered rows, Hangul and quotes in names.
Ours is `history_import.import_export` exactly as the DAG calls it on that zip: both passes
(validate, then read again and produce), every message to Kafka (the running local broker,
private topics) and acknowledged, the queues written (a private database, dropped afterwards).
The reference reads each member of the same zip and `json.load`s it. Rounds alternate; the
median of each counts.
The last line is `import_throughput: ratio=<ours / json.load> (target >= 0.3)`.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from statistics import median

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import unique  # noqa: E402
from tests.support.kafka import create_stream_topics, delete_topics  # noqa: E402
from tests.support.postgres import create_database, drop_database  # noqa: E402

ROWS_PER_FILE = 16_000
FOLDER = "Spotify Extended Streaming History"
USER_ID = "bench-import-user"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _track_id(rnd: random.Random) -> str:
    return "".join(rnd.choice(_ALPHABET) for _ in range(22))


def generate_rows(n: int, seed: int = 42) -> list[dict]:
    """n rows as Spotify writes them: ~10 years, 40k tracks of 8k artists, 12% skips, 3% podcasts,
    0.5% null rows, 0.3% exact duplicates; each file's rows a little out of order."""
    rnd = random.Random(seed)
    artists = [rnd.choice(["아이유", 'The "Quoted" Band', "Sigur Rós", "Björk", "Radiohead"]) + f" {i}" for i in range(8_000)]
    tracks = [(_track_id(rnd), f"Track {i} \"live\"" if i % 50 == 0 else f"트랙 {i}" if i % 7 == 0 else f"Track {i}",
               artists[rnd.randrange(len(artists))], f"Album {i // 10}") for i in range(40_000)]
    start = 1_480_000_000  # 2016-11
    rows: list[dict] = []
    t = start
    for i in range(n):
        t += rnd.randrange(60, 600)
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        roll = rnd.random()
        if rows and roll < 0.003:
            rows.append(dict(rows[rnd.randrange(max(0, len(rows) - 100), len(rows))]))
            continue
        offline = rnd.random() < 0.05
        row = {"ts": ts, "platform": "android", "ms_played": rnd.randrange(30_000, 400_000) if roll > 0.12
               else rnd.randrange(0, 30_000), "conn_country": "DE", "ip_addr": "10.11.12.13",
               "master_metadata_track_name": None, "master_metadata_album_artist_name": None,
               "master_metadata_album_album_name": None, "spotify_track_uri": None,
               "episode_name": None, "episode_show_name": None, "spotify_episode_uri": None,
               "audiobook_title": None, "audiobook_uri": None, "audiobook_chapter_uri": None,
               "audiobook_chapter_title": None, "reason_start": rnd.choice(["trackdone", "clickrow", "fwdbtn"]),
               "reason_end": rnd.choice(["trackdone", "fwdbtn", "endplay", "logout"]),
               "shuffle": rnd.random() < 0.4, "skipped": roll <= 0.12, "offline": offline,
               "offline_timestamp": (t * 1000 if i % 2 else t) if offline else None, "incognito_mode": False}
        if 0.12 < roll <= 0.15:
            row.update(episode_name=f"Episode {i}", episode_show_name="A Show",
                       spotify_episode_uri=f"spotify:episode:{_track_id(rnd)}")
        elif not 0.15 < roll <= 0.155:
            # 70% from a few thousand favourites, the rest from the whole catalogue
            tid, name, artist, album = tracks[rnd.randrange(2_000) if rnd.random() < 0.7 else rnd.randrange(len(tracks))]
            row.update(master_metadata_track_name=name, master_metadata_album_artist_name=artist,
                       master_metadata_album_album_name=album, spotify_track_uri=f"spotify:track:{tid}")
        rows.append(row)
    for k in range(0, n, 200):  # unordered within small windows, as real files are
        window = rows[k:k + 200]
        rnd.shuffle(window)
        rows[k:k + 200] = window
    return rows


def write_export(folder: Path, n: int) -> Path:
    """The zip Spotify sends, with ~16k-row files; returns its path."""
    rows = generate_rows(n)
    path = folder / "my_spotify_extended_streaming_history.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for k, start in enumerate(range(0, n, ROWS_PER_FILE)):
            chunk = rows[start:start + ROWS_PER_FILE]
            year = time.gmtime(time.mktime(time.strptime(chunk[0]["ts"], "%Y-%m-%dT%H:%M:%SZ"))).tm_year
            z.writestr(f"{FOLDER}/Streaming_History_Audio_{year}_{k}.json",
                       json.dumps(chunk, indent=2, ensure_ascii=False))
        z.writestr(f"{FOLDER}/ReadMeFirst_ExtendedStreamingHistory.pdf", b"%PDF-1.4 bench")
    return path


def json_load_seconds(path: Path) -> float:
    """The reference: read every member of the zip and json.load it."""
    started = time.perf_counter()
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.filename.endswith(".json"):
                with z.open(info) as f:
                    json.load(f)
    return time.perf_counter() - started


@contextmanager
def import_target(settings):
    """Private topics on the running broker and a private warehouse database with one onboarded user."""
    from weekly_wrapped import db

    admin_dsn = (f"host={settings.pg_host} port={settings.pg_port} dbname={settings.pg_database} "
                 f"user={settings.pg_user} password={settings.pg_password}")
    name = unique("wrapped_bench_import")
    dsn = create_database(admin_dsn, name)
    names = create_stream_topics(settings.kafka_bootstrap, prefix="bench.import.")
    try:
        db.apply_schema(dsn)
        with db.transaction(dsn) as cur:
            cur.execute("insert into app.users (user_id, email) values (%s, 'bench@example.com')", (USER_ID,))
        yield dsn, {"bootstrap.servers": settings.kafka_bootstrap}, {f"spotify.{k}": v for k, v in names.items()}
    finally:
        delete_topics(settings.kafka_bootstrap, names.values())
        for attempt in range(10):  # a backend of another role may still be attached for a moment
            try:
                drop_database(admin_dsn, name)
                break
            except psycopg2.Error:
                time.sleep(1)


def clear_queues(dsn: str) -> None:
    """So every round queues the same rows (a re-import would queue none)."""
    from weekly_wrapped import db

    with db.transaction(dsn) as cur:
        cur.execute("truncate app.metadata_backlog, app.track_resolutions")


def main() -> None:
    from weekly_wrapped.ingest.history_import import import_export
    from wrapped_dev.config import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp, import_target(settings) as (dsn, kafka, topics):
        started = time.perf_counter()
        path = write_export(Path(tmp), args.rows)
        with zipfile.ZipFile(path) as z:
            files = [i for i in z.infolist() if i.filename.endswith(".json")]
            size = sum(i.file_size for i in files)
        print(f"{args.rows} rows in {len(files)} files ({size / 1e6:.0f} MB of JSON, zip "
              f"{path.stat().st_size / 1e6:.0f} MB), generated in {time.perf_counter() - started:.0f}s", flush=True)
        ref, ours = [], []
        for r in range(args.rounds):
            ref.append(args.rows / json_load_seconds(path))
            clear_queues(dsn)
            t0 = time.perf_counter()
            report = import_export(path, USER_ID, dsn, kafka, topics=topics)
            ours.append(args.rows / (time.perf_counter() - t0))
            assert report["rows"] == args.rows, report
            print(f"round {r + 1}: json.load {ref[-1]:,.0f} rows/s, import {ours[-1]:,.0f} rows/s "
                  f"({report['plays']} plays, {report['skip_events']} skip events, skipped {report['skipped']}, "
                  f"{report['delivered']} messages acknowledged, {report['metadata_queued']} tracks queued)", flush=True)
        best_ref, best_ours = median(ref), median(ours)
        print(f"bare json.load of the same files: {best_ref:,.0f} rows/s (median of {args.rounds})")
        print(f"import (validate + produce + queue): {best_ours:,.0f} rows/s (median of {args.rounds})")
    print(f"import_throughput: ratio={best_ours / best_ref:.2f} (target >= 0.3)")


if __name__ == "__main__":
    main()
