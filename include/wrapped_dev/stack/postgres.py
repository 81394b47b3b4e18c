"""A PostgreSQL cluster of the project's own, under the state folder.

Debian's server binaries (installed by `scripts/bootstrap.sh` if missing), one
cluster initialised once, run as the `postgres` user when we are root (the server
refuses to run as root). One database for the warehouse, one for Airflow.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from wrapped_dev.config import Settings
from weekly_wrapped.streaming.process import wait_until



def bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major, reverse=True)
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: run scripts/bootstrap.sh (it installs them)")
    return Path(candidates[0]).parent


def _major(path: str) -> int:
    return int(Path(path).parts[-3])


def data_dir(settings: Settings) -> Path:
    return settings.state_dir / "postgres" / "data"


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", "postgres", "--", *argv]
    return argv


def _prepare_dirs(settings: Settings) -> None:
    root = settings.state_dir / "postgres"
    (root / "run").mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        for path in root.iterdir():
            shutil.chown(path, "postgres", "postgres")
        # The server user must be able to reach its folder under a root-owned tree.
        for parent in [settings.state_dir, *settings.state_dir.parents]:
            parent.chmod(parent.stat().st_mode | 0o011)


def is_running(settings: Settings) -> bool:
    result = subprocess.run(
        [str(bin_dir() / "pg_isready"), "-h", settings.pg_host, "-p", str(settings.pg_port)],
        capture_output=True,
    )
    return result.returncode == 0


def start(settings: Settings) -> None:
    _prepare_dirs(settings)
    data = data_dir(settings)
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            _as_server_user([str(bin_dir() / "initdb"), "-D", str(data), "-U", "postgres",
                             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"]),
            check=True, capture_output=True,
        )
    if is_running(settings):
        return
    log = settings.state_dir / "postgres" / "server.log"
    options = (
        f"-p {settings.pg_port} -c listen_addresses={settings.pg_host} "
        f"-k {settings.state_dir / 'postgres' / 'run'} -c max_connections=200 "
        "-c shared_buffers=256MB -c fsync=on -c synchronous_commit=on"
    )
    subprocess.run(
        _as_server_user([str(bin_dir() / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                         "-w", "-t", "60", "start"]),
        check=True, capture_output=True,
    )
    wait_until(lambda: is_running(settings), "PostgreSQL to accept connections", 60)
    _create_role_and_databases(settings)


def stop(settings: Settings) -> bool:
    data = data_dir(settings)
    if not (data / "postmaster.pid").exists():
        return False
    subprocess.run(
        _as_server_user([str(bin_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        capture_output=True,
    )
    return True


def _superuser_psql(settings: Settings, sql: str, database: str = "postgres") -> str:
    result = subprocess.run(
        _as_server_user([str(bin_dir() / "psql"), "-h", str(settings.state_dir / "postgres" / "run"),
                         "-p", str(settings.pg_port), "-U", "postgres", "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-qAtc", sql]),
        check=True, capture_output=True, text=True,
    )
    return result.stdout.strip()


def _create_role_and_databases(settings: Settings) -> None:
    user, password = settings.pg_user, settings.pg_password.replace("'", "''")
    exists = _superuser_psql(settings, f"select 1 from pg_roles where rolname = '{user}'")
    verb = "alter" if exists else "create"
    # CREATEDB lets tests make throwaway databases; no superuser needed.
    _superuser_psql(settings, f"{verb} role \"{user}\" with login createdb password '{password}'")
    for database in (settings.pg_database, settings.airflow_database):
        if not _superuser_psql(settings, f"select 1 from pg_database where datname = '{database}'"):
            _superuser_psql(settings, f'create database "{database}" owner "{user}"')

