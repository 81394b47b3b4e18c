"""The local stack's settings, read from the environment, then the repo's `.env`, then defaults.

Only the dev harness reads these (the stack, the fakes, the CLI, the demo, tests and
benchmarks). The product reads Airflow Connections and Variables, which the stack builds
from these same values (`wrapped_dev.stack.env.connections`), so both agree. Every value
has a default that runs the demo on one machine; the README lists them all.
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


def dotenv_airflow_values() -> dict[str, str]:
    """`AIRFLOW_*` lines of `.env` (Variables, Connections, Airflow's own options), passed to Airflow as they are."""
    return {k: v for k, v in _DOTENV.items() if k.startswith("AIRFLOW_")}


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
    kafka_brokers: int  # KRaft nodes the local stack runs (wrapped_dev.stack.kafka)
    airflow_port: int
    spotify_api_base: str
    spotify_accounts_base: str
    spotify_client_id: str
    spotify_client_secret: str
    spotify_rps: float
    fake_spotify_port: int
    gemini_base_url: str
    gemini_api_key: str
    gemini_model: str
    fake_gemini_port: int
    musicbrainz_base_url: str
    musicbrainz_contact: str
    musicbrainz_rps: float
    musicbrainz_genres: bool
    fake_musicbrainz_port: int
    spotify_redirect_uri: str
    smtp_host: str
    smtp_port: int
    smtp_user: str
    smtp_password: str
    smtp_disable_ssl: bool
    smtp_disable_tls: bool
    smtp_from: str
    spark_master: str
    spark_driver_memory: str
    consumer_standby: bool
    spark_cluster: bool  # the stack runs a Spark standalone master and worker (wrapped_dev.stack.spark)
    spark_master_port: int
    spark_master_ui_port: int
    spark_worker_ui_port: int
    spark_worker_cores: int
    spark_worker_memory: str
    token_secret: str
    link_secret: str
    demo_mode: bool
    public_url: str
    admin_email: str

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
    def consumer(self):
        """The streaming consumer's configuration, as `spark_consumers` builds it from Connections."""
        from weekly_wrapped.streaming.supervisor import ConsumerConfig

        return ConsumerConfig(self.warehouse_dsn, self.kafka_bootstrap, self.state_dir / "spark",
                              self.spark_master, self.spark_driver_memory, self.consumer_standby)

    @property
    def spotify_app(self):
        """The Spotify app, as the DAGs and the onboarding page build it from `spotify_default`."""
        from weekly_wrapped.spotify.client import SpotifyApp

        return SpotifyApp(self.spotify_client_id, self.spotify_client_secret, self.spotify_api_base,
                          self.spotify_accounts_base, self.spotify_redirect_uri)

    @property
    def onboarding(self):
        """The onboarding page's configuration, as it builds it from Connections and Variables."""
        from weekly_wrapped.users.onboarding import OnboardingConfig

        return OnboardingConfig(dsn=self.warehouse_dsn, spotify_app=self.spotify_app,
                                token_secret=self.token_secret, link_secret=self.link_secret,
                                demo_mode=self.demo_mode, public_url=self.public_url)


# The local stack's published secrets: fine for the demo, refused outside demo mode.
DEMO_TOKEN_SECRET = "ZGVtby1rZXktZG8tbm90LXVzZS1pbi1wcm9kdWN0aW8="
DEMO_LINK_SECRET = "demo-link-secret-do-not-use-in-production"

# The local stack's Kafka node i (1, 2, 3) listens on WRAPPED_KAFKA_PORT + 10 * (i - 1) and its
# controller on WRAPPED_KAFKA_CONTROLLER_PORT + 10 * (i - 1): 9092/9093, 9102/9103, 9112/9113.
KAFKA_PORT_STEP = 10


def kafka_node_ports(kafka_port: int, controller_port: int, brokers: int) -> list[tuple[int, int]]:
    """(client port, controller port) of each local Kafka node, node 1 first."""
    return [(kafka_port + KAFKA_PORT_STEP * i, controller_port + KAFKA_PORT_STEP * i) for i in range(brokers)]


def load_settings() -> Settings:
    state_dir = Path(_env("WRAPPED_STATE_DIR", str(REPO_ROOT / ".local"))).resolve()
    kafka_port = int(_env("WRAPPED_KAFKA_PORT", "9092"))
    kafka_controller_port = int(_env("WRAPPED_KAFKA_CONTROLLER_PORT", "9093"))
    kafka_brokers = int(_env("WRAPPED_KAFKA_BROKERS", "1"))
    fake_spotify_port = int(_env("WRAPPED_FAKE_SPOTIFY_PORT", "8901"))
    fake_gemini_port = int(_env("WRAPPED_FAKE_GEMINI_PORT", "8902"))
    fake_musicbrainz_port = int(_env("WRAPPED_FAKE_MUSICBRAINZ_PORT", "8903"))
    airflow_port = int(_env("WRAPPED_AIRFLOW_PORT", "8080"))
    fake_spotify_api = f"http://127.0.0.1:{fake_spotify_port}/v1/"
    spark_cluster = _env("WRAPPED_SPARK_CLUSTER", "false") == "true"
    spark_master_port = int(_env("WRAPPED_SPARK_MASTER_PORT", "7077"))
    spotify_api_base = _env("SPOTIFY_API_BASE", fake_spotify_api)
    fake_musicbrainz_api = f"http://127.0.0.1:{fake_musicbrainz_port}/ws/2/"
    musicbrainz_base_url = _env("MUSICBRAINZ_BASE_URL", fake_musicbrainz_api)
    from weekly_wrapped.streaming.supervisor import standby_by_default

    # With the stack's own Spark cluster, the consumer runs on it; WRAPPED_SPARK_MASTER still wins.
    spark_master = _env("WRAPPED_SPARK_MASTER", f"spark://127.0.0.1:{spark_master_port}" if spark_cluster else "local[2]")
    return Settings(
        state_dir=state_dir,
        pg_host=_env("WRAPPED_PG_HOST", "127.0.0.1"),
        pg_port=int(_env("WRAPPED_PG_PORT", "5433")),
        pg_user=_env("WRAPPED_PG_USER", "wrapped"),
        pg_password=_env("WRAPPED_PG_PASSWORD", "wrapped"),
        pg_database=_env("WRAPPED_PG_DATABASE", "wrapped"),
        airflow_database=_env("WRAPPED_AIRFLOW_DATABASE", "airflow"),
        kafka_bootstrap=_env("WRAPPED_KAFKA_BOOTSTRAP", ",".join(
            f"127.0.0.1:{port}" for port, _ in kafka_node_ports(kafka_port, kafka_controller_port, kafka_brokers))),
        kafka_port=kafka_port,
        kafka_controller_port=kafka_controller_port,
        kafka_brokers=kafka_brokers,
        airflow_port=airflow_port,
        spotify_api_base=spotify_api_base,
        spotify_accounts_base=_env("SPOTIFY_ACCOUNTS_BASE", f"http://127.0.0.1:{fake_spotify_port}"),
        spotify_client_id=_env("SPOTIFY_CLIENT_ID", "demo-client-id"),
        spotify_client_secret=_env("SPOTIFY_CLIENT_SECRET", "demo-client-secret"),
        # The fake Spotify has no rate limit: the demo's ~1,500 exported tracks are looked up in
        # seconds, not minutes. Against the real Spotify, the product's default (10 a second).
        # The Variable's own name, so a `.env` line AIRFLOW_VAR_WRAPPED_SPOTIFY_RPS=5 still wins.
        spotify_rps=float(_env("AIRFLOW_VAR_WRAPPED_SPOTIFY_RPS",
                               "400" if spotify_api_base == fake_spotify_api else "10")),
        fake_spotify_port=fake_spotify_port,
        gemini_base_url=_env("GEMINI_BASE_URL", f"http://127.0.0.1:{fake_gemini_port}"),
        gemini_api_key=_env("GEMINI_API_KEY", "demo-gemini-key"),
        gemini_model=_env("GEMINI_MODEL", "gemini-2.5-flash"),
        fake_gemini_port=fake_gemini_port,
        musicbrainz_base_url=musicbrainz_base_url,
        musicbrainz_contact=_env("MUSICBRAINZ_CONTACT", "wrapped@localhost"),
        # The fake has no limit, as a mirror of one's own: asked 50 a second, the demo's genres take
        # a few seconds, not minutes. musicbrainz.org allows one a second to every application.
        musicbrainz_rps=float(_env("MUSICBRAINZ_RPS", "50" if musicbrainz_base_url == fake_musicbrainz_api else "1")),
        # On for the local stack (its MusicBrainz is the fake); the product's default is off.
        musicbrainz_genres=_env("WRAPPED_MUSICBRAINZ_GENRES", "true") == "true",
        fake_musicbrainz_port=fake_musicbrainz_port,
        spotify_redirect_uri=_env("SPOTIFY_REDIRECT_URI", f"http://127.0.0.1:{airflow_port}/wrapped/callback"),
        smtp_host=_env("WRAPPED_SMTP_HOST", "127.0.0.1"),
        smtp_port=int(_env("WRAPPED_SMTP_PORT", "8025")),
        smtp_user=_env("WRAPPED_SMTP_USER", ""),
        smtp_password=_env("WRAPPED_SMTP_PASSWORD", ""),
        # The SMTP provider's own switches, under the names docker-compose.yaml uses too.
        smtp_disable_ssl=_env("WRAPPED_SMTP_DISABLE_SSL", "true") == "true",
        smtp_disable_tls=_env("WRAPPED_SMTP_DISABLE_TLS", "true") == "true",
        smtp_from=_env("WRAPPED_SMTP_FROM", "Weekly Wrapped <wrapped@localhost>"),
        spark_master=spark_master,
        spark_driver_memory=_env("WRAPPED_SPARK_DRIVER_MEMORY", "2g"),
        consumer_standby=_env("WRAPPED_CONSUMER_STANDBY", str(standby_by_default(spark_master)).lower()) == "true",
        spark_cluster=spark_cluster,
        spark_master_port=spark_master_port,
        # Spark's default UI port, 8080, is Airflow's here.
        spark_master_ui_port=int(_env("WRAPPED_SPARK_MASTER_UI_PORT", "8090")),
        spark_worker_ui_port=int(_env("WRAPPED_SPARK_WORKER_UI_PORT", "8091")),
        spark_worker_cores=int(_env("WRAPPED_SPARK_WORKER_CORES", "2")),
        # Enough for one executor of Spark's default 1g.
        spark_worker_memory=_env("WRAPPED_SPARK_WORKER_MEMORY", "2g"),
        # Fixed demo secrets keep the local stack reproducible; outside demo mode the product
        # refuses to start with them (`wrapped_demo_mode`).
        token_secret=_env("WRAPPED_TOKEN_SECRET", DEMO_TOKEN_SECRET),
        link_secret=_env("WRAPPED_LINK_SECRET", DEMO_LINK_SECRET),
        demo_mode=_env("WRAPPED_DEMO_MODE", "true") == "true",
        public_url=_env("WRAPPED_PUBLIC_URL", f"http://127.0.0.1:{airflow_port}"),
        admin_email=_env("WRAPPED_ADMIN_EMAIL", "operator@localhost"),
    )
