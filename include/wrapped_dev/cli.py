"""`wrapped`: run Weekly Wrapped's local stack and its demo.

    wrapped up        start every service (idempotent), with health checks
    wrapped status    what runs, where, and its health
    wrapped logs NAME show (or follow) one service's log
    wrapped down      stop everything `up` started, by process group
    wrapped demo      up, onboard demo listeners, run the DAGs through Airflow to a delivered e-mail
    wrapped airflow … the `airflow` CLI with the stack's settings (e.g. `wrapped airflow dags list`)
    wrapped invite create --label NAME | list | revoke CODE_OR_LABEL
                      invite codes for the onboarding page (needed outside demo mode)
    wrapped preview --user U --week YYYY-MM-DD [--out FILE]
                      one user's recap to an HTML file (and its text part), without sending
    wrapped generate --plays 10000000 --listeners 1000 --years 2 [--dsn DSN]
                      synthetic listening history (plays, tracks, albums, artists, users) by COPY
    wrapped listeners add --count 1000 | remove
                      many synthetic listeners on the fake Spotify, onboarded as users (or deleted again)
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from wrapped_dev.config import Settings, load_settings


def _step(label: str, action: Callable[[], object]) -> object:
    print(f"  • {label} ...", end="", flush=True)
    started = time.monotonic()
    result = action()
    print(f" ok ({time.monotonic() - started:.1f}s)", flush=True)
    return result


def up(settings: Settings, with_airflow: bool = True) -> None:
    from weekly_wrapped import db
    from weekly_wrapped.marts.cosmos_config import start_partial_parse
    from weekly_wrapped.streaming.jars import ensure_spark_jars
    from wrapped_dev.stack import airflow, fakes, kafka, postgres, secrets

    secrets.refuse_unsafe(settings)  # outside demo mode: no published secret, before anything starts
    print(f"Starting the local stack (state in {settings.state_dir})", flush=True)
    _step(f"PostgreSQL on {settings.pg_host}:{settings.pg_port}", lambda: postgres.start(settings))
    # Airflow's first `db migrate` takes ~30 s of mostly waiting on Postgres: let it run while
    # Kafka and the jars start, and wait for it in the Airflow step.
    migration = airflow.migrate_in_background(settings) if with_airflow else None
    # dbt's parse state for the first dbt_build, ready long before it (it needs nothing of the stack).
    parse = start_partial_parse() if with_airflow else None
    _step("warehouse tables (raw, ops, app)", lambda: db.apply_schema(settings.warehouse_dsn))
    _step(f"Kafka (KRaft) on {settings.kafka_bootstrap}, topics", lambda: kafka.start(settings))
    _step("Spark connector, JDBC and parse fast path jars", lambda: ensure_spark_jars(settings.consumer.jars_dir))
    if settings.spark_cluster:
        from wrapped_dev.stack import spark

        _step(f"Spark master on {spark.master_url(settings)} (UI :{settings.spark_master_ui_port}), a worker "
              f"({settings.spark_worker_cores} cores, {settings.spark_worker_memory})", lambda: spark.start(settings))
    _step("fake Spotify, fake Gemini, SMTP sink", lambda: fakes.start(settings))
    if with_airflow:
        _step(f"Airflow (api-server on :{settings.airflow_port}, scheduler, dag-processor, triggerer)",
              lambda: airflow.start(settings, migration))
        print(f"Airflow UI: {airflow.api_url(settings)}  (user admin, password in "
              f"{airflow.password_file(settings)})", flush=True)
        parse.wait()  # a failed parse only costs the first build its own full parse


def down(settings: Settings) -> None:
    from weekly_wrapped.streaming import supervisor
    from wrapped_dev.stack import airflow, fakes, kafka, postgres, spark

    print("Stopping the local stack", flush=True)
    # Airflow first: its consumer watch would start the consumer again.
    _step("Airflow", lambda: airflow.stop(settings))
    _step("Spark consumer", lambda: supervisor.stop(settings.consumer))
    _step("Spark master and worker", lambda: spark.stop(settings))  # a no-op unless `up` started them
    _step("fakes", lambda: fakes.stop(settings))
    _step("Kafka", lambda: kafka.stop(settings))
    _step("PostgreSQL", lambda: postgres.stop(settings))


def status(settings: Settings) -> int:
    from weekly_wrapped.streaming import supervisor
    from wrapped_dev.stack import airflow, fakes, kafka, postgres

    rows = [
        ("postgres", postgres.is_running(settings), f"{settings.pg_host}:{settings.pg_port}"),
        *kafka.status_rows(settings),
        ("fakes", fakes.is_running(settings),
         f"spotify :{settings.fake_spotify_port}, gemini :{settings.fake_gemini_port}, "
         f"musicbrainz :{settings.fake_musicbrainz_port}, smtp :{settings.smtp_port}"),
        ("airflow", airflow.is_running(settings), airflow.api_url(settings)),
        ("spark consumer", supervisor.is_running(settings.consumer), "supervised by the spark_consumers DAG"
         + ("; with a standby" if supervisor.standby_pid(settings.consumer) else "")),
    ]
    if settings.spark_cluster:
        from wrapped_dev.stack import spark

        rows.insert(-1, ("spark cluster", spark.is_running(settings),
                         f"{spark.master_url(settings)}, {len(spark.alive_workers(settings))} worker(s) alive, "
                         f"UI http://127.0.0.1:{settings.spark_master_ui_port}"))
    for name, ok, where in rows:
        print(f"{name:15} {'up  ' if ok else 'down'}  {where}")
    health = airflow.health(settings)
    if health:
        parts = ", ".join(f"{k}={v.get('status')}" for k, v in health.items() if isinstance(v, dict))
        print(f"airflow health  {parts}")
    core_up = all(ok for name, ok, _ in rows if name != "spark consumer")
    return 0 if core_up else 1


def logs(settings: Settings, name: str, follow: bool, lines: int) -> int:
    import subprocess

    path = settings.state_dir / "logs" / f"{name}.log"
    if name == "postgres":
        path = settings.state_dir / "postgres" / "server.log"
    if name == "spark-consumer":
        from weekly_wrapped.streaming import supervisor

        path = supervisor.service(settings.consumer).log_file
    if not path.exists():
        available = sorted(p.stem for p in (settings.state_dir / "logs").glob("*.log"))
        print(f"no log for {name!r}; available: {', '.join(available + ['postgres', 'spark-consumer'])}",
              file=sys.stderr)
        return 2
    argv = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(path)]
    return subprocess.call(argv)


def consumer(settings: Settings, action: str, as_json: bool) -> int:
    import json
    from dataclasses import asdict

    from weekly_wrapped.streaming import supervisor

    config = settings.consumer
    if action == "start":
        print(f"consumer started, pid {supervisor.start(config)}; log: {supervisor.service(config).log_file}")
    elif action == "stop":
        print("consumer stopped" if supervisor.stop(config) else "consumer was not running")
    else:
        current = supervisor.ensure_running(config) if action == "ensure" else supervisor.status(config)
        print(json.dumps(asdict(current), indent=2) if as_json else current.describe())
    return 0


def preview(settings: Settings, user_id: str, week: str, out: str | None) -> int:
    import re

    from weekly_wrapped.recap.job import parse_week_start
    from weekly_wrapped.recap.preview import NoRecapRow, render_preview

    monday = parse_week_start(week)
    out = out or f"recap-{re.sub(r'[^A-Za-z0-9_.-]', '_', user_id)}-{monday.isoformat()}.html"
    try:
        path = render_preview(settings.warehouse_dsn, user_id, monday, out)
    except NoRecapRow as exc:
        print(f"{exc}. Is the week over, and has dbt built it? (`wrapped airflow dags trigger dbt_build`)",
              file=sys.stderr)
        return 1
    print(f"recap written to {path} (text part: {path.with_suffix('.txt')}); nothing was sent")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wrapped",
        description="Run Weekly Wrapped's local stack (real Postgres, Kafka, Spark, Airflow, dbt) and its demo.",
        epilog="Ports and paths come from the environment (see README, 'Configuration').",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start every service (safe to re-run)")
    p_up.add_argument("--no-airflow", action="store_true", help="start only Postgres, Kafka and the fakes")
    sub.add_parser("down", help="stop everything `up` started")
    sub.add_parser("create-topics", help="create the four Kafka topics on WRAPPED_KAFKA_BOOTSTRAP (for docker-compose "
                                            "or an existing cluster; replication as its brokers allow, up to 3)")
    sub.add_parser("status", help="show what runs and where")
    p_logs = sub.add_parser("logs", help="show a service's log")
    p_logs.add_argument("name", help="kafka (kafka-2, kafka-3 with WRAPPED_KAFKA_BROKERS=3), postgres, "
                                     "airflow-scheduler, airflow-api-server, "
                                     "airflow-dag-processor, airflow-triggerer, fake-spotify, fake-gemini, "
                                     "smtp-sink, spark-consumer, spark-master, spark-worker "
                                     "(WRAPPED_SPARK_CLUSTER=true)")
    p_logs.add_argument("-f", "--follow", action="store_true")
    p_logs.add_argument("-n", "--lines", type=int, default=50)
    p_airflow = sub.add_parser("airflow", help="run the airflow CLI against the local stack",
                               add_help=False)
    p_airflow.add_argument("args", nargs=argparse.REMAINDER)
    p_invite = sub.add_parser("invite", help="invite codes for the onboarding page: create --label NAME | list | "
                                             "revoke CODE_OR_LABEL", add_help=False)
    p_invite.add_argument("args", nargs=argparse.REMAINDER)
    p_demo = sub.add_parser("demo", help="run the whole pipeline for the demo listeners, through Airflow")
    p_demo.add_argument("--timeout", type=int, default=900, help="seconds to wait for each DAG run")
    p_consumer = sub.add_parser("consumer", help="the streaming consumer, by hand (the spark_consumers DAG "
                                                 "checks it every 2 s and restarts it)")
    p_consumer.add_argument("action", choices=("start", "stop", "status", "ensure"),
                            help="start it detached, stop it, show its status, or do what the DAG does")
    p_consumer.add_argument("--json", action="store_true", help="status as JSON")
    p_preview = sub.add_parser(
        "preview", help="render one user's recap to an HTML file, without sending",
        description="Render a user's weekly recap from marts.wrapped_weekly to an HTML file (pictures "
                    "embedded, so it opens in any browser) and its text part beside it (.txt). Uses the "
                    "template intro: no AI, nothing sent, nothing stored. The user's locale (app.users.locale) "
                    "sets weekday and hour formats.",
        epilog="Example: wrapped preview --user demo-ada --week 2026-11-16 --out /tmp/ada.html",
    )
    p_preview.add_argument("--user", required=True, help="the user's id (app.users.user_id, their Spotify id)")
    p_preview.add_argument("--week", required=True, metavar="YYYY-MM-DD",
                           help="any day of the week to show; its Monday (the user's local week) is used")
    p_preview.add_argument("--out", metavar="FILE",
                           help="where to write the HTML (default: recap-<user>-<monday>.html here)")
    p_generate = sub.add_parser(
        "generate", help="fill a warehouse with synthetic listening history (benchmarks)",
        description="Deterministic synthetic plays of many listeners, with their tracks, albums, artists "
                    "and app.users rows, written by COPY (see wrapped_dev/generate.py).",
        epilog="Example: wrapped generate --plays 10000000 --listeners 1000 --years 2 --dsn 'dbname=big ...'",
    )
    from wrapped_dev import generate as generate_module

    generate_module.add_arguments(p_generate)
    p_generate.add_argument("--dsn", help="the warehouse to fill (default: the stack's; schema.sql is applied)")
    p_listeners = sub.add_parser("listeners", help="onboard many synthetic listeners from the fake Spotify "
                                                   "(add --count N), or delete the numbered ones (remove)")
    p_listeners.add_argument("action", choices=("add", "remove"))
    p_listeners.add_argument("--count", type=int, default=1000, help="listeners to serve and onboard (add)")
    args = parser.parse_args(argv)

    settings = load_settings()
    if args.command == "generate":
        from weekly_wrapped import db

        dsn = args.dsn or settings.warehouse_dsn
        db.apply_schema(dsn)
        return generate_module.main(args, dsn)
    if args.command == "listeners":
        from wrapped_dev import listeners

        return listeners.main(args, settings)
    if args.command == "airflow":
        import os

        from wrapped_dev.stack.env import service_env, venv_bin

        airflow_bin = str(venv_bin() / "airflow")
        os.execve(airflow_bin, [airflow_bin, *args.args], service_env(settings))
    if args.command == "invite":
        from weekly_wrapped.users import invites

        return invites.main(args.args, dsn=settings.warehouse_dsn, public_url=settings.public_url)
    if args.command == "up":
        up(settings, with_airflow=not args.no_airflow)
        return 0
    if args.command == "down":
        down(settings)
        return 0
    if args.command == "create-topics":
        from wrapped_dev.stack.kafka import create_topics

        create_topics(settings.kafka_bootstrap)
        return 0
    if args.command == "status":
        return status(settings)
    if args.command == "logs":
        return logs(settings, args.name, args.follow, args.lines)
    if args.command == "consumer":
        return consumer(settings, args.action, args.json)
    if args.command == "preview":
        return preview(settings, args.user, args.week, args.out)
    if args.command == "demo":
        from wrapped_dev.demo import run_demo

        up(settings)
        return run_demo(settings, timeout=args.timeout)
    return 2


if __name__ == "__main__":
    sys.exit(main())
