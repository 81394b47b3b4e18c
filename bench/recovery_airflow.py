"""Recovery through Airflow: kill -9 the stack's consumer -> caught up, with only Airflow supervising.

Against the running stack (`wrapped up`; WRAPPED_* select which one): its Airflow, Kafka,
Postgres and its own consumer, supervised by nothing but the `spark_consumers` DAG (unpaused
here, its pause state restored afterwards). A steady load of synthetic plays (listeners
`benchairflow<id>-user-*`, deleted from raw.* and marts.* afterwards) goes to the plays topic.
Once the consumer keeps up (and its standby waits, when the installation keeps one, as the
local stack does by default: WRAPPED_CONSUMER_STANDBY), its whole process group (driver and JVM)
gets SIGKILL at a random moment (so sometimes between two supervision runs); the clock stops
when every play Kafka had acknowledged at the kill is committed. The worst of `--kills` kills counts.
Target: <= 30 s (ratio = worst / 30 s, target <= 1).

The supervisor refuses a third restart within 30 minutes (it fails loudly instead), so do not
run more than two kills per half hour against one stack.

    .local/venv/bin/python bench/recovery_airflow.py [--rate 500] [--kills 2]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.consumer_bench import SteadyLoad  # noqa: E402
from weekly_wrapped import contracts, db  # noqa: E402
from weekly_wrapped.streaming import supervisor  # noqa: E402
from weekly_wrapped.streaming.consumer import checkpoint_query_id  # noqa: E402
from wrapped_dev.airflow_client import AirflowClient  # noqa: E402
from wrapped_dev.config import load_settings  # noqa: E402
from wrapped_dev.stack import airflow  # noqa: E402

TARGET_S = 30.0
DAG_ID = "spark_consumers"


def committed_offsets(dsn: str, query_id: str | None) -> dict:
    """End offsets ({topic: {partition: next offset}}) of the consumer's newest committed batch."""
    if query_id is None:
        return {}
    with db.transaction(dsn) as cur:
        cur.execute("select end_offsets from ops.consumer_batches where query_id = %s "
                    "order by batch_id desc limit 1", (query_id,))
        row = cur.fetchone()
    return row[0] if row else {}


def acknowledged(load: SteadyLoad) -> dict[int, int]:
    """The highest offset Kafka acknowledged so far, per partition."""
    highest: dict[int, int] = {}
    for partition, offset, _ in list(load.delivered):
        highest[partition] = max(offset, highest.get(partition, -1))
    return highest


def caught_up(settings, topic: str, acked: dict[int, int]) -> bool:
    if not acked:
        return False  # nothing acknowledged yet: nothing to have caught up with
    done = committed_offsets(settings.warehouse_dsn, checkpoint_query_id(settings.consumer.checkpoint))
    return all(int(done.get(topic, {}).get(str(p), 0)) > offset for p, offset in acked.items())


def supervision_running(client: AirflowClient) -> bool:
    running = client.request("GET", f"/dags/{DAG_ID}/dagRuns/~/taskInstances?state=running")
    return bool(running and running.get("total_entries"))


def wait(predicate, timeout: float, what: str, interval: float = 0.1) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic()


def delete_bench_plays(settings, prefix: str) -> None:
    """Remove the bench's listeners from every raw.* and marts.* table with a user_id."""
    with db.transaction(settings.warehouse_dsn) as cur:
        cur.execute("select c.table_schema, c.table_name from information_schema.columns c "
                    "join information_schema.tables t using (table_schema, table_name) "
                    "where c.column_name = 'user_id' and c.table_schema in ('raw', 'marts') "
                    "and t.table_type = 'BASE TABLE'")
        for schema, table in cur.fetchall():
            cur.execute(f'delete from "{schema}"."{table}" where user_id like %s', (prefix + "%",))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=500, help="plays per second (default %(default)s)")
    parser.add_argument("--kills", type=int, default=2, help="kills; the worst counts (default %(default)s)")
    args = parser.parse_args(argv)
    settings = load_settings()
    deaths = supervisor.recent_deaths(settings.consumer, supervisor.DEATH_WINDOW_SECONDS)
    if len(deaths) + args.kills >= supervisor.MAX_DEATHS:  # the supervisor would refuse a restart
        must_expire = deaths[len(deaths) + args.kills - supervisor.MAX_DEATHS]
        free_at = time.strftime("%H:%M:%S", time.localtime(must_expire + supervisor.DEATH_WINDOW_SECONDS))
        print(f"the consumer died {len(deaths)} times in the last {supervisor.DEATH_WINDOW_SECONDS // 60} minutes; "
              f"{args.kills} more would stop the supervisor restarting it. Try again after {free_at}.")
        return 2
    client = AirflowClient(airflow.api_url(settings), "admin", airflow.admin_password(settings))
    client.wait_for_dag(DAG_ID)
    was_paused = client.request("GET", f"/dags/{DAG_ID}")["is_paused"]
    client.unpause(DAG_ID)
    seed = f"airflow{uuid.uuid4().hex[:6]}"
    topic = contracts.PLAYS_TOPIC
    load = None
    times = []
    try:
        print(f"{DAG_ID} unpaused; waiting for its run to start the consumer")
        wait(lambda: supervisor.is_running(settings.consumer), 300, "Airflow to start the consumer", interval=0.5)
        load = SteadyLoad(settings.kafka_bootstrap, topic, args.rate, seed=seed).start()
        print(f"producing {args.rate} plays/s to {topic}; waiting for the consumer to keep up")
        time.sleep(5)
        for _ in range(3):  # keeping up: three times in a row, what Kafka had acknowledged is committed soon after
            mark = acknowledged(load)
            wait(lambda: caught_up(settings, topic, mark), 300, "the consumer to keep up", interval=0.25)
        for kill in range(1, args.kills + 1):
            if settings.consumer.standby:  # as a consumer running for days has it: Spark up, waiting
                wait(lambda: supervisor.status(settings.consumer).standby_waiting, 480,
                     "the supervision to start a standby", interval=0.5)
            time.sleep(random.uniform(5, 25))  # a random moment: inside a supervision run or between two
            pid = supervisor.our_consumer_pid(settings.consumer)
            if pid is None:
                raise RuntimeError("no consumer running to kill (see `wrapped logs spark-consumer`)")
            watched = supervision_running(client)
            acked = acknowledged(load)
            killed = time.monotonic()
            os.killpg(pid, signal.SIGKILL)
            restarted = wait(lambda: supervisor.our_consumer_pid(settings.consumer) not in (None, pid),
                             10 * TARGET_S, "Airflow to restart the consumer", interval=0.05)
            done = wait(lambda: caught_up(settings, topic, acked), 10 * TARGET_S, "the catch-up", interval=0.1)
            times.append(done - killed)
            print(f"kill {kill}: pid {pid} (supervision task {'running' if watched else 'between runs'}, "
                  f"{'a standby waiting' if settings.consumer.standby else 'no standby'}); "
                  f"restarted after {restarted - killed:.1f}s; every play acknowledged before the kill "
                  f"committed after {done - killed:.1f}s")
    finally:
        if load is not None:
            load.stop()
        if was_paused:
            client.request("PATCH", f"/dags/{DAG_ID}?update_mask=is_paused", {"is_paused": True})
        delete_bench_plays(settings, f"bench{seed}-user-")
    worst = max(times)
    print(f"kill -9 -> caught up, worst of {len(times)}: {worst:.1f}s "
          f"(all: {', '.join(f'{t:.1f}s' for t in times)})")
    print(f"recovery_airflow: ratio={worst / TARGET_S:.2f} (target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
