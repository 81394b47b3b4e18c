"""Wall time of the main job, `make demo`: warm, or from a fresh clone.

    .local/venv/bin/python bench/demo_walltime.py [--cold]

Warm (default): `wrapped demo` against this checkout's stack, which may already be up
(the demo is safe to re-run); target 60 s.
--cold: `git clone` of this checkout's HEAD into a temporary folder, then `make demo` there:
installs the venvs (from uv's cache), starts a stack from nothing (its own state folder and
free ports, so a running stack can stay up; stop it for a clean figure) and runs the demo;
target 180 s. What a machine keeps between clones is used as it would be: system packages,
uv's cache, ~/.m2 and the jars cache in ~/.cache/weekly-wrapped. The clone's stack is
stopped and the clone deleted afterwards.
Also prints the peak resident memory of the stack's processes during the run.
The last line is `demo_walltime: ratio=<seconds / target> (target <= 1)`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from wrapped_dev.config import REPO_ROOT, load_settings

WARM_TARGET_S = 60.0
COLD_TARGET_S = 180.0
# The clone's stack gets free ports for everything it listens on.
PORT_VARIABLES = ("WRAPPED_PG_PORT", "WRAPPED_KAFKA_PORT", "WRAPPED_KAFKA_CONTROLLER_PORT", "WRAPPED_AIRFLOW_PORT",
                  "WRAPPED_FAKE_SPOTIFY_PORT", "WRAPPED_FAKE_GEMINI_PORT", "WRAPPED_FAKE_MUSICBRAINZ_PORT",
                  "WRAPPED_SMTP_PORT")


def stack_rss_mib(marker: str) -> float:
    """Resident memory of every process whose command line mentions `marker` (a state folder)."""
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if marker not in cmdline:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(argv: list[str], cwd: Path, env: dict, marker: str) -> tuple[float, float, int]:
    """(seconds, peak stack MiB, exit code) of one command."""
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, stack_rss_mib(marker))
            time.sleep(1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, env=env)
    elapsed = time.monotonic() - started
    done.set()
    sampler.join()
    return elapsed, peak, result.returncode


def cold(keep: bool = False) -> tuple[float, float, int]:
    folder = Path(tempfile.mkdtemp(prefix="wrapped-cold-"))
    clone = folder / "weekly-wrapped"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WRAPPED_", "AIRFLOW", "VIRTUAL_ENV"))}
    env.update({name: str(free_port()) for name in PORT_VARIABLES})
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".local/venv" not in p)
    try:
        started = time.monotonic()
        subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
        clone_s = time.monotonic() - started
        elapsed, peak, code = timed(["make", "demo"], clone, env, str(clone))
        return clone_s + elapsed, peak, code
    finally:
        wrapped = clone / ".local" / "venv" / "bin" / "wrapped"
        if keep:
            ports = " ".join(f"{name}={env[name]}" for name in PORT_VARIABLES)
            print(f"kept: {clone}; its stack is up. Stop it: cd {clone} && {ports} make down")
        elif wrapped.exists():
            subprocess.run([str(wrapped), "down"], cwd=clone, env=env, stdout=subprocess.DEVNULL, check=False)
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="from a fresh clone: install, start, demo")
    parser.add_argument("--keep", action="store_true",
                        help="with --cold: leave the clone and its stack up afterwards, to look at its runs")
    args = parser.parse_args()
    if args.cold:
        elapsed, peak, code = cold(args.keep)
        target = COLD_TARGET_S
    else:
        settings = load_settings()
        wrapped = str(Path(sys.executable).parent / "wrapped")
        elapsed, peak, code = timed([wrapped, "demo"], REPO_ROOT, dict(os.environ), str(settings.state_dir))
        target = WARM_TARGET_S
    if code != 0:
        print(f"demo failed with exit code {code}", file=sys.stderr)
        return code
    print(f"demo wall time: {elapsed:.1f}s ({'cold, from a fresh clone' if args.cold else 'warm'}); "
          f"peak stack memory: {peak:.0f} MiB")
    print(f"demo_walltime: ratio={elapsed / target:.2f} (target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
