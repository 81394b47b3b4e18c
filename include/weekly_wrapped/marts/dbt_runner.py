"""Run Weekly Wrapped's dbt project: build the command and its environment, then run it.

dbt lives in its own virtualenv (`.local/dbt-venv`, binary from `WRAPPED_DBT_BIN`), so it is
always a subprocess. The warehouse credentials reach dbt's `profiles.yml` as the
`WRAPPED_PG_*` environment variables; dbt's `target/` and `logs/` go to the folder the caller
names (in Airflow: the `wrapped_dbt_artifacts_dir` Variable, see `cosmos_config`), never to a
path fixed here. Everything here except `run_dbt` is pure, so it is tested without running dbt.

The `dbt_build` DAG renders the project as one task per model and test with cosmos
(`cosmos_config`); this module runs dbt as one process: the tests' builds and `manifest`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from weekly_wrapped import PROJECT_ROOT

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"


@dataclass(frozen=True)
class Warehouse:
    """Where dbt builds: the Postgres database holding `raw`/`app` and dbt's schemas."""

    host: str
    port: int
    user: str
    password: str
    database: str


class DbtError(RuntimeError):
    """dbt exited non-zero; the message ends with the last lines of its output."""

    def __init__(self, returncode: int, output_tail: Sequence[str]):
        self.returncode = returncode
        self.output_tail = list(output_tail)
        super().__init__(f"dbt exited with {returncode}:\n" + "\n".join(self.output_tail))


def default_dbt_bin(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("WRAPPED_DBT_BIN") or PROJECT_ROOT / ".local" / "dbt-venv" / "bin" / "dbt")


def default_artifacts_dir(state_dir: Path) -> Path:
    """The conventional place for dbt's target/ and logs/ under a state folder: `<state>/dbt/`."""
    return state_dir / "dbt"


def warehouse_from_connection(conn) -> Warehouse:
    """An Airflow Connection (host, port, login, password, schema = database) as a Warehouse."""
    return Warehouse(
        host=conn.host,
        port=int(conn.port or 5432),
        user=conn.login,
        password=conn.password or "",
        database=conn.schema,
    )


def dbt_command(
    dbt_bin: Path | str,
    args: Iterable[str] = ("build",),
    *,
    artifacts_dir: Path,
    project_dir: Path = DBT_PROJECT_DIR,
) -> list[str]:
    """The argv for `dbt <args>` on our project, with its profile and artifact paths."""
    return [
        str(dbt_bin),
        *args,
        "--project-dir", str(project_dir),
        "--profiles-dir", str(project_dir),
        "--target-path", str(artifacts_dir / "target"),
        "--log-path", str(artifacts_dir / "logs"),
    ]


# dbt never phones home, checks for a newer version, or colours its log lines.
QUIET_DBT_ENV = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DBT_VERSION_CHECK": "false",
    "DBT_USE_COLORS": "false",
    "DO_NOT_TRACK": "1",
}


def tool_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: ours) plus QUIET_DBT_ENV: for dbt commands that need no warehouse (parse, docs)."""
    return {**(os.environ if base is None else base), **QUIET_DBT_ENV}


def dbt_env(warehouse: Warehouse, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The subprocess environment: `base` (default: ours) plus the warehouse as WRAPPED_PG_*."""
    env = tool_env(base)
    env.update(
        WRAPPED_PG_HOST=warehouse.host,
        WRAPPED_PG_PORT=str(warehouse.port),
        WRAPPED_PG_USER=warehouse.user,
        WRAPPED_PG_PASSWORD=warehouse.password,
        WRAPPED_PG_DATABASE=warehouse.database,
    )
    return env


def summarize_run_results(run_results: Mapping) -> dict[str, int]:
    """Counts per status (success, pass, warn, error, fail, skipped) from run_results.json."""
    return dict(Counter(result["status"] for result in run_results.get("results", [])))


def run_dbt(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    log: Callable[[str], None] = print,
    cwd: Path = DBT_PROJECT_DIR,
    run_results: Path | None = None,
) -> dict[str, int]:
    """Run dbt, streaming its output to `log`; raise DbtError on failure.

    Returns the status counts from `run_results` (dbt's run_results.json) when given.
    """
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(
        list(command),
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            log(line)
        returncode = proc.wait()
    if returncode != 0:
        raise DbtError(returncode, tail)
    if run_results is None or not run_results.exists():
        return {}
    return summarize_run_results(json.loads(run_results.read_text()))


def build_marts(
    warehouse: Warehouse,
    *,
    artifacts_dir: Path,
    dbt_bin: Path | str | None = None,
    extra_args: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """`dbt build` of the whole project into `warehouse`, dbt's target/ and logs/ in
    `artifacts_dir` (the caller's configuration); returns status counts."""
    command = dbt_command(dbt_bin or default_dbt_bin(), ("build", *extra_args), artifacts_dir=artifacts_dir)
    return run_dbt(
        command,
        dbt_env(warehouse),
        log=log,
        run_results=artifacts_dir / "target" / "run_results.json",
    )
