"""The trainer lock between processes: exclusive while held, released by the kernel when the holder dies."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamtrain.store import lock

HOLDER = """
import sys, time
from pathlib import Path
from streamtrain.store import lock
with lock.hold([Path(sys.argv[1])], wait_seconds=0):
    print("held", flush=True)
    time.sleep(600)
"""


def start_holder(directory: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_another_process_holding_makes_us_wait_then_fail_naming_it(tmp_path: Path) -> None:
    holder = start_holder(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(lock.VolumeBusy) as busy, lock.hold([tmp_path], wait_seconds=1.0):
            pass
        assert time.monotonic() - started >= 1.0  # it waited before giving up
        assert f"pid {holder.pid}" in str(busy.value) and str(tmp_path) in str(busy.value)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_dead_holder_releases_the_lock_without_a_timeout(tmp_path: Path, sig: signal.Signals) -> None:
    holder = start_holder(tmp_path)
    holder.send_signal(sig)
    holder.wait()
    with lock.hold([tmp_path], wait_seconds=0) as held:  # at once: no stale-lock timeout to wait for
        assert held


def test_a_waiter_gets_the_lock_as_soon_as_the_holder_goes(tmp_path: Path) -> None:
    holder = start_holder(tmp_path)
    subprocess.Popen(["sh", "-c", f"sleep 1; kill {holder.pid}"])
    with lock.hold([tmp_path], wait_seconds=30) as held:
        assert held and holder.wait(5) is not None


def test_a_stop_while_waiting_gives_up_quietly(tmp_path: Path) -> None:
    holder = start_holder(tmp_path)
    try:
        asked = time.monotonic() + 0.5
        with lock.hold([tmp_path], wait_seconds=30, stopping=lambda: time.monotonic() > asked) as held:
            assert not held
    finally:
        holder.kill()
        holder.wait()


def test_every_directory_is_locked_and_one_directory_given_twice_once(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    with lock.hold([a, b, a / ".." / "a"], wait_seconds=0) as held:
        assert held
        for directory in (a, b):
            with pytest.raises(lock.VolumeBusy), lock.hold([directory], wait_seconds=0):
                pass
