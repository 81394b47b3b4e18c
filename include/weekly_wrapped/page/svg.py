"""Inline SVG pictures for the page: the year's heatmap of weekly minutes, the listening clock,
and bars of a top list. Pure functions, strings out; no JavaScript.

Accessibility: every picture is `role="img"` with a <title> (and <desc>) naming what it shows,
every cell or bar has its own <title> with its exact figure, and `heatmap_table` is the same
year as a plain HTML table. Colours: text is #1a1a1a on white (contrast 17:1); cells and bars
are outlined in #595959 (7:1 against white), so a light cell is still seen (WCAG 1.4.11 asks
3:1 for graphics). Every name is escaped: artist and track names come from Spotify and people.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from html import escape

TEXT = "#1a1a1a"
OUTLINE = "#595959"
# light to dark; the first is "no listening", the last the busiest
SCALE = ["#ffffff", "#d6efdd", "#9fd8ae", "#5bb676", "#2b8a48", "#0b5d2a"]
NOT_KNOWN = "#eeeeee"
BAR = "#2b8a48"
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _minutes(value) -> str:
    return f"{Decimal(value):,.1f}".rstrip("0").rstrip(".") if value is not None else "not known"


def _shade(value, highest) -> str:
    if value is None:
        return NOT_KNOWN
    if not value or not highest:
        return SCALE[0]
    step = int((len(SCALE) - 2) * Decimal(value) / Decimal(highest))
    return SCALE[1 + min(step, len(SCALE) - 2)]


def _svg(width: int, height: int, title: str, desc: str, body: list[str], ident: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-labelledby="{ident}-title {ident}-desc" style="max-width:{width}px;height:auto">'
        f'<title id="{ident}-title">{escape(title)}</title><desc id="{ident}-desc">{escape(desc)}</desc>'
        + "".join(body) + "</svg>"
    )


def week_label(week_start: date) -> str:
    return f"Week of {week_start.day} {MONTHS[week_start.month - 1]} {week_start.year}"


def heatmap(weeks, year: int) -> str:
    """The year's weeks (history.YearWeek) as a strip of cells under month labels, darker for more minutes."""
    cell, gap, left, top = 14, 3, 4, 18
    highest = max((w.minutes for w in weeks if w.minutes is not None), default=0)
    body = []
    seen_months = set()
    for i, week in enumerate(weeks):
        x = left + i * (cell + gap)
        if week.week_start.month not in seen_months:
            seen_months.add(week.week_start.month)
            body.append(f'<text x="{x}" y="12" font-size="10" fill="{TEXT}">{MONTHS[week.week_start.month - 1]}</text>')
        status = {"future": "still to come", "not_known": "before the history we hold"}.get(week.source)
        said = status or f"{_minutes(week.minutes)} minutes, {week.plays} plays" + (" so far" if week.source == "so_far" else "")
        body.append(
            f'<rect x="{x}" y="{top}" width="{cell}" height="{cell * 2}" rx="2" fill="{_shade(week.minutes, highest)}" '
            f'stroke="{OUTLINE}" stroke-width="0.5"><title>{escape(week_label(week.week_start))}: {escape(said)}</title></rect>'
        )
    width = left * 2 + len(weeks) * (cell + gap)
    total = sum((w.minutes for w in weeks if w.minutes is not None), Decimal(0))
    return _svg(width, top + cell * 2 + 4, f"Minutes listened each week of {year}",
                f"{len(weeks)} weeks, {_minutes(total)} minutes in all; the busiest week {_minutes(highest)} minutes. "
                "The table below gives every week's figure.", body, f"heatmap-{year}")


def heatmap_table(weeks, year: int) -> str:
    """The heatmap's text alternative: one row per week (the weeks with a figure)."""
    rows = "".join(
        f"<tr><th scope=\"row\">{escape(week_label(w.week_start))}</th><td>{escape(_minutes(w.minutes))}</td>"
        f"<td>{w.plays}</td></tr>"
        for w in weeks if w.source not in ("future", "not_known")
    )
    return (f"<table><caption>Minutes listened each week of {year}</caption>"
            f"<thead><tr><th scope=\"col\">Week</th><th scope=\"col\">Minutes</th><th scope=\"col\">Plays</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def listening_clock(clock, title: str = "When you listened") -> str:
    """7 weekdays (Monday first) x 24 local hours of minutes, as a grid of cells."""
    cell, gap, left, top = 14, 2, 34, 14
    highest = max((m for day in clock for m in day), default=0)
    body = []
    for hour in range(0, 24, 3):
        body.append(f'<text x="{left + hour * (cell + gap)}" y="10" font-size="9" fill="{TEXT}">{hour:02d}</text>')
    for d, day in enumerate(clock):
        y = top + d * (cell + gap)
        body.append(f'<text x="0" y="{y + cell - 3}" font-size="10" fill="{TEXT}">{WEEKDAYS[d][:3]}</text>')
        for hour, minutes in enumerate(day):
            body.append(
                f'<rect x="{left + hour * (cell + gap)}" y="{y}" width="{cell}" height="{cell}" rx="2" '
                f'fill="{_shade(minutes, highest)}" stroke="{OUTLINE}" stroke-width="0.5">'
                f"<title>{WEEKDAYS[d]} {hour:02d}:00 to {(hour + 1) % 24:02d}:00: {_minutes(minutes)} minutes</title></rect>"
            )
    busiest = max(((m, d, h) for d, day in enumerate(clock) for h, m in enumerate(day)), default=(0, 0, 0))
    desc = (f"Minutes by weekday and local hour; the busiest hour was {WEEKDAYS[busiest[1]]} {busiest[2]:02d}:00 "
            f"with {_minutes(busiest[0])} minutes." if busiest[0] else "No listening in this stretch.")
    return _svg(left + 24 * (cell + gap), top + 7 * (cell + gap), title, desc, body, "clock")


def bars(items, title: str, ident: str = "bars") -> str:
    """A top list (TopItem or dicts with name/plays/minutes) as horizontal bars of minutes, labelled."""
    items = [i if isinstance(i, dict) else i.__dict__ for i in items]
    row, label_width, bar_width = 22, 170, 180
    highest = max((Decimal(i["minutes"]) for i in items), default=Decimal(0))
    body = []
    for n, item in enumerate(items):
        y = n * row
        length = int(bar_width * Decimal(item["minutes"]) / highest) if highest else 0
        name = item["name"] if len(item["name"]) <= 28 else item["name"][:27] + "…"
        said = f"{item['name']}: {item['plays']} plays, {_minutes(item['minutes'])} minutes"
        body.append(
            f"<g><title>{escape(said)}</title>"
            f'<text x="0" y="{y + 15}" font-size="12" fill="{TEXT}">{escape(name)}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{max(length, 1)}" height="14" fill="{BAR}" stroke="{OUTLINE}" stroke-width="0.5"/>'
            f'<text x="{label_width + max(length, 1) + 4}" y="{y + 15}" font-size="11" fill="{TEXT}">{escape(_minutes(item["minutes"]))} min</text></g>'
        )
    listed = "; ".join(f"{i['name']} ({_minutes(i['minutes'])} minutes)" for i in items) or "nothing yet"
    return _svg(label_width + bar_width + 60, max(len(items), 1) * row, title, listed, body, ident)
