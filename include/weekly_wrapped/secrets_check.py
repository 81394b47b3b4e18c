"""Refuse to run with a published secret, outside demo mode.

Every secret value this repository publishes (the local stack's demo keys and passwords,
the fakes' credentials, the placeholders of `.env.example`) is listed in `PUBLISHED`. Outside
demo mode (`wrapped_demo_mode` not "true") a setting holding one of them is refused by:
- `wrapped up` (the local stack, `wrapped_dev.stack.secrets`), before starting anything;
- docker compose's `airflow-init` (`python -m weekly_wrapped.secrets_check`), so no Airflow
  service of the compose stack starts;
- the api-server plugin, which answers the pages with a friendly 503 (`guard_app`);
- the DAG tasks that read secrets (`refuse_in_task`: an AirflowFailException).
In every mode the two keys must be set and differ: the link secret signs what travels in
links and cookies, the token keys encrypt stored refresh tokens, and one leaking must not
give away the other.

A problem names the setting (Variable, Connection or Airflow option), never its value.
This module is the product's: it never imports the dev harness (`wrapped_dev`), whose own
demo values a test compares with these.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, Mapping

from cryptography.fernet import Fernet

log = logging.getLogger(__name__)

# The local stack's demo keys (include/wrapped_dev/config.py publishes the same values).
DEMO_TOKEN_SECRET = "ZGVtby1rZXktZG8tbm90LXVzZS1pbi1wcm9kdWN0aW8="
DEMO_LINK_SECRET = "demo-link-secret-do-not-use-in-production"

# Published value -> where it is published (said in the problem instead of the value).
PUBLISHED = {
    DEMO_TOKEN_SECRET: "the local stack's demo token key",
    DEMO_LINK_SECRET: "the local stack's demo link secret",
    "demo-client-secret": "the fake Spotify's client secret",
    "demo-gemini-key": "the fake Gemini's key",
    "wrapped": "the local stack's database password",
    # .env.example
    "change-me": "a placeholder of .env.example",
    "change-me-to-a-long-random-string": "a placeholder of .env.example",
    "cGxhY2Vob2xkZXItd3JhcHBlZC1rZXktY2hhbmdlLW0=": "a placeholder of .env.example",
    "cGxhY2Vob2xkZXItYWlyZmxvdy1rZXktY2hhbmdlLW0=": "a placeholder of .env.example",
    "your-spotify-client-secret": "a placeholder of .env.example",
    "your-gemini-api-key": "a placeholder of .env.example",
}

# The settings checked, as `check` names them: Airflow Variables, Connection passwords and (in
# docker compose, from the environment) Airflow's own secrets.
TOKEN_SECRET = "Variable wrapped_token_secret"
LINK_SECRET = "Variable wrapped_link_secret"
# Connections whose password is a secret: the warehouse's, the Spotify client secret, the
# Gemini API key, the SMTP server's.
CONNECTION_PASSWORDS = ("postgres_default", "spotify_default", "gemini_default", "smtp_default")
AIRFLOW_OPTIONS = ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")

HOW_TO_FIX = "set your own (README, \"Secrets and keys\")"


def connection_setting(conn_id: str) -> str:
    return f"Connection {conn_id} password"


def check(values: Mapping[str, str | None], demo_mode: bool) -> list[str]:
    """What is wrong with these settings (setting name -> value; None: not set), one line each.

    Outside demo mode a published value is refused wherever it appears; in every mode both
    keys must be set, valid and different. The lines name settings, never values.
    """
    problems = []
    token_keys = [k.strip() for k in (values.get(TOKEN_SECRET) or "").split(",") if k.strip()]
    link_secret = (values.get(LINK_SECRET) or "").strip()
    if not token_keys:
        problems.append(f"{TOKEN_SECRET} is not set: Fernet keys, comma-separated, newest first")
    for position, key in enumerate(token_keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            problems.append(f"{TOKEN_SECRET}: key {position} of {len(token_keys)} is not a Fernet key "
                            "(32 url-safe base64-encoded bytes)")
    if not link_secret:
        problems.append(f"{LINK_SECRET} is not set: any long random string")
    elif link_secret in token_keys or link_secret == ",".join(token_keys):
        problems.append(f"{LINK_SECRET} must differ from {TOKEN_SECRET}: one key signs links, "
                        "the other encrypts stored tokens")
    if not demo_mode:
        for setting, value in values.items():
            parts = token_keys if setting == TOKEN_SECRET else [(value or "").strip()]
            for position, part in enumerate(parts, start=1):
                if part in PUBLISHED:
                    which = f" (key {position})" if setting == TOKEN_SECRET and len(parts) > 1 else ""
                    problems.append(f"{setting}{which} holds {PUBLISHED[part]}, which is public: {HOW_TO_FIX}")
    return problems


# --- reading the settings -------------------------------------------------------------------------

def airflow_values() -> tuple[dict[str, str | None], bool]:
    """(the checked settings as Airflow gives them to tasks and the api-server, demo mode)."""
    from weekly_wrapped.airflow import connections as conns

    values: dict[str, str | None] = {TOKEN_SECRET: conns.optional_variable("wrapped_token_secret"),
                                     LINK_SECRET: conns.optional_variable("wrapped_link_secret")}
    for conn_id in CONNECTION_PASSWORDS:
        values[connection_setting(conn_id)] = conns.connection_password(conn_id)
    demo_mode = conns.variable("wrapped_demo_mode") == "true"  # as the pages read it
    return values, demo_mode


def environment_values(environ: Mapping[str, str] = os.environ) -> dict[str, str | None]:
    """Airflow's own secrets, as docker compose passes them to its containers."""
    return {f"Airflow option {name}": environ.get(name) for name in AIRFLOW_OPTIONS}


def refusal(problems: list[str]) -> str:
    return "Weekly Wrapped refuses to run with these secrets:\n" + "\n".join(f"- {p}" for p in problems)


def airflow_problems() -> list[str]:
    """`check` of the settings Airflow gives tasks and the api-server."""
    values, demo_mode = airflow_values()
    return check(values, demo_mode)


def refuse_in_task() -> None:
    """For DAG tasks that read secrets: fail (no retry) when a setting is refused."""
    from airflow.sdk.exceptions import AirflowFailException

    problems = airflow_problems()
    if problems:
        raise AirflowFailException(refusal(problems))


# --- the pages ----------------------------------------------------------------------------------

UNAVAILABLE_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Weekly Wrapped is not ready</title>"
    "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}</style>"
    "</head><body><h1>Weekly Wrapped is not ready</h1><p>This Weekly Wrapped is not set up safely yet, "
    "so it is not taking sign-ups. Please try again later.</p>"
    "<p><small>Operator: the api-server's log says which settings to change.</small></p></body></html>")


def guard_app(app, problems: Callable[[], list[str]] = airflow_problems):
    """Make a FastAPI app answer every request with a friendly 503 while `problems()` finds any.
    Checked per request (as the pages read their configuration), so a fixed Variable applies at once."""
    from fastapi.responses import HTMLResponse
    from starlette.concurrency import run_in_threadpool

    @app.middleware("http")
    async def refuse_unsafe_setup(request, call_next):
        try:
            found = await run_in_threadpool(problems)  # Variables may come from the database
        except Exception as exc:  # the settings cannot even be read: still no 500
            found = [f"the settings could not be read ({type(exc).__name__})"]
        if found:
            log.error(refusal(found))
            return HTMLResponse(UNAVAILABLE_PAGE, status_code=503, headers={"Retry-After": "3600"})
        return await call_next(request)

    return app


def main() -> int:
    """docker compose's airflow-init: exit 1, saying why, when a setting is refused."""
    values, demo_mode = airflow_values()
    problems = check({**values, **environment_values()}, demo_mode)
    if problems:
        print(refusal(problems) + "\n(demo secrets are accepted only with WRAPPED_DEMO_MODE=true)",
              file=sys.stderr)
        return 1
    print("secrets: ok" + (" (demo mode)" if demo_mode else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
