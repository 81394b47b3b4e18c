"""Pure functions: Spotify responses (real-shaped samples) -> stream messages, cursors, gaps."""

import json
from pathlib import Path

import pytest

from weekly_wrapped import contracts
from weekly_wrapped.spotify import payloads

FIXTURES = Path(__file__).parent / "fixtures"
NOW = 1_795_500_000_000


def load(name):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def rp2026():
    return load("recently_played_2026.json")


def test_played_at_parses_to_exact_epoch_ms():
    assert payloads.parse_played_at("2026-11-23T21:14:03.112Z") == 1_795_468_443_112
    assert payloads.parse_played_at("2026-11-23T20:59:12Z") == 1_795_467_552_000
    assert payloads.parse_played_at("2026-11-23T22:14:03.112+01:00") == 1_795_468_443_112
    # float timestamps would round .999 wrongly on some values; we do integer math
    assert payloads.parse_played_at("2026-01-01T00:00:00.999Z") % 1000 == 999


def test_2026_payload_to_plays(rp2026):
    msgs = payloads.messages_from_items("u1", rp2026["items"], after_ms=None, source="api", now_ms=NOW)
    # the local file has no Spotify id and is left out; the rest are oldest first
    assert [p["track_id"] for p in msgs.plays] == ["4vLYewWIvqHfKtJDk8c8tq", "5PjdY0CKGZdEuoNab3yDmX",
                                                   "2qSkIjg1o9h3YT9RAgYN75"]
    first, second, third = msgs.plays
    assert list(first)[0] == "schema_version"
    assert first["played_at"] == 1_795_467_552_000
    assert first["context_uri"] == "spotify:album:1weenld61qoidwYuZ1GESA"
    assert second["context_uri"] is None  # "context": null
    assert third["context_uri"] == "spotify:playlist:37i9dQZF1DXcBWIGoYBM5M"
    assert all(p["source"] == "api" and p["ms_played"] is None and p["ingested_at"] == NOW for p in msgs.plays)
    # The whole message, field for field and in the contract's order (written out, not re-validated:
    # payloads already validates, so validating again could never fail).
    assert list(first.items()) == [
        ("schema_version", 1), ("user_id", "u1"), ("played_at", 1_795_467_552_000),
        ("track_id", "4vLYewWIvqHfKtJDk8c8tq"), ("context_uri", "spotify:album:1weenld61qoidwYuZ1GESA"),
        ("source", "api"), ("ms_played", None), ("ingested_at", NOW),
        ("reason_end", None), ("shuffle", None), ("offline", None),
    ]


def test_2026_payload_to_metadata_with_nulls_for_removed_fields(rp2026):
    msgs = payloads.messages_from_items("u1", rp2026["items"], after_ms=None, source="api", now_ms=NOW)
    stay = msgs.tracks["5PjdY0CKGZdEuoNab3yDmX"]
    assert stay["artist_ids"] == ["2tIP7SsRs7vjIcLrU85W8J", "1uNFoZAHBGtllmzznpCI3s"]  # several artists, in order
    assert stay["popularity"] is None and stay["duration_ms"] == 141805 and stay["track_number"] == 23
    assert stay["album_id"] == "4QLAtpLNUsHEYrcHXmMIZZ" and stay["explicit"] is True
    single = msgs.albums["2HaqbkUpN6ArmUZCRG3ixu"]
    assert single["album_type"] == "single"
    assert single["image_url"].endswith("659cd4673230913b3918e0d5") and "b273" in single["image_url"]  # widest
    assert msgs.albums["1weenld61qoidwYuZ1GESA"]["release_date_precision"] == "year"
    assert set(msgs.artists) == {"74KM79TiuVKeVCqs8QtB0B", "2tIP7SsRs7vjIcLrU85W8J", "1uNFoZAHBGtllmzznpCI3s",
                                 "0kbYTNQb4Pb1rPbbaF0pT4"}
    bieber = msgs.artists["1uNFoZAHBGtllmzznpCI3s"]
    assert bieber["genres"] is None and bieber["popularity"] is None and bieber["followers"] is None
    # simplified artists have no picture: the one thing worth a look-up
    assert payloads.missing_fields(contracts.ARTISTS_TOPIC, bieber) == ["image_url"]
    assert payloads.missing_fields(contracts.TRACKS_TOPIC, stay) == []
    assert payloads.missing_fields(contracts.ALBUMS_TOPIC, single) == []


def test_full_artist_objects_old_and_new():
    new = payloads.artist_message(load("artist_2026.json"), NOW)
    assert new["image_url"].startswith("https://i.scdn.co/image/") and new["genres"] is None
    assert payloads.missing_fields(contracts.ARTISTS_TOPIC, new) == []
    old = payloads.artist_message(load("artist_2024.json"), NOW)
    assert old["genres"] == ["dance pop", "miami hip hop", "pop"]
    assert old["popularity"] == 82 and old["followers"] == 10849384


def test_pre_2026_payload_keeps_popularity():
    rp = load("recently_played_2024.json")
    msgs = payloads.messages_from_items("u1", rp["items"], after_ms=None, source="api", now_ms=NOW)
    assert msgs.tracks["0VjIjW4GlUZAMYd2vXMi3b"]["popularity"] == 87
    assert msgs.plays[0]["context_uri"] == "spotify:artist:1Xyo4u8uXC1ZmMpatF05PJ"


def test_plays_at_or_before_the_cursor_are_dropped(rp2026):
    cursor = payloads.parse_played_at("2026-11-23T21:11:07.650Z")
    msgs = payloads.messages_from_items("u1", rp2026["items"], after_ms=cursor, source="api", now_ms=NOW)
    assert [p["track_id"] for p in msgs.plays] == ["2qSkIjg1o9h3YT9RAgYN75"]
    # metadata only for what the new plays reference
    assert set(msgs.tracks) == {"2qSkIjg1o9h3YT9RAgYN75"}
    assert payloads.newest_played_at(msgs.plays) == payloads.parse_played_at("2026-11-23T21:14:03.112Z")
    assert payloads.newest_played_at([], default=cursor) == cursor


def test_repeated_pages_do_not_duplicate_a_play(rp2026):
    items = rp2026["items"] + rp2026["items"][:2]
    msgs = payloads.messages_from_items("u1", items, after_ms=None, source="api", now_ms=NOW)
    keys = [(p["user_id"], p["played_at"], p["track_id"]) for p in msgs.plays]
    assert len(keys) == len(set(keys)) == 3


def test_same_track_twice_is_two_plays_one_track(rp2026):
    item = rp2026["items"][0]
    again = {**item, "played_at": "2026-11-23T21:17:00.000Z"}
    msgs = payloads.messages_from_items("u1", [again, item], after_ms=None, source="api", now_ms=NOW)
    assert len(msgs.plays) == 2 and len(msgs.tracks) == 1


def _plays(times):
    return [{"played_at": t} for t in times]


def test_gap_only_when_a_full_window_is_newer_than_the_cursor():
    cursor = 1_000
    full = _plays(range(2_000, 2_000 + 50))
    assert payloads.detect_gap(cursor, full) == (1_000, 2_000)
    assert payloads.detect_gap(cursor, full[:49]) is None
    assert payloads.detect_gap(None, full) is None  # a new user: nothing was promised
    # the window reaches back to the cursor: nothing can be missing
    assert payloads.detect_gap(2_000, full) is None


def test_cursor_and_retry_after_helpers():
    url = "https://api.spotify.com/v1/me/player/recently-played?after=1484811043508&limit=50"
    assert payloads.cursor_from_url(url, "after") == 1484811043508
    assert payloads.cursor_from_url(url, "before") is None
    assert payloads.cursor_from_url(None) is None
    assert payloads.retry_after_seconds({"retry-after": "7"}) == 7
    assert payloads.retry_after_seconds({"Retry-After": "3600"}) == 3600
    assert payloads.retry_after_seconds({}, default=1) == 1
    assert payloads.retry_after_seconds({"Retry-After": "soon"}, default=5) == 5


def test_bad_shapes_fail_validation():
    with pytest.raises(contracts.InvalidMessage):
        payloads.track_message({"id": "x", "name": "n", "duration_ms": "long"}, NOW)
    with pytest.raises(contracts.InvalidMessage):
        payloads.play_message("u1", {"played_at": "2026-11-23T21:14:03.112Z", "track": {"id": "t"}}, "radio", NOW)
