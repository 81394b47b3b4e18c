"""May the model's answer be shown? Filling in our names and numbers, and the template intro. Pure.

The model writes names and numbers only as `{placeholders}` (see prompt.py). Its answer is
used only when:
- it parses as the schema (`IntroAnswer`);
- every `{...}` in it is a placeholder or number slot we gave, and no brace stands alone;
- it types no digit outside a placeholder. A typed digit is either copied (a slot would have
  done) or made up; refusing both is simpler and stricter than matching numbers;
- it holds no link, and the intro and personality are within their length bounds.
Then `fill` replaces each placeholder with our text in ONE pass, so a name that looks like a
placeholder ("{artist_2}") or like an instruction is only ever shown as that name.
Spelled-out numbers ("five") are not checked.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from weekly_wrapped.recap.facts import WeekFacts
from weekly_wrapped.recap.prompt import IntroAnswer, Slots, build_slots, is_first_known_week

PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")
LINK = re.compile(r"https?:|www\.|\b[\w-]+\.(?:com|net|org|io|fm|ly)\b", re.IGNORECASE)
INTRO_CHARS = (40, 700)  # bounds of the model's text, placeholders unfilled
PERSONALITY_CHARS = (8, 240)


def text_problems(text: str, slots: Slots, what: str, bounds: tuple[int, int]) -> list[str]:
    """Why one field of the answer may not be shown (empty list: it may)."""
    text = text.strip()
    if not text:
        return [f"{what} is empty"]
    problems = []
    low, high = bounds
    if not low <= len(text) <= high:
        problems.append(f"{what} is {len(text)} characters long, not {low} to {high}")
    known = slots.texts()
    unknown = sorted({key for key in PLACEHOLDER.findall(text) if key not in known})
    if unknown:
        problems.append(f"{what} uses placeholders we did not give: " + ", ".join("{" + k + "}" for k in unknown))
    outside = PLACEHOLDER.sub(" ", text)
    if "{" in outside or "}" in outside:
        problems.append(f"{what} has a brace outside a placeholder")
    digits = re.findall(r"\d+", outside)
    if digits:
        problems.append(f"{what} types numbers itself ({', '.join(digits)}) instead of using the number slots")
    if LINK.search(outside):
        problems.append(f"{what} contains a link")
    return problems


def answer_problems(raw: str | None, slots: Slots) -> tuple[IntroAnswer | None, list[str]]:
    """(the parsed answer, why it may not be shown); the answer is None when it did not parse."""
    if raw is None or not raw.strip():
        return None, ["no answer"]
    try:
        answer = IntroAnswer.model_validate_json(raw)
    except ValidationError as exc:
        return None, [f"the answer is not the JSON asked for ({exc.error_count()} errors)"]
    problems = text_problems(answer.intro, slots, "intro", INTRO_CHARS)
    problems += text_problems(answer.personality, slots, "personality", PERSONALITY_CHARS)
    return answer, problems


def fill(text: str, texts: dict[str, str]) -> str:
    """`text` with every `{key}` replaced by `texts[key]`, in one pass (a filled name is never read again)."""
    return PLACEHOLDER.sub(lambda m: texts.get(m.group(1), m.group(0)), text.strip())


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


def template_intro(facts: WeekFacts) -> str:
    """The intro our code writes itself: used without Gemini, or when its answer may not be shown.

    Written with the same placeholders and `fill` as the model's answer; reads well for a
    first week, a short history and a week without plays.
    """
    slots = build_slots(facts)
    incomplete = "listening_data_incomplete" in slots.context
    first_week = is_first_known_week(facts)
    sentences = []
    if facts.plays == 0:
        if first_week:
            sentences.append("Welcome to Weekly Wrapped! We started following your listening this week, "
                             "and no plays have reached us yet.")
        else:
            sentences.append("No plays reached us this week.")
        sentences.append("Press play, and next Monday's recap will have more to tell.")
    else:
        if first_week:
            sentences.append("Welcome to Weekly Wrapped! This first recap covers the plays we hold since you joined.")
        sentences.append(f"This week you listened for {{listening_time}} across {{plays}} {_plural(facts.plays, 'play')}.")
        if "artist_1" in slots.names:
            sentences.append("Your top artist was {artist_1}.")
        if "track_1" in slots.names:
            by = " by {track_1_by}" if "track_1_by" in slots.names else ""
            sentences.append(f"Your most-played track was {{track_1}}{by}.")
        if facts.plays_pending_metadata:
            one = facts.plays_pending_metadata == 1
            sentences.append(f"{{plays_pending}} {'play is' if one else 'plays are'} still being looked up, "
                             "so the lists rank what we know so far.")
    if incomplete:
        sentences.append("Some of your listening may be missing from this recap.")
    return fill(" ".join(sentences), slots.texts())
