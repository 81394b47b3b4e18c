"""`wrapped up`'s first step: outside demo mode, refuse the published demo secrets.

The same check as the product's (`weekly_wrapped.secrets_check`), on the values the stack would
hand Airflow (`wrapped_dev.stack.env`), so an operator who turned demo mode off learns which
settings still hold demo values before anything starts.
"""

from __future__ import annotations

from weekly_wrapped import secrets_check
from wrapped_dev.config import Settings

# The product's setting -> the local stack's name for it.
LOCAL_NAMES = {
    secrets_check.TOKEN_SECRET: "WRAPPED_TOKEN_SECRET",
    secrets_check.LINK_SECRET: "WRAPPED_LINK_SECRET",
    secrets_check.connection_setting("postgres_default"): "WRAPPED_PG_PASSWORD",
    secrets_check.connection_setting("spotify_default"): "SPOTIFY_CLIENT_SECRET",
    secrets_check.connection_setting("gemini_default"): "GEMINI_API_KEY",
    secrets_check.connection_setting("smtp_default"): "WRAPPED_SMTP_PASSWORD",
}


def settings_values(settings: Settings) -> dict[str, str | None]:
    """The checked settings as the stack sets them in Airflow."""
    return {
        secrets_check.TOKEN_SECRET: settings.token_secret,
        secrets_check.LINK_SECRET: settings.link_secret,
        secrets_check.connection_setting("postgres_default"): settings.pg_password,
        secrets_check.connection_setting("spotify_default"): settings.spotify_client_secret,
        secrets_check.connection_setting("gemini_default"): settings.gemini_api_key,
        secrets_check.connection_setting("smtp_default"): settings.smtp_password,
    }


def problems(settings: Settings) -> list[str]:
    """`secrets_check.check` of the stack's settings, each line saying which variable to set."""
    found = secrets_check.check(settings_values(settings), settings.demo_mode)
    for setting, local in LOCAL_NAMES.items():
        found = [p.replace(setting, f"{local} ({setting})", 1) if p.startswith(setting) else p for p in found]
    return found


def refuse_unsafe(settings: Settings) -> None:
    """Exit with a clear message (and status 1) when the stack must not start with these settings."""
    found = problems(settings)
    if found:
        raise SystemExit(secrets_check.refusal(found) + "\nSet them in the environment or .env, or run "
                         "the demo with WRAPPED_DEMO_MODE=true (the default).")
