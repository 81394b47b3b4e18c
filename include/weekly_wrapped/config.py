"""Settings for every part of Weekly Wrapped, read from the environment.

One place for ports, paths and endpoints, so the local stack, the DAGs, the Spark
job, the tests and the benchmarks agree. Every value has a default that works on
one machine; production overrides them through the environment (or `.env`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=value lines of a `.env` file (comments, blank lines and `export ` prefixes allowed)."""
    values = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        value = value.split(" #", 1)[0].strip().strip("'\"")
        values[key.strip()] = value
    return values


def _env(name: str, default: str) -> str:
    # The real environment wins over the repo's `.env`, which wins over the default.
    value = os.environ.get(name) or _DOTENV.get(name)
    return value if value not in (None, "") else default


_DOTENV = read_dotenv(Path(os.environ.get("WRAPPED_ENV_FILE", REPO_ROOT / ".env")))


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str
    pg_database: str
    airflow_database: str
    kafka_bootstrap: str
    kafka_port: int
    kafka_controller_port: int
    airflow_port: int
    spotify_api_base: str
    spotify_accounts_base: str
    spotify_client_id: str
    spotify_client_secret: str
    fake_spotify_port: int
    gemini_base_url: str
    gemini_api_key: str
    gemini_model: str
    fake_gemini_port: int
    smtp_host: str
    smtp_port: int
    smtp_from: str
    spark_master: str
    fernet_key: str

    @property
    def warehouse_dsn(self) -> str:
        return (
            f"host={self.pg_host} port={self.pg_port} dbname={self.pg_database} "
            f"user={self.pg_user} password={self.pg_password}"
        )

    @property
    def warehouse_jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.pg_host}:{self.pg_port}/{self.pg_database}"

    @property
    def mail_dir(self) -> Path:
        """Where the local SMTP sink keeps every message it receives."""
        return self.state_dir / "mail"

    @property
    def checkpoint_dir(self) -> Path:
        return self.state_dir / "spark" / "checkpoints"


def load_settings() -> Settings:
    state_dir = Path(_env("WRAPPED_STATE_DIR", str(REPO_ROOT / ".local"))).resolve()
    kafka_port = int(_env("WRAPPED_KAFKA_PORT", "9092"))
    fake_spotify_port = int(_env("WRAPPED_FAKE_SPOTIFY_PORT", "8901"))
    fake_gemini_port = int(_env("WRAPPED_FAKE_GEMINI_PORT", "8902"))
    return Settings(
        state_dir=state_dir,
        pg_host=_env("WRAPPED_PG_HOST", "127.0.0.1"),
        pg_port=int(_env("WRAPPED_PG_PORT", "5433")),
        pg_user=_env("WRAPPED_PG_USER", "wrapped"),
        pg_password=_env("WRAPPED_PG_PASSWORD", "wrapped"),
        pg_database=_env("WRAPPED_PG_DATABASE", "wrapped"),
        airflow_database=_env("WRAPPED_AIRFLOW_DATABASE", "airflow"),
        kafka_bootstrap=_env("WRAPPED_KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port}"),
        kafka_port=kafka_port,
        kafka_controller_port=int(_env("WRAPPED_KAFKA_CONTROLLER_PORT", "9093")),
        airflow_port=int(_env("WRAPPED_AIRFLOW_PORT", "8080")),
        spotify_api_base=_env("SPOTIFY_API_BASE", f"http://127.0.0.1:{fake_spotify_port}/v1/"),
        spotify_accounts_base=_env("SPOTIFY_ACCOUNTS_BASE", f"http://127.0.0.1:{fake_spotify_port}"),
        spotify_client_id=_env("SPOTIFY_CLIENT_ID", "demo-client-id"),
        spotify_client_secret=_env("SPOTIFY_CLIENT_SECRET", "demo-client-secret"),
        fake_spotify_port=fake_spotify_port,
        gemini_base_url=_env("GEMINI_BASE_URL", f"http://127.0.0.1:{fake_gemini_port}"),
        gemini_api_key=_env("GEMINI_API_KEY", "demo-gemini-key"),
        gemini_model=_env("GEMINI_MODEL", "gemini-2.5-flash"),
        fake_gemini_port=fake_gemini_port,
        smtp_host=_env("WRAPPED_SMTP_HOST", "127.0.0.1"),
        smtp_port=int(_env("WRAPPED_SMTP_PORT", "8025")),
        smtp_from=_env("WRAPPED_SMTP_FROM", "Weekly Wrapped <wrapped@localhost>"),
        spark_master=_env("WRAPPED_SPARK_MASTER", "local[2]"),
        # A fixed demo key keeps the local stack reproducible; production sets its own.
        fernet_key=_env("WRAPPED_FERNET_KEY", "ZGVtby1rZXktZG8tbm90LXVzZS1pbi1wcm9kdWN0aW8="),
    )
