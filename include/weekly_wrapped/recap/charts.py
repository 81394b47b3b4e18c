"""The recap's pictures, drawn with Pillow: facts in, PNG bytes out. Pure and deterministic.

    charts(facts) -> [Chart]   the listening clock, minutes per day, top artists (each only
                               when the week has what it shows)

Each `Chart` carries its PNG, the size to show it at, an alt text and a text fallback (the
text part of the e-mail and readers who block pictures get the same facts in words).
Pictures are drawn at twice their shown size for sharp screens, on a transparent
background in mid-tone colours, so they read on light and dark mail themes alike.
Labels use DejaVu Sans (Debian's fonts-dejavu-core) when present, else Pillow's own font;
a character the font cannot draw is left out of the picture (its name stays in the text).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, features

from weekly_wrapped.recap.facts import WeekFacts
from weekly_wrapped.recap.formats import duration, hour_axis_label, hour_label, weekday_name

WIDTH = 552  # shown width in px: the 600 px e-mail less its 24 px side padding
SCALE = 2  # drawn at 2x, shown at 1x
FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
)
GREEN = (29, 185, 84)  # Spotify green: readable on white and on near-black
TEXT = (128, 128, 128, 255)  # mid grey: enough contrast on both themes
EMPTY = (128, 128, 128, 48)  # a quiet hour: faint on white, faint on black


@dataclass(frozen=True)
class Chart:
    name: str  # also the attachment's file name and Content-ID stem
    png: bytes
    width: int  # shown size in CSS px
    height: int
    alt: str
    fallback: str  # the same facts in words, for the text part


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Raqm (bundled in Pillow's wheels) lays out right-to-left names; basic layout otherwise.
    engine = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    for path in FONT_PATHS:
        if Path(path).exists():
            return ImageFont.truetype(path, size * SCALE, layout_engine=engine)
    return ImageFont.load_default(size * SCALE)


@lru_cache(maxsize=16)
def _missing_glyph(size: int) -> bytes:
    return bytes(_basic_font(size).getmask("\U0010fffd"))


@lru_cache(maxsize=16)
def _basic_font(size: int):
    font = _font(size)
    if isinstance(font, ImageFont.FreeTypeFont):
        return font.font_variant(layout_engine=ImageFont.Layout.BASIC)
    return font


def drawable(text: str, size: int) -> str:
    """`text` without the characters the font would draw as an empty box."""
    basic, missing = _basic_font(size), _missing_glyph(size)
    return "".join(ch for ch in text if ch.isspace() or bytes(basic.getmask(ch)) != missing).strip()


def _fit(draw: ImageDraw.ImageDraw, text: str, size: int, max_width: int) -> str:
    """`text`, shortened with "…" until it fits `max_width` drawn pixels."""
    font = _font(size)
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "…", font=font) > max_width:
        text = text[:-1]
    return text.rstrip() + "…"


def _png(image: Image.Image) -> bytes:
    # 64 colours are plenty for flat bars and text, and make the PNG 3x smaller and 5x faster to encode.
    buffer = io.BytesIO()
    image.quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(buffer, format="PNG")
    return buffer.getvalue()


def _canvas(height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGBA", (WIDTH * SCALE, height * SCALE), (0, 0, 0, 0))
    return image, ImageDraw.Draw(image)


def _px(value: float) -> int:
    return round(value * SCALE)


# ---- listening clock -------------------------------------------------------------------


def listening_clock(facts: WeekFacts) -> Chart | None:
    """Hour x weekday heatmap of minutes, in the user's local time."""
    clock = facts.listening_clock
    if not clock or not any(any(row) for row in clock):
        return None
    label_width, top, cell_h, gap = 48, 22, 20, 2
    cell_w = (WIDTH - label_width) / 24
    height = top + 7 * cell_h + 4
    image, draw = _canvas(height)
    font = _font(12)
    peak = max(max(row) for row in clock)
    for hour in (0, 6, 12, 18):
        draw.text((_px(label_width + hour * cell_w), _px(2)), hour_axis_label(hour, facts.locale), font=font, fill=TEXT)
    for day, row in enumerate(clock):
        y = top + day * cell_h
        name = drawable(weekday_name(day, facts.locale, "abbreviated"), 12) or str(day + 1)
        draw.text((0, _px(y + cell_h / 2 - 1)), _fit(draw, name, 12, _px(label_width - 6)), font=font, fill=TEXT,
                  anchor="lm")
        for hour, minutes in enumerate(row):
            x = label_width + hour * cell_w
            if minutes > 0:
                strength = float(minutes / peak)
                fill = (*GREEN, round(80 + 175 * strength))
            else:
                fill = EMPTY
            draw.rounded_rectangle(
                (_px(x), _px(y), _px(x + cell_w - gap), _px(y + cell_h - gap)), radius=_px(3), fill=fill
            )
    return Chart(
        name="listening-clock",
        png=_png(image),
        width=WIDTH,
        height=height,
        alt="Listening clock: minutes by hour and weekday. " + _clock_summary(facts),
        fallback="Listening clock: " + _clock_summary(facts),
    )


def _clock_summary(facts: WeekFacts, count: int = 3) -> str:
    """The busiest hours in words, e.g. "busiest hours Friday 9:00 PM (42 min), ..."."""
    cells = [
        (minutes, day, hour)
        for day, row in enumerate(facts.listening_clock)
        for hour, minutes in enumerate(row)
        if minutes > 0
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    busiest = ", ".join(
        f"{weekday_name(day, facts.locale)} {hour_label(hour, facts.locale)} ({duration(minutes)})"
        for minutes, day, hour in cells[:count]
    )
    return f"busiest hours {busiest}; music in {len(cells)} of the week's {7 * 24} hours."


# ---- minutes per day -------------------------------------------------------------------


def minutes_per_day(facts: WeekFacts) -> Chart | None:
    days = facts.minutes_by_day
    if not days or not any(minutes for _, minutes in days):
        return None
    height, bottom, top = 160, 24, 24
    slot = WIDTH / 7
    image, draw = _canvas(height)
    font = _font(12)
    peak = max(minutes for _, minutes in days)
    for index, (day, minutes) in enumerate(days):
        x0, x1 = index * slot + 10, (index + 1) * slot - 10
        bar = float(minutes / peak) * (height - bottom - top) if peak else 0
        y1 = height - bottom
        if minutes > 0:
            draw.rounded_rectangle((_px(x0), _px(y1 - max(bar, 3)), _px(x1), _px(y1)), radius=_px(4), fill=(*GREEN, 255))
        else:
            draw.rounded_rectangle((_px(x0), _px(y1 - 3), _px(x1), _px(y1)), radius=_px(1), fill=EMPTY)
        centre = _px((x0 + x1) / 2)
        value = duration(minutes)
        draw.text((centre, _px(y1 - max(bar, 3) - 4)), value, font=font, fill=TEXT, anchor="md")
        name = drawable(weekday_name(day.weekday(), facts.locale, "abbreviated"), 12) or str(index + 1)
        draw.text((centre, _px(height - 4)), _fit(draw, name, 12, _px(slot - 4)), font=font, fill=TEXT, anchor="md")
    words = ", ".join(f"{weekday_name(day.weekday(), facts.locale)} {duration(m)}" for day, m in days)
    return Chart(
        name="minutes-per-day",
        png=_png(image),
        width=WIDTH,
        height=height,
        alt=f"Minutes per day: {words}.",
        fallback=f"Minutes per day: {words}.",
    )


# ---- top artists -----------------------------------------------------------------------


def _artist_value(minutes: Decimal | None, plays: int | None) -> str:
    if minutes is not None:
        return duration(minutes)
    return f"{plays} play{'' if plays == 1 else 's'}"


def top_artists(facts: WeekFacts) -> Chart | None:
    artists = [a for a in facts.top_artists if (a.minutes or a.plays)]
    if not artists:
        return None
    by_minutes = all(a.minutes is not None for a in artists)
    values = [float(a.minutes) if by_minutes else float(a.plays or 0) for a in artists]
    row_h, rank_w, name_w, value_w = 32, 22, 180, 84
    height = row_h * len(artists)
    image, draw = _canvas(height)
    font = _font(13)
    peak = max(values) or 1
    for index, (artist, value) in enumerate(zip(artists, values)):
        y = index * row_h
        # The rank is drawn on its own, so a right-to-left name cannot move it.
        rank = f"{index + 1}."
        draw.text((0, _px(y + row_h / 2)), rank, font=font, fill=TEXT, anchor="lm")
        name = drawable(artist.name, 13) or "…"
        draw.text(
            (_px(rank_w), _px(y + row_h / 2)), _fit(draw, name, 13, _px(name_w - rank_w - 8)),
            font=font, fill=TEXT, anchor="lm",
        )
        bar = max((WIDTH - name_w - value_w) * value / peak, 3)
        draw.rounded_rectangle(
            (_px(name_w), _px(y + 6), _px(name_w + bar), _px(y + row_h - 6)), radius=_px(4), fill=(*GREEN, 255)
        )
        label = _artist_value(artist.minutes if by_minutes else None, artist.plays)
        draw.text((_px(name_w + bar + 6), _px(y + row_h / 2)), label, font=font, fill=TEXT, anchor="lm")
    words = ", ".join(
        f"{i}. {a.name} ({_artist_value(a.minutes if by_minutes else None, a.plays)})" for i, a in enumerate(artists, 1)
    )
    # The artists keep their rank by plays (the list beside the picture), so the bars, in
    # minutes, need not fall: the text says so rather than call them "top by minutes".
    described = f"Top artists by plays{', with minutes listened' if by_minutes else ''}: {words}."
    return Chart(
        name="top-artists",
        png=_png(image),
        width=WIDTH,
        height=height,
        alt=described,
        fallback=described,
    )


def charts(facts: WeekFacts) -> list[Chart]:
    """The week's pictures, in the order the e-mail shows them; a chart with nothing to show is left out."""
    drawn = (listening_clock(facts), minutes_per_day(facts), top_artists(facts))
    return [chart for chart in drawn if chart is not None]
