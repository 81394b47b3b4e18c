"""Read Weekly Wrapped's Airflow Connections into plain values for `weekly_wrapped` code.

DAG tasks call these (inside the task, never at parse time) and hand the results to
the domain functions, which know nothing about Airflow. The local stack defines the
connections from the environment (`AIRFLOW_CONN_*`, see `weekly_wrapped.stack.env`);
in production they are edited in the UI or a secrets backend.
"""

from __future__ import annotations

from dataclasses import dataclass


def _get(conn_id: str):
    from airflow.sdk import Connection

    return Connection.get(conn_id)


WAREHOUSE_CONN_ID = "postgres_default"
KAFKA_CONN_ID = "kafka_default"
SPOTIFY_CONN_ID = "spotify_default"
GEMINI_CONN_ID = "gemini_default"
SMTP_CONN_ID = "smtp_default"
SPARK_CONN_ID = "spark_default"


def warehouse_dsn(conn_id: str = WAREHOUSE_CONN_ID) -> str:
    c = _get(conn_id)
    return (
        f"host={c.host} port={c.port or 5432} dbname={c.schema} "
        f"user={c.login} password={c.password}"
    )


def kafka_config(conn_id: str = KAFKA_CONN_ID) -> dict:
    """librdkafka settings (at least `bootstrap.servers`) from the connection's extra."""
    return dict(_get(conn_id).extra_dejson)


@dataclass(frozen=True)
class SpotifyApp:
    client_id: str
    client_secret: str
    api_base: str | None  # None: the real https://api.spotify.com/v1/
    accounts_base: str | None  # None: the real https://accounts.spotify.com


def spotify_app(conn_id: str = SPOTIFY_CONN_ID) -> SpotifyApp:
    c = _get(conn_id)
    extra = c.extra_dejson
    return SpotifyApp(c.login, c.password, extra.get("api_base"), extra.get("accounts_base"))


@dataclass(frozen=True)
class GeminiApi:
    api_key: str
    model: str
    base_url: str | None  # None: Google's endpoint


def gemini_api(conn_id: str = GEMINI_CONN_ID) -> GeminiApi:
    c = _get(conn_id)
    extra = c.extra_dejson
    return GeminiApi(c.password, extra.get("model", "gemini-2.5-flash"), extra.get("base_url"))


def spark_master(conn_id: str = SPARK_CONN_ID) -> str:
    c = _get(conn_id)
    return f"{c.host}:{c.port}" if c.port else c.host
