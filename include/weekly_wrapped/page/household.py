"""The household: a weekly "taste match" between the people of one installation who opted in.

    set_opt_in(dsn, user_id, on)                 -> bool (False: no such user)
    taste_match(dsn, user_id, week_start)        -> TasteMatch | None
    taste_match_on(conn, user_id, week_start)    -> the same, on an open connection (the recap job)

Opt-in only (`app.users.household_opt_in`): a person who has not opted in gets no match and
appears in nobody's. The match is computed when it is read (the page, or the recap when it is
rendered), so opting out removes a person from everyone's next page and e-mail at once; an
e-mail already sent stays as it was sent.

The rules (docs/recap.md, "The household"):
- The week is the requesting user's local week (Monday 00:00 to Monday 00:00 in their time
  zone, as the marts place it); everyone else's plays count in the same UTC instants, so both
  sides of a match cover the same stretch of real time.
- Minutes follow the marts' one rule (`intermediate.int_plays_localized.ms_listened`); a play
  counts for every artist credited on its track; only known artists and tracks count.
- Score: weighted Jaccard of the two people's minutes per artist, sum(min) / sum(max), as a
  whole percentage (half up); 0 when neither has a known artist that week.
- Who discovered a shared artist first: whose first play of it we hold (marts.fct_plays, ever) is earlier.
- A housemate is named by their display name, else "a housemate"; never by e-mail or id.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from weekly_wrapped import db
from weekly_wrapped.recap.facts import valid_time_zone

UNNAMED = "a housemate"
LIST_LENGTH = 5  # shared artists and tracks shown per housemate
SPOTIFY_URL = "https://open.spotify.com"


@dataclass(frozen=True)
class SharedArtist:
    name: str
    spotify_url: str | None
    your_minutes: Decimal  # to 0.1
    their_minutes: Decimal
    first_heard_by: str  # "you" | "them" | "together" (first plays held at the same instant)


@dataclass(frozen=True)
class SharedTrack:
    name: str
    artists: str | None
    spotify_url: str | None
    your_plays: int
    their_plays: int


@dataclass(frozen=True)
class HousemateMatch:
    name: str  # display name, else UNNAMED
    score_percent: int
    shared_artist_count: int
    shared_track_count: int
    shared_artists: tuple[SharedArtist, ...]  # the LIST_LENGTH most shared (the smaller side's minutes)
    shared_tracks: tuple[SharedTrack, ...]


@dataclass(frozen=True)
class TasteMatch:
    user_id: str
    week_start: date  # the requesting user's local Monday
    time_zone: str
    window_from: datetime  # the week as UTC instants, everyone's plays counted within them
    window_to: datetime
    housemates: tuple[HousemateMatch, ...]  # best match first


def set_opt_in(dsn: str, user_id: str, on: bool) -> bool:
    """Opt the user in to (or out of) the household; False when there is no such user."""
    with db.transaction(dsn) as cur:
        cur.execute("update app.users set household_opt_in = %s, updated_at = now() where user_id = %s",
                    (bool(on), user_id))
        return cur.rowcount == 1


def taste_match(dsn: str, user_id: str, week_start: date) -> TasteMatch | None:
    """The user's match with every other opted-in person for the local week of `week_start`
    (a Monday); None when the user has not opted in or nobody else has."""
    with closing(db.connect(dsn, application_name="weekly_wrapped.page.household")) as conn:
        try:
            return taste_match_on(conn, user_id, week_start)
        finally:
            conn.rollback()


PEOPLE_SQL = """
select user_id, nullif(btrim(display_name), '') as display_name, time_zone
from app.users
where household_opt_in
order by user_id
"""

WINDOW_SQL = "select %(week)s::timestamp at time zone %(tz)s, (%(week)s::date + 7)::timestamp at time zone %(tz)s"

# Each person's minutes per known artist, in the window.
ARTIST_MINUTES_SQL = """
select plays.user_id, artists.artist_id, artists.artist_name, sum(plays.ms_listened)::bigint as ms_listened
from intermediate.int_plays_localized as plays
join marts.bridge_track_artist as track_artists on track_artists.track_id = plays.track_id
join marts.dim_artist as artists on artists.artist_id = track_artists.artist_id
where plays.user_id = any(%(people)s) and plays.played_at >= %(from)s and plays.played_at < %(to)s
  and artists.has_metadata
group by 1, 2, 3
"""

# Each person's plays per known track, in the window.
TRACK_PLAYS_SQL = """
select plays.user_id, tracks.track_id, tracks.track_name, tracks.artist_names,
       count(*)::int as plays, sum(plays.ms_listened)::bigint as ms_listened
from intermediate.int_plays_localized as plays
join marts.dim_track as tracks on tracks.track_id = plays.track_id
where plays.user_id = any(%(people)s) and plays.played_at >= %(from)s and plays.played_at < %(to)s
  and tracks.has_metadata
group by 1, 2, 3, 4
"""

# The first play we hold, ever, of each of these artists by each of these people.
FIRST_PLAYS_SQL = """
select plays.user_id, track_artists.artist_id, min(plays.played_at) as first_played_at
from marts.fct_plays as plays
join marts.bridge_track_artist as track_artists on track_artists.track_id = plays.track_id
where plays.user_id = any(%(people)s) and track_artists.artist_id = any(%(artists)s)
group by 1, 2
"""


def taste_match_on(conn, user_id: str, week_start: date) -> TasteMatch | None:
    """`taste_match` on an open connection (reads only; the caller ends the transaction)."""
    with conn.cursor() as cur:
        cur.execute(PEOPLE_SQL)
        people = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
        if user_id not in people or len(people) < 2:
            return None
        time_zone = valid_time_zone(people[user_id][1])
        cur.execute(WINDOW_SQL, {"week": week_start, "tz": time_zone})
        window_from, window_to = cur.fetchone()
        scope = {"people": list(people), "from": window_from, "to": window_to}
        cur.execute(ARTIST_MINUTES_SQL, scope)
        artists = _by_person(cur.fetchall())
        cur.execute(TRACK_PLAYS_SQL, scope)
        tracks = _by_person(cur.fetchall())
        mine = set(artists.get(user_id, {}))
        shared_anywhere = sorted({a for other in people if other != user_id for a in artists.get(other, {})} & mine)
        first_plays = {}
        if shared_anywhere:
            cur.execute(FIRST_PLAYS_SQL, {"people": list(people), "artists": shared_anywhere})
            first_plays = {(person, artist): at for person, artist, at in cur.fetchall()}
    housemates = [
        match_with(
            name=people[other][0] or UNNAMED,
            your_artists=artists.get(user_id, {}),
            their_artists=artists.get(other, {}),
            your_tracks=tracks.get(user_id, {}),
            their_tracks=tracks.get(other, {}),
            your_first_plays={a: at for (p, a), at in first_plays.items() if p == user_id},
            their_first_plays={a: at for (p, a), at in first_plays.items() if p == other},
        )
        for other in people
        if other != user_id
    ]
    housemates.sort(key=lambda m: (-m.score_percent, -m.shared_artist_count, m.name.casefold()))
    return TasteMatch(user_id, week_start, time_zone, window_from, window_to, tuple(housemates))


def _by_person(rows) -> dict[str, dict[str, tuple]]:
    """{user_id: {item_id: the rest of the row}} from rows that start with (user_id, item_id)."""
    found: dict[str, dict[str, tuple]] = {}
    for person, item_id, *rest in rows:
        found.setdefault(person, {})[item_id] = tuple(rest)
    return found


# ---- the match itself (pure) ---------------------------------------------------------------


def score_percent(your_ms: dict[str, int], their_ms: dict[str, int]) -> int:
    """Weighted Jaccard of minutes per artist, sum(min) / sum(max), as a whole percentage (half up)."""
    keys = set(your_ms) | set(their_ms)
    overlap = sum(min(your_ms.get(k, 0), their_ms.get(k, 0)) for k in keys)
    union = sum(max(your_ms.get(k, 0), their_ms.get(k, 0)) for k in keys)
    if union <= 0:
        return 0
    return int((Decimal(100 * overlap) / Decimal(union)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def minutes(ms: int) -> Decimal:
    return (Decimal(ms) / Decimal(60_000)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def spotify_url(kind: str, item_id: str) -> str | None:
    """Spotify's page of the item; None for items known only by name (`name:…` ids from exports)."""
    return None if item_id.startswith("name:") else f"{SPOTIFY_URL}/{kind}/{item_id}"


def first_heard_by(yours: datetime | None, theirs: datetime | None) -> str:
    if yours is None or theirs is None:  # not reached for a shared artist: both have plays
        return "you" if theirs is None else "them"
    if yours == theirs:
        return "together"
    return "you" if yours < theirs else "them"


def match_with(
    *,
    name: str,
    your_artists: dict[str, tuple],  # artist_id -> (name, ms_listened)
    their_artists: dict[str, tuple],
    your_tracks: dict[str, tuple],  # track_id -> (name, artist_names, plays, ms_listened)
    their_tracks: dict[str, tuple],
    your_first_plays: dict[str, datetime],
    their_first_plays: dict[str, datetime],
) -> HousemateMatch:
    """One housemate's match. Pure."""
    score = score_percent({a: row[1] for a, row in your_artists.items()},
                          {a: row[1] for a, row in their_artists.items()})
    shared_artist_ids = sorted(
        set(your_artists) & set(their_artists),
        key=lambda a: (-min(your_artists[a][1], their_artists[a][1]), your_artists[a][0].casefold(), a),
    )
    shared_track_ids = sorted(
        set(your_tracks) & set(their_tracks),
        key=lambda t: (-min(your_tracks[t][2], their_tracks[t][2]), -min(your_tracks[t][3], their_tracks[t][3]),
                       your_tracks[t][0].casefold(), t),
    )
    return HousemateMatch(
        name=name,
        score_percent=score,
        shared_artist_count=len(shared_artist_ids),
        shared_track_count=len(shared_track_ids),
        shared_artists=tuple(
            SharedArtist(
                name=your_artists[a][0],
                spotify_url=spotify_url("artist", a),
                your_minutes=minutes(your_artists[a][1]),
                their_minutes=minutes(their_artists[a][1]),
                first_heard_by=first_heard_by(your_first_plays.get(a), their_first_plays.get(a)),
            )
            for a in shared_artist_ids[:LIST_LENGTH]
        ),
        shared_tracks=tuple(
            SharedTrack(
                name=your_tracks[t][0],
                artists=your_tracks[t][1] or None,
                spotify_url=spotify_url("track", t),
                your_plays=your_tracks[t][2],
                their_plays=their_tracks[t][2],
            )
            for t in shared_track_ids[:LIST_LENGTH]
        ),
    )


# ---- the lines the e-mail and the page show ------------------------------------------------

NOTE = ("The taste match compares the minutes each of you gave each artist this week: 100% would be "
        "the same artists for the same time. Only people who opted in to the household appear here.")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(mate: HousemateMatch) -> str:
    """E.g. "42% taste match, 3 shared artists, 1 shared track"."""
    return (f"{mate.score_percent}% taste match, {_plural(mate.shared_artist_count, 'shared artist')}, "
            f"{_plural(mate.shared_track_count, 'shared track')}")


def first_heard_label(artist: SharedArtist, mate: HousemateMatch) -> str:
    if artist.first_heard_by == "you":
        return "you heard them first"
    if artist.first_heard_by == "them":
        return f"{mate.name} heard them first"
    return "you both first played them at the same moment"
