"""A standby consumer waits on the lock and takes over the moment the consumer dies.

The consumer job is a stand-in that behaves like `spark/consume_streams.py` around the lock
(the consumer keeps the descriptor it inherits; with `--standby` it "starts Spark" for a
moment, then blocks on the lock file, writes its pid into it once the lock is its own, and
runs), so these tests need no Spark, Kafka or Postgres and take seconds.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time

import pytest

from weekly_wrapped.streaming import process, supervisor

STAND_IN = """
import fcntl, os, sys, time
args = sys.argv[1:]
if "--standby" in args:
    time.sleep(float(os.environ.get("STAND_IN_SPARK_SECONDS", "0.3")))  # Spark starting
    fd = os.open(args[args.index("--lock-file") + 1], os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
time.sleep(600)
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A config with a standby, whose job is the stand-in; the consumer counts as settled at once."""
    job = tmp_path / "stand_in_consumer.py"
    job.write_text(STAND_IN)
    monkeypatch.setattr(supervisor, "JOB", job)
    monkeypatch.setattr(supervisor, "SETTLE_SECONDS", 0)
    monkeypatch.setattr(supervisor, "machine_busy", lambda: False)  # whatever else this machine runs
    monkeypatch.setattr(supervisor, "status", quick_status)
    config = supervisor.ConsumerConfig(dsn="host=127.0.0.1 dbname=none", kafka_bootstrap="127.0.0.1:1",
                                       work_dir=tmp_path / "spark", standby=True)
    yield config
    supervisor.stop(config, timeout=5)
    assert not supervisor.is_running(config)


def quick_status(config: supervisor.ConsumerConfig) -> supervisor.Status:
    """`status` without Postgres and Kafka (there are none here): no lag, so never stalled."""
    running = supervisor.is_running(config)
    pid = (supervisor.our_consumer_pid(config) or supervisor._lock_holder_pid(config)) if running else None
    standby = supervisor.standby_pid(config)
    return supervisor.Status(running, pid, None, None, None, 0, {}, "", standby,
                             standby is not None and supervisor._waiting_for_lock(config, standby))


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.02)
    return value


def started_with_a_waiting_standby(config) -> tuple[int, int]:
    """The consumer and its standby, once the standby waits on the lock (as `supervise` starts them)."""
    consumer = supervisor.start(config)
    supervisor.supervise(config, run_seconds=0)
    standby = supervisor.standby_pid(config)
    assert standby is not None and standby != consumer
    wait_for(lambda: supervisor.status(config).standby_waiting, 10, "the standby to wait on the lock")
    return consumer, standby


def test_supervise_starts_one_standby_and_it_waits_on_the_lock(config):
    consumer, standby = started_with_a_waiting_standby(config)
    supervisor.supervise(config, run_seconds=0.5, check_every=0.1)
    now = supervisor.status(config)
    assert (now.pid, now.standby_pid, now.standby_waiting) == (consumer, standby, True)
    assert "standby pid %d waiting" % standby in now.describe()
    assert supervisor._lock_holder_pid(config) == consumer


def test_a_killed_consumer_is_replaced_by_its_standby_at_once(config):
    consumer, standby = started_with_a_waiting_standby(config)
    os.killpg(consumer, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: supervisor._lock_holder_pid(config) == standby, 5, "the standby to take the lock")
    assert time.monotonic() - killed < 1, "the kernel hands the lock over as the consumer dies"

    after = supervisor.ensure_running(config)
    assert after.running and after.pid == standby == supervisor.our_consumer_pid(config)
    assert len(supervisor.recent_deaths(config, 60)) == 1, "the death is counted once"
    supervisor.ensure_running(config)
    assert len(supervisor.recent_deaths(config, 60)) == 1

    supervisor.supervise(config, run_seconds=0)  # a new standby for the new consumer
    fresh = supervisor.standby_pid(config)
    assert fresh not in (None, consumer, standby)
    wait_for(lambda: supervisor.status(config).standby_waiting, 10, "the new standby to wait")


def test_a_standby_still_starting_is_waited_for_not_raced(config, monkeypatch):
    monkeypatch.setenv("STAND_IN_SPARK_SECONDS", "2")
    consumer = supervisor.start(config)
    supervisor.supervise(config, run_seconds=0)
    standby = supervisor.standby_pid(config)
    os.killpg(consumer, signal.SIGKILL)
    wait_for(lambda: not supervisor.is_running(config), 5, "the consumer to die")

    during = supervisor.ensure_running(config)
    assert not during.running and supervisor.standby_pid(config) is None, "the standby is the consumer now"
    assert [p for p in (consumer, standby) if process.pid_alive(p)] == [standby], "no second consumer started"
    wait_for(lambda: supervisor.ensure_running(config).running, 10, "the standby to take over")
    assert supervisor.our_consumer_pid(config) == standby
    assert len(supervisor.recent_deaths(config, 60)) == 1


def test_a_standby_that_never_takes_the_lock_is_replaced(config, monkeypatch):
    monkeypatch.setenv("STAND_IN_SPARK_SECONDS", "600")  # hangs before the lock
    monkeypatch.setattr(supervisor, "TAKEOVER_SECONDS", 1)
    consumer = supervisor.start(config)
    supervisor.supervise(config, run_seconds=0)
    stuck = supervisor.standby_pid(config)
    os.killpg(consumer, signal.SIGKILL)
    wait_for(lambda: not supervisor.is_running(config), 5, "the consumer to die")
    assert not supervisor.ensure_running(config).running
    time.sleep(1.2)
    after = supervisor.ensure_running(config, settle_seconds=0)
    assert after.running and after.pid not in (consumer, stuck)
    assert not process._group_alive(stuck)
    assert len(supervisor.recent_deaths(config, 60)) == 2, "the consumer and the stuck standby"


def test_stop_stops_the_standby_first_so_it_does_not_take_over(config):
    consumer, standby = started_with_a_waiting_standby(config)
    assert supervisor.stop(config, timeout=5) is True
    assert not supervisor.is_running(config)
    assert not process._group_alive(consumer) and not process._group_alive(standby)
    assert supervisor.standby_pid(config) is None
    assert supervisor.recent_deaths(config, 60) == [], "a stop is no death"


def test_a_consumer_that_keeps_dying_is_not_taken_over_forever(config):
    """Takeovers count as deaths: the third within the window fails loudly and stops everything."""
    supervisor.start(config)
    for death in range(1, supervisor.MAX_DEATHS + 1):
        supervisor.supervise(config, run_seconds=0)
        wait_for(lambda: supervisor.status(config).standby_waiting, 10, "a standby to wait")
        os.killpg(supervisor.our_consumer_pid(config), signal.SIGKILL)
        wait_for(lambda: supervisor._lock_holder_pid(config) == supervisor.standby_pid(config), 5, "the takeover")
        if death < supervisor.MAX_DEATHS:
            assert supervisor.ensure_running(config).running
    with pytest.raises(supervisor.ConsumerDied, match="died 3 times"):
        supervisor.ensure_running(config)
    assert not supervisor.is_running(config)


def test_without_standby_supervise_starts_none(config):
    plain = supervisor.ConsumerConfig(dsn=config.dsn, kafka_bootstrap=config.kafka_bootstrap,
                                      work_dir=config.work_dir, standby=False)
    supervisor.start(plain)
    supervisor.supervise(plain, run_seconds=0.3, check_every=0.1)
    assert supervisor.standby_pid(plain) is None


def test_waiting_for_lock_reads_only_blocked_waiters_of_our_lock_file(config, tmp_path):
    config.work_dir.mkdir(parents=True)
    config.lock_file.touch()
    other = tmp_path / "other.lock"
    other.touch()
    holder = os.open(other, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        assert not supervisor._waiting_for_lock(config, os.getpid()), "holding a lock is not waiting"
    finally:
        os.close(holder)
    assert not supervisor._waiting_for_lock(config, 1)


def settling(lag, heartbeat_age_s):
    return supervisor.Status(True, 1, None, None, heartbeat_age_s, lag)


@pytest.mark.parametrize(("uptime", "lag", "busy", "settled"), [
    (10, 0, False, False),      # Spark is still starting
    (30, 12000, False, False),  # its first batch, or a takeover's catch-up, is still running
    (30, 800, False, True),     # all but caught up
    (30, 0, False, True),       # caught up
    (30, 0, True, False),       # caught up, but every core busy (the build its first plays started)
    (30, None, False, False),   # Kafka unreachable: nothing known yet
    (supervisor.SETTLE_LIMIT_SECONDS, 12000, True, True),  # a long catch-up still gets its standby
])
def test_a_standby_waits_until_the_consumer_has_settled(uptime, lag, busy, settled):
    assert supervisor.has_settled(settling(lag, 2.0), uptime, machine_busy=busy) is settled
