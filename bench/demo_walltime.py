"""Wall time of the main job, `wrapped demo`, on a machine where `make install` already ran.

    python bench/demo_walltime.py [--cold]

Warm (default): the stack may already be up; measures the demo alone (target <= 120 s).
--cold: stops the stack and deletes its state first (databases, Kafka log, jars cache kept
in ~/.m2), so it measures start-up from nothing but installed venvs (target <= 600 s).
Also prints the peak resident memory of the running stack's processes during the run.
The last line is `demo_walltime: ratio=<seconds / target> (target <= 1)`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from wrapped_dev.config import load_settings


def stack_rss_mib(state_dir: Path) -> float:
    """Resident memory of every process whose command line or cwd mentions the state folder."""
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env_match = str(state_dir) in cmdline or "airflow" in cmdline or "kafka.Kafka" in cmdline
            if not env_match:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="stop the stack and wipe its state first")
    args = parser.parse_args()
    settings = load_settings()
    wrapped = str(Path(sys.executable).parent / "wrapped")
    if args.cold:
        subprocess.run([wrapped, "down"], check=False)
        for sub in ("postgres", "kafka", "airflow", "spark", "mail", "logs", "run"):
            shutil.rmtree(settings.state_dir / sub, ignore_errors=True)
    target = 600.0 if args.cold else 120.0

    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, stack_rss_mib(settings.state_dir))
            time.sleep(1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    result = subprocess.run([wrapped, "demo"])
    elapsed = time.monotonic() - started
    done.set()
    sampler.join()
    if result.returncode != 0:
        print(f"demo failed with exit code {result.returncode}", file=sys.stderr)
        return result.returncode
    print(f"demo wall time: {elapsed:.1f}s ({'cold' if args.cold else 'warm'}); "
          f"peak stack memory: {peak:.0f} MiB")
    print(f"demo_walltime: ratio={elapsed / target:.2f} (target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
