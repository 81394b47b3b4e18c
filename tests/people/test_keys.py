"""Secrets: published demo secrets refused outside demo mode, token key rotation, undecryptable tokens.

- `wrapped up`, the api-server plugin's pages, the `spotify_ingest` tasks and compose's
  airflow-init refuse the repository's published secrets outside demo mode, naming the setting,
  never its value (`weekly_wrapped.secrets_check`);
- refresh tokens are read under NEW,OLD while `rotate` moves them to NEW, after which OLD can go;
- a token no configured key decrypts marks its user `needs_reauth` with a reason, and ingestion
  goes on for everyone else (real Postgres, Kafka and a fake Spotify, `tests/ingest/conftest.py`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import uuid

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from tests.ingest.conftest import make_ingest_env  # noqa: F401  (a fixture: users on a fake Spotify)
from tests.platform.test_docker_compose import DEMO_ENV, example_env, load_compose, service_env
from tests.support.postgres import sql

from weekly_wrapped import secrets_check
from weekly_wrapped.ingest import catalogue, poll
from weekly_wrapped.users import accounts, tokens
from wrapped_dev import cli
from wrapped_dev import config as dev_config
from wrapped_dev.config import REPO_ROOT
from wrapped_dev.stack import postgres as local_postgres
from wrapped_dev.stack import secrets as stack_secrets

UNDECRYPTABLE = "refresh token cannot be decrypted with the configured keys: reconnect"


def new_key() -> str:
    return Fernet.generate_key().decode()


def logged(caplog, capfd) -> str:
    """Everything logged or printed so far (once Airflow is imported, its structlog writes to stdout)."""
    out, err = capfd.readouterr()
    return caplog.text + out + err


def published_in(text: str) -> list[str]:
    """The published secret values that appear in `text` (log lines, messages, pages)."""
    return [v for v in secrets_check.PUBLISHED if len(v) > 8 and v in text]


# --- the list of published values ------------------------------------------------------------

def test_the_product_lists_every_demo_secret_the_harness_and_env_example_publish(monkeypatch):
    assert secrets_check.DEMO_TOKEN_SECRET == dev_config.DEMO_TOKEN_SECRET
    assert secrets_check.DEMO_LINK_SECRET == dev_config.DEMO_LINK_SECRET
    monkeypatch.setattr(dev_config, "_DOTENV", {})  # the defaults, whatever a developer's .env says
    for name in ("WRAPPED_TOKEN_SECRET", "WRAPPED_LINK_SECRET", "WRAPPED_PG_PASSWORD",
                 "SPOTIFY_CLIENT_SECRET", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    defaults = dev_config.load_settings()
    for value in (defaults.token_secret, defaults.link_secret, defaults.pg_password,
                  defaults.spotify_client_secret, defaults.gemini_api_key):
        assert value in secrets_check.PUBLISHED
    placeholders = {name: value for name, value in example_env().items()
                    if re.search(r"PASSWORD|SECRET|FERNET|API_KEY|TOKEN|INVITE", name) and value}
    assert placeholders, "no secrets found in .env.example"
    for name, value in placeholders.items():
        assert value in secrets_check.PUBLISHED, f".env.example's {name} is not in secrets_check.PUBLISHED"


def test_outside_demo_mode_every_published_value_is_refused_by_name_never_by_value():
    own_token, own_link = new_key(), "my-own-link-secret-0f3a9"
    published = {
        secrets_check.TOKEN_SECRET: f"{own_token},{secrets_check.DEMO_TOKEN_SECRET}",  # as the 2nd key too
        secrets_check.LINK_SECRET: secrets_check.DEMO_LINK_SECRET,
        secrets_check.connection_setting("postgres_default"): "wrapped",
        secrets_check.connection_setting("spotify_default"): "demo-client-secret",
        secrets_check.connection_setting("gemini_default"): "demo-gemini-key",
        "Airflow option AIRFLOW__API__SECRET_KEY": "change-me",
    }
    problems = secrets_check.check(published, demo_mode=False)
    assert len(problems) == len(published), problems
    for setting in published:
        assert any(p.startswith(setting) for p in problems), setting
    assert "key 2" in next(p for p in problems if p.startswith(secrets_check.TOKEN_SECRET))
    text = "\n".join(problems)
    assert published_in(text) == [] and "demo-client-secret" not in text and own_token not in text

    assert secrets_check.check(published, demo_mode=True) == []  # the demo may use them
    own = {secrets_check.TOKEN_SECRET: own_token, secrets_check.LINK_SECRET: own_link,
           secrets_check.connection_setting("spotify_default"): "a-real-client-secret"}
    assert secrets_check.check(own, demo_mode=False) == []


@pytest.mark.parametrize("demo_mode", [False, True])
def test_both_keys_must_be_set_valid_and_different_in_every_mode(demo_mode):
    key = new_key()
    missing = secrets_check.check({secrets_check.TOKEN_SECRET: "", secrets_check.LINK_SECRET: None}, demo_mode)
    assert [p.split(" is ")[0] for p in missing] == [secrets_check.TOKEN_SECRET, secrets_check.LINK_SECRET]
    same = secrets_check.check({secrets_check.TOKEN_SECRET: key, secrets_check.LINK_SECRET: key}, demo_mode)
    assert len(same) == 1 and "must differ" in same[0] and key not in same[0]
    broken = secrets_check.check({secrets_check.TOKEN_SECRET: f"{key},not-a-key-at-all",
                                  secrets_check.LINK_SECRET: "x" * 40}, demo_mode)
    assert broken == [f"{secrets_check.TOKEN_SECRET}: key 2 of 2 is not a Fernet key "
                      "(32 url-safe base64-encoded bytes)"]


# --- where the check runs --------------------------------------------------------------------

def test_wrapped_up_refuses_to_start_with_demo_secrets_outside_demo_mode(settings, monkeypatch, capsys):
    unsafe = dataclasses.replace(settings, demo_mode=False)
    monkeypatch.setattr(cli, "load_settings", lambda: unsafe)

    def must_not_start(_settings):
        raise AssertionError("wrapped up started Postgres with demo secrets outside demo mode")

    monkeypatch.setattr(local_postgres, "start", must_not_start)
    with pytest.raises(SystemExit) as refused:
        cli.main(["up", "--no-airflow"])
    message = str(refused.value.code)
    assert "WRAPPED_TOKEN_SECRET" in message and "WRAPPED_LINK_SECRET" in message
    assert "SPOTIFY_CLIENT_SECRET" in message and "WRAPPED_DEMO_MODE=true" in message
    assert published_in(message + capsys.readouterr().out) == []

    assert stack_secrets.problems(settings) == []  # the demo itself starts as before
    own = dataclasses.replace(unsafe, token_secret=f"{new_key()},{new_key()}", link_secret=uuid.uuid4().hex,
                              pg_password=uuid.uuid4().hex, spotify_client_secret=uuid.uuid4().hex,
                              gemini_api_key=uuid.uuid4().hex)
    assert stack_secrets.problems(own) == []


def airflow_env(monkeypatch, *, demo_mode: bool, token_secret: str, link_secret: str,
                pg_password: str = "wrapped", client_secret: str = "demo-client-secret") -> None:
    """Every Connection and Variable the checks read, in the environment (Airflow's env backend)."""
    conns = {
        "postgres_default": {"conn_type": "postgres", "host": "127.0.0.1", "port": 5433, "schema": "wrapped",
                             "login": "wrapped", "password": pg_password},
        "spotify_default": {"conn_type": "http", "login": "demo-client-id", "password": client_secret,
                            "extra": {"redirect_uri": "http://127.0.0.1:8080/wrapped/callback"}},
        "gemini_default": {"conn_type": "http", "password": "demo-gemini-key"},
        "smtp_default": {"conn_type": "smtp", "host": "127.0.0.1", "port": 8025},
    }
    for conn_id, body in conns.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))
    for name, value in {"wrapped_token_secret": token_secret, "wrapped_link_secret": link_secret,
                        "wrapped_demo_mode": "true" if demo_mode else "false",
                        "wrapped_public_url": "http://wrapped.test"}.items():
        monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)


def load_plugin():
    path = REPO_ROOT / "plugins" / "weekly_wrapped_onboarding.py"
    spec = importlib.util.spec_from_file_location(f"weekly_wrapped_onboarding_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plugin_serves_a_friendly_503_outside_demo_mode_with_demo_secrets(monkeypatch, caplog, capfd):
    airflow_env(monkeypatch, demo_mode=False, token_secret=secrets_check.DEMO_TOKEN_SECRET,
                link_secret=secrets_check.DEMO_LINK_SECRET)
    plugin = load_plugin()
    (mounted,) = [a for a in plugin.WeeklyWrappedOnboarding.fastapi_apps if a["url_prefix"] == "/wrapped"]
    client = TestClient(mounted["app"], raise_server_exceptions=False)
    with caplog.at_level(logging.INFO):
        page = client.get("/connect")
        posted = client.post("/connect", data={"email": "a@example.org", "time_zone": "UTC"})
    assert page.status_code == posted.status_code == 503
    assert "not ready" in page.text and "<html" in page.text
    assert published_in(page.text) == [] and "demo-client-secret" not in page.text
    text = logged(caplog, capfd)
    assert "Variable wrapped_token_secret" in text and "Connection spotify_default password" in text
    assert published_in(text) == [] and "demo-client-secret" not in text

    monkeypatch.setenv("AIRFLOW_VAR_WRAPPED_DEMO_MODE", "true")  # the demo: the page serves again
    assert client.get("/connect").status_code != 503


DAG_TASK = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["spotify_ingest"]
task = dag.get_task("rotate_token_keys")
result = {"downstream": sorted(task.downstream_task_ids), "upstream": sorted(task.upstream_task_ids)}
def attempt(name, call):
    try:
        result[name] = {"returned": call()}
    except Exception as exc:
        result[name] = {"raised": type(exc).__name__, "message": str(exc)}
attempt("rotate_token_keys", task.python_callable)
from weekly_wrapped.airflow import connections
attempt("ingest_config", lambda: repr(connections.ingest_config(10.0)))
print("RESULT " + json.dumps(result))
"""


def run_dag_tasks(env: dict[str, str], tmp_path) -> dict:
    """`rotate_token_keys` and the ingest tasks' configuration, run from the parsed DAG in a child."""
    env = {**env, "AIRFLOW_HOME": str(tmp_path / "airflow-home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run([sys.executable, "-c", DAG_TASK, str(REPO_ROOT / "dags" / "spotify_ingest.py")],
                          env=env, capture_output=True, text=True, timeout=180)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(line[len("RESULT "):]) | {"output": done.stdout + done.stderr}


def test_spotify_ingest_tasks_fail_outside_demo_mode_and_rotate_in_it(people_db, monkeypatch, tmp_path):
    from psycopg2.extensions import parse_dsn

    db = parse_dsn(people_db)
    airflow_env(monkeypatch, demo_mode=False, token_secret=secrets_check.DEMO_TOKEN_SECRET,
                link_secret=secrets_check.DEMO_LINK_SECRET, pg_password=db["password"])
    got = run_dag_tasks(dict(os.environ), tmp_path)
    assert got["downstream"] == ["plan_batches"] and got["upstream"] == []  # first in the DAG
    for task in ("rotate_token_keys", "ingest_config"):
        assert got[task]["raised"] == "AirflowFailException", got[task]
        assert "Variable wrapped_token_secret" in got[task]["message"]
        assert "Connection spotify_default password" in got[task]["message"]
    assert published_in(got["output"]) == [] and "demo-client-secret" not in got["output"]

    # In demo mode, with a new key in front of the old one, the task re-encrypts the old tokens.
    old, new = new_key(), new_key()
    user = f"keys-{uuid.uuid4().hex[:8]}"
    add_user(people_db, user, tokens.encrypt(old, "rt-of-the-task"))
    conn = {"conn_type": "postgres", "host": db["host"], "port": int(db["port"]), "schema": db["dbname"],
            "login": db["user"], "password": db["password"]}
    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_VAR_WRAPPED_DEMO_MODE", "true")
    monkeypatch.setenv("AIRFLOW_VAR_WRAPPED_TOKEN_SECRET", f"{new},{old}")
    got = run_dag_tasks(dict(os.environ), tmp_path)
    assert got["rotate_token_keys"]["returned"] >= 1, got["rotate_token_keys"]
    assert tokens.decrypt(new, stored_token(people_db, user)) == "rt-of-the-task"
    assert old not in got["output"] and new not in got["output"] and "rt-of-the-task" not in got["output"]


def test_compose_init_refuses_the_env_example_as_it_is_and_accepts_the_demo(tmp_path):
    def init(*env_files) -> subprocess.CompletedProcess:
        env = service_env(load_compose(example_env(*env_files)), "airflow-init")
        env |= {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT / "include"),
                "AIRFLOW_HOME": str(tmp_path / "airflow-home")}
        return subprocess.run([sys.executable, "-m", "weekly_wrapped.secrets_check"], env=env,
                              capture_output=True, text=True, timeout=120)

    command = load_compose(example_env())["services"]["airflow-init"]["command"]
    assert command[-1].startswith("python -m weekly_wrapped.secrets_check && airflow db migrate")
    refused = init()
    assert refused.returncode == 1, refused.stdout + refused.stderr
    for setting in ("Variable wrapped_token_secret", "Variable wrapped_link_secret", "Connection postgres_default",
                    "Connection spotify_default", "Connection gemini_default", "AIRFLOW__CORE__FERNET_KEY",
                    "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert setting in refused.stderr, setting
    assert published_in(refused.stdout + refused.stderr) == []
    assert "your-spotify-client-secret" not in refused.stderr
    demo = init(DEMO_ENV)
    assert demo.returncode == 0, demo.stdout + demo.stderr


# --- rotation ---------------------------------------------------------------------------------

def add_user(dsn: str, user_id: str, encrypted: str) -> None:
    sql(dsn, "insert into app.users (user_id, email, time_zone, refresh_token_encrypted, consent_at, status) "
             "values (%s, %s, 'UTC', %s, now(), 'active')", (user_id, f"{user_id}@example.org", encrypted))


def stored_token(dsn: str, user_id: str) -> str:
    return sql(dsn, "select refresh_token_encrypted from app.users where user_id = %s", (user_id,))[0][0]


def test_rotation_reads_old_tokens_meanwhile_moves_them_to_the_new_key_and_lets_the_old_one_go(people_db, caplog,
                                                                                                capfd):
    old, new, stranger = new_key(), new_key(), new_key()
    prefix = f"keys-{uuid.uuid4().hex[:8]}"
    ana, ben, cem, dan = (f"{prefix}-{n}" for n in ("ana", "ben", "cem", "dan"))
    for user in (ana, ben, cem):
        add_user(people_db, user, tokens.encrypt(old, f"rt-{user}"))
    add_user(people_db, dan, tokens.encrypt(stranger, f"rt-{dan}"))  # under a key nobody configured

    rolling = f"{new},{old}"
    assert [accounts.refresh_token_of(people_db, rolling, u) for u in (ana, ben, cem)] == \
        [f"rt-{u}" for u in (ana, ben, cem)]  # during the roll-over, everyone is read
    accounts.save_refresh_token(people_db, rolling, cem, f"rt-{cem}-2")  # new tokens go under NEW
    assert tokens.decrypt(new, stored_token(people_db, cem)) == f"rt-{cem}-2"

    with caplog.at_level(logging.INFO):
        assert tokens.rotate(people_db, new) == 0  # one key: nothing older to move away from
        before = {u: stored_token(people_db, u) for u in (ana, ben, cem, dan)}
        assert tokens.rotate(people_db, rolling) == 2  # ana and ben; cem already under NEW
        assert tokens.rotate(people_db, rolling) == 0  # idempotent
    after = {u: stored_token(people_db, u) for u in (ana, ben, cem, dan)}
    assert after[cem] == before[cem] and after[dan] == before[dan]
    assert after[ana] != before[ana] and after[ben] != before[ben]

    # OLD dropped: everyone is still read with NEW alone.
    assert [accounts.refresh_token_of(people_db, new, u) for u in (ana, ben, cem)] == \
        [f"rt-{ana}", f"rt-{ben}", f"rt-{cem}-2"]
    with pytest.raises(tokens.TokenUndecryptable) as unreadable:
        accounts.refresh_token_of(people_db, new, dan)
    assert str(unreadable.value) == UNDECRYPTABLE
    assert unreadable.value.__cause__ is None and unreadable.value.__suppress_context__
    text = logged(caplog, capfd)
    assert "2 refresh tokens re-encrypted" in text  # the log is there, and holds no secret
    for secret in (old, new, stranger, before[dan], f"rt-{dan}", f"rt-{ana}"):
        assert secret not in text and secret not in str(unreadable.value)


# --- an undecryptable token during ingestion ---------------------------------------------------

def test_an_undecryptable_token_marks_its_user_needs_reauth_and_the_others_are_polled(make_ingest_env, caplog,
                                                                                       capfd):
    env = make_ingest_env()
    broken, *others = env.user_ids
    env.sql("update app.users set refresh_token_encrypted = %s where user_id = %s",
            (tokens.encrypt(new_key(), "rt-under-another-key"), broken))
    with caplog.at_level(logging.INFO):
        outcomes = env.run()
    assert (outcomes[broken].outcome, outcomes[broken].reason) == ("needs_reauth", UNDECRYPTABLE)
    assert all(outcomes[u].outcome == "ok" and outcomes[u].plays > 0 for u in others), outcomes
    poll.raise_for_failures(list(outcomes.values()))  # the task succeeds
    assert env.sql("select status, status_reason from app.users where user_id = %s", (broken,)) == \
        [("needs_reauth", UNDECRYPTABLE)]
    assert env.sql("select outcome, reason from app.ingest_outcomes where user_id = %s", (broken,))[-1] == \
        ("needs_reauth", UNDECRYPTABLE)
    stored = [r[0] for r in env.sql("select refresh_token_encrypted from app.users where user_id = any(%s)",
                                    (env.user_ids,))]
    text = logged(caplog, capfd)
    assert f"user {broken}: needs_reauth" in text
    for secret in [env.cfg.token_secret, *stored, "rt-under-another-key"]:
        assert secret not in text


def test_the_catalogue_borrows_another_users_token_when_one_cannot_be_decrypted(make_ingest_env):
    env = make_ingest_env(n_users=2)
    broken, good = env.user_ids
    env.sql("update app.users set refresh_token_encrypted = %s where user_id = %s",
            (tokens.encrypt(new_key(), "rt-under-another-key"), broken))
    borrowed = catalogue.borrow_session(env.cfg, [broken], user_ids=env.user_ids)
    assert borrowed is not None and borrowed.user_id == good
    assert env.sql("select status, status_reason from app.users where user_id = %s", (broken,)) == \
        [("needs_reauth", UNDECRYPTABLE)]
