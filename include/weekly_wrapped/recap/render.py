"""The recap e-mail: HTML and text from Jinja2 templates, pictures, one EmailMessage. Pure.

    build_message(facts, intro, from_addr=..., to_addr=...) -> EmailMessage
        multipart/alternative
        ├── text/plain                 everything the HTML says; pictures as their text fallbacks
        └── multipart/related
            ├── text/html              600 px tables, CSS inlined, light and dark mode
            └── image/png ...          the charts, referenced as cid:
    render_bodies(facts, intro, picture_src=...) -> (html, text)   (the preview embeds data: URIs)

The HTML template escapes everything (autoescape), because track, artist and display
names come from Spotify and people. The Message-ID and the pictures' Content-IDs depend
only on (user, week), so a resend of the same week is the same message.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Callable

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from weekly_wrapped.page import household as household_lines
from weekly_wrapped.page.household import TasteMatch
from weekly_wrapped.recap.charts import Chart, charts
from weekly_wrapped.recap.content import Intro
from weekly_wrapped.recap.facts import WeekFacts
from weekly_wrapped.recap.formats import day_label, duration, hour_label, weekday_index, weekday_name

TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_MESSAGE_ID_DOMAIN = "weekly-wrapped.local"
SPOTIFY_URL = "https://open.spotify.com"
TEMPLATE_INTRO_NOTE = "This introduction was written from a template, not by AI."


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        # .html.j2 is escaped; the text part is not HTML, so it is not.
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters["duration"] = duration
    return env


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    # keep_at_rules: the dark-mode @media block cannot be inlined and must stay in <style>.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


# ---- the lines the e-mail shows ----------------------------------------------------------


def week_range(facts: WeekFacts) -> str:
    """The week as the user lives it: "Mon 16 Nov 2026 – Sun 22 Nov 2026 (Europe/Berlin)"."""
    return f"{day_label(facts.week_start, facts.locale)} – {day_label(facts.week_end, facts.locale)} ({facts.time_zone})"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def previous_week_status(facts: WeekFacts) -> str | None:
    """compared | no_plays | partial | not_known (docs/recap.md); None when the row says nothing."""
    if facts.previous_week_status:
        return facts.previous_week_status
    if facts.previous_week_plays is None:  # rows from before the status column
        return None
    return "compared" if facts.had_previous_week else "no_plays"


PREVIOUS_WEEK_WORDS = {
    "no_plays": "no plays",
    "partial": "only partly known, so not compared",
    "not_known": "before we knew your listening",
}


def previous_week_label(facts: WeekFacts) -> str | None:
    """The week before as the e-mail shows it: its figures when compared, else why there are none."""
    status = previous_week_status(facts)
    if status != "compared":
        return PREVIOUS_WEEK_WORDS.get(status)
    figures = []
    if facts.previous_week_plays is not None:
        figures.append(plural(facts.previous_week_plays, "play"))
    if facts.previous_week_minutes is not None:
        figures.append(f"{facts.previous_week_minutes} minutes")
    return ", ".join(figures) or None


def change_label(facts: WeekFacts) -> str | None:
    """The change vs a compared week before, e.g. "+3 plays, +5.0 minutes"; None otherwise.

    The e-mail shows both minutes figures, and the change is their difference (docs/recap.md).
    """
    if previous_week_status(facts) != "compared":
        return None
    parts = []
    if facts.plays_change is not None:
        parts.append(f"{facts.plays_change:+d} plays")
    if facts.minutes_change is not None:
        parts.append(f"{facts.minutes_change:+.1f} minutes")
    return ", ".join(parts) or None


def streak_label(facts: WeekFacts) -> str | None:
    """E.g. "4 days", or "7 days this week, 15 days running" when the streak began before the week."""
    if facts.longest_streak_days is None:
        return None
    label = plural(facts.longest_streak_days, "day")
    running = facts.longest_streak_running_days
    if running is not None and running > facts.longest_streak_days:
        label += f" this week, {running} days running"
    return label


def busiest_day(facts: WeekFacts) -> str | None:
    index = weekday_index(facts.busiest_weekday)
    if index is None:
        return facts.busiest_weekday
    return weekday_name(index, facts.locale)


def busiest_hour(facts: WeekFacts) -> str | None:
    return None if facts.busiest_hour is None else hour_label(facts.busiest_hour, facts.locale)


def discoveries_note(facts: WeekFacts) -> str | None:
    """Why the e-mail names no new tracks or artists yet; None when discoveries are shown."""
    if facts.discoveries_available:
        return None
    weeks = facts.weeks_until_discoveries
    if weeks == 1:
        known = "1 more week is known"
    elif weeks:
        known = f"{weeks} more weeks are known"
    else:
        known = "more weeks are known"
    return f"Discoveries start once {known}, or once you import your Spotify export."


def notes(facts: WeekFacts) -> list[str]:
    """What the reader should know before trusting the numbers, each a sentence."""
    found = []
    if facts.plays_pending_metadata:
        found.append(
            f"{plural(facts.plays_pending_metadata, 'play')} {'is' if facts.plays_pending_metadata == 1 else 'are'} "
            "still being looked up on Spotify; the lists below rank what is known so far."
        )
    if facts.has_gap:
        found.append("We could not collect all of your listening this week, so some plays may be missing.")
    return found


def minutes_source(facts: WeekFacts) -> str:
    """How the minutes were obtained, in one sentence."""
    estimated = facts.plays_estimated_minutes
    if not facts.plays or not estimated:
        return "Minutes are the time you played each track, as Spotify reports it."
    rule = (
        "from the track's length, capped by the time until your next play (Spotify's list of recent "
        "plays does not say how long you listened)"
    )
    if estimated >= facts.plays:
        return f"Minutes are estimated {rule}."
    return f"Minutes for {estimated} of the {facts.plays} plays are estimated {rule}; the rest are as Spotify reports them."


def coverage(facts: WeekFacts) -> str | None:
    """How much of the week we saw: missed hours and the plays we may have missed."""
    if facts.week_hours is None:
        return None
    hours = _hours(facts.week_hours)
    if not facts.missed_hours:
        return f"We saw all {hours} hours of your week."
    line = (
        f"We did not see {_hours(facts.missed_hours)} of the week's {hours} hours "
        "(before your history starts, or while collection was interrupted)"
    )
    if facts.estimated_missed_plays:
        line += f", so we may have missed about {plural(facts.estimated_missed_plays, 'play')}"
    return line + "."


def _hours(value) -> str:
    return f"{value.normalize():f}" if value == value.to_integral_value() else f"{value}"


def stats(facts: WeekFacts) -> list[tuple[str, str]]:
    """(label, value) rows of the numbers table, in order; a row without a value is left out."""
    rows = [
        ("Minutes listened", f"{facts.minutes}"),
        ("Plays", f"{facts.plays}"),
        ("Different tracks", facts.distinct_tracks),
        ("Different artists", facts.distinct_artists),
        ("New tracks", facts.new_tracks if facts.discoveries_available else None),
        ("New artists", facts.new_artists if facts.discoveries_available else None),
        ("Days with music", facts.days_with_plays),
        ("Longest streak", streak_label(facts)),
        ("Busiest day", busiest_day(facts)),
        ("Busiest hour", busiest_hour(facts)),
        ("The week before", previous_week_label(facts)),
        ("Change", change_label(facts)),
        ("Skip rate", facts.skip_rate_label),
    ]
    return [(label, str(value)) for label, value in rows if value is not None and value != ""]


def subject(facts: WeekFacts) -> str:
    return f"Your Weekly Wrapped: {facts.week_label}"


# ---- bodies ------------------------------------------------------------------------------


def content_id(chart: Chart, facts: WeekFacts, domain: str = DEFAULT_MESSAGE_ID_DOMAIN) -> str:
    """The picture's Content-ID without brackets, the same for the same (user, week, chart)."""
    digest = hashlib.sha256(str(facts.user_id).encode()).hexdigest()[:24]
    return f"{chart.name}.{facts.week_start.isoformat()}.{digest}@{domain}"


def data_uri(chart: Chart) -> str:
    """The picture inline in the HTML itself (previews; mail clients would not show it)."""
    return "data:image/png;base64," + base64.b64encode(chart.png).decode("ascii")


def render_bodies(
    facts: WeekFacts,
    intro: Intro,
    pictures: list[Chart] | None = None,
    picture_src: Callable[[Chart], str] | None = None,
    account_links: dict[str, str] | None = None,
    household: TasteMatch | None = None,
) -> tuple[str, str]:
    """(html, text) bodies. `picture_src` gives each picture's src (default: its cid: reference).
    `account_links` ({"unsubscribe": url, "delete": url}) go in the footer (a preview has none).
    `household` (page.household; only for people who opted in) adds "Your household this week"."""
    pictures = charts(facts) if pictures is None else pictures
    src = picture_src or (lambda chart: f"cid:{content_id(chart, facts)}")
    context = {
        "f": facts,
        "intro": intro,
        "template_intro_note": None if intro.written_by_ai else TEMPLATE_INTRO_NOTE,
        "week_range": week_range(facts),
        "hours_and_minutes": duration(facts.minutes),
        "stats": stats(facts),
        "notes": notes(facts),
        "discoveries_note": discoveries_note(facts),
        "minutes_source": minutes_source(facts),
        "coverage": coverage(facts),
        "pictures": {chart.name: chart for chart in pictures},
        "picture_src": {chart.name: src(chart) for chart in pictures},
        # (heading, items, what an item's count counts, show covers); an empty list gets no heading
        "lists": [
            ("Top artists", facts.top_artists, "play", False),
            ("Top tracks", facts.top_tracks, "play", True),
            ("Top albums", facts.top_albums, "play", True),
            ("Top genres", facts.top_genres, "play", False),
            ("New artists you discovered", facts.top_new_artists if facts.discoveries_available else (), "play", False),
            # only for weeks a privacy export covered (facts leave it empty otherwise)
            ("Most skipped", facts.top_skipped_tracks, "skip", False),
        ],
        "spotify_url": SPOTIFY_URL,
        "account_links": account_links,
        # never part of WeekFacts, so housemates' names never reach the prompt
        "household": household if household and household.housemates else None,
        "household_summary": household_lines.summary,
        "first_heard": household_lines.first_heard_label,
        "household_note": household_lines.NOTE,
    }
    env = _environment()
    html = _inliner().inline(env.get_template("recap_email.html.j2").render(context))
    # Optional sections leave blank lines behind; one is enough between paragraphs.
    text = re.sub(r"\n{3,}", "\n\n", env.get_template("recap_email.txt.j2").render(context))
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
    intro: Intro,
    *,
    from_addr: str,
    to_addr: str,
    sent_at: datetime | None = None,
    message_id_domain: str | None = None,
    extra_headers: dict[str, str] | None = None,
    account_links: dict[str, str] | None = None,
    household: TasteMatch | None = None,
) -> EmailMessage:
    """The complete e-mail: text, then HTML with its pictures attached by Content-ID.

    `extra_headers` are added as given (e.g. List-Unsubscribe); `account_links` ({"unsubscribe",
    "delete"}: URLs) go in the footer of both parts; `household` adds its section (see render_bodies).
    """
    domain = message_id_domain or DEFAULT_MESSAGE_ID_DOMAIN
    pictures = charts(facts)
    html, text = render_bodies(facts, intro, pictures, lambda chart: f"cid:{content_id(chart, facts, domain)}",
                               account_links, household)
    msg = EmailMessage()
    msg["Subject"] = subject(facts)
    msg["From"] = from_addr
    msg["To"] = to_addr
    msg["Date"] = format_datetime(sent_at or datetime.now(timezone.utc))
    msg["Message-ID"] = message_id(facts.user_id, facts.week_start, domain)
    # For people debugging delivery: which week, and whether Gemini or the template wrote the intro.
    msg["X-Weekly-Wrapped-Week"] = facts.week_start.isoformat()
    msg["X-Weekly-Wrapped-Recap"] = intro.source
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    html_part = msg.get_payload()[1]
    for chart in pictures:
        html_part.add_related(
            chart.png, maintype="image", subtype="png", cid=f"<{content_id(chart, facts, domain)}>",
            filename=f"{chart.name}.png", disposition="inline",
        )
    return msg


def html_with_pictures_embedded(message: EmailMessage) -> str | None:
    """A sent or stored recap's HTML with each cid: picture replaced by its part as a data: URI,
    so the HTML alone opens in a browser (the demo's copy, support); None without an HTML part."""
    html_part = message.get_body(preferencelist=("html",))
    if html_part is None:
        return None
    html = html_part.get_content()
    related = message.get_body(preferencelist=("related",))
    for part in related.iter_parts() if related is not None else ():
        cid = re.sub(r"\s", "", part["Content-ID"] or "").strip("<>")
        if cid and part.get_content_maintype() == "image":
            data = base64.b64encode(part.get_content()).decode("ascii")
            html = html.replace(f"cid:{cid}", f"data:{part.get_content_type()};base64,{data}")
    return html
