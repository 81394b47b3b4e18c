"""Keep the streaming consumer (`spark/consume_streams.py`) alive: start, watch, restart, stop.

The consumer runs detached in its own process group (so no Airflow worker slot is
held while it runs), with a pid file and a log under `<state_dir>/spark/` (the log is
also linked as `<state_dir>/logs/spark-consumer.log` for `wrapped logs spark-consumer`).

Which consumer is ours, for sure: "running" means someone holds the exclusive `flock` on
`spark-consumer.lock` in the work dir. The supervisor takes that lock itself before it
starts the job and hands the locked descriptor over (`--lock-fd`), so the consumer holds it
from its first instant to its exit, and the kernel drops it when the process dies (a lock
file left behind blocks nothing). A pid file alone is never trusted: before any signal the
supervisor checks that the lock is held and that the process is the one it started (pid,
start time in /proc and the exact command line it recorded). Check-and-start and stop run
under a second lock (`spark-consumer.supervisor.lock`), so two supervisors at once (two DAG
runs, the DAG and `wrapped consumer start`) start one consumer.

A standby (`ConsumerConfig.standby`, started by `supervise` once the consumer has settled, see
`has_settled`) is the same job with `--standby`: its Spark is up and it blocks on that lock, so
when the consumer dies the kernel hands the lock to the standby at once and it resumes from the
checkpoint without a JVM start. The next check records the death, makes the standby the consumer,
and starts a new standby once that one has settled. The state file names both (pid, start time,
command line).

Health comes from Postgres and Kafka, not from the process: the heartbeat is the
newest `ops.consumer_batches` row of the query in our checkpoint, and the lag is
Kafka's end offsets minus that row's `end_offsets`. An idle consumer writes no rows,
so an old heartbeat with zero lag is healthy; "stalled" means lag and no new batch.

The `spark_consumers` DAG builds a `ConsumerConfig` from Airflow Connections and calls
`supervise` (a loop of `ensure_running` every CHECK_SECONDS, so a dead consumer is restarted
within seconds); the local stack's `wrapped consumer start|stop|status|ensure` calls `ensure_running`.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from weekly_wrapped import PROJECT_ROOT, db
from weekly_wrapped.streaming import process

JOB = PROJECT_ROOT / "spark" / "consume_streams.py"
# The consumer reads the warehouse DSN from here, so the password never shows in `ps`.
DSN_ENV = "WRAPPED_WAREHOUSE_DSN"

# Spark needs ~10 s to start; a job that is still alive after this has passed its setup.
SETTLE_SECONDS = 25
# A consumer still catching up, or on a machine still busy, after this long gets its standby
# anyway. Long enough for a fresh stack's first plays to be built and sent (the demo: about
# 3 minutes on two cores, all of it busy) before a standby's 45 CPU seconds join in.
SETTLE_LIMIT_SECONDS = 300
# Caught up enough for a standby to start beside it: a few seconds of a steady stream.
CAUGHT_UP_MESSAGES = 2000
# A consumer with lag that commits nothing for this long (after a grace re-check) is stalled.
STALL_SECONDS = 90
# ... but its first batch after a start reads the whole backlog (all that came while it was
# down) and starts Spark: on a busy machine that takes minutes, and restarting it would only
# start that batch over.
FIRST_BATCH_SECONDS = 300
# Found dead (not stopped by us) this often within the window: stop restarting, fail loudly.
MAX_DEATHS, DEATH_WINDOW_SECONDS = 3, 30 * 60
# Unexpected exits are remembered this long, for the operator's alert (weekly_wrapped.alerts).
DEATH_HISTORY_SECONDS = 24 * 3600
# `supervise` checks this often: a consumer killed is restarted within about this many seconds.
CHECK_SECONDS = 2.0
# A probe (`is_running` from another process) holds the consumer lock for microseconds; a start
# that finds it taken asks again for this long before it believes a consumer holds it.
LOCK_RETRY_SECONDS = 2.0
# After SIGKILL the kernel still has to tear the processes down (a JVM of some GiB takes a moment).
KILL_WAIT_SECONDS = 10.0
# A standby that became the consumer and still holds no lock after this long is stuck: replaced.
TAKEOVER_SECONDS = 120


@dataclass(frozen=True)
class ConsumerConfig:
    """Where the consumer reads and writes, and where it keeps its own files (plain values)."""

    dsn: str = field(repr=False)  # holds the warehouse password
    kafka_bootstrap: str
    work_dir: Path  # pid file, log, checkpoint and the resolved jars
    spark_master: str = "local[2]"
    driver_memory: str = "2g"
    standby: bool = False  # keep a second, warm consumer waiting to take over (`supervise` starts it)

    @property
    def checkpoint(self) -> Path:
        return self.work_dir / "checkpoints" / "consumer"

    @property
    def jars_dir(self) -> Path:
        return self.work_dir / "jars"

    @property
    def lock_file(self) -> Path:
        return self.work_dir / "spark-consumer.lock"  # held by the running consumer

    @property
    def supervisor_lock_file(self) -> Path:
        return self.work_dir / "spark-consumer.supervisor.lock"  # held while a supervisor checks and acts


def standby_by_default(spark_master: str) -> bool:
    """A standby by default only with a local master: on a cluster, its idle Spark application
    would take the free cores (standalone gives an application all it can) and keep them."""
    return spark_master.startswith("local")


class ConsumerDied(RuntimeError):
    """The consumer keeps exiting; the message carries the tail of its log."""


@dataclass
class Status:
    running: bool
    pid: int | None
    query_id: str | None  # from the checkpoint; None before the first start
    last_batch_id: int | None
    heartbeat_age_s: float | None  # seconds since the last committed batch
    lag: int | None  # messages in Kafka not yet committed to Postgres (None: Kafka unreachable)
    lag_by_partition: dict[str, int] = field(default_factory=dict)
    log_file: str = ""
    standby_pid: int | None = None
    standby_waiting: bool = False  # its Spark is up and it waits for the lock

    def describe(self) -> str:
        age = f"{self.heartbeat_age_s:.0f}s ago" if self.heartbeat_age_s is not None else "none yet"
        standby = ("" if self.standby_pid is None else
                   f"; standby pid {self.standby_pid} {'waiting' if self.standby_waiting else 'starting'}")
        return (f"consumer {'running (pid %s)' % self.pid if self.running else 'NOT running'}; "
                f"last batch {self.last_batch_id if self.last_batch_id is not None else '-'} ({age}); "
                f"lag {self.lag if self.lag is not None else 'unknown'} messages{standby}")


def service(config: ConsumerConfig) -> process.Service:
    return process.Service("spark-consumer", config.work_dir, config.work_dir)


def _state_file(config: ConsumerConfig) -> Path:
    return config.work_dir / "spark-consumer.json"


def _read_state(config: ConsumerConfig) -> dict:
    try:
        return json.loads(_state_file(config).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _write_state(config: ConsumerConfig, state: dict) -> None:
    _state_file(config).parent.mkdir(parents=True, exist_ok=True)
    _state_file(config).write_text(json.dumps(state, indent=2))



def _child_env(config: ConsumerConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        DSN_ENV: config.dsn,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": env.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


_supervisors = threading.local()  # the supervisor locks this thread holds (ensure_running -> start)


@contextmanager
def _supervising(config: ConsumerConfig) -> Iterator[None]:
    """One supervisor at a time per work dir (blocking flock); re-entrant within a thread."""
    held = _supervisors.__dict__.setdefault("paths", set())
    key = str(config.supervisor_lock_file)
    if key in held:
        yield
        return
    config.work_dir.mkdir(parents=True, exist_ok=True)
    with open(config.supervisor_lock_file, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)  # closing the file releases the lock


def _lock_held(config: ConsumerConfig) -> bool:
    """Whether some process holds the consumer lock (a shared, non-blocking probe)."""
    try:
        fd = os.open(config.lock_file, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops our probe's shared lock


def _take_lock(config: ConsumerConfig) -> int | None:
    """The consumer lock, exclusively, as an open descriptor; None when a consumer holds it."""
    fd = os.open(config.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def _proc_start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
    except OSError:
        return []


def _wait_for_exec(pid: int, argv: list[str], timeout: float = 5.0) -> None:
    """Until /proc shows the new command line: Popen returns as soon as exec closed its pipe, a
    moment before the kernel sets the new process's arguments (cmdline reads empty until then)."""
    deadline = time.monotonic() + timeout
    while _proc_cmdline(pid) != argv and _proc_start_ticks(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)


def _lock_holder_pid(config: ConsumerConfig) -> int | None:
    """The pid written into the lock file by whoever took the lock (informational)."""
    try:
        return int(config.lock_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _leads_its_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _alive(started: dict | None) -> bool:
    """Whether the process recorded in `started` ({pid, start_ticks, argv}, as `_spawn` returns it)
    still runs: the same pid, start time and command line, leading its own process group (the
    group is what a stop kills when the job does not stop). A pid alone could be anyone's by now."""
    if not started:
        return False
    pid = started["pid"]
    return (_proc_start_ticks(pid) == started["start_ticks"] and _proc_cmdline(pid) == started["argv"]
            and _leads_its_group(pid))


def our_consumer_pid(config: ConsumerConfig) -> int | None:
    """The pid of the consumer THIS supervisor started, if it is alive and the lock is held; else None.

    The pid file could point at anything (a reused pid, a process someone else started), so the
    process must also be the one recorded when we started it (`_alive`).
    """
    started = _read_state(config).get("process")
    if not started or not _lock_held(config):
        return _legacy_consumer_pid(config)
    if process.read_pid(service(config)) != started["pid"] or not _alive(started):
        return None
    return started["pid"]


def standby_pid(config: ConsumerConfig) -> int | None:
    """The pid of the standby this supervisor started, if it is alive (waiting or still starting)."""
    standby = _read_state(config).get("standby")
    return standby["pid"] if _alive(standby) else None


def _waiting_for_lock(config: ConsumerConfig, pid: int) -> bool:
    """Whether `pid` is blocked on the consumer lock: the kernel lists such waiters in /proc/locks
    as `N: -> FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> ...`."""
    try:
        st = os.stat(config.lock_file)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for fields in (line.split() for line in lines):
        if "->" in fields and fields[fields.index("->") + 4:][:2] == [str(pid), where]:
            return True
    return False


def _proc_start_epoch(pid: int) -> float | None:
    ticks = _proc_start_ticks(pid)
    if ticks is None:
        return None
    with open("/proc/stat") as f:
        boot = next(float(line.split()[1]) for line in f if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _legacy_consumer_pid(config: ConsumerConfig) -> int | None:
    """A consumer started by a supervisor from before the lock (it holds none), so that an upgrade
    stops it rather than starting a second consumer on the same checkpoint: the pid file's process
    runs the consumer job on our checkpoint without --lock-fd, leads its group, and started within
    a minute before the pid file was written (by the supervisor that started it)."""
    pid_file = service(config).pid_file
    pid = process.read_pid(service(config))
    if pid is None:
        return None
    argv = _proc_cmdline(pid)  # [python, job, --flag, value, ...] as start() builds it
    flags = dict(zip(argv[2::2], argv[3::2]))
    if (len(argv) < 2 or not argv[1].endswith("consume_streams.py") or "--lock-fd" in flags
            or flags.get("--checkpoint") != str(config.checkpoint)):
        return None
    started = _proc_start_epoch(pid)
    try:
        written = pid_file.stat().st_mtime
    except FileNotFoundError:
        return None
    if started is None or not 0 <= written - started <= 60 or not _leads_its_group(pid):
        return None
    return pid


def is_running(config: ConsumerConfig) -> bool:
    """A consumer holds the lock of this work dir (ours or not: either way, do not start another),
    or a consumer from before the lock runs on our checkpoint."""
    return _lock_held(config) or _legacy_consumer_pid(config) is not None


def start(config: ConsumerConfig, topics: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> int:
    """Start the consumer detached (continuous mode, resuming from its checkpoint); return its pid.

    When a consumer already holds the lock, start nothing and return its pid.
    `topics` ({"plays": "topic", ...}) replaces the four default topics (tests);
    it is remembered, so `status` measures lag on the same topics.
    """
    with _supervising(config):
        svc = service(config)
        state = _read_state(config)
        if topics is not None:
            state["topics"] = topics
        topics = state.get("topics")
        # A probe (shared) never waits on another probe, so a held lock is seen at once; _take_lock
        # only has to wait out other processes' probes.
        already = _lock_held(config) or _legacy_consumer_pid(config) is not None
        lock_fd = None if already else _take_lock(config)
        if lock_fd is None:
            if topics is not None:
                _write_state(config, state)
            return our_consumer_pid(config) or _lock_holder_pid(config)  # type: ignore[return-value]
        try:
            argv = [sys.executable, str(JOB), "--mode", "continuous", "--checkpoint", str(config.checkpoint),
                    "--bootstrap", config.kafka_bootstrap, "--master", config.spark_master,
                    "--jars-dir", str(config.jars_dir), "--driver-memory", config.driver_memory,
                    "--lock-fd", str(lock_fd)]
            if topics:
                argv += ["--topics", ",".join(f"{k}={v}" for k, v in topics.items())]
            argv += list(extra_args)
            # The child inherits the locked descriptor (pass_fds keeps its number): from here on
            # the lock is held for exactly as long as the consumer lives.
            started = _spawn(config, argv, pass_fds=(lock_fd,))
            os.ftruncate(lock_fd, 0)
            os.pwrite(lock_fd, f"{started['pid']} {started['start_ticks']}\n".encode(), 0)
        finally:
            os.close(lock_fd)  # the child's copy keeps the lock
        svc.pid_file.write_text(str(started["pid"]))
        state["process"] = started
        _write_state(config, state)
        return started["pid"]


def _spawn(config: ConsumerConfig, argv: list[str], pass_fds: tuple[int, ...] = ()) -> dict:
    """Start argv detached (a new session: its own process group), logging to the consumer's log;
    what identifies it later: {pid, start_ticks, argv}."""
    svc = service(config)
    svc.log_dir.mkdir(parents=True, exist_ok=True)
    with open(svc.log_file, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} supervisor: starting {' '.join(argv)}\n".encode())
        proc = subprocess.Popen(argv, env=_child_env(config), cwd=str(PROJECT_ROOT),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, pass_fds=pass_fds)
    ticks = _proc_start_ticks(proc.pid)
    _wait_for_exec(proc.pid, argv)
    return {"pid": proc.pid, "start_ticks": ticks, "argv": argv}


def start_standby(config: ConsumerConfig) -> int | None:
    """Start a standby beside the consumer this supervisor started: the same command line, but it
    waits for the lock (`--lock-file ... --standby`). Returns its pid (the live one if there is
    one already); None when no consumer of ours runs to stand by for."""
    with _supervising(config):
        state = _read_state(config)
        if _alive(state.get("standby")):
            return state["standby"]["pid"]
        if our_consumer_pid(config) is None:
            return None
        argv = list(state["process"]["argv"])
        if "--lock-fd" in argv:  # else the consumer was a standby itself: the same command line
            at = argv.index("--lock-fd")
            argv[at:at + 2] = ["--lock-file", str(config.lock_file), "--standby"]
        state["standby"] = _spawn(config, argv)
        _write_state(config, state)
        return state["standby"]["pid"]


def _take_over(config: ConsumerConfig) -> bool:
    """When the consumer we started is gone and its standby lives, the standby is the consumer now
    (it takes the lock as soon as its Spark is up, or already has): record the death, and name the
    standby in the pid and state files. True when it did."""
    state = _read_state(config)
    standby = state.get("standby")
    if not _alive(standby) or _alive(state.get("process")):
        return False
    if state.get("process"):
        _record_death(config, state["process"]["pid"])
        state = _read_state(config)
    state["process"] = state.pop("standby")
    _write_state(config, state)
    service(config).pid_file.write_text(str(standby["pid"]))
    return True


def _stop_standby(config: ConsumerConfig, timeout: float) -> None:
    """SIGTERM ends the standby's wait (its JVM follows it); its whole group is killed after `timeout`."""
    state = _read_state(config)
    standby = state.pop("standby", None)
    if _alive(standby):
        _signal_group(standby["pid"], signal.SIGTERM)  # nothing to stop gracefully while it waits
        if not _wait_for_group(standby["pid"], timeout):
            _signal_group(standby["pid"], signal.SIGKILL)
            _wait_for_group(standby["pid"], KILL_WAIT_SECONDS)
    _write_state(config, state)


def stop(config: ConsumerConfig, timeout: float = 30.0) -> bool:
    """Stop the consumer this supervisor started and return once it is gone: SIGTERM to the job
    (it stops the query between batches, then Spark), SIGKILL to its whole process group after
    `timeout`. Signals nothing it cannot prove it started. A standby is stopped first (it would
    take over the moment the consumer is gone)."""
    with _supervising(config):
        _take_over(config)
        _stop_standby(config, timeout)
        pid = our_consumer_pid(config)
        if pid is None:
            if _lock_held(config):
                print(f"a consumer this supervisor did not start holds {config.lock_file} "
                      f"(pid {_lock_holder_pid(config)}); not signalling it")
            else:
                service(config).pid_file.unlink(missing_ok=True)
            return False
        # The job alone: a SIGTERM to the group would also kill Spark's JVM, which the job needs to
        # stop the query; the job's JVM exits with it.
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not _wait_until_gone(config, pid, timeout):
            _signal_group(pid, signal.SIGKILL)
            _wait_until_gone(config, pid, KILL_WAIT_SECONDS)
        service(config).pid_file.unlink(missing_ok=True)
        return True


def _wait_until_gone(config: ConsumerConfig, pgid: int, timeout: float) -> bool:
    """Wait until no process holds the consumer lock and the group has no live member."""
    deadline = time.monotonic() + timeout
    while _lock_held(config) or process._group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _wait_for_group(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process._group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def log_tail(config: ConsumerConfig, lines: int = 40) -> str:
    return process.log_tail(service(config), lines)


def _kafka_end_offsets(bootstrap: str, topics: list[str]) -> dict[str, dict[str, tuple[int, int]]]:
    """{topic: {partition: (low, high)}} from the broker."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "wrapped-supervisor",
                         "enable.auto.commit": False, "socket.timeout.ms": 5000})
    try:
        metadata = consumer.list_topics(timeout=5)
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for partition in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                out.setdefault(topic, {})[str(partition)] = (low, high)
        return out
    finally:
        consumer.close()


def lag_by_partition(end: dict[str, dict[str, tuple[int, int]]], committed: dict | None) -> dict[str, int]:
    """Messages per "topic/partition" between what the consumer committed and Kafka's end.

    A partition the consumer never read counts from its low watermark (what is still in Kafka).
    """
    committed = committed or {}
    lag = {}
    for topic, partitions in end.items():
        for partition, (low, high) in partitions.items():
            done = max(int(committed.get(topic, {}).get(partition, 0)), low)
            lag[f"{topic}/{partition}"] = max(0, high - done)
    return lag


def _topic_names(config: ConsumerConfig) -> list[str]:
    from weekly_wrapped import contracts

    topics = _read_state(config).get("topics")
    return list(topics.values()) if topics else list(contracts.TOPICS)


def status(config: ConsumerConfig) -> Status:
    """Running? Last batch and its age, and the lag, from Postgres and Kafka."""
    import psycopg2

    from weekly_wrapped.streaming.consumer import checkpoint_query_id

    svc = service(config)
    running = is_running(config)
    query_id = checkpoint_query_id(config.checkpoint)
    batch_id = age = committed = None
    if query_id:
        try:
            with db.transaction(config.dsn) as cur:
                cur.execute(
                    "select batch_id, extract(epoch from clock_timestamp() - committed_at), end_offsets "
                    "from ops.consumer_batches where query_id = %s order by batch_id desc limit 1",
                    (query_id,),
                )
                row = cur.fetchone()
        except psycopg2.Error:  # Postgres down or schema not there yet: heartbeat unknown
            row = None
        if row:
            batch_id, age, committed = int(row[0]), float(row[1]), row[2]
    try:
        per_partition = lag_by_partition(_kafka_end_offsets(config.kafka_bootstrap, _topic_names(config)),
                                         committed)
        lag = sum(per_partition.values())
    except Exception:  # Kafka down: report unknown lag rather than fail the status
        per_partition, lag = {}, None
    pid = (our_consumer_pid(config) or _lock_holder_pid(config)) if running else None
    standby = standby_pid(config)
    return Status(running, pid, query_id, batch_id, age, lag, per_partition, str(svc.log_file),
                  standby, standby is not None and _waiting_for_lock(config, standby))


def plays_committed_since(dsn: str, since: str | None) -> tuple[int, str | None]:
    """(new plays, newest commit time) of the batches committed after `since` (ISO time, or None).

    Batches commit one after another, so the newest commit time seen is a safe watermark
    for the next call; the DAG keeps it in the RAW_PLAYS event's extra.
    """
    with db.transaction(dsn) as cur:
        cur.execute(
            "select coalesce(sum(plays_rows), 0), max(committed_at) from ops.consumer_batches "
            "where %(since)s::timestamptz is null or committed_at > %(since)s::timestamptz",
            {"since": since},
        )
        plays, newest = cur.fetchone()
    return int(plays), newest.isoformat() if newest else since


def has_settled(current: Status, uptime: float, machine_busy: bool = False) -> bool:
    """Whether the consumer is past its start, so a standby may start beside it: up for
    SETTLE_SECONDS, caught up (at most CAUGHT_UP_MESSAGES behind) and the machine not busy. A
    standby's JVM start and warm-up cost about 45 CPU seconds: during a cold first batch (20 s on
    two cores), a takeover's catch-up, or the dbt build the first plays started, they slow what
    waits for those. Up for SETTLE_LIMIT_SECONDS, it has settled whatever it does."""
    if uptime < SETTLE_SECONDS:
        return False
    if uptime >= SETTLE_LIMIT_SECONDS:
        return True
    caught_up = current.lag is not None and current.lag <= CAUGHT_UP_MESSAGES
    return caught_up and not machine_busy


def machine_busy() -> bool:
    """Every core busy, on average over the last minute (a standby runs on this machine: local master)."""
    return os.getloadavg()[0] >= (os.cpu_count() or 1)


def _uptime(config: ConsumerConfig) -> float:
    try:
        return time.time() - service(config).pid_file.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _start_and_settle(config: ConsumerConfig, settle: float) -> None:
    start(config)
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if not is_running(config):
            raise ConsumerDied(f"the streaming consumer exited right after starting:\n{log_tail(config)}")
        time.sleep(1)


def ensure_running(config: ConsumerConfig, stall_seconds: float = STALL_SECONDS,
                   settle_seconds: float = SETTLE_SECONDS) -> Status:
    """One check of the `spark_consumers` DAG (its watch repeats it every 2 s); returns the status afterwards.

    Not running -> start it (unless it keeps dying: then raise ConsumerDied with its log); with a
    standby alive, the standby takes over instead (while its Spark starts, it is not running yet).
    Running with lag but no batch committed for `stall_seconds` -> restart it from its checkpoint.
    """
    with _supervising(config):  # another supervisor waits here, then finds the consumer running
        if _take_over(config):
            deaths = recent_deaths(config, DEATH_WINDOW_SECONDS)
            if len(deaths) >= MAX_DEATHS:
                stop(config)
                raise _keeps_dying(config, len(deaths))
            print(f"consumer died ({len(deaths)} unexpected exits lately); its standby takes over")
        current = status(config)
        taking_over = _read_state(config).get("process")
        if not current.running and _alive(taking_over):  # only a standby runs without the lock
            if _uptime(config) < TAKEOVER_SECONDS:
                return current  # its Spark is still starting; it takes the lock once up
            print(f"the standby (pid {taking_over['pid']}) did not take over in {TAKEOVER_SECONDS}s; killing it")
            _signal_group(taking_over["pid"], signal.SIGKILL)
            _wait_for_group(taking_over["pid"], KILL_WAIT_SECONDS)
        if not current.running:
            deaths = _record_death(config, process.read_pid(service(config)))
            if len(deaths) >= MAX_DEATHS:
                raise _keeps_dying(config, len(deaths))
            print(f"consumer not running ({len(deaths)} unexpected exits lately); starting it")
            _start_and_settle(config, settle_seconds)
            return status(config)
        if _stalled(config, current, stall_seconds):
            print(f"consumer stalled ({current.describe()}); restarting it from its checkpoint")
            stop(config)
            _start_and_settle(config, settle_seconds)
            return status(config)
        return current


def _keeps_dying(config: ConsumerConfig, deaths: int) -> ConsumerDied:
    return ConsumerDied(
        f"the streaming consumer died {deaths} times in {DEATH_WINDOW_SECONDS // 60} minutes; "
        f"not restarting it. Once the cause is fixed, start it by hand (`wrapped consumer start` "
        f"on the local stack) and the watch takes over again. "
        f"Last lines of {service(config).log_file}:\n{log_tail(config)}"
    )


def _record_death(config: ConsumerConfig, pid: int | None) -> list[dict]:
    """Remember an unexpected exit of `pid` (the pid file left behind while no consumer holds the
    lock, as `stop` removes it; or a consumer its standby replaced) once per pid; return the exits
    within the window."""
    state = _read_state(config)
    now = time.time()
    deaths = [d for d in state.get("deaths", []) if now - d["at"] < DEATH_HISTORY_SECONDS]
    if pid is not None and all(d["pid"] != pid for d in deaths):
        deaths.append({"pid": pid, "at": now})
    state["deaths"] = deaths
    _write_state(config, state)
    return [d for d in deaths if now - d["at"] < DEATH_WINDOW_SECONDS]


def recent_deaths(config: ConsumerConfig, within_seconds: float) -> list[float]:
    """When (epoch seconds) the consumer was found dead within the last `within_seconds`
    (as recorded by `ensure_running`), oldest first."""
    now = time.time()
    return sorted(d["at"] for d in _read_state(config).get("deaths", []) if now - d["at"] < within_seconds)


def _stalled(config: ConsumerConfig, current: Status, stall_seconds: float) -> bool:
    if not current.lag:
        return False  # idle is fine: no data, no batches
    heartbeat = current.heartbeat_age_s if current.heartbeat_age_s is not None else float("inf")
    uptime = _uptime(config)
    first_batch = heartbeat > uptime  # no batch committed since this start
    if min(heartbeat, uptime) < (max(stall_seconds, FIRST_BATCH_SECONDS) if first_batch else stall_seconds):
        return False
    # An idle consumer's last batch is old by nature; new data may have just arrived.
    # Give it one grace period to commit a batch before calling it stalled.
    deadline = time.monotonic() + stall_seconds
    while time.monotonic() < deadline:
        time.sleep(5)
        later = status(config)
        if not later.running or later.last_batch_id != current.last_batch_id or not later.lag:
            return not later.running
    return True



def supervise(config: ConsumerConfig, run_seconds: float, check_every: float = CHECK_SECONDS,
              stall_seconds: float = STALL_SECONDS) -> Status:
    """Keep the consumer alive for `run_seconds`, checking every `check_every` seconds.

    A dead consumer is started again at the next check (no settling wait, so the loop keeps
    watching; one that keeps dying still ends in ConsumerDied after MAX_DEATHS), a stalled one
    is restarted from its checkpoint. With `config.standby`, a standby is started once the
    consumer has settled (two JVMs starting at once would slow both), and takes over when the
    consumer dies. Returns the last status. The `spark_consumers` DAG runs this in a task that
    is started again as soon as it ends.
    """
    began = time.monotonic()
    while True:
        current = ensure_running(config, stall_seconds=stall_seconds, settle_seconds=0)
        if (config.standby and current.running and current.standby_pid is None
                and has_settled(current, _uptime(config), machine_busy())):
            start_standby(config)
        if time.monotonic() - began >= run_seconds:
            return current
        time.sleep(check_every)


def wait_for_new_plays(dsn: str, since: str | None, run_seconds: float,
                       check_every: float = CHECK_SECONDS) -> tuple[int, str | None]:
    """`plays_committed_since(dsn, since)` as soon as it finds plays, or after `run_seconds`."""
    began = time.monotonic()
    while True:
        plays, through = plays_committed_since(dsn, since)
        if plays or time.monotonic() - began >= run_seconds:
            return plays, through
        time.sleep(check_every)
