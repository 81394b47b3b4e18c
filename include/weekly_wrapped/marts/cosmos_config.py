"""dbt_project/ as Airflow tasks: the astronomer-cosmos configuration of the `dbt_build` DAG.

`dbt_task_group()` renders cosmos's watcher execution mode (ExecutionMode.WATCHER): one
task, `dbt_producer_watcher`, runs a single `dbt build` of the whole project (dbt's own
threads, dbt's own rule that a failing test skips what is built on it), and one watcher task
per model (`<model>.run`) and per model's tests (`<model>.test`: its data tests and the
`relationships` tests that involve it) follows that build's progress, so each
model and test is visible and timed in the UI, in dbt's dependency order
(TestBehavior.AFTER_EACH). A watcher fails when its model or tests failed; on retry (or a
clear from the UI) it runs dbt for its own model. The producer itself has no retries (see
`dbt_task_group`). One `dbt build` instead of a dbt process
per task took the demo's build from about 180 s to about 40 s.

The watchers poke every second in their worker slot (`deferrable=False`): a deferred task
whose trigger fires at once can be failed by the scheduler in Airflow 3.3
(apache/airflow#72716, #67287), and that is what a watcher's trigger does when its model is
already built. A test over two models is part of both models' `.test` tasks
(`should_detach_multiple_parents_tests=False`): a task of its own would read a status the
build never writes for it and always show success.

Parse time: no dbt, no database, no network. The task graph comes from the render manifest
`dbt_project/manifest.json` (LoadMode.DBT_MANIFEST; how it is made and kept current is in
`manifest`), and nothing below reads a Connection or a Variable before a task runs. The
other offline-capable modes fall short here: LoadMode.CUSTOM does not understand dbt's
`data_tests:` key (it would drop every test), and DBT_LS / DBT_LS_CACHE run `dbt ls` in the
DAG processor on every cache miss and keep their cache in an Airflow Variable (a database).

Run time: InvocationMode.SUBPROCESS: the producer (and a watcher's retry) runs the `dbt` of
dbt's own virtualenv (`WRAPPED_DBT_BIN`, else `.local/dbt-venv/bin/dbt`; dbt cannot be
imported into Airflow's environment) on a temporary copy of the project. The profile is
built from the Airflow connection `postgres_default` (PostgresUserPasswordProfileMapping:
host, port, login, password, and its `schema` field as the database); the dbt schema,
threads and timeout come from `dbt_project/profiles.yml`, so `dbt` by hand and Airflow agree.
dbt's `target/` is the task's own temporary copy (tasks run in parallel, and cosmos reads
the compiled SQL and partial-parse state from there); dbt's log file goes to
`<wrapped_dbt_artifacts_dir>/logs`, the Airflow Variable read when the task runs (unset: a
folder under the system's temporary directory). The `full_refresh` DAG param reaches the
build as `--full-refresh`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import jinja2
import yaml

from weekly_wrapped.airflow.connections import VARIABLE_DEFAULTS
from weekly_wrapped.marts.dbt_runner import DBT_PROJECT_DIR, QUIET_DBT_ENV, dbt_command, default_dbt_bin, tool_env
from weekly_wrapped.marts.manifest import RENDER_MANIFEST

# Cosmos reports usage to its vendor unless told not to; read when cosmos is first imported.
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")

DBT_PROFILE_NAME = "weekly_wrapped"
# The task that runs the one `dbt build` in watcher mode (cosmos.constants.PRODUCER_WATCHER_TASK_ID;
# cosmos is imported only inside dbt_task_group).
PRODUCER_TASK_ID = "dbt_producer_watcher"
WAREHOUSE_CONN_ID = "postgres_default"  # = weekly_wrapped.airflow.connections.WAREHOUSE_CONN_ID
# Where dbt's log file goes: an Airflow Variable, read by the task (a Jinja template), not here.
ARTIFACTS_VARIABLE = "wrapped_dbt_artifacts_dir"
DEFAULT_ARTIFACTS_DIR = Path(VARIABLE_DEFAULTS[ARTIFACTS_VARIABLE])
# The profile settings taken from profiles.yml (the connection gives the rest).
PROFILE_ARGS = ("schema", "threads", "connect_timeout")


def profile_args(
    profiles_yml: Path = DBT_PROJECT_DIR / "profiles.yml",
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """schema/threads/connect_timeout of profiles.yml's default target, its `env_var()`s resolved
    from `environ` (default: ours) as dbt would. Reads one file: safe at parse time."""
    environ = os.environ if environ is None else environ
    profile = yaml.safe_load(profiles_yml.read_text())[DBT_PROFILE_NAME]
    output = profile["outputs"][profile["target"]]

    def env_var(name: str, default: str | None = None) -> str:
        if name in environ:
            return environ[name]
        if default is None:
            raise LookupError(f"profiles.yml needs the environment variable {name}")
        return default

    jinja = jinja2.Environment(undefined=jinja2.StrictUndefined)
    jinja.globals["env_var"] = env_var
    jinja.filters["as_number"] = lambda value: int(value) if str(value).lstrip("-").isdigit() else float(value)
    args = {}
    for key in PROFILE_ARGS:
        if key in output:
            value = output[key]
            if isinstance(value, str):
                value = jinja.from_string(value).render().strip()
                value = int(value) if key != "schema" else value
            args[key] = value
    return args


def artifacts_dir_template(default: Path = DEFAULT_ARTIFACTS_DIR) -> str:
    """Jinja for the Variable `wrapped_dbt_artifacts_dir`, rendered when a task runs."""
    return "{{ var.value.get('%s', '%s') }}" % (ARTIFACTS_VARIABLE, default)


# Cosmos queues its producer before its watchers (absolute priority_weight 20 against 2: with
# fewer task slots than tasks ready, the build must not wait behind watchers that wait for it).
# What follows the build goes before the watchers too.
FIRST_IN_LINE = 20  # = cosmos.constants.PRODUCER_WATCHER_DEFAULT_PRIORITY_WEIGHT

# How much a dbt_build task (and the dbt it runs) gives way on a busy CPU (os.nice; 0-19).
DBT_NICENESS = 10


def give_way_on_the_cpu(context: Any = None) -> None:
    """A build is batch work: where it shares a machine with the streaming consumer, the consumer
    (a takeover, a catch-up) should not wait for it. Lowers this task's priority before it runs;
    the dbt it starts inherits it. Only contention is affected: alone, the build runs as fast."""
    os.nice(DBT_NICENESS)


def no_lineage_events(*args: Any, **kwargs: Any) -> bool:
    """Stands in for cosmos's `calculate_openlineage_events_completes`: it parses the build's
    manifest and run results into OpenLineage events (5 to 9 s of the producer after dbt exits,
    on the path to marts_built) for an OpenLineage provider this installation does not have;
    nothing reads them. False: no events, as cosmos answers without the OpenLineage library."""
    return False


def prepare_dbt_task(context: Any = None) -> None:
    """pre_execute of every dbt task: give way on the CPU, and compute no lineage events."""
    give_way_on_the_cpu(context)
    if context is not None:
        context["task"].calculate_openlineage_events_completes = no_lineage_events


def start_partial_parse(project_dir: Path = DBT_PROJECT_DIR, dbt_bin: Path | str | None = None) -> subprocess.Popen:
    """Start `dbt parse` of the project in the background, for the first build to parse only what
    changed since: cosmos hands a build the newest partial_parse.msgpack of the project's
    target/ and its own cache. Without one, the first build of a new installation parses the
    whole project (8 s of CPU on the path to the first recap). Offline, no warehouse; the same
    --profile and --target as cosmos's commands, which dbt's partial parsing compares."""
    profile = yaml.safe_load((project_dir / "profiles.yml").read_text())[DBT_PROFILE_NAME]
    command = dbt_command(dbt_bin or default_dbt_bin(), ("parse", "--profile", DBT_PROFILE_NAME,
                                                         "--target", profile["target"]),
                          artifacts_dir=project_dir, project_dir=project_dir)
    return subprocess.Popen(command, env=tool_env(), cwd=project_dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def operator_args(full_refresh: bool | str = "{{ params.full_refresh }}") -> dict[str, Any]:
    """Arguments for every cosmos dbt operator (templates are rendered when the task runs)."""
    return {
        "pre_execute": prepare_dbt_task,
        "install_deps": False,  # no packages: the dbt package hub is not reachable here
        "full_refresh": full_refresh,
        "append_env": True,  # PATH, TZ, ... of the worker, plus:
        "env": {**QUIET_DBT_ENV, "DBT_LOG_PATH": artifacts_dir_template() + "/logs"},
        "execution_timeout": timedelta(minutes=30),
        # The watchers (ignored by the producer): see the module's docstring.
        "poke_interval": 1,
        "deferrable": False,
    }


def dbt_task_group(
    group_id: str = "dbt",
    *,
    conn_id: str = WAREHOUSE_CONN_ID,
    manifest_path: Path = RENDER_MANIFEST,
    project_dir: Path = DBT_PROJECT_DIR,
    dbt_bin: Path | str | None = None,
    full_refresh: bool | str = "{{ params.full_refresh }}",
):
    """The dbt project as a cosmos DbtTaskGroup; call it inside a DAG definition."""
    from cosmos import (
        DbtTaskGroup,
        ExecutionConfig,
        ExecutionMode,
        InvocationMode,
        LoadMode,
        ProfileConfig,
        ProjectConfig,
        RenderConfig,
        TestBehavior,
    )
    from cosmos.profiles import PostgresUserPasswordProfileMapping

    dbt_executable = str(dbt_bin or default_dbt_bin())
    profile = yaml.safe_load((project_dir / "profiles.yml").read_text())[DBT_PROFILE_NAME]
    group = DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            dbt_project_path=project_dir,
            manifest_path=manifest_path,
            project_name=DBT_PROFILE_NAME,
            install_dbt_deps=False,
        ),
        profile_config=ProfileConfig(
            profile_name=DBT_PROFILE_NAME,
            target_name=profile["target"],
            profile_mapping=PostgresUserPasswordProfileMapping(
                conn_id=conn_id,
                profile_args=profile_args(project_dir / "profiles.yml"),
            ),
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER,
            invocation_mode=InvocationMode.SUBPROCESS,  # dbt has its own virtualenv
            dbt_executable_path=dbt_executable,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            # dbt's unit tests check the models' logic on fixed inputs: they run in `make test`
            # (tests/dbt builds the project with them), not in every production build, as dbt
            # advises. Here they were 29 of the build's 247 nodes and among its slowest.
            exclude=["resource_type:unit_test"],
            test_behavior=TestBehavior.AFTER_EACH,
            should_detach_multiple_parents_tests=False,
            emit_datasets=False,  # the DAG announces the one asset others read, MARTS_WRAPPED
        ),
        operator_args=operator_args(full_refresh),
    )
    # No retry for the producer. Its retry only skips (cosmos never runs a second build), and
    # until then the watchers of models it never reached keep polling, as long as it is up for
    # retry or scheduled: with as many of them as the DAG has task slots, its retry never got a
    # slot (a killed build hung for the watchers' 30-minute timeout). Failed, it lets them fail
    # at once; their own retries then build their models one by one.
    group.children[f"{group_id}.{PRODUCER_TASK_ID}"].retries = 0
    return group
