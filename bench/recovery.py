"""Recovery: kill -9 the consumer under steady load -> everything acknowledged before the kill is committed.

Against the running stack's Kafka and Postgres: fresh topics, a throwaway database, the
real consumer started by the real supervisor. Once it keeps up with a steady load, its
whole process group (Python driver and JVM) gets SIGKILL; `supervisor.ensure_running`
(what the spark_consumers DAG runs) starts it again from its checkpoint right away. The
clock stops when every play Kafka had acknowledged at the moment of the kill is committed.
(In production the restart waits for the DAG's next run, at most its schedule, 5 minutes.)
Target: <= 60 s (ratio = measured / 60 s, target <= 1).

    .local/venv/bin/python bench/recovery.py [--rate 500]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.consumer_bench import SteadyLoad, committed_plays, private_consumer, wait_for_plays  # noqa: E402
from weekly_wrapped.streaming import supervisor  # noqa: E402
from wrapped_dev.config import load_settings  # noqa: E402

TARGET_S = 60.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=500, help="plays per second (default %(default)s)")
    args = parser.parse_args(argv)
    settings = load_settings()
    with private_consumer(settings) as (bench, topics, dsn):
        load = SteadyLoad(settings.kafka_bootstrap, topics["plays"], args.rate, seed="load").start()
        try:
            # Steady state first: the consumer is up, warm, and keeping up.
            wait_for_plays(dsn, 1, 180)
            time.sleep(15)
            before = supervisor.status(bench.consumer)
            acked_at_kill = len(load.delivered)
            killed = time.monotonic()
            os.killpg(before.pid, signal.SIGKILL)
            print(f"killed pid {before.pid} (lag was {before.lag}); {acked_at_kill:,} plays acknowledged so far")
            while supervisor.is_running(bench.consumer):  # SIGKILL is asynchronous
                time.sleep(0.05)
            restarted = supervisor.ensure_running(bench.consumer, settle_seconds=0)
            started = time.monotonic()
            print(f"supervisor restarted it as pid {restarted.pid} after {started - killed:.1f}s")
            first = None
            while committed_plays(dsn) < acked_at_kill:
                if time.monotonic() - killed > 10 * TARGET_S:
                    raise TimeoutError(f"not recovered after {10 * TARGET_S:.0f}s:\n{supervisor.log_tail(bench.consumer)}")
                if first is None and supervisor.status(bench.consumer).last_batch_id != before.last_batch_id:
                    first = time.monotonic()
                time.sleep(0.25)
            recovered = time.monotonic() - killed
        finally:
            load.stop()
    if first is not None:
        print(f"first batch after the restart committed {first - killed:.1f}s after the kill")
    print(f"every play acknowledged before the kill was committed {recovered:.1f}s after it")
    print(f"recovery: ratio={recovered / TARGET_S:.2f} (target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
