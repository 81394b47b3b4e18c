"""The Gemini prompt for one user's week. Pure: facts in, text out."""

from __future__ import annotations

import json
from dataclasses import dataclass

from weekly_wrapped.recap.facts import WeekFacts

SYSTEM_INSTRUCTION = """\
You write the opening paragraph of a friendly weekly music recap e-mail ("Weekly Wrapped").
Rules:
- Use ONLY the facts in the FACTS JSON. Do not invent artists, tracks, albums, genres or events.
- Every number you write must appear exactly as it is written in FACTS. Write no other numbers:
  no rankings, percentages, averages, estimates or dates of your own.
- 2 to 4 sentences, second person ("you"), plain text: no Markdown, no lists, no links, no emoji.
- If listening_data_incomplete is true, say gently that some listening may be missing.
"""


@dataclass(frozen=True)
class RecapPrompt:
    system_instruction: str
    user_prompt: str
    facts: dict


def build_prompt(facts: WeekFacts) -> RecapPrompt:
    """The system instruction and user prompt; the facts travel as one JSON object."""
    fact_dict = facts.as_prompt_facts()
    user_prompt = (
        "FACTS (JSON):\n"
        + json.dumps(fact_dict, ensure_ascii=False, indent=2, sort_keys=False)
        + "\n\nWrite the opening paragraph of this listener's weekly recap, following the rules."
    )
    return RecapPrompt(SYSTEM_INSTRUCTION, user_prompt, fact_dict)
