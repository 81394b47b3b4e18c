"""The e-mail shows the row's numbers and the truth behind them, the top-5 lists with their
Spotify links, the intro, the pictures by Content-ID, the week in the user's zone and locale,
escapes names, and carries a Message-ID that depends only on (user, week)."""

import re
from datetime import date, datetime, timezone
from decimal import Decimal
from email import message_from_bytes, policy
from html.parser import HTMLParser

from recap_helpers import make_row

from weekly_wrapped.recap.content import Intro, Recommendation
from weekly_wrapped.recap.facts import facts_from_row
from weekly_wrapped.recap.formats import duration
from weekly_wrapped.recap.render import (
    TEMPLATE_INTRO_NOTE,
    build_message,
    message_id,
    render_bodies,
    week_range,
)

FROM = "Weekly Wrapped <wrapped@localhost>"
TEMPLATE_INTRO = Intro("Your week, in music.", "template")


class TextOf(HTMLParser):
    """The visible text of an HTML document (what a reader sees), without <style>."""

    def __init__(self):
        super().__init__()
        self.parts, self.in_style = [], False

    def handle_starttag(self, tag, attrs):
        self.in_style = self.in_style or tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self.in_style = False

    def handle_data(self, data):
        if not self.in_style:
            self.parts.append(data)

    @classmethod
    def of(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        return re.sub(r"\s+", " ", " ".join(parser.parts))


class Tags(HTMLParser):
    """Every element of an HTML document, as (tag, {attribute: value})."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    @classmethod
    def of(cls, html: str) -> list[tuple[str, dict]]:
        parser = cls()
        parser.feed(html)
        return parser.found


def render(row, intro=TEMPLATE_INTRO):
    html, text = render_bodies(facts_from_row(row), intro)
    return TextOf.of(html), re.sub(r"[ \t]+", " ", text), html


def both(row, intro=TEMPLATE_INTRO):
    visible, text, _ = render(row, intro)
    return visible, re.sub(r"\s+", " ", text)


def test_durations_are_written_for_people():
    assert duration(Decimal("1114.4")) == "18 h 34 min"
    assert duration(Decimal("120.2")) == "2 h"
    assert duration(Decimal("34.5")) == "35 min"
    assert duration(0) == "0 min" and duration(None) == "0 min"


def test_numbers_in_both_parts_equal_the_rows():
    row = make_row()
    for body in render(row)[:2]:
        assert "Minutes listened 312.4" in body or "Minutes listened: 312.4" in body
        assert "5 h 12 min" in body  # 312.4 minutes, for people
        for label, value in [
            ("Plays", 87), ("Different tracks", 61), ("Different artists", 23), ("New tracks", 12),
            ("New artists", 2), ("Days with music", 6), ("Longest streak", "4 days"),
        ]:
            assert re.search(rf"{label}:? {value}\b", body), (label, value)
        assert re.search(r"Busiest day:? Friday", body) and re.search(r"Busiest hour:? 9:00\sPM", body)
        assert re.search(r"The week before:? 64 plays, 250.0 minutes", body)
        assert re.search(r"Change:? \+23 plays, \+62.4 minutes", body)


def test_the_minutes_change_is_the_difference_of_the_two_figures_shown():
    visible, text = both(make_row())
    shown_now = Decimal(re.search(r"Minutes listened:? ([\d.]+)", text).group(1))
    shown_before = Decimal(re.search(r"The week before: \d+ plays, ([\d.]+) minutes", text).group(1))
    change = Decimal(re.search(r"Change: [+-]\d+ plays, ([+-][\d.]+) minutes", text).group(1))
    assert shown_now - shown_before == change


def test_weekday_and_hour_follow_the_users_locale():
    visible, text = both(make_row(locale="de"))
    for body in (visible, text):
        assert "Busiest day Freitag" in body.replace(":", "") and "Busiest hour 21:00" in body.replace("hour:", "hour")
        assert "Mo. 16 Nov. 2026" in body
    # an unknown locale is English, never an error
    visible, text = both(make_row(locale="xx-nope"))
    assert "Friday" in text and "9:00 PM" in text


def test_top_five_lists_are_shown_in_order_with_plays_and_spotify_links():
    visible, text, html = render(make_row())
    for body in (visible, text):
        positions = [body.index(name) for name in ("Hyperballad", "Teardrop", "Glory Box", "Unfinished Sympathy", "Roads")]
        assert positions == sorted(positions)
        assert "Hyperballad" in body and "(9 plays)" in body
        for artist in ("Björk", "Massive Attack", "Portishead", "Tricky", "Blink-182"):
            assert artist in body
        assert "Post" in body and "Mezzanine" in body
        assert "Top genres" not in body and "TOP GENRES" not in body  # empty list: no heading
    assert "1. Hyperballad - Björk (9 plays) <https://open.spotify.com/track/t0>" in text
    # album art links to Spotify, with alt text
    assert re.search(r'<a href="https://open.spotify.com/album/al1"[^>]*><img src="https://i.scdn.co/image/album-al1"[^>]*'
                     r'alt="Cover of Post"', html)
    assert 'href="https://open.spotify.com/track/t0"' in html


def test_spotify_attribution_in_both_parts():
    visible, text = both(make_row())
    for body in (visible, text):
        assert "Listening data from Spotify" in body
    assert "<https://open.spotify.com>" in text


def test_genres_section_only_when_there_are_genres():
    genres = [{"rank": 1, "name": "trip hop", "plays": 40}, {"rank": 2, "name": "art pop", "plays": 20}]
    visible, text = both(make_row(top_genres=genres))
    assert "Top genres 1. trip hop (40 plays) 2. art pop (20 plays)" in visible
    assert "TOP GENRES 1. trip hop (40 plays) 2. art pop (20 plays)" in text
    for body in both(make_row(top_genres=[])):
        assert not re.search("genres", body, re.IGNORECASE)


def test_week_range_is_in_the_users_time_zone():
    facts = facts_from_row(make_row(time_zone="America/New_York"))
    assert week_range(facts) == "Mon 16 Nov 2026 – Sun 22 Nov 2026 (America/New_York)"
    visible, text, _ = render(make_row(time_zone="America/New_York"))
    assert "(America/New_York)" in visible and "(America/New_York)" in text


def test_gap_note_only_when_has_gap():
    note = "some plays may be missing"
    assert all(note not in body for body in render(make_row(has_gap=False))[:2])
    assert all(note in body for body in render(make_row(has_gap=True))[:2])


def test_everything_is_escaped_in_html():
    evil = '<script>alert("x")</script>'
    row = make_row(display_name='Ada <img src=x onerror=alert(1)>')
    row["top_tracks"][0]["name"] = evil
    _, text, html = render(row, Intro("Tom & Jerry <b>rock</b>", "gemini", personality="<i>x</i>"))
    tags = Tags.of(html)
    assert not [t for t, _ in tags if t in ("script", "b", "i")]
    assert not [a for t, a in tags if "onerror" in a]
    assert {a["src"] for t, a in tags if t == "img"} <= {f"https://i.scdn.co/image/album-{i}" for i in (
        "t0", "t1", "t2", "t3", "t4", "al1", "al2")} | {a["src"] for t, a in tags if a.get("class") == "chart"}
    assert "&lt;script&gt;" in html  # shown as text
    assert "Tom &amp; Jerry &lt;b&gt;rock&lt;/b&gt;" in html and "&lt;i&gt;x&lt;/i&gt;" in html
    assert evil in text  # the text part is not HTML: shown as is


def test_a_link_that_is_not_http_is_left_out():
    row = make_row()
    row["top_tracks"][0]["spotify_url"] = "javascript:alert(1)"
    row["top_tracks"][0]["image_url"] = "data:image/png;base64,AAAA"
    _, text, html = render(row)
    assert "javascript:" not in html and "javascript:" not in text and "data:image/png;base64,AAAA" not in html


def test_optional_columns_missing_still_render():
    row = {"user_id": "u", "week_start": date(2026, 11, 16), "plays": 2, "minutes_listened": Decimal("4.0")}
    visible, text, _ = render(row)
    assert "Plays 2" in visible and "Minutes listened: 4.0" in text
    assert "Busiest" not in text and "week before" not in text
    assert "Listening clock" not in text and "Minutes per day" not in text


def test_previous_week_status_is_said_plainly():
    cases = {
        "no_plays": "The week before no plays",
        "partial": "The week before only partly known, so not compared",
        "not_known": "The week before before we knew your listening",
    }
    for status, wording in cases.items():
        row = make_row(previous_week_status=status, previous_week_plays=None, plays_change=None,
                       minutes_listened_change=None, previous_week_minutes_listened=None)
        for body in both(row):
            assert wording in body.replace("before:", "before"), status
            assert "+23" not in body and "+62.4" not in body and "Change" not in body
    # a row from before the status column: 0 plays the week before still reads as such
    visible, text = both(make_row(previous_week_status=None, previous_week_plays=0))
    assert "The week before: no plays" in text


def test_a_streak_running_into_the_week_says_so():
    for body in both(make_row(longest_streak_days=7, longest_streak_running_days=15)):
        assert "7 days this week, 15 days running" in body
    for body in both(make_row(longest_streak_days=4, longest_streak_running_days=4)):
        assert "Longest streak 4 days" in body.replace(":", "") and "running" not in body


def test_discoveries_are_withheld_until_enough_history_is_known():
    row = make_row(discoveries_available=False, weeks_until_discoveries=5, new_tracks=None, new_artists=None,
                   top_new_artists=None)
    for body in both(row):
        assert "Discoveries start once 5 more weeks are known, or once you import your Spotify export." in body
        assert "New tracks" not in body and "discovered" not in body.lower()
    for body in both(make_row(discoveries_available=False, weeks_until_discoveries=1, new_tracks=None)):
        assert "Discoveries start once 1 more week is known" in body
    for body in both(make_row()):
        assert "Discoveries start" not in body and "New artists you discovered".lower() in body.lower()


def test_pending_metadata_and_estimated_minutes_are_said():
    row = make_row(plays_pending_metadata=12, plays_estimated_minutes=87)
    for body in both(row):
        assert "12 plays are still being looked up on Spotify" in body
        assert "Minutes are estimated from the track's length, capped by the time until your next play" in body
    for body in both(make_row(plays_pending_metadata=1, plays_estimated_minutes=30)):
        assert "1 play is still being looked up" in body
        assert "Minutes for 30 of the 87 plays are estimated" in body
    for body in both(make_row()):
        assert "looked up" not in body and "Minutes are the time you played each track, as Spotify reports it." in body


def test_coverage_line():
    row = make_row(week_hours=Decimal("168.0"), missed_hours=Decimal("36.0"), estimated_missed_plays=24)
    for body in both(row):
        assert "We did not see 36 of the week's 168 hours" in body and "missed about 24 plays" in body
    for body in both(make_row(week_hours=Decimal("167.0"))):
        assert "We saw all 167 hours of your week." in body


def test_intro_personality_recommendations_and_who_wrote_it():
    ai = Intro("Björk all week.", "gemini", personality="A night owl with a soft spot for trip hop.",
               recommendations=(Recommendation("Moloko", "https://open.spotify.com/artist/moloko"),))
    visible, text, html = render(make_row(), ai)
    for body in (visible, text):
        assert "Björk all week." in body and "A night owl with a soft spot for trip hop." in body
        assert "Moloko" in body and TEMPLATE_INTRO_NOTE not in body
    assert '<a href="https://open.spotify.com/artist/moloko"' in html and "<https://open.spotify.com/artist/moloko>" in text
    for body in both(make_row(), TEMPLATE_INTRO):
        assert "This introduction was written from a template, not by AI" in body
        assert "Artists to try".lower() not in body.lower()


def test_the_text_part_carries_what_the_pictures_show():
    _, text = both(make_row())
    assert "Listening clock: busiest hours Friday 9:00 PM (42 min)" in text
    assert "Minutes per day: Monday 19 min, Tuesday 20 min, Wednesday 1 h 28 min" in text
    assert "Top artists by plays, with minutes listened: 1. Björk (1 h 21 min), 2. Massive Attack (1 h 10 min)" in text


def test_the_top_artists_picture_keeps_the_rank_by_plays_and_says_so():
    """Ranked by plays, the fifth artist may have listened longer than the fourth: a picture
    titled "by minutes" would then look wrong to the reader (it did in the demo's e-mail)."""
    artists = [{"rank": i + 1, "id": f"a{i}", "name": name, "artists": None, "plays": plays, "minutes": minutes,
                "image_url": None, "spotify_url": None}
               for i, (name, plays, minutes) in enumerate([("Zeno", 12, 27.0), ("The Paper Midnights", 10, 30.0)])]
    _, text = both(make_row(top_artists=artists))
    assert "Top artists by plays, with minutes listened: 1. Zeno (27 min), 2. The Paper Midnights (30 min)." in text
    assert "by minutes" not in text


def test_no_previous_week():
    visible, text, _ = render(make_row(previous_week_status="no_plays", previous_week_plays=0, plays_change=87,
                                       minutes_listened_change=Decimal("312.4")))
    assert "The week before: no plays" in text and "+87" not in text


def test_message_id_is_deterministic_per_user_and_week():
    week = date(2026, 11, 16)
    assert message_id("u1", week) == message_id("u1", week)
    assert message_id("u1", week) != message_id("u2", week)
    assert message_id("u1", week) != message_id("u1", date(2026, 11, 23))
    assert re.fullmatch(r"<wrapped\.2026-11-16\.[0-9a-f]{24}@weekly-wrapped\.local>", message_id("u1", week))
    assert "u1" not in message_id("u1", week)


def test_build_message_is_text_and_html_with_pictures_by_content_id():
    facts = facts_from_row(make_row())
    first = build_message(facts, TEMPLATE_INTRO, from_addr=FROM, to_addr="ada@example.com",
                          sent_at=datetime(2026, 11, 23, 12, tzinfo=timezone.utc),
                          extra_headers={"List-Unsubscribe": "<https://example.com/u>"})
    again = build_message(facts, Intro("Another text.", "gemini"), from_addr=FROM, to_addr="ada@example.com")
    assert first["Message-ID"] == again["Message-ID"]
    parsed = message_from_bytes(first.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    text_part, related = parsed.get_payload()
    assert text_part.get_content_type() == "text/plain" and related.get_content_type() == "multipart/related"
    html_part, *pictures = related.get_payload()
    assert html_part.get_content_type() == "text/html"
    assert [p.get_content_type() for p in pictures] == ["image/png"] * 3
    html = html_part.get_content()
    referenced = set(re.findall(r'src="cid:([^"]+)"', html))
    attached = {re.sub(r"\s", "", p["Content-ID"]).strip("<>") for p in pictures}
    assert referenced == attached and len(attached) == 3
    for picture in pictures:
        assert picture.get_content().startswith(b"\x89PNG") and picture.get_content_disposition() == "inline"
    charts = [a for t, a in Tags.of(html) if t == "img" and a["src"].startswith("cid:")]
    assert len(charts) == 3 and all(a.get("alt") for a in charts)
    assert parsed["Subject"] == "Your Weekly Wrapped: 16–22 Nov 2026"
    assert parsed["To"] == "ada@example.com" and parsed["X-Weekly-Wrapped-Week"] == "2026-11-16"
    assert parsed["X-Weekly-Wrapped-Recap"] == "template"
    assert message_from_bytes(again.as_bytes(), policy=policy.default)["X-Weekly-Wrapped-Recap"] == "gemini"
    assert parsed["List-Unsubscribe"] == "<https://example.com/u>"
    assert "312.4" in parsed.get_body(("plain",)).get_content()


def test_the_same_week_renders_the_same_bytes():
    facts = facts_from_row(make_row())
    sent_at = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    one, two = (build_message(facts, TEMPLATE_INTRO, from_addr=FROM, to_addr="a@example.com", sent_at=sent_at)
                for _ in range(2))
    assert _without_boundaries(one.as_bytes()) == _without_boundaries(two.as_bytes())


def _without_boundaries(raw: bytes) -> bytes:
    return re.sub(rb"=+[0-9]{10,}==", b"BOUNDARY", raw)


def test_skip_rate_and_most_skipped_when_an_export_covered_the_week():
    visible, text, _ = render(make_row())
    assert "Skip rate 25% (29 skips)" in visible and "- Skip rate: 25% (29 skips)" in text
    for body in (visible, text):
        assert re.search(r"most skipped", body, re.IGNORECASE)
        assert body.index("All Star") < body.index("Smash Mouth")
    assert "MOST SKIPPED\n1. All Star - Smash Mouth (6 skips)\n2. Roads - Portishead (2 skips)" in text
    assert "(6 skips)" in visible and "(9 plays)" in visible  # skips counted as skips, plays as plays


def test_no_skip_rate_nor_most_skipped_when_skips_are_unknown():
    # polled weeks only: the mart says nothing (null), and so does the e-mail - never "0%"
    row = make_row(skip_rate=None, skip_events=0)
    for body in render(row)[:2]:
        assert not re.search(r"skip", body, re.IGNORECASE), body
    # a known 0 % is shown, without an empty "most skipped" heading
    visible, text, _ = render(make_row(skip_rate=Decimal("0.0000"), skip_events=0, top_skipped_tracks=[]))
    assert "Skip rate 0% (0 skips)" in visible and "- Skip rate: 0% (0 skips)" in text
    assert "Most skipped" not in visible and "MOST SKIPPED" not in text


def test_facts_read_the_columns_the_pictures_and_truth_lines_rest_on():
    import json

    row = make_row(minutes_by_day=json.dumps(make_row()["minutes_by_day"]), locale=" de ",
                   previous_week_status="compared", plays_pending_metadata=3, missed_hours=Decimal("2.5"))
    facts = facts_from_row(row)
    assert facts.locale == "de" and facts.plays_pending_metadata == 3 and facts.missed_hours == Decimal("2.5")
    assert facts.previous_week_minutes == Decimal("250.0") and facts.previous_week_status == "compared"
    assert [d.isoformat() for d, _ in facts.minutes_by_day][0] == "2026-11-16" and len(facts.minutes_by_day) == 7
    assert sum(facts.minutes_by_day[i][1] for i in range(7)) == Decimal("312.4")
    assert len(facts.listening_clock) == 7 and all(len(day) == 24 for day in facts.listening_clock)
    assert facts.listening_clock[4][21] == Decimal("42.0")
    top = facts.top_albums[0]
    assert (top.minutes, top.image_url, top.spotify_url) == (
        Decimal("50.2"), "https://i.scdn.co/image/album-al1", "https://open.spotify.com/album/al1")
    # absent or malformed: the defaults, never an error
    bare = facts_from_row({"user_id": "u", "week_start": date(2026, 11, 16), "listening_clock": [[1, 2]],
                           "minutes_by_day": "not json"})
    assert (bare.locale, bare.discoveries_available, bare.minutes_by_day, bare.listening_clock) == ("en", True, (), ())
    assert bare.previous_week_status is None and bare.plays_estimated_minutes == 0


def test_charts_are_small_deterministic_pngs():
    from weekly_wrapped.recap.charts import charts

    facts = facts_from_row(make_row())
    first, again = charts(facts), charts(facts)
    assert [c.name for c in first] == ["listening-clock", "minutes-per-day", "top-artists"]
    for one, two in zip(first, again):
        assert one.png == two.png and one.png.startswith(b"\x89PNG")
        assert len(one.png) < 30_000 and one.width == 552 and one.alt and one.fallback
    # a week without plays by hour or day has no clock and no day chart, rather than empty ones
    quiet = facts_from_row(make_row(listening_clock=None, minutes_by_day=None, top_artists=[]))
    assert charts(quiet) == []


def test_the_html_alone_can_carry_its_pictures():
    from weekly_wrapped.recap.render import html_with_pictures_embedded

    message = build_message(facts_from_row(make_row()), TEMPLATE_INTRO, from_addr=FROM, to_addr="a@example.com")
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    html = html_with_pictures_embedded(parsed)
    assert "cid:" not in html and html.count('src="data:image/png;base64,iVBORw0KGgo') == 3
