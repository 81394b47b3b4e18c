"""The prompt carries only the row's numbers; the model's answer may use no others."""

import json
import re

import pytest
from recap_helpers import make_row

from weekly_wrapped.recap.facts import facts_from_row
from weekly_wrapped.recap.grounding import (
    allowed_numbers,
    choose_recap,
    grounding_problems,
    numbers_in,
    template_recap,
)
from weekly_wrapped.recap.prompt import build_prompt


@pytest.fixture
def facts():
    return facts_from_row(make_row())


def facts_json(prompt_text: str) -> dict:
    return json.loads(prompt_text[prompt_text.index("{") : prompt_text.rindex("}") + 1])


def test_prompt_facts_are_the_rows_numbers(facts):
    prompt = build_prompt(facts)
    sent = facts_json(prompt.user_prompt)
    assert sent == prompt.facts
    assert sent["plays"] == 87 and sent["minutes_listened"] == 312.4
    assert sent["distinct_tracks"] == 61 and sent["distinct_artists"] == 23
    assert sent["top_artists"][0] == {"name": "Björk", "plays": 20}
    assert sent["top_tracks"][0] == {"name": "Hyperballad", "by": "Björk", "plays": 9}
    assert sent["busiest_hour"] == "21:00" and sent["busiest_weekday"] == "Friday"
    assert sent["plays_change_vs_previous_week"] == 23 and sent["minutes_change_vs_previous_week"] == 62.4
    assert "top_genres" not in sent  # empty lists are left out rather than invite guesses
    assert "email" not in json.dumps(sent) and "ada@example.com" not in prompt.user_prompt


def test_prompt_outside_the_facts_has_no_numbers(facts):
    prompt = build_prompt(facts)
    outside = prompt.user_prompt.replace(json.dumps(prompt.facts, ensure_ascii=False, indent=2), "")
    assert not re.search(r"\d", outside)
    # The instruction: use no other numbers.
    assert "Write no other numbers" in prompt.system_instruction


def test_gap_is_told_to_the_model():
    facts = facts_from_row(make_row(has_gap=True))
    assert build_prompt(facts).facts["listening_data_incomplete"] is True
    assert "listening_data_incomplete" not in build_prompt(facts_from_row(make_row())).facts


def test_numbers_in_text():
    assert numbers_in("87 plays, 312.4 minutes, 1,234 seconds at 21:00") == numbers_in("87 312.4 1234 21 0")


def test_grounded_answer_is_used(facts):
    answer = "You pressed play 87 times for 312.4 minutes, and Björk led with 20 plays. Friday at 21:00 was peak time."
    text, source, problems = choose_recap(answer, facts)
    assert (text, source, problems) == (answer, "gemini", [])


def test_names_with_digits_and_rounded_forms_are_fine(facts):
    assert grounding_problems("Even Blink-182 made your top five, over 312.40 minutes.", facts.as_prompt_facts()) == []


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("You played 88 tracks this week!", "numbers not in the facts: 88"),
        ("You're in the top 1% of Björk fans.", "numbers not in the facts: 1"),
        ("That's about 5.2 hours of music.", "numbers not in the facts: 5.2"),
        ("Listen again at https://open.spotify.com", "contains a link"),
        ("", "empty answer"),
        (None, "empty answer"),
        ("la " * 500, "too long"),
    ],
)
def test_ungrounded_answers_fall_back_to_the_template(facts, answer, reason):
    text, source, problems = choose_recap(answer, facts)
    assert source == "template" and text == template_recap(facts)
    assert any(reason in p for p in problems), problems


def test_template_recap_is_always_grounded():
    for row in (make_row(), make_row(has_gap=True, top_tracks=[], top_artists=[]), {"user_id": "u", "week_start": "2026-11-16"}):
        facts = facts_from_row(row)
        assert grounding_problems(template_recap(facts), facts.as_prompt_facts()) == []
    assert "312.4 minutes" in template_recap(facts_from_row(make_row()))


def test_allowed_numbers_cover_dates_and_names(facts):
    allowed = allowed_numbers(facts.as_prompt_facts())
    assert numbers_in("2026 11 16 22 182") <= allowed


def test_skip_rate_is_a_fact_as_the_email_shows_it(facts):
    sent = build_prompt(facts).facts
    assert (sent["skip_rate_percent"], sent["skips"]) == (25, 29)
    assert sent["most_skipped_tracks"][0] == {"name": "All Star", "by": "Smash Mouth", "skips": 6}
    assert grounding_problems("You skipped 25% of what you started, 29 times in all.", sent) == []
    # the mart's fraction is not what the e-mail shows: the model may not write it
    assert grounding_problems("Your skip rate was 0.25.", sent)
    # a week no export covered: nothing about skips reaches the model
    unknown = facts_from_row(make_row(skip_rate=None)).as_prompt_facts()
    assert not {"skip_rate_percent", "skips", "most_skipped_tracks"} & set(unknown)
