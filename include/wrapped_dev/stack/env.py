"""The environment every local process runs with: Airflow's settings and Connections.

Connections and Variables are defined here from `Settings` (itself from the environment /
`.env`), as `AIRFLOW_CONN_*` JSON and `AIRFLOW_VAR_*`, so nothing is hard-coded in DAGs and a
user switches to the real Spotify, Gemini or SMTP by setting a few variables (see README).
docker-compose.yaml builds the same Connections from the same variable names.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from wrapped_dev.config import REPO_ROOT, Settings, dotenv_airflow_values


def venv_bin() -> Path:
    return Path(sys.executable).parent


def airflow_home(settings: Settings) -> Path:
    return settings.state_dir / "airflow"


def _persistent_secret(settings: Settings, name: str) -> str:
    """A random secret made once per state folder, shared by all Airflow components."""
    path = settings.state_dir / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _fernet_key(settings: Settings) -> str:
    path = settings.state_dir / "secrets" / "airflow_fernet_key"
    if not path.exists():
        from cryptography.fernet import Fernet

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


def connections(settings: Settings) -> dict[str, str]:
    conns = {
        "postgres_default": {
            "conn_type": "postgres", "host": settings.pg_host, "port": settings.pg_port,
            "schema": settings.pg_database, "login": settings.pg_user, "password": settings.pg_password,
        },
        "kafka_default": {
            "conn_type": "kafka",
            "extra": {"bootstrap.servers": settings.kafka_bootstrap},
        },
        "spotify_default": {
            "conn_type": "http", "login": settings.spotify_client_id,
            "password": settings.spotify_client_secret,
            "extra": {"api_base": settings.spotify_api_base, "accounts_base": settings.spotify_accounts_base,
                      "redirect_uri": settings.spotify_redirect_uri},
        },
        "gemini_default": {
            "conn_type": "http", "password": settings.gemini_api_key,
            "extra": {"model": settings.gemini_model, "base_url": settings.gemini_base_url},
        },
        "musicbrainz_default": {
            "conn_type": "http",
            "extra": {"base_url": settings.musicbrainz_base_url, "contact": settings.musicbrainz_contact,
                      "requests_per_second": settings.musicbrainz_rps},
        },
        "smtp_default": {
            "conn_type": "smtp", "host": settings.smtp_host, "port": settings.smtp_port,
            "login": settings.smtp_user,
            "password": settings.smtp_password,
            "extra": {
                "disable_ssl": settings.smtp_disable_ssl,
                "disable_tls": settings.smtp_disable_tls,
                "from_email": settings.smtp_from, "timeout": 30, "retry_limit": 3,
            },
        },
        "spark_default": {
            "conn_type": "spark", "host": settings.spark_master,
            "extra": {"work_dir": str(settings.consumer.work_dir), "driver_memory": settings.spark_driver_memory,
                      "standby": settings.consumer_standby},
        },
    }
    return {f"AIRFLOW_CONN_{cid.upper()}": json.dumps(body) for cid, body in conns.items()}


def variables(settings: Settings) -> dict[str, str]:
    """The Airflow Variables the stack sets (the others keep their defaults unless `.env` sets them)."""
    return {"AIRFLOW_VAR_WRAPPED_TOKEN_SECRET": settings.token_secret,
            "AIRFLOW_VAR_WRAPPED_LINK_SECRET": settings.link_secret,
            "AIRFLOW_VAR_WRAPPED_DEMO_MODE": "true" if settings.demo_mode else "false",
            "AIRFLOW_VAR_WRAPPED_PUBLIC_URL": settings.public_url,
            "AIRFLOW_VAR_WRAPPED_ADMIN_EMAIL": settings.admin_email,
            "AIRFLOW_VAR_WRAPPED_MUSICBRAINZ_GENRES": "true" if settings.musicbrainz_genres else "false",
            "AIRFLOW_VAR_WRAPPED_SPOTIFY_RPS": f"{settings.spotify_rps:g}",
            "AIRFLOW_VAR_WRAPPED_DBT_ARTIFACTS_DIR": str(settings.state_dir / "dbt")}


def service_env(settings: Settings) -> dict[str, str]:
    """os.environ plus everything Airflow, Spark and our code need, for child processes."""
    home = airflow_home(settings)
    bin_dir = venv_bin()
    env = {**dotenv_airflow_values(), **os.environ}
    env.update(connections(settings))
    env.update(variables(settings))
    env.update({
        "PATH": f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
        "WRAPPED_STATE_DIR": str(settings.state_dir),
        "PYSPARK_PYTHON": str(bin_dir / "python"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__EXECUTOR": env.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Two slots are always taken (spark_consumers' and announce_raw_plays' watches), four for
        # spotify_ingest's parallel batches, the rest for dbt and the weekly send.
        "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "10"),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "6",
        "AIRFLOW__CORE__FERNET_KEY": _fernet_key(settings),
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "utc",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{settings.airflow_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
            f"postgresql+psycopg2://{settings.pg_user}:{settings.pg_password}"
            f"@{settings.pg_host}:{settings.pg_port}/{settings.airflow_database}"
        ),
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__WORKERS": "1",
        # A task's calls to the execution API give up after 5 s by default. Just after `up`, the one
        # api-server worker answers a fresh Airflow's first tasks, the demo and its own first
        # requests on two cores: a task whose start timed out failed unstarted, and its retry came
        # two minutes later (the first hourly spotify_ingest, which the demo's run waited for).
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        "AIRFLOW__API__SECRET_KEY": _persistent_secret(settings, "airflow_api_secret"),
        "AIRFLOW__API_AUTH__JWT_SECRET": _persistent_secret(settings, "airflow_jwt_secret"),
        # An idle scheduler looks for work this often (Airflow's default: 1 s); each level of
        # dbt_build's task graph waits for one look, and the graph is 14 levels deep.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        # Health comes from the api-server's /monitor/health; the other listening ports follow the
        # api-server's, so two stacks (say, a developer's and a CI run) can share a machine.
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_port + 713),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_port + 714),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # astronomer-cosmos would otherwise report every DAG run to its vendor.
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__CACHE_DIR": str(settings.state_dir / "cosmos"),
    })
    return env
