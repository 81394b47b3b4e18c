"""Any user's recap as files, without sending and without AI: for design and support.

    render_preview(dsn, user_id, week_start, out_path) -> Path

Reads the user's `marts.wrapped_weekly` row (as the weekly run does), renders it with the
template intro, and writes the HTML with its pictures embedded as data: URIs (so one file
opens in any browser), plus the text part beside it (`<out>.txt`). Nothing is sent, stored
or asked of Gemini. I/O edge: Postgres in, two files out.
"""

from __future__ import annotations

from contextlib import closing
from datetime import date
from pathlib import Path

from weekly_wrapped import db
from weekly_wrapped.recap import store
from weekly_wrapped.recap.content import Intro
from weekly_wrapped.recap.facts import facts_from_row
from weekly_wrapped.recap.grounding import template_intro
from weekly_wrapped.recap.job import parse_week_start
from weekly_wrapped.recap.render import data_uri, render_bodies


class NoRecapRow(LookupError):
    """The mart has no row for this user and week (not built yet, or no such user)."""


def render_preview(dsn: str, user_id: str, week_start: str | date, out_path: str | Path) -> Path:
    """Write the recap of `user_id` for the week holding `week_start` to `out_path` (HTML) and
    `out_path` with suffix .txt (text part); returns the HTML file's path."""
    week = parse_week_start(week_start)
    with closing(db.connect(dsn, application_name="weekly_wrapped.recap.preview")) as conn:
        row = store.week_row(conn, user_id, week)
    if row is None:
        raise NoRecapRow(f"no marts.wrapped_weekly row for user {user_id!r}, week of {week.isoformat()}")
    facts = facts_from_row(row)
    html, text = render_bodies(facts, Intro(template_intro(facts), "template"), picture_src=data_uri)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    out.with_suffix(".txt").write_text(text, encoding="utf-8")
    return out
