"""How the recap writes durations, weekdays, hours and dates for people. Pure.

Weekday and hour names follow the user's locale (Babel, CLDR data); a locale Babel does
not know falls back to English, so a typo at onboarding never stops the e-mail.
"""

from __future__ import annotations

from datetime import date, time
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time, get_day_names

DEFAULT_LOCALE = "en"
WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@lru_cache(maxsize=256)
def locale_of(name: str | None) -> Locale:
    """The Babel locale for "de", "pt-BR", "en_GB", ...; English when unknown or empty."""
    try:
        return Locale.parse((name or DEFAULT_LOCALE).strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse(DEFAULT_LOCALE)


def whole_minutes(minutes: Decimal | float | int | None) -> int:
    return int(Decimal(str(minutes or 0)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def duration(minutes: Decimal | float | int | None) -> str:
    """Minutes as people read them: "18 h 34 min", "2 h", "34 min", "0 min"."""
    total = whole_minutes(minutes)
    hours, rest = divmod(abs(total), 60)
    sign = "-" if total < 0 else ""
    if hours and rest:
        return f"{sign}{hours} h {rest} min"
    if hours:
        return f"{sign}{hours} h"
    return f"{sign}{rest} min"


def weekday_name(index: int, locale: str | None, width: str = "wide") -> str:
    """The name of weekday `index` (0 = Monday), e.g. "Friday", "Freitag"; width "abbreviated" gives "Fri"."""
    return get_day_names(width, locale=locale_of(locale))[index]


def weekday_index(english_name: str | None) -> int | None:
    """0-6 (Monday first) for the mart's English weekday name; None when unknown."""
    if not english_name:
        return None
    try:
        return WEEKDAYS_EN.index(english_name.strip().capitalize())
    except ValueError:
        return None


def uses_12_hour_clock(locale: str | None) -> bool:
    return "h" in locale_of(locale).time_formats["short"].pattern


def hour_label(hour: int, locale: str | None) -> str:
    """The start of a local hour, e.g. "21:00" (de) or "9:00 PM" (en)."""
    return _plain_spaces(format_time(time(hour % 24), "short", locale=locale_of(locale)))


def _plain_spaces(text: str) -> str:
    # CLDR puts a narrow no-break space before "PM"; plain-text mail readers show it poorly.
    return text.replace("\u202f", " ")


def hour_axis_label(hour: int, locale: str | None) -> str:
    """A compact hour for a chart axis: "9 PM" where the locale uses a 12-hour clock, else "21"."""
    if uses_12_hour_clock(locale):
        return _plain_spaces(format_time(time(hour % 24), "h a", locale=locale_of(locale)))
    return f"{hour % 24:02d}"


def day_label(day: date, locale: str | None) -> str:
    """E.g. "Mon 16 Nov 2026", "Mo. 16 Nov. 2026"."""
    return format_date(day, "EEE d MMM y", locale=locale_of(locale))


def is_right_to_left(locale: str | None) -> bool:
    return locale_of(locale).character_order == "right-to-left"
