"""Is the model's recap grounded in the facts? And the plain recap used when it is not.

The check is deliberately strict and simple: every number written in the answer must be
a number that appears in the facts (the facts are already rounded as the e-mail shows
them). A number the model computed or made up sends us to the template recap instead.
Spelled-out numbers ("five") are not checked.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation

from weekly_wrapped.recap.facts import WeekFacts

MAX_RECAP_CHARS = 1200
# Digits with optional thousands separators or a decimal part: 1,234 / 40.5 / 21
NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def numbers_in(text: str) -> set[Decimal]:
    """Every number written with digits in `text`, as a normalized Decimal (sign ignored)."""
    found = set()
    for token in NUMBER.findall(text):
        try:
            found.add(Decimal(token.replace(",", "")).normalize())
        except InvalidOperation:  # pragma: no cover - the regex only matches numbers
            continue
    return found


def allowed_numbers(facts: dict) -> set[Decimal]:
    """Every number in the facts: values, and digits inside names and dates."""
    return numbers_in(json.dumps(facts, ensure_ascii=False))


def grounding_problems(text: str | None, facts: dict) -> list[str]:
    """Why `text` may not be used as the recap (empty list: it may)."""
    if not text or not text.strip():
        return ["empty answer"]
    problems = []
    if len(text) > MAX_RECAP_CHARS:
        problems.append(f"too long ({len(text)} characters)")
    if re.search(r"https?://|www\.", text, re.IGNORECASE):
        problems.append("contains a link")
    unknown = numbers_in(text) - allowed_numbers(facts)
    if unknown:
        problems.append("numbers not in the facts: " + ", ".join(sorted(str(n) for n in unknown)))
    return problems


def template_recap(facts: WeekFacts) -> str:
    """The plain recap, built only from the facts (used when Gemini fails or is ungrounded)."""
    sentences = [f"This week you listened to {facts.minutes} minutes of music across {facts.plays} plays."]
    if facts.top_artists:
        sentences.append(f"Your top artist was {facts.top_artists[0].name}.")
    if facts.top_tracks:
        sentences.append(f"Your most-played track was {facts.top_tracks[0].name}.")
    if facts.has_gap:
        sentences.append("Some of your listening may be missing from this recap.")
    return " ".join(sentences)


def choose_recap(model_text: str | None, facts: WeekFacts) -> tuple[str, str, list[str]]:
    """(recap text, source "gemini"/"template", problems found in the model's answer)."""
    text = (model_text or "").strip()
    problems = grounding_problems(text, facts.as_prompt_facts())
    if problems:
        return template_recap(facts), "template", problems
    return text, "gemini", []
