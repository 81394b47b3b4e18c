"""The recap e-mail: HTML and text from Jinja2 templates, wrapped in one EmailMessage. Pure.

The HTML template escapes everything (autoescape), because track, artist and display
names come from Spotify and people. The Message-ID depends only on (user, week), so a
resend of the same week carries the same id and mail clients can tell it is one message.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from weekly_wrapped.recap.facts import WeekFacts

TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_MESSAGE_ID_DOMAIN = "weekly-wrapped.local"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        # .html.j2 is escaped; the text part is not HTML, so it is not.
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )


def week_range(facts: WeekFacts) -> str:
    """The week as the user lives it: "Mon 16 Nov 2026 00:00 – Sun 22 Nov 2026 23:59 (Europe/Berlin)"."""
    start, end = facts.week_start, facts.week_end
    return (
        f"{start:%a} {start.day} {start:%b %Y} 00:00 – "
        f"{end:%a} {end.day} {end:%b %Y} 23:59 ({facts.time_zone})"
    )


def change_label(facts: WeekFacts) -> str | None:
    """The change vs the week before, e.g. "+3 plays, +5.0 minutes"; None when unknown."""
    if facts.previous_week_plays is None:
        return None
    if not facts.had_previous_week:
        return "no plays the week before"
    parts = []
    if facts.plays_change is not None:
        parts.append(f"{facts.plays_change:+d} plays")
    if facts.minutes_change is not None:
        parts.append(f"{facts.minutes_change:+.1f} minutes")
    return ", ".join(parts) or None


def subject(facts: WeekFacts) -> str:
    return f"Your Weekly Wrapped: {facts.week_label}"


def render_bodies(facts: WeekFacts, recap: str) -> tuple[str, str]:
    """(html, text) bodies of the e-mail."""
    context = {
        "f": facts,
        "recap": recap,
        "week_range": week_range(facts),
        "change": change_label(facts),
        # (heading, items, what an item's count counts); an empty list gets no heading
        "lists": [
            ("Top artists", facts.top_artists, "play"),
            ("Top tracks", facts.top_tracks, "play"),
            ("Top albums", facts.top_albums, "play"),
            ("Top genres", facts.top_genres, "play"),
            ("New artists you discovered", facts.top_new_artists, "play"),
            # only for weeks a privacy export covered (facts leave it empty otherwise)
            ("Most skipped", facts.top_skipped_tracks, "skip"),
        ],
    }
    env = _environment()
    html = env.get_template("recap_email.html.j2").render(context)
    text = env.get_template("recap_email.txt.j2").render(context)
    return html, text


def message_id(user_id: str, week_start, domain: str = DEFAULT_MESSAGE_ID_DOMAIN) -> str:
    """`<wrapped.2026-11-16.<hash of user>@domain>`: the same for the same (user, week), always.

    The user id is hashed so that ids never leak into headers and odd characters in it
    cannot break the header syntax.
    """
    digest = hashlib.sha256(str(user_id).encode()).hexdigest()[:24]
    return f"<wrapped.{week_start.isoformat()}.{digest}@{domain}>"


def build_message(
    facts: WeekFacts,
    recap: str,
    *,
    recap_source: str,
    from_addr: str,
    to_addr: str,
    sent_at: datetime | None = None,
    message_id_domain: str | None = None,
) -> EmailMessage:
    """The complete multipart/alternative e-mail (text first, HTML preferred)."""
    html, text = render_bodies(facts, recap)
    msg = EmailMessage()
    msg["Subject"] = subject(facts)
    msg["From"] = from_addr
    msg["To"] = to_addr
    msg["Date"] = format_datetime(sent_at or datetime.now(timezone.utc))
    msg["Message-ID"] = message_id(facts.user_id, facts.week_start, message_id_domain or DEFAULT_MESSAGE_ID_DOMAIN)
    # For people debugging delivery: which week, and whether Gemini or the template wrote the intro.
    msg["X-Weekly-Wrapped-Week"] = facts.week_start.isoformat()
    msg["X-Weekly-Wrapped-Recap"] = recap_source
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg
