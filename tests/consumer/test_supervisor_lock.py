"""The supervisor knows its consumer by the lock the consumer holds, never by a pid file alone.

The consumer job is replaced by a stand-in script that only sleeps (it holds the lock the
supervisor hands it like the real job does, by keeping the inherited descriptor open), so
these tests need no Spark, Kafka or Postgres and take a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from weekly_wrapped.streaming import process, supervisor

STAND_IN = "import sys, time\ntime.sleep(600)\n"


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A supervisor config with its own work dir, whose job is the sleeping stand-in."""
    job = tmp_path / "stand_in_consumer.py"
    job.write_text(STAND_IN)
    monkeypatch.setattr(supervisor, "JOB", job)
    work_dir = tmp_path / "spark"
    config = supervisor.ConsumerConfig(dsn="host=127.0.0.1 dbname=none", kafka_bootstrap="127.0.0.1:1",
                                       work_dir=work_dir)
    yield config
    supervisor.stop(config, timeout=5)


def stand_ins(config) -> list[int]:
    """Pids of live processes running the stand-in job of this config."""
    pids = []
    for cmdline in os.listdir("/proc"):
        if not cmdline.isdigit():
            continue
        args = supervisor._proc_cmdline(int(cmdline))
        if str(supervisor.JOB) in args and supervisor._proc_start_ticks(int(cmdline)) is not None:
            pids.append(int(cmdline))
    return pids


@pytest.fixture
def foreign_sleep():
    """A process this supervisor did not start, in a process group of its own (as a consumer's is)."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_a_pid_file_pointing_at_a_foreign_process_is_never_signalled(config, foreign_sleep):
    config.work_dir.mkdir(parents=True)
    supervisor.service(config).pid_file.write_text(str(foreign_sleep.pid))

    assert not supervisor.is_running(config), "a live pid in the pid file is not a running consumer"
    assert supervisor.stop(config, timeout=2) is False
    time.sleep(0.3)
    assert foreign_sleep.poll() is None, "the foreign process was signalled"

    pid = supervisor.start(config)  # the stale pid file does not keep a consumer from starting
    assert pid != foreign_sleep.pid and supervisor.is_running(config)
    assert supervisor.our_consumer_pid(config) == pid
    assert supervisor.stop(config, timeout=5) is True
    assert not supervisor.is_running(config) and foreign_sleep.poll() is None


def test_a_recorded_pid_reused_by_another_process_is_not_signalled(config, foreign_sleep):
    """Our consumer died and its pid now belongs to someone else: the record no longer matches."""
    pid = supervisor.start(config)
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while supervisor.is_running(config) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not supervisor.is_running(config)
    # Pretend the pid was reused: the pid file (and our record's pid) now name the foreign sleep.
    state = supervisor._read_state(config)
    state["process"]["pid"] = foreign_sleep.pid
    supervisor._write_state(config, state)
    supervisor.service(config).pid_file.write_text(str(foreign_sleep.pid))
    assert supervisor.our_consumer_pid(config) is None
    assert supervisor.stop(config, timeout=2) is False
    time.sleep(0.3)
    assert foreign_sleep.poll() is None


def test_two_supervisors_at_once_start_one_consumer(config):
    barrier = threading.Barrier(4)
    pids, errors = [], []

    def supervise():
        try:
            barrier.wait()
            pids.append(supervisor.start(config))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=supervise) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(set(pids)) == 1, pids
    assert stand_ins(config) == pids[:1]


def test_two_supervisor_processes_at_once_start_one_consumer(config, tmp_path):
    """The same across processes (two DAG runs, or the DAG and the CLI), which threads cannot show."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from weekly_wrapped.streaming import supervisor\n"
        f"supervisor.JOB = Path({str(supervisor.JOB)!r})\n"
        f"config = supervisor.ConsumerConfig(dsn='x', kafka_bootstrap='127.0.0.1:1',\n"
        f"                                   work_dir=Path({str(config.work_dir)!r}))\n"
        "while time.time() < float(sys.argv[1]):\n"
        "    time.sleep(0.001)\n"
        "print(supervisor.start(config))\n"
    )
    go = str(time.time() + 3)
    runs = [subprocess.Popen([sys.executable, "-c", script, go], stdout=subprocess.PIPE, text=True)
            for _ in range(3)]
    outputs = [run.communicate(timeout=60)[0].strip() for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert len(set(outputs)) == 1, outputs
    assert stand_ins(config) == [int(outputs[0])]


def test_a_stale_lock_file_without_a_holder_does_not_block_a_start(config, foreign_sleep):
    config.work_dir.mkdir(parents=True)
    config.lock_file.write_text(f"{foreign_sleep.pid} 1\n")  # left by a consumer long gone
    assert not supervisor.is_running(config)
    pid = supervisor.start(config)
    assert supervisor.is_running(config) and stand_ins(config) == [pid]


def test_the_lock_goes_with_the_consumer(config):
    pid = supervisor.start(config)
    assert supervisor.is_running(config)
    os.killpg(pid, signal.SIGKILL)  # no clean-up of any file: the kernel drops the lock
    deadline = time.monotonic() + 10
    while supervisor.is_running(config) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not supervisor.is_running(config)
    assert process.read_pid(supervisor.service(config)) == pid, "the pid file is left behind"
    restarted = supervisor.start(config)
    assert restarted != pid and stand_ins(config) == [restarted]


def test_a_consumer_from_before_the_lock_is_known_by_pid_start_time_and_command_line(config, tmp_path):
    """An upgrade finds a consumer started by the old supervisor (no lock): it is running, a start
    starts no second one beside it, and stop stops it; a pid file written long after a process
    with the same command line started is not trusted."""
    old_job = tmp_path / "old" / "consume_streams.py"
    old_job.parent.mkdir()
    old_job.write_text(STAND_IN)
    config.work_dir.mkdir(parents=True)
    argv = [sys.executable, str(old_job), "--mode", "continuous", "--checkpoint", str(config.checkpoint)]
    legacy = subprocess.Popen(argv, start_new_session=True)
    try:
        supervisor._wait_for_exec(legacy.pid, argv)
        supervisor.service(config).pid_file.write_text(str(legacy.pid))
        assert supervisor.is_running(config)
        assert supervisor.start(config) == legacy.pid and stand_ins(config) == []
        os.utime(supervisor.service(config).pid_file, (time.time() + 600, time.time() + 600))
        assert not supervisor.is_running(config), "a pid file much younger than the process is not its"
        assert supervisor.stop(config, timeout=2) is False and legacy.poll() is None
        supervisor.service(config).pid_file.write_text(str(legacy.pid))
        assert supervisor.stop(config, timeout=5) is True
        assert legacy.wait(5) is not None
    finally:
        legacy.kill()
        legacy.wait()


def test_stop_lets_the_job_stop_its_jvm_itself(config, tmp_path):
    """The real job needs Spark's JVM (its child, same process group) to stop the query: the SIGTERM
    goes to the job alone, and the job's children are gone when stop returns."""
    seen = tmp_path / "child_at_sigterm"
    supervisor.JOB.write_text(
        "import signal, subprocess, sys, time\n"
        "jvm = subprocess.Popen(['sleep', '600'])\n"
        "def stop(*_):\n"
        f"    open({str(seen)!r}, 'w').write('alive' if jvm.poll() is None else 'dead')\n"
        "    jvm.terminate(); jvm.wait(); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(600)\n")
    pid = supervisor.start(config)
    time.sleep(0.5)  # the stand-in installs its handler
    assert supervisor.stop(config, timeout=10) is True
    assert seen.read_text() == "alive"
    assert not supervisor.is_running(config) and not process._group_alive(pid)


def test_a_job_that_ignores_sigterm_is_killed_and_gone_when_stop_returns(config):
    supervisor.JOB.write_text(
        "import signal, subprocess, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        "time.sleep(600)\n")
    pid = supervisor.start(config)
    time.sleep(0.5)
    assert supervisor.stop(config, timeout=1) is True
    assert not supervisor.is_running(config), "the lock is released before stop returns"
    assert not process._group_alive(pid)
