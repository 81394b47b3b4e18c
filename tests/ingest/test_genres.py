"""Artist genres from MusicBrainz: choosing the artist and its genre tags (pure), and the look-ups
against a private fake MusicBrainz (1 request/s, 503 when faster, 403 without a User-Agent) into a
private database: each artist once, a miss kept too, a 503 waited out, a lasting one stopping the run."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from weekly_wrapped.ingest import genres
from wrapped_dev.fakes import musicbrainz_server as fake_mb

from tests.support.postgres import private_database, sql

GENRE_LIST = frozenset({"rock", "glam rock", "art rock", "ambient", "pop", "electronic", "krautrock"})
UA = genres.user_agent("tests@wrapped.example")

QUEEN = {"id": "mb-queen", "score": 100, "name": "Queen",
         "tags": [{"name": "rock", "count": 9}, {"name": "glam rock", "count": 12},
                  {"name": "british", "count": 20}, {"name": "Art Rock", "count": 3},
                  {"name": "pop", "count": 0}]}


# --- pure parts ---------------------------------------------------------------------------------

def test_user_agent_names_the_application_its_version_and_a_contact():
    assert UA == "WeeklyWrapped/0.1 ( tests@wrapped.example )"


def test_search_query_is_a_phrase_on_the_artist_field_with_quotes_escaped():
    assert genres.search_query("Queen") == 'artist:"Queen"'
    assert genres.search_query('The "Real" Tuesday\\Weld') == 'artist:"The \\"Real\\" Tuesday\\\\Weld"'
    # the fake reads it back as MusicBrainz would
    assert fake_mb.query_name(genres.search_query('The "Real" Tuesday\\Weld')) == 'The "Real" Tuesday\\Weld'


def test_genre_list_is_one_name_a_line():
    assert genres.parse_genre_list("Ambient\nart rock\n\n  Glam Rock \n") == {"ambient", "art rock", "glam rock"}


def test_genres_are_the_tags_that_are_genres_with_votes_most_votes_first():
    # "british" is a tag, not a genre; "pop" has no net vote; names are compared case-insensitively
    assert genres.genres_of(QUEEN, GENRE_LIST) == ["glam rock", "rock", "art rock"]
    assert genres.genres_of(QUEEN, GENRE_LIST, limit=1) == ["glam rock"]
    assert genres.genres_of({"name": "X", "tags": []}, GENRE_LIST) == []


def test_the_artist_is_the_candidate_of_the_same_name_with_a_good_score():
    answer = {"artists": [
        {"id": "mb-queens", "score": 100, "name": "Queens of the Stone Age", "tags": [{"name": "rock", "count": 50}]},
        QUEEN,
    ]}
    assert genres.choose_artist("queen", answer)["id"] == "mb-queen"
    assert genres.choose_artist("Queen Latifah", answer) is None  # a similar name is not the artist
    low = {"artists": [{**QUEEN, "score": 70}]}
    assert genres.choose_artist("Queen", low) is None
    alias = {"artists": [{"id": "mb-bowie", "score": 95, "name": "David Bowie",
                          "aliases": [{"name": "Ziggy Stardust"}], "tags": []}]}
    assert genres.choose_artist("ziggy  stardust", alias)["id"] == "mb-bowie"


def test_of_namesakes_the_better_known_one_most_tag_votes():
    answer = {"artists": [
        {"id": "mb-nirvana-60s", "score": 100, "name": "Nirvana", "tags": [{"name": "psychedelic pop", "count": 2}]},
        {"id": "mb-nirvana-90s", "score": 100, "name": "Nirvana", "tags": [{"name": "grunge", "count": 30}]},
    ]}
    assert genres.choose_artist("Nirvana", answer)["id"] == "mb-nirvana-90s"
    found = genres.lookup_from_search("Nirvana", answer, frozenset({"grunge"}))
    assert found == genres.Lookup("found", ("grunge",), "mb-nirvana-90s")
    assert genres.lookup_from_search("Nobody", answer, frozenset()) == genres.Lookup("not_found")


# --- against the fake ------------------------------------------------------------------------------

ARTISTS = [
    {"name": "Queen", "tags": [{"name": "rock", "count": 9}, {"name": "glam rock", "count": 12},
                               {"name": "seen live", "count": 20}]},
    {"name": "Nils Frahm", "tags": [{"name": "ambient", "count": 4}, {"name": "electronic", "count": 2}]},
    {"name": "Some Quiet Person", "tags": [{"name": "favourites", "count": 3}]},  # no genre tag
]


@pytest.fixture
def fake():
    """A private fake MusicBrainz in a thread; yields (server, base_url)."""
    server = fake_mb.make_server(artists=ARTISTS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_port}/ws/2/"
    server.shutdown()
    server.server_close()


def client(base_url: str) -> genres.MusicBrainzClient:
    return genres.MusicBrainzClient(genres.MusicBrainzConfig(base_url, "tests@wrapped.example"))


def test_the_fake_refuses_anonymous_clients_and_callers_faster_than_one_a_second(fake):
    server, base = fake
    url = base + "artist"
    assert requests.get(url, params={"query": 'artist:"Queen"'}, timeout=10).status_code == 403  # python-requests/x
    first = requests.get(url, params={"query": 'artist:"Queen"', "fmt": "json"}, headers={"User-Agent": UA}, timeout=10)
    assert first.status_code == 200 and first.json()["artists"][0]["name"] == "Queen"
    assert first.json()["artists"][0]["score"] == 100
    too_soon = requests.get(url, params={"query": 'artist:"Queen"'}, headers={"User-Agent": UA}, timeout=10)
    assert too_soon.status_code == 503 and "rate limit" in too_soon.json()["error"]
    time.sleep(1.0)
    assert requests.get(url, params={"query": 'artist:"Queen"'}, headers={"User-Agent": UA}, timeout=10).ok


def test_the_client_spaces_its_requests_a_second_apart_with_its_user_agent(fake):
    server, base = fake
    mb = client(base)
    started = time.monotonic()
    names = mb.genre_names()
    answers = [mb.search_artist(name) for name in ("Queen", "Nils Frahm", "Unknown Band")]
    elapsed = time.monotonic() - started
    assert elapsed >= 3 * genres.REQUEST_SPACING_S - 0.05
    assert server.state.stats()["by_status"] == {"200": 4}  # never a 503
    assert server.state.stats()["user_agents"] == [UA]
    assert "ambient" in names and "seen live" not in names
    assert [a["count"] for a in answers] == [1, 1, 0]


def test_a_mirror_of_ones_own_is_asked_at_the_rate_the_connection_sets(monkeypatch):
    import json

    from weekly_wrapped.airflow import connections

    monkeypatch.setenv("AIRFLOW_CONN_MUSICBRAINZ_DEFAULT", json.dumps(
        {"conn_type": "http", "extra": {"base_url": "http://mirror.test/ws/2/", "contact": "ops@home.test"}}))
    assert connections.musicbrainz_config().requests_per_second == 1  # musicbrainz.org's rule unless told
    monkeypatch.setenv("AIRFLOW_CONN_MUSICBRAINZ_DEFAULT", json.dumps(
        {"conn_type": "http", "extra": {"base_url": "http://mirror.test/ws/2/", "contact": "ops@home.test",
                                        "requests_per_second": 20}}))
    config = connections.musicbrainz_config()
    assert config == genres.MusicBrainzConfig("http://mirror.test/ws/2/", "ops@home.test", 20.0)
    for wrong in (-1, "fast"):  # unchecked, either would leave the requests unlimited or fail obscurely
        monkeypatch.setenv("AIRFLOW_CONN_MUSICBRAINZ_DEFAULT", json.dumps(
            {"conn_type": "http", "extra": {"contact": "ops@home.test", "requests_per_second": wrong}}))
        with pytest.raises(ValueError, match="requests_per_second must be a number above 0"):
            connections.musicbrainz_config()

    server = fake_mb.make_server(artists=ARTISTS, min_interval_s=1 / 20)  # 503 to anything faster than 20/s
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # Asked 10 a second: spaced 105 ms, far enough apart for any jitter.
        mirror = genres.MusicBrainzConfig(f"http://127.0.0.1:{server.server_port}/ws/2/", "ops@home.test", 10)
        mb = genres.MusicBrainzClient(mirror)
        started = time.monotonic()
        for _ in range(6):
            mb.search_artist("Queen")
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert server.state.stats()["by_status"] == {"200": 6}  # never faster than the mirror allows
    assert elapsed >= 5 * genres.SPACING_SLACK / 10 - 0.02
    assert mb.limiter.interval == pytest.approx(genres.SPACING_SLACK / 10)  # not musicbrainz.org's second


def test_a_503_is_waited_out_and_the_request_tried_again(fake):
    server, base = fake
    # Someone else's request a moment before ours: the fake sees two requests within a second.
    assert requests.get(base + "genre/all", headers={"User-Agent": UA}, timeout=10).ok
    answer = client(base).search_artist("Queen")
    assert answer["artists"][0]["name"] == "Queen"
    assert server.state.stats()["by_status"] == {"200": 2, "503": 1}


# --- into the warehouse ----------------------------------------------------------------------------

@pytest.fixture
def warehouse_dsn(postgres):
    with private_database(postgres.dsn, "wrapped_genres", schema=True) as (_, dsn):
        yield dsn


def seed_artists(dsn: str) -> None:
    """Four artists: Queen played most, Nils Frahm, an unknown one; Bowie already has Spotify genres."""
    rows = [("a_queen", "Queen", None), ("a_nils", "Nils Frahm", None), ("a_unknown", "Nobody Knows Us", None),
            ("a_bowie", "David Bowie", ["art rock"])]
    for artist_id, name, spotify_genres in rows:
        sql(dsn, "insert into raw.artists (artist_id, name, genres, fetched_at) values (%s, %s, %s, now())",
            (artist_id, name, spotify_genres))
    sql(dsn, "insert into raw.tracks (track_id, name, artist_ids, fetched_at) values "
             "('t_bohemian', 'Bohemian Rhapsody', '{a_queen}', now()), ('t_says', 'Says', '{a_nils}', now())")
    sql(dsn, "insert into raw.plays (user_id, played_at, track_id, source, ingested_at) "
             "select 'u1', now() - make_interval(hours => h), "
             "case when mod(h, 3) = 0 then 't_says' else 't_bohemian' end, "
             "'api', now() from generate_series(1, 9) as h")


def stored(dsn: str) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in sql(dsn, "select artist_id, status, genres, musicbrainz_id, source "
                                          "from app.artist_genres")}


def test_each_artist_is_looked_up_once_and_a_miss_is_kept_too(fake, warehouse_dsn):
    server, base = fake
    seed_artists(warehouse_dsn)
    config = genres.MusicBrainzConfig(base, "tests@wrapped.example")

    first = genres.fill_genres(warehouse_dsn, config, per_run=1)  # the budget: the most played artist first
    assert (first.selected, first.found, first.with_genres, first.stopped) == (1, 1, 1, None)
    assert first.genres == {"Queen": ["glam rock", "rock"]}  # "seen live" is no genre

    rest = genres.fill_genres(warehouse_dsn, config, per_run=100)
    assert (rest.selected, rest.found, rest.not_found, rest.stopped) == (2, 1, 1, None)
    rows = stored(warehouse_dsn)
    assert set(rows) == {"a_queen", "a_nils", "a_unknown"}  # Bowie kept Spotify's genres: not asked
    assert rows["a_queen"][:2] == ("found", ["glam rock", "rock"]) and rows["a_queen"][3] == "musicbrainz"
    assert rows["a_nils"][:2] == ("found", ["ambient", "electronic"])
    assert rows["a_unknown"] == ("not_found", [], None, "musicbrainz")
    assert genres.genre_counts(warehouse_dsn) == {"with_genres": 2, "no_genre_tags": 0, "not_found": 1,
                                                  "waiting": 0}

    requests_before = sum(server.state.stats()["by_status"].values())
    again = genres.fill_genres(warehouse_dsn, config, per_run=100)
    assert (again.selected, again.requests) == (0, 0)
    assert sum(server.state.stats()["by_status"].values()) == requests_before  # cached: MusicBrainz not asked
    assert server.state.stats()["queries"] == ['artist:"Queen"', 'artist:"Nils Frahm"', 'artist:"Nobody Knows Us"']


def test_most_played_first_and_a_name_only_artist_skipped_when_a_real_one_has_its_name(warehouse_dsn):
    seed_artists(warehouse_dsn)
    for artist_id, name in (("name:artist:q", "QUEEN"), ("name:artist:z", "Only From An Export")):
        sql(warehouse_dsn, "insert into raw.artists (artist_id, name, fetched_at) values (%s, %s, now())",
            (artist_id, name))
    ids = [artist_id for artist_id, _ in genres.artists_to_look_up(warehouse_dsn, 100)]
    assert ids[:2] == ["a_queen", "a_nils"]  # 6 and 3 plays lately
    assert sorted(ids) == ["a_nils", "a_queen", "a_unknown", "name:artist:z"]
    assert genres.not_looked_up_among_most_played(warehouse_dsn, 2) == 2
    genres.save_lookup(warehouse_dsn, "a_queen", "Queen", genres.Lookup("found", ("rock",), "mb-queen"))
    assert genres.not_looked_up_among_most_played(warehouse_dsn, 2) == 1
    assert genres.genre_counts(warehouse_dsn)["waiting"] == 3


def test_a_lasting_503_stops_the_run_and_stores_nothing_for_the_artist(warehouse_dsn):
    server = fake_mb.make_server(artists=ARTISTS, min_interval_s=3600)  # only the first request gets through
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}/ws/2/"
        seed_artists(warehouse_dsn)
        result = genres.fill_genres(warehouse_dsn, genres.MusicBrainzConfig(base, "tests@wrapped.example"), 100)
    finally:
        server.shutdown()
        server.server_close()
    assert result.stopped and "503" in result.stopped
    assert (result.found, result.not_found) == (0, 0)
    assert result.requests == 1 + 1 + genres.MAX_RETRIES  # the genre list, then one search and its retries
    assert stored(warehouse_dsn) == {}  # the artists wait for the next run
    assert genres.genre_counts(warehouse_dsn)["waiting"] == 3


def test_a_refused_user_agent_fails_loudly(fake):
    server, base = fake
    mb = genres.MusicBrainzClient(genres.MusicBrainzConfig(base, "x"))
    mb.session.headers["User-Agent"] = "python-requests/2.32"
    with pytest.raises(genres.MusicBrainzRefused, match="python-requests"):
        mb.search_artist("Queen")
