"""The catalogue look-ups' shared pure parts (budget, whose token, what an error means) and the
metadata backfill's own (what to queue)."""

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from spotipy.exceptions import SpotifyException, SpotifyOauthError

from weekly_wrapped import contracts
from weekly_wrapped.ingest import poll as ingest
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.ingest.catalogue import on_error, per_run_budget, token_user
from weekly_wrapped.ingest.metadata_backfill import tracks_to_queue
from weekly_wrapped.spotify import payloads

FIXTURES = Path(__file__).parent / "fixtures"
NOW = 1_795_500_000_000


def http(status):
    return SpotifyException(status, -1, "url", headers={})


def test_budget_comes_from_the_param_else_the_variable():
    assert per_run_budget(None, "200") == per_run_budget("", "200") == per_run_budget(" ", 200) == 200
    assert per_run_budget("50", "200") == per_run_budget(50, "200") == 50
    assert per_run_budget(0, "200") == 0  # a way to switch it off for one run
    for bad in ("-1", "lots"):
        with pytest.raises(ValueError):
            per_run_budget(bad, "200")
        with pytest.raises(ValueError):
            per_run_budget(None, bad)


def test_every_distinct_track_of_the_imported_plays_is_queued_once():
    plays = [{"track_id": "b"}, {"track_id": "a"}, {"track_id": "b"}]
    assert tracks_to_queue(plays) == ["a", "b"]
    assert tracks_to_queue([]) == []


def test_token_of_the_oldest_pending_rows_importer_if_active_else_anyone_active():
    assert token_user(["ana", "yuki"], ["marcus", "yuki", "ana"]) == "ana"
    assert token_user(["gone", "yuki"], ["ana", "yuki"]) == "yuki"  # importer needs re-auth: the next one
    assert token_user(["gone"], ["ana", "yuki"]) == "ana"           # catalogue data is the same for all
    assert token_user(["gone"], []) is None


@pytest.mark.parametrize("exc, stop, counted", [
    (spotify.RateLimited("429 Retry-After 7200s", datetime.now(timezone.utc)), True, False),
    (spotify.RateLimited("QUOTA_EXCEEDED", datetime.now(timezone.utc)), True, False),
    (spotify.NeedsReauth("refresh token rejected"), True, False),
    (spotify.SpotifyUnavailable("Spotify 503 after 4 attempts"), True, True),
    (http(401), True, False),
    (http(403), True, False),
    (http(400), False, True),  # a malformed id: only this row
])
def test_what_an_error_means_for_the_run_and_the_row(exc, stop, counted):
    step = on_error(exc)
    assert (step.stop, step.count_attempt) == (stop, counted)


def test_configuration_errors_and_bugs_are_not_swallowed():
    with pytest.raises(KeyError):
        on_error(KeyError("a bug"))
    with pytest.raises(SpotifyOauthError):
        on_error(SpotifyOauthError("bad app", error="invalid_client"))
    with pytest.raises(requests.ConnectionError):  # (session.call turns these into SpotifyUnavailable)
        on_error(requests.ConnectionError())


def test_a_full_track_gives_its_track_album_and_artists():
    # The track object inside a recently-played item is the same full shape as GET /tracks/{id}.
    track = json.loads((FIXTURES / "recently_played_2026.json").read_text())["items"][0]["track"]
    msgs = payloads.PollMessages()
    payloads.add_track_entities(msgs, track, NOW)
    t = msgs.tracks[track["id"]]
    assert t["album_id"] == track["album"]["id"] and t["artist_ids"] == [a["id"] for a in track["artists"]]
    assert t["fetched_at"] == NOW and not payloads.missing_fields(contracts.TRACKS_TOPIC, t)
    assert list(msgs.albums) == [track["album"]["id"]]
    expected_artists = {a["id"] for a in track["artists"] + track["album"]["artists"]}
    assert set(msgs.artists) == expected_artists
    assert msgs.plays == []
    # a second track with the same album keeps the first message (one per entity)
    first_album = msgs.albums[track["album"]["id"]]
    payloads.add_track_entities(msgs, {**track, "id": "0" * 22}, NOW + 1)
    assert msgs.albums[track["album"]["id"]] is first_album and len(msgs.tracks) == 2
