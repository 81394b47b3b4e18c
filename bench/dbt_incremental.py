"""dbt at scale: the incremental build after one more hour of plays vs the full build.

Into a throwaway database on the running stack's Postgres: `wrapped generate` history
(default 10M plays of 1,000 listeners over two years, ending an hour before this hour),
a full `dbt build` (models, data tests and unit tests: the dbt_build DAG leaves the unit
tests out, a fixed cost of both builds), then one
more hour of plays at the history's average rate, loaded now, and the same `dbt build`
again (incremental models pick up only what is new). Target: ratio <= 0.1.
Between the two builds, `vacuum analyze` (untimed): in the hour between two hourly builds
autovacuum has long finished with the ten million rows just written; run here at once, it
would share the machine with the incremental build.

    .local/venv/bin/python bench/dbt_incremental.py [--plays 10000000] [--listeners 1000] [--keep]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from argparse import Namespace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2  # noqa: E402

from tests.support.postgres import create_database, drop_database  # noqa: E402
from weekly_wrapped import db  # noqa: E402
from weekly_wrapped.marts.dbt_runner import Warehouse, build_marts  # noqa: E402
from wrapped_dev import generate  # noqa: E402
from wrapped_dev.config import load_settings  # noqa: E402

TARGET = 0.1
YEARS = 2


def timed(label: str, action) -> float:
    started = time.monotonic()
    action()
    elapsed = time.monotonic() - started
    print(f"{label}: {elapsed:.1f}s", flush=True)
    return elapsed


def quiet_dbt_build(warehouse: Warehouse, artifacts: Path) -> None:
    """`dbt build`, printing only its summary lines (the whole log is in artifacts/logs)."""
    def log(line: str) -> None:
        if "Finished running" in line or "Done. PASS" in line or "ERROR" in line:
            print("  " + line.split("  ", 1)[-1].strip(), flush=True)

    build_marts(warehouse, artifacts_dir=artifacts, log=log)


def vacuum_analyze(dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True  # vacuum cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute("vacuum (analyze)")
    finally:
        conn.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plays", type=int, default=10_000_000)
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args(argv)
    settings = load_settings()
    database = f"wrapped_bench_dbt_{uuid.uuid4().hex[:8]}"
    dsn = create_database(settings.warehouse_dsn, database)
    warehouse = Warehouse(settings.pg_host, settings.pg_port, settings.pg_user, settings.pg_password, database)
    artifacts = Path(tempfile.mkdtemp(prefix="wrapped-bench-dbt-"))
    end = generate.current_hour() - timedelta(hours=1)  # the extra hour ends now, not in the future
    hour_plays = round(args.plays / (YEARS * 365 * 24))
    print(f"database {database}; dbt artifacts in {artifacts}", flush=True)
    try:
        db.apply_schema(dsn)
        history = Namespace(plays=args.plays, listeners=args.listeners, years=YEARS, end=end.isoformat(),
                            hours=None, start=None, seed=13, append=False)
        generated_s = timed("generate", lambda: generate.main(history, dsn))
        full_s = timed("full dbt build", lambda: quiet_dbt_build(warehouse, artifacts))
        timed("vacuum analyze (untimed)", lambda: vacuum_analyze(dsn))
        one_hour = Namespace(plays=hour_plays, listeners=args.listeners, years=YEARS, end=None,
                             hours=1, start=end.isoformat(), seed=13, append=True)
        timed("one more hour", lambda: generate.main(one_hour, dsn))
        incremental_s = timed("incremental dbt build", lambda: quiet_dbt_build(warehouse, artifacts))
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from raw.plays")
            plays = cur.fetchone()[0]
            cur.execute("select count(*) from marts.wrapped_weekly")
            weeks = cur.fetchone()[0]
        print(f"uptime: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min load)")
        print(f"{plays:,} plays in raw.plays, {weeks:,} rows in marts.wrapped_weekly; generated in "
              f"{generated_s:.0f}s; full build {full_s:.0f}s; +{hour_plays:,} plays, incremental build "
              f"{incremental_s:.0f}s")
    finally:
        if args.keep:
            print(f"kept database {database}")
        else:
            drop_database(settings.warehouse_dsn, database)
    print(f"dbt_incremental: ratio={incremental_s / full_s:.2f} (target <= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
