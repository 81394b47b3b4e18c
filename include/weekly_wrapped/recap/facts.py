"""One user's week, as the recap shows it: `WeekFacts`, built from a `marts.wrapped_weekly` row.

Every number the e-mail or the prompt shows comes from here, already rounded the way it
is shown, so the prompt, the grounding check and the rendered e-mail agree digit for
digit. It reads the mart's own column names; optional columns may be missing or null
(genres are null for new Spotify apps), and the conversion tolerates that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

@dataclass(frozen=True)
class TopItem:
    name: str
    plays: int | None = None
    detail: str | None = None  # e.g. the artists of a track
    minutes: Decimal | None = None
    image_url: str | None = None  # album art (tracks, albums) or the artist's picture
    spotify_url: str | None = None  # https://open.spotify.com/<kind>/<id>; None for name-only plays


@dataclass(frozen=True)
class WeekFacts:
    user_id: str
    week_start: date  # Monday, in the user's time zone
    time_zone: str
    minutes: Decimal  # minutes_listened, to 0.1 as in the mart
    plays: int
    distinct_tracks: int | None = None
    distinct_artists: int | None = None
    top_tracks: tuple[TopItem, ...] = ()
    top_artists: tuple[TopItem, ...] = ()
    top_albums: tuple[TopItem, ...] = ()
    top_genres: tuple[TopItem, ...] = ()
    top_new_artists: tuple[TopItem, ...] = ()
    busiest_hour: int | None = None  # 0-23, local
    busiest_weekday: str | None = None  # "Monday".."Sunday", local
    new_tracks: int | None = None
    new_artists: int | None = None
    days_with_plays: int | None = None
    longest_streak_days: int | None = None
    previous_week_plays: int | None = None
    plays_change: int | None = None
    minutes_change: Decimal | None = None
    has_gap: bool = False
    # Skips are known only for weeks a privacy export covered: skip_rate None means unknown
    # (API polling cannot see skips), and then neither the rate nor the list is shown.
    skip_events: int | None = None
    skip_rate: Decimal | None = None  # skips / (plays + skips), 0-1, as in the mart
    top_skipped_tracks: tuple[TopItem, ...] = ()  # TopItem.plays = times skipped
    display_name: str | None = None
    email: str | None = field(default=None, repr=False)
    # ---- what the numbers rest on (docs/recap.md is the contract)
    locale: str = "en"  # Babel locale for weekday and hour formats
    history_known_since: datetime | None = None
    discoveries_available: bool = True
    weeks_until_discoveries: int | None = None
    previous_week_status: str | None = None  # compared | no_plays | partial | not_known
    previous_week_minutes: Decimal | None = None
    plays_estimated_minutes: int = 0
    plays_pending_metadata: int = 0
    longest_streak_running_days: int | None = None
    week_hours: Decimal | None = None
    missed_hours: Decimal | None = None
    estimated_missed_plays: int = 0
    minutes_by_day: tuple[tuple[date, Decimal], ...] = ()  # Monday first, 7 entries
    listening_clock: tuple[tuple[Decimal, ...], ...] = ()  # 7 weekdays (Monday first) x 24 hours

    @property
    def week_end(self) -> date:
        """The Sunday that closes the week (inclusive)."""
        return self.week_start + timedelta(days=6)

    @property
    def week_label(self) -> str:
        """E.g. "16–22 Nov 2026" or "30 Nov – 6 Dec 2026"."""
        start, end = self.week_start, self.week_end
        if start.year != end.year:
            return f"{start.day} {start:%b %Y} – {end.day} {end:%b %Y}"
        if start.month != end.month:
            return f"{start.day} {start:%b} – {end.day} {end:%b %Y}"
        return f"{start.day}–{end.day} {end:%b %Y}"

    @property
    def busiest_hour_label(self) -> str | None:
        return None if self.busiest_hour is None else f"{self.busiest_hour:02d}:00"

    @property
    def skip_rate_percent(self) -> int | None:
        """The skip rate as a whole percentage (33 for 0.3333), None when skips are unknown."""
        if self.skip_rate is None:
            return None
        return int((self.skip_rate * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))

    @property
    def skip_rate_label(self) -> str | None:
        """E.g. "33% (2 skips)"; None when the week's skips are unknown."""
        if self.skip_rate_percent is None:
            return None
        label = f"{self.skip_rate_percent}%"
        if self.skip_events is not None:
            label += f" ({self.skip_events} skip{'' if self.skip_events == 1 else 's'})"
        return label

    @property
    def had_previous_week(self) -> bool:
        return bool(self.previous_week_plays)

    def as_prompt_facts(self) -> dict:
        """The facts handed to the model: exactly what the e-mail shows, nothing more."""
        facts: dict[str, Any] = {
            "listener": self.display_name or None,
            "week": f"{self.week_start.isoformat()} to {self.week_end.isoformat()}",
            "time_zone": self.time_zone,
            "minutes_listened": float(self.minutes),
            "plays": self.plays,
            "distinct_tracks": self.distinct_tracks,
            "distinct_artists": self.distinct_artists,
            "top_artists": [_item_fact(i) for i in self.top_artists],
            "top_tracks": [_item_fact(i) for i in self.top_tracks],
            "top_albums": [_item_fact(i) for i in self.top_albums],
            "top_genres": [i.name for i in self.top_genres],
            "busiest_hour": self.busiest_hour_label,
            "busiest_weekday": self.busiest_weekday,
            "new_tracks": self.new_tracks,
            "new_artists": self.new_artists,
            "new_artists_discovered": [i.name for i in self.top_new_artists],
            "days_with_plays": self.days_with_plays,
            "longest_streak_days": self.longest_streak_days,
            "listening_data_incomplete": self.has_gap or None,
        }
        if self.skip_rate_percent is not None:
            facts["skip_rate_percent"] = self.skip_rate_percent
            facts["skips"] = self.skip_events
            facts["most_skipped_tracks"] = [_item_fact(i, count="skips") for i in self.top_skipped_tracks]
        if self.had_previous_week:
            facts["previous_week_plays"] = self.previous_week_plays
            facts["plays_change_vs_previous_week"] = self.plays_change
            if self.minutes_change is not None:
                facts["minutes_change_vs_previous_week"] = float(self.minutes_change)
        return {k: v for k, v in facts.items() if v is not None and v != [] and v != ""}


def _item_fact(item: TopItem, count: str = "plays") -> dict:
    fact: dict[str, Any] = {"name": item.name}
    if item.detail:
        fact["by"] = item.detail
    if item.plays is not None:
        fact[count] = item.plays
    return fact


# ---- from a row ------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(round(float(value)))


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _items(value: Any, limit: int = 5) -> tuple[TopItem, ...]:
    """A top-N list from jsonb (list of objects or strings), a JSON string, or a text[]."""
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = [value]
    items = []
    for entry in value or []:
        if entry is None:
            continue
        if isinstance(entry, Mapping):  # the mart's shape: {"rank", "id", "name", "artists", "plays", ...}
            if not entry.get("name"):
                continue
            detail = entry.get("artists")
            if isinstance(detail, (list, tuple)):
                detail = ", ".join(str(d) for d in detail if d)
            items.append(
                TopItem(
                    name=str(entry["name"]),
                    plays=_int(entry.get("plays")),
                    detail=str(detail) if detail else None,
                    minutes=_minutes(entry.get("minutes")),
                    image_url=_url(entry.get("image_url")),
                    spotify_url=_url(entry.get("spotify_url")),
                )
            )
        else:
            items.append(TopItem(str(entry)))
    return tuple(items[:limit])


def _minutes(value: Any) -> Decimal | None:
    """Minutes to 0.1, as the mart rounds them (also for floats from elsewhere)."""
    if value is None:
        return None
    return Decimal(str(value)).quantize(Decimal("0.1"))


def _url(value: Any) -> str | None:
    """An http(s) URL as given, else None (a link or picture we cannot use is left out)."""
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value
    return None


def _json(value: Any) -> Any:
    """jsonb as psycopg2 gives it (already parsed), or a JSON string (dbt seeds, tests)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.fromisoformat(str(value))


def _bool(value: Any, default: bool) -> bool:
    return default if value is None else bool(value)


def _minutes_by_day(value: Any) -> tuple[tuple[date, Decimal], ...]:
    """[{"date", "minutes"}, ...] (Monday first) as ((date, minutes), ...); () when absent or malformed."""
    days = []
    for entry in _json(value) or []:
        if isinstance(entry, Mapping) and entry.get("date"):
            days.append((_as_date(entry["date"]), _minutes(entry.get("minutes")) or Decimal("0.0")))
    return tuple(days) if len(days) == 7 else ()


def _listening_clock(value: Any) -> tuple[tuple[Decimal, ...], ...]:
    """7 weekdays (Monday first) x 24 local hours of minutes; () when absent or malformed."""
    rows = _json(value) or []
    clock = tuple(tuple(_minutes(v) or Decimal("0.0") for v in row or ()) for row in rows)
    if len(clock) != 7 or any(len(row) != 24 for row in clock):
        return ()
    return clock


def _rate(value: Any) -> Decimal | None:
    """A 0-1 rate to 4 decimals, as the mart rounds it; None when unknown."""
    if value is None or value == "":
        return None
    return Decimal(str(value)).quantize(Decimal("0.0001"))


def valid_time_zone(name: str | None) -> str:
    """The IANA name if Python knows it, else UTC (a typo at onboarding must not stop the e-mail)."""
    try:
        ZoneInfo(name or "UTC")
        return name or "UTC"
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"


def facts_from_row(row: Mapping[str, Any]) -> WeekFacts:
    """`WeekFacts` from one `marts.wrapped_weekly` row (optionally joined with app.users).

    Reads the mart's own column names (dbt_project/models/marts/wrapped_weekly.yml is the
    contract); every column but user_id and week_start may be absent or null.
    """
    skip_rate = _rate(row.get("skip_rate"))
    return WeekFacts(
        user_id=str(row["user_id"]),
        week_start=_as_date(row["week_start"]),
        time_zone=valid_time_zone(row.get("time_zone")),
        minutes=_minutes(row.get("minutes_listened")) or Decimal("0.0"),
        plays=_int(row.get("plays")) or 0,
        distinct_tracks=_int(row.get("distinct_tracks")),
        distinct_artists=_int(row.get("distinct_artists")),
        top_tracks=_items(row.get("top_tracks")),
        top_artists=_items(row.get("top_artists")),
        top_albums=_items(row.get("top_albums")),
        top_genres=_items(row.get("top_genres")),
        top_new_artists=_items(row.get("top_new_artists")),
        busiest_hour=_int(row.get("busiest_hour")),
        busiest_weekday=row.get("busiest_weekday_name") or None,
        new_tracks=_int(row.get("new_tracks")),
        new_artists=_int(row.get("new_artists")),
        days_with_plays=_int(row.get("days_with_plays")),
        longest_streak_days=_int(row.get("longest_streak_days")),
        previous_week_plays=_int(row.get("previous_week_plays")),
        plays_change=_int(row.get("plays_change")),
        minutes_change=_minutes(row.get("minutes_listened_change")),
        has_gap=bool(row.get("has_gap")),
        skip_events=_int(row.get("skip_events")),
        skip_rate=skip_rate,
        top_skipped_tracks=_items(row.get("top_skipped_tracks")) if skip_rate is not None else (),
        display_name=row.get("display_name"),
        email=row.get("email"),
        locale=(row.get("locale") or "").strip() or "en",
        history_known_since=_as_datetime(row.get("history_known_since")),
        # Rows from before the column existed claimed discoveries; keep showing what they hold.
        discoveries_available=_bool(row.get("discoveries_available"), default=True),
        weeks_until_discoveries=_int(row.get("weeks_until_discoveries")),
        previous_week_status=row.get("previous_week_status") or None,
        previous_week_minutes=_minutes(row.get("previous_week_minutes_listened")),
        plays_estimated_minutes=_int(row.get("plays_estimated_minutes")) or 0,
        plays_pending_metadata=_int(row.get("plays_pending_metadata")) or 0,
        longest_streak_running_days=_int(row.get("longest_streak_running_days")),
        week_hours=_minutes(row.get("week_hours")),
        missed_hours=_minutes(row.get("missed_hours")),
        estimated_missed_plays=_int(row.get("estimated_missed_plays")) or 0,
        minutes_by_day=_minutes_by_day(row.get("minutes_by_day")),
        listening_clock=_listening_clock(row.get("listening_clock")),
    )


# ---- which week ------------------------------------------------------------------------


def last_complete_week_start(at: datetime, time_zone: str) -> date:
    """The Monday (in `time_zone`) of the last week that has fully ended at instant `at`."""
    local = at.astimezone(ZoneInfo(valid_time_zone(time_zone)))
    this_monday = local.date() - timedelta(days=local.weekday())
    return this_monday - timedelta(days=7)
