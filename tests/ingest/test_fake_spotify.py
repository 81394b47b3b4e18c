"""The demo listener and the fake Spotify server, through the real spotipy client (no stack needed)."""

import re
import threading
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from spotipy.exceptions import SpotifyException, SpotifyOauthError

from wrapped_dev import demo_users
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.users import accounts as users
from wrapped_dev.fakes import demo_listener as dl
from wrapped_dev.fakes.spotify_server import FakeSpotify, make_server, parse_instant

NOW = parse_instant("2026-11-20T18:30:00Z")
DAY = 86_400_000


# --- the listener -----------------------------------------------------------------------------

def test_catalogue_has_albums_singles_and_multi_artist_tracks():
    cat = dl.build_catalogue(7)
    types = Counter(a.album_type for a in cat.albums.values())
    assert types["album"] > 50 and types["single"] > 50
    multi = [t for t in cat.tracks.values() if len(t.artist_ids) > 1]
    assert 0.1 < len(multi) / len(cat.tracks) < 0.4
    assert all(len(i) == 22 for i in list(cat.tracks)[:50])
    assert dl.build_catalogue(8).tracks.keys().isdisjoint(cat.tracks.keys())


def test_plays_are_deterministic_and_window_independent():
    user = dl.demo_users(3)[0]
    week = dl.plays_between(7, user, NOW - 7 * DAY, NOW)
    assert week == dl.plays_between(7, user, NOW - 7 * DAY, NOW)
    mid = NOW - 3 * DAY - 12_345
    assert dl.plays_between(7, user, NOW - 7 * DAY, mid) + dl.plays_between(7, user, mid, NOW) == week
    assert 50 < len(week) < 600
    # skips are not reported; one song at a time
    times = [p.played_at_ms for p in week]
    assert all(b - a >= dl.MIN_REPORTED_MS for a, b in zip(times, times[1:]))
    assert all(p.ms_played >= dl.MIN_REPORTED_MS for p in week)


def test_listening_looks_like_a_person():
    for user in dl.demo_users(3):
        tz = ZoneInfo(user.time_zone)
        plays = dl.plays_between(7, user, NOW - 28 * DAY, NOW)
        hours = Counter(datetime.fromtimestamp(p.played_at_ms / 1000, tz).hour for p in plays)
        # daily rhythm in the user's own zone: nights are quiet
        assert sum(hours[h] for h in range(2, 6)) < 0.05 * len(plays), (user.user_id, hours)
        counts = Counter(p.track_id for p in plays).most_common()
        assert counts[0][1] >= 5 * counts[len(counts) // 2][1]  # favourites (Zipf-like)
        repeats = sum(1 for a, b in zip(plays, plays[1:]) if a.track_id == b.track_id)
        assert repeats > 0
    # discoveries: artists heard in the last week that were never heard in the 8 weeks before
    user = dl.demo_users(1)[0]
    cat = dl.build_catalogue(7)
    before = {cat.tracks[p.track_id].artist_ids[0] for p in dl.plays_between(7, user, NOW - 63 * DAY, NOW - 7 * DAY)}
    last = {cat.tracks[p.track_id].artist_ids[0] for p in dl.plays_between(7, user, NOW - 7 * DAY, NOW)}
    assert last - before


def test_demo_users_have_distinct_time_zones():
    us = dl.demo_users(3)
    assert len({u.time_zone for u in us}) == 3 and len({u.user_id for u in us}) == 3
    assert [u.user_id for u in dl.demo_users(5)][:3] == [u.user_id for u in us]


# --- the server -------------------------------------------------------------------------------

@pytest.fixture
def fake():
    state = FakeSpotify(seed=7, n_users=3, now=NOW)
    server = make_server(0, fake=state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield base, spotify.SpotifyApp("demo-client-id", "demo-client-secret", f"{base}/v1/", base)
    server.shutdown()
    server.server_close()


def client_for(app, user_id):
    code = demo_users.authorize_on_fake(app, user_id)
    oauth = spotify.make_oauth(app)
    oauth.get_access_token(code, as_dict=False, check_cache=False)
    return spotify.make_client(app, oauth), oauth


def test_oauth_code_flow_and_refresh(fake):
    base, app = fake
    code = demo_users.authorize_on_fake(app, "demo-ana")
    profile, refresh = users.exchange_code(app, code)
    assert profile["id"] == "demo-ana" and "email" not in profile  # 2026: no e-mail from /me
    # a code is good once
    with pytest.raises(users.OnboardingError):
        users.exchange_code(app, code)
    sp = spotify.make_client(app, spotify.oauth_for_refresh_token(app, refresh))
    assert sp.me()["display_name"] == "Ana"
    # wrong client secret
    bad = spotify.SpotifyApp("demo-client-id", "nope", app.api_base, app.accounts_base)
    with pytest.raises(SpotifyOauthError) as err:
        spotify.make_client(bad, spotify.oauth_for_refresh_token(bad, refresh)).me()
    assert err.value.error == "invalid_client"


def test_recently_played_protocol(fake):
    base, app = fake
    sp, _ = client_for(app, "demo-marcus")
    page = sp.current_user_recently_played(limit=50)
    items = page["items"]
    assert len(items) == 50  # only the last 50 exist
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", i["played_at"]) for i in items)
    times = [parse_instant(i["played_at"]) for i in items]
    assert times == sorted(times, reverse=True) and times[0] <= NOW  # newest first, finished plays only
    assert page["cursors"] == {"after": str(times[0]), "before": str(times[-1])}
    track = items[0]["track"]
    assert "popularity" not in track and "available_markets" not in track and "external_ids" not in track
    assert "genres" not in track["artists"][0] and track["album"]["images"]
    # forward paging after a cursor
    after = times[20]
    first = sp.current_user_recently_played(limit=5, after=after)
    assert [parse_instant(i["played_at"]) for i in first["items"]] == times[15:20]
    assert "after=" in first["next"]
    rest = []
    while first["next"]:
        first = sp.next(first)
        rest += [parse_instant(i["played_at"]) for i in first["items"]]
    assert sorted(rest, reverse=True) == times[:15]
    # backward paging
    back = sp.current_user_recently_played(limit=10)
    assert "before=" in back["next"] and len(sp.next(back)["items"]) == 10
    with pytest.raises(SpotifyException) as err:
        sp.current_user_recently_played(limit=51)
    assert err.value.http_status == 400


def test_entities_in_2026_shapes(fake):
    base, app = fake
    sp, _ = client_for(app, "demo-yuki")
    item = sp.current_user_recently_played(limit=1)["items"][0]
    artist = sp.artist(item["track"]["artists"][0]["id"])
    assert artist["images"] and not {"genres", "popularity", "followers"} & set(artist)
    album = sp.album(item["track"]["album"]["id"])
    assert album["tracks"]["items"] and "popularity" not in album
    assert sp.track(item["track"]["id"])["id"] == item["track"]["id"]
    with pytest.raises(SpotifyException) as err:
        sp.artist("0000000000000000000000")
    assert err.value.http_status == 404
    with pytest.raises(SpotifyException) as err:
        sp.artists([artist["id"]])  # the batch look-ups are gone
    assert err.value.http_status == 403


def test_faults_and_clock(fake):
    base, app = fake
    sp, oauth = client_for(app, "demo-ana")
    other, _ = client_for(app, "demo-yuki")
    requests.post(f"{base}/_control/fault", json={"kind": "429", "user_id": "demo-ana", "retry_after": 7200})
    with pytest.raises(SpotifyException) as err:
        sp.me()
    assert err.value.http_status == 429 and err.value.headers["Retry-After"] == "7200"
    other.me()  # other users unaffected
    sp.me()     # consumed once
    requests.post(f"{base}/_control/fault", json={"kind": "quota", "user_id": "demo-ana"})
    with pytest.raises(SpotifyException) as err:
        sp.me()
    assert err.value.reason == "QUOTA_EXCEEDED"
    requests.post(f"{base}/_control/fault", json={"kind": "5xx", "user_id": "demo-ana", "status": 502, "count": 2})
    for _ in range(2):
        with pytest.raises(SpotifyException) as err:
            sp.me()
        assert err.value.http_status == 502
    requests.post(f"{base}/_control/fault", json={"kind": "expire_token", "user_id": "demo-ana"})
    with pytest.raises(SpotifyException) as err:
        sp.me()
    assert err.value.http_status == 401 and "expired" in err.value.msg
    spotify.force_refresh(oauth)
    sp.me()
    requests.post(f"{base}/_control/fault", json={"kind": "invalid_grant", "user_id": "demo-ana"})
    with pytest.raises(SpotifyOauthError) as err:
        spotify.force_refresh(oauth)
    assert err.value.error == "invalid_grant"
    with pytest.raises(SpotifyOauthError):  # revoked for good
        spotify.force_refresh(oauth)
    # the clock: frozen at NOW, movable
    r = requests.post(f"{base}/_control/clock", json={"advance_seconds": 3600}).json()
    assert r["now_ms"] == NOW + 3_600_000
    newest = parse_instant(other.current_user_recently_played(limit=1)["items"][0]["played_at"])
    assert newest <= NOW + 3_600_000


def test_search_finds_catalogue_tracks_by_field_filters_with_the_2026_limit(fake):
    base, app = fake
    sp, _ = client_for(app, "demo-ana")
    cat = dl.build_catalogue(7)
    track = next(t for t in cat.tracks.values() if len(t.artist_ids) > 1)
    featured = cat.artists[track.artist_ids[1]].name
    page = sp.search(f'track:"{track.name.upper()}" artist:"{featured.lower()}"', limit=10, type="track")["tracks"]
    assert page["items"][0]["id"] == track.id  # exact names first, case-insensitive, any of its artists
    assert page["limit"] == 10 and page["offset"] == 0 and page["total"] >= 1 and page["previous"] is None
    item = page["items"][0]
    assert item["album"]["id"] == track.album_id and item["album"]["images"]
    assert [a["id"] for a in item["artists"]] == list(track.artist_ids)
    # a loose free-text search pages through more than ten matches, ten at most per page
    word = track.name.split()[0]
    wide = sp.search(word, limit=10, type="track")["tracks"]
    assert wide["total"] > 10 and len(wide["items"]) == 10 and wide["next"]
    assert len(sp.next(wide)["tracks"]["items"]) >= 1
    assert len(sp.search(word, type="track")["tracks"]["items"]) == 10  # spotipy's default limit is 10
    assert requests.get(f"{base}/v1/search", params={"q": word, "type": "track"},
                        headers={"Authorization": sp._auth_headers()["Authorization"]}).json()["tracks"]["limit"] == 5
    empty = sp.search('track:"no such song anywhere" artist:"nobody"', type="track")["tracks"]
    assert (empty["items"], empty["total"], empty["next"]) == ([], 0, None)
    for bad in ({"limit": 11}, {"limit": 50}):
        with pytest.raises(SpotifyException) as err:
            sp.search(word, type="track", **bad)
        assert err.value.http_status == 400
    with pytest.raises(SpotifyException) as err:
        sp.search(word, type="podcast")
    assert err.value.http_status == 400
    # a bearer token is required, and the fault controls apply to /search as to every route
    assert requests.get(f"{base}/v1/search", params={"q": word, "type": "track"}).status_code == 401
    requests.post(f"{base}/_control/fault", json={"kind": "429", "path": "/v1/search", "retry_after": 7200})
    with pytest.raises(SpotifyException) as err:
        sp.search(word, type="track")
    assert err.value.http_status == 429 and err.value.headers["Retry-After"] == "7200"
    requests.post(f"{base}/_control/fault", json={"kind": "quota", "path": "/v1/search"})
    with pytest.raises(SpotifyException) as err:
        sp.search(word, type="track")
    assert err.value.reason == "QUOTA_EXCEEDED"
    requests.post(f"{base}/_control/fault", json={"kind": "5xx", "path": "/v1/search", "status": 502})
    with pytest.raises(SpotifyException) as err:
        sp.search(word, type="track")
    assert err.value.http_status == 502
    sp.me()  # a /v1/search fault leaves other routes alone
    counts = requests.get(f"{base}/_control/state").json()["counts"]
    assert counts["GET /v1/search"] >= 9 and counts["GET /v1/search demo-ana"] == counts["GET /v1/search"]


def test_burst_of_more_than_50_plays(fake):
    base, app = fake
    sp, _ = client_for(app, "demo-yuki")
    before = parse_instant(sp.current_user_recently_played(limit=1)["items"][0]["played_at"])
    requests.post(f"{base}/_control/clock", json={"advance_seconds": 60})
    r = requests.post(f"{base}/_control/burst", json={"user_id": "demo-yuki", "count": 70}).json()
    assert r["plays"] == 70
    page = sp.current_user_recently_played(limit=50, after=before)
    assert len(page["items"]) == 50 and page["next"] is None  # the oldest 20 are out of reach


def test_server_cli_as_the_stack_runs_it():
    """`python -m wrapped_dev.fakes.spotify_server --port P --seed N --users N`, clock from FAKE_SPOTIFY_NOW."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "FAKE_SPOTIFY_NOW": "2026-11-23T06:00:00Z"}
    proc = subprocess.Popen([sys.executable, "-m", "wrapped_dev.fakes.spotify_server", "--port", "0",
                             "--seed", "11", "--users", "5"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        base = re.search(r"http://[\d.]+:\d+", line).group(0)
        state = requests.get(f"{base}/_control/state", timeout=10).json()
        assert state["now"] == "2026-11-23T06:00:00.000Z" and state["frozen"]
        listed = requests.get(f"{base}/_control/users", timeout=10).json()["users"]
        assert len(listed) == 5 and len({u["time_zone"] for u in listed}) == 5
        assert requests.post(f"{base}/_control/clock", json={"real": True}, timeout=10).json()["now_ms"] > state["now_ms"]
    finally:
        proc.terminate()
        proc.wait(10)
