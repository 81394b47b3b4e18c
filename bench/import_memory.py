"""Peak memory of the history import of a 500,000-row export, in a process of its own.

    python bench/import_memory.py [--rows 500000]

The export is the one `import_throughput.py` generates (Spotify's zip, ~16k-row
`Streaming_History_Audio_*.json` files, ~390 MB of JSON). A child process does only the
import, exactly as the DAG calls it (both passes, every message produced to the running local
Kafka on private topics and acknowledged, the queues written to a private database), and
reports its peak resident set size (VmHWM), which includes the interpreter, the
libraries and librdkafka's buffers. The figure is compared with a 500 MB budget.
The last line is `import_memory: ratio=<peak RSS / 500 MB> (target <= 1)`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_MB = 500


def child(args: argparse.Namespace) -> None:
    """The import alone; prints the report and then `peak_rss_kb=<n>`."""
    import logging

    from weekly_wrapped.ingest.history_import import import_export

    logging.basicConfig(level=logging.INFO, format="  child: %(message)s")
    logging.getLogger("weekly_wrapped.ingest.history_import").setLevel(logging.INFO)
    report = import_export(Path(args.path), args.user, args.dsn, json.loads(args.kafka), topics=json.loads(args.topics))
    print(json.dumps({k: report[k] for k in ("rows", "plays", "skip_events", "skipped", "delivered")}), flush=True)
    print(f"peak_rss_kb={peak_rss_kb()}", flush=True)


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM). Not `ru_maxrss`: Linux carries that across exec, so
    a child would report the parent's size at fork (the parent held the generated rows)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("path", "user", "dsn", "kafka", "topics"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from import_throughput import USER_ID, import_target, write_export
    from wrapped_dev.config import load_settings

    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="bench-import-mem-") as tmp, import_target(settings) as (dsn, kafka, topics):
        path = write_export(Path(tmp), args.rows)
        print(f"{args.rows} rows, zip {path.stat().st_size / 1e6:.0f} MB; importing in a child process", flush=True)
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--path", str(path), "--user", USER_ID, "--dsn", dsn,
             "--kafka", json.dumps(kafka), "--topics", json.dumps(topics)],
            capture_output=True, text=True, timeout=900)
        elapsed = time.perf_counter() - started
        lines = [line for line in (out.stderr + out.stdout).splitlines() if " rows: " in line or "peak_rss" in line
                 or line.startswith("{")]
        print("\n".join(lines[-6:]))
        if out.returncode != 0:
            print(out.stderr[-3000:])
            raise SystemExit(f"the import failed (exit {out.returncode})")
        peak_kb = int(out.stdout.rsplit("peak_rss_kb=", 1)[1].split()[0])
        peak_mb = peak_kb / 1024
        print(f"import of {args.rows} rows: {elapsed:.0f}s, peak RSS {peak_mb:.0f} MB (budget {BUDGET_MB} MB)")
    print(f"import_memory: ratio={peak_mb / BUDGET_MB:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
