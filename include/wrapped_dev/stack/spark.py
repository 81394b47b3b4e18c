"""A Spark standalone cluster for the local stack: one master and one worker (WRAPPED_SPARK_CLUSTER=true).

Both run from the venv's PySpark install (`bin/spark-class`, the launcher Spark's own
`start-master.sh` uses), so the cluster is exactly the driver's Spark version; a driver and
executors of different versions do not talk. The worker starts the consumer's executors as
its children (in its process group, so `stop` ends them too); they fetch the connector jars
from the driver (`spark.jars`) and need no Python: the consumer's plan has no Python UDFs.

Ports: the master on WRAPPED_SPARK_MASTER_PORT (7077) with its web UI on
WRAPPED_SPARK_MASTER_UI_PORT (8090; Spark's 8080 is Airflow's here), the worker's web UI
on WRAPPED_SPARK_WORKER_UI_PORT (8091); the worker's own RPC port is left to Spark.
Logs: `wrapped logs spark-master`, `wrapped logs spark-worker`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.request
from pathlib import Path

from weekly_wrapped.streaming import process
from weekly_wrapped.streaming.process import Service, port_open, wait_until
from wrapped_dev.config import Settings

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
# The daemons only keep track of workers and applications; the executors get their own memory.
DAEMON_MEMORY = "512m"


def spark_home() -> Path:
    """The PySpark package folder: it holds Spark's jars and bin/ (found without importing pyspark)."""
    return Path(importlib.util.find_spec("pyspark").origin).parent


def master_url(settings: Settings) -> str:
    return f"spark://127.0.0.1:{settings.spark_master_port}"


def master_service(settings: Settings) -> Service:
    return Service("spark-master", settings.state_dir / "run", settings.state_dir / "logs")


def worker_service(settings: Settings) -> Service:
    return Service("spark-worker", settings.state_dir / "run", settings.state_dir / "logs")


def worker_dir(settings: Settings) -> Path:
    """The worker's scratch: one folder per application with each executor's stdout and stderr."""
    return settings.state_dir / "spark" / "worker"


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "SPARK_HOME": str(spark_home()),
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_LOCAL_IP": "127.0.0.1",
        # No REST submission server: its fixed port (6066) would clash between two stacks on a machine.
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        # spark-class would read conf/spark-env.sh here; ours has none, and a user's must not leak in.
        "SPARK_CONF_DIR": str(settings.state_dir / "spark" / "conf"),
    })
    return env


def master_argv(settings: Settings) -> list[str]:
    return [str(spark_home() / "bin" / "spark-class"), MASTER_CLASS, "--host", "127.0.0.1",
            "--port", str(settings.spark_master_port), "--webui-port", str(settings.spark_master_ui_port)]


def worker_argv(settings: Settings) -> list[str]:
    return [str(spark_home() / "bin" / "spark-class"), WORKER_CLASS, "--host", "127.0.0.1",
            "--webui-port", str(settings.spark_worker_ui_port),
            "--cores", str(settings.spark_worker_cores), "--memory", settings.spark_worker_memory,
            "--work-dir", str(worker_dir(settings)), master_url(settings)]


def master_state(settings: Settings) -> dict | None:
    """The master's own view (its web UI's /json: workers, applications); None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.spark_master_ui_port}/json/", timeout=2) as r:
            return json.load(r)
    except (OSError, ValueError):
        return None


def alive_workers(settings: Settings) -> set[str]:
    """Ids of the workers the master counts as alive (registered, heartbeating)."""
    state = master_state(settings) or {}
    return {w["id"] for w in state.get("workers", []) if w.get("state") == "ALIVE"}


def is_running(settings: Settings) -> bool:
    return port_open("127.0.0.1", settings.spark_master_port) and process.is_running(worker_service(settings))


def _launch_master(settings: Settings) -> None:
    if not port_open("127.0.0.1", settings.spark_master_port):
        (settings.state_dir / "spark" / "conf").mkdir(parents=True, exist_ok=True)
        process.start(master_service(settings), master_argv(settings), _env(settings))


def _launch_worker(settings: Settings) -> set[str] | None:
    """Start our worker unless it runs; the ids of the workers alive before it (None: it ran already)."""
    if process.is_running(worker_service(settings)):
        return None
    before = alive_workers(settings)
    worker_dir(settings).mkdir(parents=True, exist_ok=True)
    process.start(worker_service(settings), worker_argv(settings), _env(settings))
    return before


def _wait_for_worker(settings: Settings, before: set[str] | None) -> None:
    if before is not None:
        # A new id: a worker killed a moment ago may still count as alive for a while.
        wait_until(lambda: bool(alive_workers(settings) - before), "the Spark worker to register", 120,
                   worker_service(settings))


def start_worker(settings: Settings) -> None:
    """Start the worker unless ours runs, and wait until the master counts it."""
    _wait_for_worker(settings, _launch_worker(settings))


def start(settings: Settings) -> None:
    """Master and worker start together (each JVM takes seconds); the worker retries its master."""
    _launch_master(settings)
    before = _launch_worker(settings)
    wait_until(lambda: master_state(settings) is not None, "the Spark master", 120, master_service(settings))
    _wait_for_worker(settings, before)


def stop(settings: Settings) -> bool:
    """Worker (with its executors: one process group) first, then the master."""
    stopped = process.stop(worker_service(settings), timeout=15)
    return process.stop(master_service(settings), timeout=15) or stopped
