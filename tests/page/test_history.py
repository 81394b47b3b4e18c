"""Past recaps are the stored message bytes (HTML with its pictures by URL, only what went out),
the year view's weeks are the marts' minutes (the current week: the week so far) and its top
artists by month equal the raw rows; the SVG pictures say every figure in text, escape names,
and keep WCAG AA contrast.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg2
import pytest

from tests.recap.recap_truth import ARTISTS, ESTIMATED_PLAY_MS, TRACKS, _minutes, build_history, deduplicate

from weekly_wrapped.page import svg
from weekly_wrapped.page.history import past_recaps, sent_recap, year_view, year_weeks
from weekly_wrapped.page.week_so_far import TopItem, week_so_far
from weekly_wrapped.recap.content import Intro
from weekly_wrapped.recap.facts import facts_from_row
from weekly_wrapped.recap.render import build_message
from weekly_wrapped.recap.store import save_rendered

UTC = dt.timezone.utc
BERLIN_NOW = dt.datetime(2026, 11, 10, 20, 0, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)
SENT_WEEKS = {dt.date(2026, 10, 19): "sent", dt.date(2026, 10, 26): "unknown", dt.date(2026, 11, 2): "rendered"}


@pytest.fixture(scope="module")
def recaps(page_db):
    """Three of berlin's recaps rendered by the real renderer and stored: sent, unknown, rendered."""
    conn = psycopg2.connect(page_db.dsn)
    try:
        for week_start, status in SENT_WEEKS.items():
            facts = facts_from_row({**page_db.wrapped_weekly[("berlin", week_start)], "display_name": "Berlin"})
            message = build_message(facts, Intro("A week of listening.", "template"),
                                    from_addr="wrapped@localhost", to_addr="berlin@example.com")
            save_rendered(conn, user_id="berlin", week_start=week_start, recipient="berlin@example.com",
                          message_id=message["Message-ID"], subject=message["Subject"], message=message.as_bytes())
            with conn, conn.cursor() as cur:
                cur.execute("update app.sent_emails set status = %s, sent_at = case when %s = 'sent' then now() end"
                            " where user_id = 'berlin' and week_start = %s", (status, status, week_start))
        yield
    finally:
        with conn, conn.cursor() as cur:
            cur.execute("delete from app.sent_emails")
        conn.close()


def test_past_recaps_are_those_that_went_out(page_db, recaps):
    listed = past_recaps(page_db.dsn, "berlin")
    assert [(r.week_start, r.status) for r in listed] == [(dt.date(2026, 10, 26), "unknown"), (dt.date(2026, 10, 19), "sent")]
    assert listed[1].subject.startswith("Your Weekly Wrapped") and listed[1].sent_at is not None
    assert past_recaps(page_db.dsn, "tokyo") == []  # another listener's recaps are not theirs
    assert sent_recap(page_db.dsn, "tokyo", dt.date(2026, 10, 19)) is None
    assert sent_recap(page_db.dsn, "berlin", dt.date(2026, 11, 2)) is None  # rendered, not sent


def test_a_sent_recap_is_the_stored_html_with_its_pictures_by_url(page_db, recaps):
    stored = bytes(page_db.rows("select message from app.sent_emails where user_id = 'berlin' and week_start = '2026-10-19'")
                   [0]["message"])
    recap = sent_recap(page_db.dsn, "berlin", dt.date(2026, 10, 19))
    assert "cid:" not in recap.html
    urls = re.findall(r'src="(/wrapped/me/recaps/2026-10-19/parts/[^"]+)"', recap.html)
    assert urls and len(urls) == len(recap.parts)
    for url in urls:
        content_id = url.rsplit("/", 1)[1]
        picture, mime = recap.part(content_id)
        assert mime == "image/png" and picture.startswith(b"\x89PNG")
    assert recap.part("nothing@here") is None
    assert "A week of listening." in recap.html and "A week of listening." in recap.text


def berlin_month_truth() -> dict[dt.date, list[tuple[str, int]]]:
    """berlin's top 3 known artists of each local month of 2026 from the rows dbt built (no late rows)."""
    zone = ZoneInfo("Europe/Berlin")
    plays = deduplicate([p for p in build_history().plays if p.user_id == "berlin"])
    previous, totals = None, defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for p in plays:
        ms = p.ms_played if p.ms_played is not None else (TRACKS.get(p.track_id, (0, None))[1] or ESTIMATED_PLAY_MS)
        if previous is not None:
            ms = min(ms, int((p.played_at - previous).total_seconds() * 1000))
        previous = p.played_at
        month = p.played_at.astimezone(zone).date().replace(day=1)
        for artist in dict.fromkeys(TRACKS[p.track_id][3] if p.track_id in TRACKS else []):
            if artist in ARTISTS:
                totals[month][artist][0] += 1
                totals[month][artist][1] += ms
    return {month: [(a, n, _minutes(ms)) for a, (n, ms) in
                    sorted(artists.items(), key=lambda kv: (-kv[1][0], -kv[1][1], ARTISTS[kv[0]][0], kv[0]))[:3]]
            for month, artists in sorted(totals.items())}


def test_the_year_view_is_the_marts_and_the_week_so_far(page_db):
    view = year_view(page_db.dsn, "berlin", 2026, now=BERLIN_NOW)
    assert [w.week_start for w in view.weeks] == year_weeks(2026) and len(view.weeks) == 52
    by_week = {w.week_start: w for w in view.weeks}
    built = {week: row for (user, week), row in page_db.wrapped_weekly.items() if user == "berlin"}
    for week, row in built.items():
        assert (by_week[week].minutes, by_week[week].plays, by_week[week].source) == \
            (row["minutes_listened"], row["plays"], "marts")
    so_far = week_so_far(page_db.dsn, "berlin", BERLIN_NOW).this_week
    current = by_week[dt.date(2026, 11, 9)]
    assert (current.source, current.minutes, current.plays) == ("so_far", so_far.minutes, so_far.plays) and so_far.plays == 3
    assert by_week[dt.date(2026, 11, 16)].source == "future" and by_week[dt.date(2026, 11, 16)].minutes is None
    assert by_week[dt.date(2026, 8, 3)].source == "not_known"  # the history starts on 08-12
    assert {w.source for w in view.weeks} == {"marts", "so_far", "future", "not_known"}
    assert view.total_minutes == sum(row["minutes_listened"] for row in built.values()) + so_far.minutes

    months = {m.month: [(a["id"], a["plays"], a["minutes"]) for a in m.artists] for m in view.months}
    assert months == berlin_month_truth()
    assert list(months) == [dt.date(2026, m, 1) for m in (8, 9, 10, 11)]


def test_the_year_view_of_a_zone_that_skipped_a_day(page_db):
    view = year_view(page_db.dsn, "apia", 2011, now=dt.datetime(2012, 1, 10, tzinfo=UTC))
    by_week = {w.week_start: w for w in view.weeks}
    assert by_week[dt.date(2011, 12, 26)].minutes == page_db.wrapped_weekly[("apia", dt.date(2011, 12, 26))]["minutes_listened"]
    assert by_week[dt.date(2011, 12, 26)].source == "marts"


def _contrast(hex_colour: str, against: str = "#ffffff") -> float:
    def luminance(colour):
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    a, b = sorted([luminance(hex_colour), luminance(against)], reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_the_pictures_say_every_figure_in_text(page_db):
    view = year_view(page_db.dsn, "berlin", 2026, now=BERLIN_NOW)
    picture = ET.fromstring(svg.heatmap(view.weeks, 2026))
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert picture.get("role") == "img" and picture.find("s:title", ns).text == "Minutes listened each week of 2026"
    cells = picture.findall("s:rect", ns)
    assert len(cells) == 52 and all(c.find("s:title", ns) is not None for c in cells)
    week = next(w for w in view.weeks if w.source == "marts" and w.plays)
    assert any(c.find("s:title", ns).text == f"Week of {week.week_start.day} {svg.MONTHS[week.week_start.month - 1]} 2026: "
               f"{svg._minutes(week.minutes)} minutes, {week.plays} plays" for c in cells)
    table = svg.heatmap_table(view.weeks, 2026)
    assert table.count("<tr>") == 1 + sum(w.source in ("marts", "so_far", "no_plays") for w in view.weeks)

    clock = ET.fromstring(svg.listening_clock(week_so_far(page_db.dsn, "berlin", BERLIN_NOW).this_week.listening_clock))
    assert len(clock.findall("s:rect", ns)) == 7 * 24
    assert clock.find("s:desc", ns).text.startswith("Minutes by weekday and local hour; the busiest hour was ")

    evil = TopItem(1, "x", '<script>alert(1)</script> & "Friends"', None, 3, Decimal("12.5"), None, None)
    drawn = svg.bars([evil], "Top artists")
    ET.fromstring(drawn)  # still well-formed
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn

    for colour in (svg.TEXT,):
        assert _contrast(colour) >= 4.5
    for colour in (svg.OUTLINE, svg.BAR, svg.SCALE[-1]):
        assert _contrast(colour) >= 3


def test_top_artists_by_month_follow_the_marts_when_they_change(page_db):
    """They are kept per process until the marts change: a new load in fct_plays is seen at once."""
    before = year_view(page_db.dsn, "berlin", 2026, now=BERLIN_NOW)
    september = next(m for m in before.months if m.month == dt.date(2026, 9, 1))
    top = september.artists[0]
    conn = psycopg2.connect(page_db.dsn)
    try:
        with conn, conn.cursor() as cur:
            # as a dbt run would: one more play of September's top artist's track, loaded now
            cur.execute("select p.play_id, p.loaded_at from marts.fct_plays p"
                        " join marts.bridge_track_artist b on b.track_id = p.track_id and b.artist_id = %s"
                        " where p.user_id = 'berlin' and p.played_at >= '2026-09-01' and p.played_at < '2026-09-30'"
                        " order by p.played_at limit 1", (top["id"],))
            play_id, loaded_at = cur.fetchone()
            cur.execute("insert into marts.fct_plays (play_id, user_id, track_id, play_source, ms_played, played_at,"
                        " played_on_utc, ingested_at, loaded_at, source_rows, from_export)"
                        " select play_id || 'x', user_id, track_id, play_source, ms_played, played_at + interval '1 second',"
                        " played_on_utc, ingested_at, now(), 1, from_export from marts.fct_plays where play_id = %s",
                        (play_id,))
        after = year_view(page_db.dsn, "berlin", 2026, now=BERLIN_NOW)
        assert next(m for m in after.months if m.month == dt.date(2026, 9, 1)).artists[0]["plays"] == top["plays"] + 1
    finally:
        with conn, conn.cursor() as cur:
            cur.execute("delete from marts.fct_plays where play_id = %s", (play_id + "x",))
        conn.close()
    assert year_view(page_db.dsn, "berlin", 2026, now=BERLIN_NOW).months == before.months
