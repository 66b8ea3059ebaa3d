"""Stopping recorded components: scripts/airflow_stack.py's stop() against real process groups."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import airflow_stack
import psutil
import pytest


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A stack home; whatever a failing test left in a recorded group is SIGKILLed afterwards."""
    yield tmp_path
    for pid in airflow_stack.recorded(tmp_path).values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def start(home: Path, name: str, script: str) -> tuple[int, list[int]]:
    """``sh -c script`` as a recorded component; its PID and the PIDs its script writes to ``$PIDS``.

    ``$PIDS`` is a FIFO: reading it waits for the script to have started its background children.
    """
    fifo = home / f"{name}.fifo"
    os.mkfifo(fifo)
    pid = airflow_stack.start(home, name, ["sh", "-c", script], dict(os.environ, PIDS=str(fifo)))
    members = [int(p) for p in fifo.read_text().split()]
    assert members and all(os.getpgid(m) == pid for m in members), "its children share its process group"
    return pid, members


def running_members(pgid: int) -> list[psutil.Process]:
    """The group's processes that have not exited (orphaned zombies wait for init, which may be slow)."""
    return [p for p in airflow_stack.group_members(pgid) if airflow_stack.alive(p.pid)]


def test_stop_terminates_the_recorded_pid_and_kills_the_rest_of_its_group(home):
    # Like an Airflow component, it handles SIGTERM itself (here: notes it and exits at once).
    pid, members = start(
        home, "sleeper", "trap 'echo > got-sigterm; exit' TERM; sleep 60 & echo $! > $PIDS; wait"
    )

    assert airflow_stack.stop(home, timeout=30) == ["sleeper"]

    assert (home / "got-sigterm").exists(), "SIGTERM first, not only the group's SIGKILL"
    assert not psutil.pid_exists(pid), "the leader (our child) is gone and reaped"
    assert not any(airflow_stack.alive(m) for m in members)
    assert running_members(pid) == []
    assert airflow_stack.recorded(home) == {}


def test_a_leader_ignoring_sigterm_is_killed_with_its_group_after_the_timeout(home):
    pid, members = start(home, "stubborn", "trap '' TERM; sleep 60 & echo $! > $PIDS; sleep 60")

    assert airflow_stack.stop(home, timeout=0.5) == ["stubborn"]

    assert not psutil.pid_exists(pid)
    assert not any(airflow_stack.alive(m) for m in members)
    assert running_members(pid) == []


def test_a_stale_pid_file_still_has_its_groups_leftovers_killed(home):
    """A crashed leader (a run that was never stopped): its orphaned workers go, nothing is reported stopped."""
    pid, members = start(home, "crashed", "sleep 60 & echo $! > $PIDS")
    psutil.Process(pid).wait(10)
    assert airflow_stack.alive(members[0])

    assert airflow_stack.stop(home, timeout=10) == []

    assert not any(airflow_stack.alive(m) for m in members)
    assert running_members(pid) == []
    assert airflow_stack.recorded(home) == {}


def test_a_zombie_counts_as_gone():
    proc = subprocess.Popen(["true"])
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, left unreaped
        assert psutil.pid_exists(proc.pid)
        assert not airflow_stack.alive(proc.pid)
    finally:
        proc.wait()
    assert airflow_stack.alive(os.getpid())


def test_waiting_for_a_zombie_of_another_parent_ends_without_the_timeout():
    """psutil.wait_procs alone would report it still running after the whole timeout."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys\n"
            "child = subprocess.Popen(['true'])\n"
            "os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)\n"
            "print(child.pid, flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        zombie = psutil.Process(int(parent.stdout.readline()))
        assert zombie.status() == psutil.STATUS_ZOMBIE

        assert airflow_stack.wait_exited([zombie], timeout=10) == []
    finally:
        parent.communicate("")
