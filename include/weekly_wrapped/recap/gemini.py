"""Ask Gemini for a structured (JSON) answer, through the real google-genai SDK. I/O edge.

`response_mime_type="application/json"` with `response_schema=<pydantic model>` makes the
model answer with JSON of that shape; we still parse and check it ourselves (grounding.py),
since a model may break the schema, and we return the raw text for that.

Transport retries are the SDK's own (tenacity inside google-genai): a short exponential
back-off on 408/429/5xx and on timeouts, and a per-request timeout, so one slow or rate-
limited call cannot hold a worker for long. Any error is raised; `ai.write_intro` then uses
the template intro, so an outage of Gemini never stops the e-mail.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from pydantic import BaseModel

from weekly_wrapped.recap.prompt import RecapPrompt

log = logging.getLogger(__name__)

RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


def generate_json(
    prompt: RecapPrompt,
    schema: type[BaseModel],
    *,
    api_key: str,
    model: str,
    base_url: str | None = None,
    timeout_s: float = 20.0,
    attempts: int = 2,
    initial_delay_s: float = 1.0,
    max_delay_s: float = 4.0,
) -> str | None:
    """The model's JSON text (None when it answered without text, e.g. blocked). Raises on API errors."""
    from google.genai import types

    client = _client(api_key, base_url or None, timeout_s, attempts, initial_delay_s, max_delay_s)
    response = client.models.generate_content(
        model=model,
        contents=prompt.user_prompt,
        config=types.GenerateContentConfig(
            system_instruction=prompt.system_instruction,
            response_mime_type="application/json",
            response_schema=schema,
            temperature=0.4,
            # Roomy: on 2.5 models "thinking" tokens count against this limit too, and
            # the grounding check caps the visible answer's length anyway.
            max_output_tokens=2048,
            candidate_count=1,
        ),
    )
    candidate = (response.candidates or [None])[0]
    usage = response.usage_metadata
    log.info(
        "gemini model=%s schema=%s finish_reason=%s tokens=%s",
        model,
        schema.__name__,
        getattr(candidate, "finish_reason", None),
        getattr(usage, "total_token_count", None),
    )
    return response.text


# One client per settings, kept for the worker's life: building one loads the TLS
# certificates and costs about as much CPU as rendering a recap. Its httpx client is safe
# to share between threads.
@lru_cache(maxsize=8)
def _client(api_key: str, base_url: str | None, timeout_s: float, attempts: int,
            initial_delay_s: float, max_delay_s: float):
    from google import genai
    from google.genai import types

    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=base_url,  # None: Google's endpoint
            timeout=int(timeout_s * 1000),  # the SDK counts milliseconds
            retry_options=types.HttpRetryOptions(
                attempts=attempts,
                initial_delay=initial_delay_s,
                max_delay=max_delay_s,
                http_status_codes=list(RETRY_STATUSES),
            ),
        ),
    )
