"""The e-mail shows the row's numbers, the top-5 lists, the week in the user's zone, escapes
names, notes gaps, and carries a Message-ID that depends only on (user, week)."""

import re
from datetime import date, datetime, timezone
from decimal import Decimal
from email import message_from_bytes, policy
from html.parser import HTMLParser

from recap_helpers import make_row

from weekly_wrapped.recap.facts import facts_from_row
from weekly_wrapped.recap.grounding import template_recap
from weekly_wrapped.recap.render import build_message, message_id, render_bodies, week_range

FROM = "Weekly Wrapped <wrapped@localhost>"


class TextOf(HTMLParser):
    """The visible text of an HTML document (what a reader sees)."""

    def __init__(self):
        super().__init__()
        self.parts = []

    def handle_data(self, data):
        self.parts.append(data)

    @classmethod
    def of(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        return re.sub(r"\s+", " ", " ".join(parser.parts))


def render(row, recap="Your week, in music."):
    html, text = render_bodies(facts_from_row(row), recap)
    return TextOf.of(html), re.sub(r"[ \t]+", " ", text), html


def test_numbers_in_both_parts_equal_the_rows():
    row = make_row()
    for body in render(row)[:2]:
        assert "Minutes listened 312.4" in body or "Minutes listened: 312.4" in body
        for label, value in [
            ("Plays", 87), ("Different tracks", 61), ("Different artists", 23), ("New tracks", 12),
            ("New artists", 2), ("Days with music", 6), ("Longest streak", "4 days"),
        ]:
            assert re.search(rf"{label}:? {value}\b", body), (label, value)
        assert re.search(r"Busiest day:? Friday", body) and re.search(r"Busiest hour:? 21:00", body)
        assert "+23 plays, +62.4 minutes" in body


def test_top_five_lists_are_shown_in_order_with_plays():
    visible, text, _ = render(make_row())
    for body in (visible, text):
        positions = [body.index(name) for name in ("Hyperballad", "Teardrop", "Glory Box", "Unfinished Sympathy", "Roads")]
        assert positions == sorted(positions)
        assert "Hyperballad" in body and "(9 plays)" in body
        for artist in ("Björk", "Massive Attack", "Portishead", "Tricky", "Blink-182"):
            assert artist in body
        assert "Post" in body and "Mezzanine" in body
        assert "Top genres" not in body and "TOP GENRES" not in body  # empty list: no heading
    assert "1. Hyperballad - Björk (9 plays)" in text


def test_week_range_is_in_the_users_time_zone():
    facts = facts_from_row(make_row(time_zone="America/New_York"))
    assert week_range(facts) == "Mon 16 Nov 2026 00:00 – Sun 22 Nov 2026 23:59 (America/New_York)"
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
    _, text, html = render(row, recap="Tom & Jerry <b>rock</b>")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "Tom &amp; Jerry &lt;b&gt;rock&lt;/b&gt;" in html
    assert evil in text  # the text part is not HTML: shown as is


def test_optional_columns_missing_still_render():
    row = {"user_id": "u", "week_start": date(2026, 11, 16), "plays": 2, "minutes_listened": Decimal("4.0")}
    visible, text, _ = render(row)
    assert "Plays 2" in visible and "Minutes listened: 4.0" in text
    assert "Busiest" not in text and "week before" not in text


def test_no_previous_week():
    visible, text, _ = render(make_row(previous_week_plays=0, plays_change=87, minutes_listened_change=Decimal("312.4")))
    assert "no plays the week before" in text and "+87" not in text


def test_message_id_is_deterministic_per_user_and_week():
    week = date(2026, 11, 16)
    assert message_id("u1", week) == message_id("u1", week)
    assert message_id("u1", week) != message_id("u2", week)
    assert message_id("u1", week) != message_id("u1", date(2026, 11, 23))
    assert re.fullmatch(r"<wrapped\.2026-11-16\.[0-9a-f]{24}@weekly-wrapped\.local>", message_id("u1", week))
    assert "u1" not in message_id("u1", week)


def test_build_message_is_multipart_alternative_with_stable_headers():
    facts = facts_from_row(make_row())
    first = build_message(facts, template_recap(facts), recap_source="template", from_addr=FROM, to_addr="ada@example.com",
                          sent_at=datetime(2026, 11, 23, 12, tzinfo=timezone.utc))
    again = build_message(facts, "Another text.", recap_source="gemini", from_addr=FROM, to_addr="ada@example.com")
    assert first["Message-ID"] == again["Message-ID"]
    parsed = message_from_bytes(first.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Subject"] == "Your Weekly Wrapped: 16–22 Nov 2026"
    assert parsed["To"] == "ada@example.com" and parsed["X-Weekly-Wrapped-Week"] == "2026-11-16"
    assert parsed["X-Weekly-Wrapped-Recap"] == "template"
    assert "312.4" in parsed.get_body(("plain",)).get_content()


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
