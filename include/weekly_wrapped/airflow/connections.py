"""Weekly Wrapped's Airflow Connections and Variables, read into plain values.

The one place where the product reads its configuration: DAG tasks and the onboarding page
call these (inside a task or request, never at parse time) and hand plain values to the
stage code, which knows nothing about Airflow, and to what they start (the Spark consumer,
dbt). Connections and Variables come from Airflow: `AIRFLOW_CONN_*` / `AIRFLOW_VAR_*`
environment variables (the local stack and docker-compose.yaml build them from the same
`.env`), the UI, or a secrets backend. The README lists every one.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weekly_wrapped.spotify.client import SpotifyApp
    from weekly_wrapped.streaming.supervisor import ConsumerConfig

WAREHOUSE_CONN_ID = "postgres_default"
KAFKA_CONN_ID = "kafka_default"
SPOTIFY_CONN_ID = "spotify_default"
GEMINI_CONN_ID = "gemini_default"
SMTP_CONN_ID = "smtp_default"
SPARK_CONN_ID = "spark_default"
MUSICBRAINZ_CONN_ID = "musicbrainz_default"

# Variables: name -> default. Airflow masks values of names holding "secret" in its logs and UI.
VARIABLE_DEFAULTS = {
    # Fernet keys that encrypt stored Spotify refresh tokens, comma-separated, newest first
    # (MultiFernet: the first encrypts, all decrypt, so a new key can be rolled in): required.
    "wrapped_token_secret": None,
    "wrapped_link_secret": None,  # signs links in e-mails, the OAuth state and page cookies: required
    "wrapped_demo_mode": "false",  # "true" only for the demo: no invite needed, demo secrets accepted
    "wrapped_public_url": None,  # where people reach the api-server, e.g. https://wrapped.example.org
    "wrapped_admin_email": "",  # the operator's address for alerts ("": no alerts)
    "wrapped_alert_stale_poll_hours": "6",  # alert when an active user has not been polled successfully this long
    # Users per mapped `ingest_batch` task. Large, so that 1,000 users are one wave of parallel
    # batches: each wave starts together and spends its start-up (seconds) with the shared
    # budget (ingest.budget) idle. Measured: batches of 250 -> ratio 1.09, of 50 -> 1.44 to 1.90.
    "wrapped_ingest_batch_size": "250",
    "wrapped_ingest_threads": "8",  # users polled at once inside a batch: enough to keep the budget busy
    "wrapped_spotify_rps": "10",  # the Spotify app's request budget per second, shared by a run
    "wrapped_metadata_backfill_per_run": "200",  # exported tracks looked up per `spotify_ingest` run
    "wrapped_track_resolution_per_run": "200",  # exported name pairs searched per `spotify_ingest` run
    # "true": the recap sends each user's top artist NAMES to Gemini for "three artists to try"
    # (off by default: Spotify's Developer Policy forbids ingesting Spotify content into AI models).
    "wrapped_ai_recommendations": "false",
    # Artist genres from MusicBrainz: off unless the operator agrees to send artist names there.
    "wrapped_musicbrainz_genres": "false",
    "wrapped_musicbrainz_genres_per_run": "120",  # artists looked up per `spotify_ingest` run (1 a second: 2 min)
    # dbt's logs; the cosmos tasks read it through a template with this default (marts.cosmos_config).
    "wrapped_dbt_artifacts_dir": str(Path(tempfile.gettempdir()) / "weekly_wrapped-dbt"),
    # Exports uploaded on people's pages (page.imports): a folder the api-server writes and the workers read.
    "wrapped_import_dir": str(Path(tempfile.gettempdir()) / "weekly_wrapped-imports"),
}


def _connection(conn_id: str):
    from airflow.sdk import Connection

    return Connection.get(conn_id)


def variable(name: str) -> str:
    """A Weekly Wrapped Variable, or its default; a missing required one is an error that names it."""
    from airflow.sdk import Variable

    default = VARIABLE_DEFAULTS[name]
    value = Variable.get(name, default=default)
    if value is None:
        raise LookupError(f"Airflow Variable {name!r} is not set (AIRFLOW_VAR_{name.upper()})")
    return value


def optional_variable(name: str) -> str | None:
    """A Variable's value, None when it is not set (for checks that report every gap at once)."""
    from airflow.sdk import Variable

    return Variable.get(name, default=None)


def connection_password(conn_id: str) -> str | None:
    """A Connection's password; None when the Connection is not defined."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return _connection(conn_id).password
    except AirflowNotFoundException:
        return None


def warehouse_dsn(conn_id: str = WAREHOUSE_CONN_ID) -> str:
    c = _connection(conn_id)
    return (
        f"host={c.host} port={c.port or 5432} dbname={c.schema} "
        f"user={c.login} password={c.password}"
    )


def kafka_config(conn_id: str = KAFKA_CONN_ID) -> dict:
    """librdkafka settings (at least `bootstrap.servers`) from the connection's extra."""
    return dict(_connection(conn_id).extra_dejson)


def spotify_app(conn_id: str = SPOTIFY_CONN_ID) -> SpotifyApp:
    """The Spotify app: client id/secret as login/password; extra `api_base`, `accounts_base`
    (unset: the real Spotify) and `redirect_uri` (the onboarding page's callback)."""
    # Imported here, as the supervisor below: every dbt_build task parses a DAG that imports this
    # module (for VARIABLE_DEFAULTS), and spotipy (with redis) alone took 0.4 s of each parse.
    from weekly_wrapped.spotify.client import SpotifyApp

    c = _connection(conn_id)
    extra = c.extra_dejson
    return SpotifyApp(c.login, c.password, extra.get("api_base"), extra.get("accounts_base"),
                      extra["redirect_uri"])


@dataclass(frozen=True)
class GeminiApi:
    api_key: str
    model: str
    base_url: str | None  # None: Google's endpoint

    def __repr__(self) -> str:  # the key never reaches a log line
        return f"GeminiApi(model={self.model!r}, base_url={self.base_url!r})"


def gemini_api(conn_id: str = GEMINI_CONN_ID) -> GeminiApi:
    c = _connection(conn_id)
    extra = c.extra_dejson
    return GeminiApi(c.password, extra.get("model", "gemini-2.5-flash"), extra.get("base_url"))


def smtp_from(conn_id: str = SMTP_CONN_ID) -> str:
    """The recap's From address: the SMTP connection's `from_email`."""
    return _connection(conn_id).extra_dejson["from_email"]


def musicbrainz_config(conn_id: str = MUSICBRAINZ_CONN_ID):
    """MusicBrainz's web service: extra `base_url` (unset: musicbrainz.org), `contact` (an e-mail
    or URL for the User-Agent MusicBrainz requires; unset: the recap's From address) and
    `requests_per_second` (unset: 1, musicbrainz.org's rule; raise it only for a mirror of your own)."""
    from email.utils import parseaddr

    from weekly_wrapped.ingest.genres import DEFAULT_BASE_URL, REQUESTS_PER_SECOND, MusicBrainzConfig

    extra = _connection(conn_id).extra_dejson
    contact = extra.get("contact") or parseaddr(smtp_from())[1]
    rate = extra.get("requests_per_second") or REQUESTS_PER_SECOND
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        rate = 0.0
    if not rate > 0:  # a rate limiter without a rate would not limit at all
        raise ValueError(f"{conn_id}'s extra requests_per_second must be a number above 0, "
                         f"not {extra.get('requests_per_second')!r}")
    return MusicBrainzConfig(extra.get("base_url") or DEFAULT_BASE_URL, contact, rate)


def consumer_config() -> ConsumerConfig:
    """The streaming consumer: Spark master and work folder from `spark_default` (host, port,
    extra `work_dir`, `driver_memory`, `standby`), plus the warehouse and the Kafka brokers."""
    from weekly_wrapped.streaming.supervisor import ConsumerConfig, standby_by_default

    c = _connection(SPARK_CONN_ID)
    extra = c.extra_dejson
    master = f"{c.host}:{c.port}" if c.port else c.host
    return ConsumerConfig(
        dsn=warehouse_dsn(),
        kafka_bootstrap=kafka_config()["bootstrap.servers"],
        work_dir=Path(extra["work_dir"]),
        spark_master=master,
        driver_memory=extra.get("driver_memory", "2g"),
        standby=_flag(extra.get("standby"), standby_by_default(master)),
    )


def _flag(value, default: bool) -> bool:
    """An extra's yes/no: a JSON boolean, or "true"/"false" as a form or an env file gives it
    (read like our other flags: only "true" is yes)."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def ingest_config(requests_per_second: float):
    """What polling and the metadata backfill need: the warehouse, Kafka, the Spotify app, the token key.

    Inside a task only: fails it (AirflowFailException) when a secret is refused (`secrets_check`)."""
    from weekly_wrapped import secrets_check
    from weekly_wrapped.ingest.poll import IngestConfig

    secrets_check.refuse_in_task()

    return IngestConfig(
        dsn=warehouse_dsn(),
        kafka_config=kafka_config(),
        app=spotify_app(),
        token_secret=variable("wrapped_token_secret"),
        max_workers=int(variable("wrapped_ingest_threads")),
        requests_per_second=requests_per_second,
    )
