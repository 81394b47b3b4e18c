"""The AI part of the recap: Gemini's intro and listening personality, and opt-in artist suggestions.

    write_intro(facts, gemini, *, recommendations=None) -> content.Intro

- **Intro**: one structured-output request holding numbers and placeholders only (prompt.py),
  never a Spotify name. An answer that breaks a rule (grounding.py) is asked for once more,
  saying what was wrong; a second bad answer, no text (blocked), an API error (429, 5xx,
  timeout), no key, or a week without plays gives the template intro (`source="template"`,
  and the e-mail says the intro was not written by AI).
- **Recommendations**, only when the job passes an `ArtistLookup` (the installation opted in
  with the `wrapped_ai_recommendations` Variable) and Gemini answered the intro request:
  the week's top artist names go to Gemini, which suggests a few artists; each is searched
  on Spotify (`GET /v1/search?type=artist`) and shown, as Spotify names and links it, only if
  found under that exact name and never heard by the user before. At most three are shown.

I/O: Gemini through `gemini.generate_json`; Spotify search and the listening history through
the callables in `ArtistLookup`. `artist_lookups(dsn, app, rps)` builds them for the job:
one app-token search session for the run, `heard_in_history` on the warehouse per user.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from pydantic import BaseModel, ValidationError

from weekly_wrapped.recap import gemini as gemini_io
from weekly_wrapped.recap.content import Intro, Recommendation
from weekly_wrapped.recap.facts import WeekFacts
from weekly_wrapped.recap.grounding import LINK, answer_problems, fill, template_intro
from weekly_wrapped.recap.prompt import (
    IntroAnswer,
    RecapPrompt,
    SuggestionsAnswer,
    build_prompt,
    build_suggestions_prompt,
    retry_prompt,
)

if TYPE_CHECKING:
    from weekly_wrapped.spotify.client import SpotifyApp

log = logging.getLogger(__name__)

RECOMMENDATIONS_SHOWN = 3
MAX_NAME_CHARS = 100


class GeminiSettings(Protocol):  # weekly_wrapped.airflow.connections.GeminiApi fits
    api_key: str
    model: str
    base_url: str | None


@dataclass(frozen=True)
class FoundArtist:
    id: str
    name: str
    spotify_url: str
    image_url: str | None = None


@dataclass(frozen=True)
class ArtistLookup:
    """How suggested artists are checked before they are shown; built by the job.

    search: a name -> Spotify's artist objects for it, best first
            (`AppSession.search_artist`: `GET /v1/search?type=artist`, limit <= 10).
    heard:  found artists -> the ids of those the user has played before
            (`lambda found: heard_in_history(conn, user_id, found)`).
    """

    search: Callable[[str], list[dict]]
    heard: Callable[[Sequence[FoundArtist]], set[str]]


class _Asker:
    """One user's calls to Gemini, with the SDK options of this run."""

    def __init__(self, settings: GeminiSettings, options: dict):
        self.settings = settings
        self.options = options

    def __call__(self, prompt: RecapPrompt, schema: type[BaseModel]) -> str | None:
        return gemini_io.generate_json(
            prompt, schema, api_key=self.settings.api_key, model=self.settings.model,
            base_url=self.settings.base_url, **self.options,
        )


def write_intro(
    facts: WeekFacts,
    gemini: GeminiSettings | None,
    *,
    recommendations: ArtistLookup | None = None,
    timeout_s: float = 20.0,
    attempts: int = 2,
    retry_delay_s: float = 1.0,
) -> Intro:
    """The intro, personality and recommendations for one user's week; never raises for Gemini's sake.

    `attempts` and `retry_delay_s` are the SDK's transport retries per request (429, 5xx,
    timeouts); a usable-but-wrong answer is asked for once more on top of that.
    """
    template = Intro(template_intro(facts), "template")
    if gemini is None or not gemini.api_key:
        return template
    if facts.plays == 0:
        return template  # nothing for a model to say; the template says it plainly
    ask = _Asker(gemini, {"timeout_s": timeout_s, "attempts": attempts,
                          "initial_delay_s": retry_delay_s, "max_delay_s": 4 * retry_delay_s})
    prompt = build_prompt(facts)
    answer, answered = _usable_answer(facts, prompt, ask)
    if not answered:
        return template  # Gemini down, slow or blocking: no recommendations either
    if answer is None:
        return _with_recommendations(template, facts, ask, recommendations)
    texts = prompt.slots.texts()
    intro = Intro(fill(answer.intro, texts), "gemini", personality=fill(answer.personality, texts))
    return _with_recommendations(intro, facts, ask, recommendations)


def _usable_answer(facts: WeekFacts, prompt: RecapPrompt, ask: _Asker) -> tuple[IntroAnswer | None, bool]:
    """(Gemini's answer if it passes the checks, asking once more after a bad one;
    whether Gemini answered at all: False after an API error, a timeout or no text)."""
    for attempt in (1, 2):
        try:
            raw = ask(prompt, IntroAnswer)
        except Exception as exc:  # any API/network failure: the template intro still goes out
            # The SDK's messages carry the API's error JSON, never the key (it travels in a header).
            log.warning("gemini failed for user=%s week=%s: %s: %.300s", facts.user_id, facts.week_start,
                        type(exc).__name__, exc)
            return None, False
        if raw is None:
            log.warning("gemini gave no text (blocked?) for user=%s week=%s", facts.user_id, facts.week_start)
            return None, False
        answer, problems = answer_problems(raw, prompt.slots)
        if not problems:
            return answer, True
        log.warning("gemini answer %d not used for user=%s: %s", attempt, facts.user_id, "; ".join(problems))
        prompt = retry_prompt(prompt, problems)
    return None, True


def _with_recommendations(intro: Intro, facts: WeekFacts, ask: _Asker, lookup: ArtistLookup | None) -> Intro:
    if lookup is None or not facts.top_artists:
        return intro
    try:
        found = recommend_artists(facts, ask, lookup)
    except Exception as exc:  # Gemini or Spotify failed: the e-mail goes without suggestions
        log.warning("no recommendations for user=%s: %s: %.300s", facts.user_id, type(exc).__name__, exc)
        return intro
    return Intro(intro.text, intro.source, intro.personality, found)


# ---- recommendations --------------------------------------------------------------------------


def folded(name: str) -> str:
    """A name compared the way people read it: Unicode-normalized, case-folded, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def suggested_names(raw: str | None, sent: Sequence[str]) -> list[str]:
    """The usable names in Gemini's suggestions: plain, short, distinct, not one it was given."""
    if not raw:
        return []
    try:
        answer = SuggestionsAnswer.model_validate_json(raw)
    except ValidationError:
        return []
    seen = {folded(name) for name in sent}
    names = []
    for name in answer.artists:
        name = " ".join(name.split())
        if not name or len(name) > MAX_NAME_CHARS or LINK.search(name) or folded(name) in seen:
            continue
        seen.add(folded(name))
        names.append(name)
    return names


def found_artist(item: dict) -> FoundArtist:
    """A Spotify artist object as we show it: its own name, its link, a mid-sized picture."""
    images = sorted(item.get("images") or [], key=lambda i: i.get("width") or 0)
    image = next((i["url"] for i in images if (i.get("width") or 0) >= 160), images[-1]["url"] if images else None)
    url = (item.get("external_urls") or {}).get("spotify") or f"https://open.spotify.com/artist/{item['id']}"
    return FoundArtist(item["id"], item["name"], url, image)


def find_on_spotify(search: Callable[[str], list[dict]], name: str) -> FoundArtist | None:
    """The artist Spotify lists under exactly this name (case and spacing aside), or None."""
    for item in search(name) or []:
        if item and item.get("id") and item.get("name") and folded(item["name"]) == folded(name):
            return found_artist(item)
    return None


def names_in_week(facts: WeekFacts) -> set[str]:
    """Artist names the week itself shows (folded): suggesting them would be no suggestion."""
    names = {item.name for item in (*facts.top_artists, *facts.top_new_artists)}
    for track in (*facts.top_tracks, *facts.top_albums):
        names.update(part.strip() for part in (track.detail or "").split(","))
    return {folded(name) for name in names if name}


def recommend_artists(facts: WeekFacts, ask: Callable[[RecapPrompt, type[BaseModel]], str | None],
                      lookup: ArtistLookup) -> tuple[Recommendation, ...]:
    """Up to three artists Gemini suggests that Spotify knows and the user has never played."""
    prompt = build_suggestions_prompt(facts)
    names = suggested_names(ask(prompt, SuggestionsAnswer), prompt.facts["listened_to"])
    in_week = names_in_week(facts)
    found: list[FoundArtist] = []
    for name in names:
        artist = find_on_spotify(lookup.search, name)
        if artist is None:
            log.info("suggestion dropped for user=%s: not found on Spotify", facts.user_id)
            continue
        if folded(artist.name) in in_week or any(artist.id == f.id for f in found):
            continue
        found.append(artist)
    heard = lookup.heard(found) if found else set()
    kept = [artist for artist in found if artist.id not in heard][:RECOMMENDATIONS_SHOWN]
    log.info("recommendations for user=%s: %d suggested, %d found, %d already heard, %d shown",
             facts.user_id, len(names), len(found), len(heard), len(kept))
    return tuple(Recommendation(a.name, a.spotify_url, a.image_url) for a in kept)


HEARD_SQL = """
select distinct a.artist_id, a.artist_name
from marts.fct_plays p
join marts.bridge_track_artist b on b.track_id = p.track_id
join marts.dim_artist a on a.artist_id = b.artist_id
where p.user_id = %(user_id)s
  and (a.artist_id = any(%(ids)s) or lower(a.artist_name) = any(%(names)s))
"""


def heard_in_history(conn, user_id: str, artists: Sequence[FoundArtist]) -> set[str]:
    """The ids of `artists` the user has ever played, by Spotify id or by name (an export's
    name-only artists have no id yet). Reads the marts; `conn` is a psycopg2 connection."""
    if not artists:
        return set()
    with conn.cursor() as cur:
        cur.execute(HEARD_SQL, {"user_id": user_id, "ids": [a.id for a in artists],
                                "names": [a.name.lower() for a in artists]})
        rows = cur.fetchall()
    heard_ids = {row[0] for row in rows}
    heard_names = {folded(row[1]) for row in rows if row[1]}
    return {a.id for a in artists if a.id in heard_ids or folded(a.name) in heard_names}


def artist_lookups(dsn: str, app: SpotifyApp, requests_per_second: float) -> Callable[[str], ArtistLookup]:
    """user_id -> that user's `ArtistLookup`: Spotify's search with the app's own token (one
    session, its rate limit shared by every user of the run) and the user's history in the
    warehouse at `dsn` (a short connection per check). What the job passes when the
    installation opted in."""
    from contextlib import closing

    from weekly_wrapped import db
    from weekly_wrapped.spotify.client import AppSession, CallPolicy, RateLimiter

    session = AppSession(app, CallPolicy(), RateLimiter(requests_per_second))

    def for_user(user_id: str) -> ArtistLookup:
        def heard(found: Sequence[FoundArtist]) -> set[str]:
            with closing(db.connect(dsn, application_name="weekly_wrapped.recap")) as conn:
                return heard_in_history(conn, user_id, found)

        return ArtistLookup(session.search_artist, heard)

    return for_user
