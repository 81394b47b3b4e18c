"""Past recaps as they were sent, and a year at a glance. I/O edge (reads Postgres).

- `past_recaps` / `sent_recap`: the stored message bytes of app.sent_emails
  (weekly_wrapped.recap.store), never re-rendered: the listener sees exactly what was mailed.
- `year_view`: every local week of a year with its minutes (marts.wrapped_weekly for the weeks
  dbt has built, the week so far for the current one) and the top artists of each local month.
"""

from __future__ import annotations

import email
import email.policy
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from weekly_wrapped import db
from weekly_wrapped.page.week_so_far import (
    ESTIMATED_PLAY_MS, current_week_totals, local_midnight, local_monday, round_minutes, time_zone_of,
)

# Which stored recaps the listener sees: `sent` (the mail server accepted it) and `unknown` (the
# server got it but its reply was lost: most likely delivered, and the bytes are exactly what
# went out). Not `rendered` or `sending`: that recap has not gone out (yet), and the page must
# not show a week before (or instead of) the e-mail.
SHOWN_STATUSES = ("sent", "unknown")
PARTS_URL = "/wrapped/me/recaps/{week_start}/parts/{content_id}"
TOP_ARTISTS_PER_MONTH = 3


@dataclass(frozen=True)
class PastRecap:
    week_start: date
    sent_at: datetime | None  # None for an `unknown` row whose acceptance was never confirmed
    subject: str
    status: str  # sent / unknown


@dataclass(frozen=True)
class SentRecap:
    week_start: date
    subject: str
    sent_at: datetime | None
    status: str
    html: str  # the HTML part, its cid: pictures pointing at PARTS_URL
    text: str | None  # the plain-text part
    parts: dict[str, tuple[bytes, str]]  # content id (no brackets) -> (bytes, mime type)

    def part(self, content_id: str) -> tuple[bytes, str] | None:
        """A picture of the message by its Content-ID, None when the message has no such part."""
        return self.parts.get(content_id.strip("<>"))


@dataclass(frozen=True)
class YearWeek:
    week_start: date  # a local Monday in the year
    minutes: Decimal | None  # None: not known (before the history held, or still to come)
    plays: int
    source: str  # marts / so_far (the current week) / no_plays / not_known / future


@dataclass(frozen=True)
class MonthArtists:
    month: date  # the first day of the local month
    artists: list[dict]  # {"rank", "id", "name", "plays", "minutes", "image_url", "spotify_url"}


@dataclass(frozen=True)
class YearView:
    year: int
    time_zone: str
    weeks: list[YearWeek]
    months: list[MonthArtists]  # only months with a known artist played

    @property
    def total_minutes(self) -> Decimal:
        return sum((w.minutes for w in self.weeks if w.minutes is not None), Decimal(0))


# ---------------------------------------------------------------- past recaps

def past_recaps(dsn: str, user_id: str) -> list[PastRecap]:
    """The user's recaps that went out, newest week first."""
    with db.transaction(dsn) as cur:
        cur.execute("select week_start, sent_at, subject, status from app.sent_emails"
                    " where user_id = %s and status = any(%s) and message is not null order by week_start desc",
                    (user_id, list(SHOWN_STATUSES)))
        return [PastRecap(*row) for row in cur.fetchall()]


def sent_recap(dsn: str, user_id: str, week_start: date, parts_url: str = PARTS_URL) -> SentRecap | None:
    """The week's recap as sent, or None (no such recap for this user, or not gone out)."""
    with db.transaction(dsn) as cur:
        cur.execute("select subject, sent_at, status, message from app.sent_emails"
                    " where user_id = %s and week_start = %s and status = any(%s) and message is not null",
                    (user_id, week_start, list(SHOWN_STATUSES)))
        row = cur.fetchone()
    if row is None:
        return None
    subject, sent_at, status, message = row
    html, text, parts = message_parts(bytes(message))
    for content_id in parts:
        # replace(), not format(): the prefix may hold braces of its own
        url = parts_url.replace("{week_start}", week_start.isoformat()).replace("{content_id}", quote(content_id, safe="@."))
        html = html.replace(f"cid:{content_id}", url)
    return SentRecap(week_start, subject, sent_at, status, html, text, parts)


def message_parts(message: bytes) -> tuple[str, str | None, dict[str, tuple[bytes, str]]]:
    """(html, text, {content id: (bytes, mime)}) of a stored recap."""
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    html_part = parsed.get_body(preferencelist=("html",))
    text_part = parsed.get_body(preferencelist=("plain",))
    parts = {}
    for part in parsed.walk():
        content_id = part["Content-ID"]
        if content_id and not part.is_multipart():
            parts[str(content_id).strip().strip("<>")] = (part.get_content(), part.get_content_type())
    html = html_part.get_content() if html_part is not None else ""
    return html, text_part.get_content() if text_part is not None else None, parts


# ---------------------------------------------------------------- the year

def year_weeks(year: int) -> list[date]:
    """The Mondays of the year (each local week is shown under the year its Monday is in)."""
    first = date(year, 1, 1)
    monday = first + timedelta(days=(7 - first.weekday()) % 7)
    weeks = []
    while monday.year == year:
        weeks.append(monday)
        monday += timedelta(days=7)
    return weeks


def year_view(dsn: str, user_id: str, year: int, now: datetime | None = None) -> YearView:
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    conn = db.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            time_zone = time_zone_of(cur, user_id)
            zone = ZoneInfo(time_zone)
            this_monday = local_monday(now.astimezone(zone).date())
            mondays = year_weeks(year)
            built = {}
            cur.execute("select to_regclass('marts.wrapped_weekly') is not null")
            if cur.fetchone()[0]:
                cur.execute("select week_start, minutes_listened, plays from marts.wrapped_weekly"
                            " where user_id = %s and week_start between %s and %s",
                            (user_id, mondays[0], mondays[-1]))
                built = {week: (minutes, plays) for week, minutes, plays in cur.fetchall()}
            cur.execute("select min(played_at) from raw.plays where user_id = %s", (user_id,))
            known_since = cur.fetchone()[0]
            so_far = current_week_totals(cur, user_id, zone, now) if this_monday in mondays else None
            weeks = [_year_week(m, built, so_far, this_monday, known_since, zone) for m in mondays]
            months = _top_artists_by_month(cur, user_id, year, zone)
    finally:
        conn.close()
    return YearView(year, time_zone, weeks, months)


def _year_week(monday: date, built: dict, so_far, this_monday: date, known_since: datetime | None,
               zone: ZoneInfo) -> YearWeek:
    if monday > this_monday:
        return YearWeek(monday, None, 0, "future")
    if monday == this_monday and so_far is not None:
        plays, minutes = so_far
        return YearWeek(monday, minutes, plays, "so_far")
    if monday in built:
        minutes, plays = built[monday]
        return YearWeek(monday, Decimal(minutes), plays, "marts")
    week_end = local_midnight(monday + timedelta(days=7), zone)
    if known_since is None or known_since >= week_end:
        return YearWeek(monday, None, 0, "not_known")
    return YearWeek(monday, Decimal(0), 0, "no_plays")


TOP_ARTISTS_BY_MONTH_SQL = """
with plays as (
    select p.track_id,
           date_trunc('month', p.played_at at time zone %(tz)s)::date as month,
           least(coalesce(p.ms_played, t.duration_ms, %(estimated)s), p.ms_since_previous_play) as ms_listened
    from marts.fct_plays p
    join marts.dim_track t on t.track_id = p.track_id
    where p.user_id = %(user_id)s and p.played_at >= %(start)s and p.played_at < %(end)s
),
-- summed per track first, then per artist, names joined last: sorting every play by its
-- artist's name was most of the time this took
track_months as (
    select month, track_id collate "C" as track_id, count(*) as plays, sum(ms_listened) as ms_listened
    from plays group by 1, 2  -- ids: byte order (collate "C") groups them as well, much faster
),
artist_months as (
    select track_months.month, b.artist_id collate "C" as artist_id,
           sum(track_months.plays) as plays, sum(track_months.ms_listened) as ms_listened
    from track_months
    join marts.bridge_track_artist b on b.track_id = track_months.track_id
    group by 1, 2
),
ranked as (
    select artist_months.*, a.artist_name, a.image_url,
           row_number() over (partition by artist_months.month
                              order by artist_months.plays desc, artist_months.ms_listened desc, a.artist_name, a.artist_id) as rank
    from artist_months
    join marts.dim_artist a on a.artist_id = artist_months.artist_id and a.has_metadata
)
select month, rank, artist_id, artist_name, plays, ms_listened, image_url from ranked
where rank <= %(top)s order by month, rank
"""


# Top artists by month read only what dbt built, so they are kept per process until the marts
# change: the key holds the oids of the dimension tables (dbt re-creates them on every run), the
# newest load in fct_plays, and when the user's account was created (a listener who deleted their
# data and joined again never sees the old months).
_MONTHS_CACHE: OrderedDict[tuple, list[MonthArtists]] = OrderedDict()
_MONTHS_CACHE_SIZE = 512
_MONTHS_CACHE_LOCK = threading.Lock()

MARTS_VERSION_SQL = """
select to_regclass('marts.dim_track')::oid, to_regclass('marts.dim_artist')::oid,
       to_regclass('marts.bridge_track_artist')::oid, (select max(loaded_at) from marts.fct_plays),
       (select created_at from app.users where user_id = %s)
"""


def _top_artists_by_month(cur, user_id: str, year: int, zone: ZoneInfo) -> list[MonthArtists]:
    """Each local month's most played known artists (what dbt has built; the ranking rule of the recap)."""
    cur.execute("select to_regclass('marts.fct_plays') is not null and to_regclass('marts.dim_artist') is not null")
    if not cur.fetchone()[0]:
        return []
    cur.execute(MARTS_VERSION_SQL, (user_id,))
    key = (cur.connection.dsn, user_id, year, zone.key, *cur.fetchone())
    with _MONTHS_CACHE_LOCK:
        if key in _MONTHS_CACHE:
            _MONTHS_CACHE.move_to_end(key)
            return _MONTHS_CACHE[key]
    cur.execute(TOP_ARTISTS_BY_MONTH_SQL, {
        "tz": zone.key, "estimated": ESTIMATED_PLAY_MS, "user_id": user_id, "top": TOP_ARTISTS_PER_MONTH,
        "start": local_midnight(date(year, 1, 1), zone), "end": local_midnight(date(year + 1, 1, 1), zone),
    })
    months: dict[date, list[dict]] = {}
    for month, rank, artist_id, name, plays, ms, image_url in cur.fetchall():
        months.setdefault(month, []).append({
            "rank": rank, "id": artist_id, "name": name, "plays": plays, "minutes": round_minutes(ms),
            "image_url": image_url,
            "spotify_url": None if artist_id.startswith("name:") else f"https://open.spotify.com/artist/{artist_id}",
        })
    found = [MonthArtists(month, artists) for month, artists in months.items()]
    with _MONTHS_CACHE_LOCK:
        _MONTHS_CACHE[key] = found
        while len(_MONTHS_CACHE) > _MONTHS_CACHE_SIZE:
            _MONTHS_CACHE.popitem(last=False)
    return found
