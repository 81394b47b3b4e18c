"""Stopping the local Airflow also kills the task processes that outlived its scheduler (the
consumer's supervision task would otherwise restart the consumer), and only this stack's."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time

from wrapped_dev.config import load_settings
from wrapped_dev.stack import airflow
from wrapped_dev.stack.env import airflow_home


def _task_process(cwd) -> subprocess.Popen:
    """A process titled like an Airflow task runner (`airflow worker -- <id>`), in its own group,
    with an empty environment, as the runner's own title-setting leaves what /proc shows of it."""
    return subprocess.Popen(["bash", "-c", 'exec -a "airflow worker -- 0193-test" sleep 600'],
                            cwd=cwd, env={}, start_new_session=True)


def test_stop_kills_this_stacks_orphaned_tasks_and_leaves_other_stacks_alone(tmp_path):
    ours = dataclasses.replace(load_settings(), state_dir=tmp_path / "ours")
    airflow_home(ours).mkdir(parents=True)
    (tmp_path / "theirs").mkdir()
    orphan, other = _task_process(airflow_home(ours)), _task_process(tmp_path / "theirs")
    try:
        time.sleep(0.5)  # exec done: the title is in place
        assert airflow._stop_orphaned_tasks(ours) is True
        assert orphan.wait(timeout=10) == -9
        assert other.poll() is None, "another stack's task was killed"
        assert airflow._stop_orphaned_tasks(ours) is False
    finally:
        for p in (orphan, other):
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
