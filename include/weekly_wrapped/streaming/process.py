"""Start, watch and stop the local stack's long-running processes.

Each service runs in its own process group, with a pid file and a log file under
the state folder, so `down` can stop everything a service started (Airflow's and
Spark's children survive a SIGTERM to their parent alone).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence


@dataclass(frozen=True)
class Service:
    name: str
    run_dir: Path  # pid files
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"


def read_pid(service: Service) -> int | None:
    try:
        return int(service.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def is_running(service: Service) -> bool:
    pid = read_pid(service)
    return pid is not None and pid_alive(pid)


def start(
    service: Service,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path | None = None,
) -> int:
    """Start argv detached in a new session (its own process group); return its pid."""
    if is_running(service):
        return read_pid(service)  # type: ignore[return-value]
    service.run_dir.mkdir(parents=True, exist_ok=True)
    service.log_dir.mkdir(parents=True, exist_ok=True)
    with open(service.log_file, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service.pid_file.write_text(str(proc.pid))
    return proc.pid


def stop(service: Service, timeout: float = 20.0) -> bool:
    """Stop the service's whole process group: SIGTERM, then SIGKILL after `timeout`."""
    pid = read_pid(service)
    if pid is None:
        return False
    stopped = False
    if pid_alive(pid):
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.2)
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
        stopped = True
    service.pid_file.unlink(missing_ok=True)
    return stopped


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # killpg(0) also succeeds for zombies; look for a live member.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    service: Service | None = None,
    interval: float = 0.5,
) -> None:
    """Poll `check` until true; fail with the tail of the service's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if service is not None and read_pid(service) is not None and not is_running(service):
            raise RuntimeError(f"{service.name} exited while waiting for {what}:\n{log_tail(service)}")
        time.sleep(interval)
    tail = f":\n{log_tail(service)}" if service else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


def log_tail(service: Service, lines: int = 30) -> str:
    try:
        return "\n".join(service.log_file.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
