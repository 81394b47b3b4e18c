"""Ask Gemini for the recap intro, through the real google-genai SDK. I/O edge.

Retries are the SDK's own (tenacity inside google-genai): a few attempts with short
exponential back-off on 408/429/5xx, and a per-request timeout, so one slow or rate-
limited call cannot hold a worker for long. The caller falls back to the template recap
on any error, so an outage of Gemini never stops the e-mail.
"""

from __future__ import annotations

import logging

from weekly_wrapped.recap.prompt import RecapPrompt

log = logging.getLogger(__name__)

RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


def generate_recap_text(
    prompt: RecapPrompt,
    *,
    api_key: str,
    model: str,
    base_url: str | None = None,
    timeout_s: float = 30.0,
    attempts: int = 3,
    initial_delay_s: float = 1.0,
    max_delay_s: float = 8.0,
) -> str | None:
    """The model's text (None if it answered without text, e.g. blocked). Raises on API errors."""
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=base_url or None,  # None: Google's endpoint
            timeout=int(timeout_s * 1000),  # the SDK counts milliseconds
            retry_options=types.HttpRetryOptions(
                attempts=attempts,
                initial_delay=initial_delay_s,
                max_delay=max_delay_s,
                http_status_codes=list(RETRY_STATUSES),
            ),
        ),
    )
    try:
        response = client.models.generate_content(
            model=model,
            contents=prompt.user_prompt,
            config=types.GenerateContentConfig(
                system_instruction=prompt.system_instruction,
                temperature=0.4,
                # Roomy: on 2.5 models "thinking" tokens count against this limit too, and
                # the grounding check caps the visible answer's length anyway.
                max_output_tokens=2048,
                candidate_count=1,
            ),
        )
    finally:
        client.close()
    candidate = (response.candidates or [None])[0]
    finish = getattr(candidate, "finish_reason", None)
    usage = response.usage_metadata
    log.info(
        "gemini model=%s finish_reason=%s tokens=%s",
        model,
        finish,
        getattr(usage, "total_token_count", None),
    )
    return response.text
