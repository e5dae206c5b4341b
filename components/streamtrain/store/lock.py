"""At most one trainer per model store: an exclusive `flock` on the checkpoint and model directories.

Two trainers on one volume would train records twice and write one version number twice. The lock is held for the
trainer's whole life on an open file; the kernel drops it when the process ends in any way (SIGKILL, OOM kill, a
crashed node's NFS lease expiring), so a dead holder never needs a timeout guess. On NFS, Linux emulates `flock`
with byte-range locks the server enforces across clients.

>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> with hold([d], wait_seconds=0):
...     try:
...         with hold([d], wait_seconds=0):
...             pass
...     except VolumeBusy as busy:
...         print("busy:", busy.path.name)
busy: .trainer.lock
>>> with hold([d], wait_seconds=0):  # released on leaving the first block
...     print("free again")
free again
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".trainer.lock"
POLL_SECONDS = 0.2


class VolumeBusy(RuntimeError):
    """Another live process holds the lock (exit code 4); `holder` is what it wrote into the lock file."""

    def __init__(self, path: Path, holder: str, waited: float) -> None:
        super().__init__(f"another trainer holds {path} ({holder or 'holder unknown'}); waited {waited:.0f} s. "
                         "One model store takes one trainer: stop the other one or point this one elsewhere")
        self.path, self.holder = path, holder


def _describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return ""
    return ", ".join(f"{key} {info[key]}" for key in ("host", "pid", "since") if key in info)


@contextmanager
def _locked(directory: Path, wait_seconds: float, stopping: Callable[[], bool]) -> Iterator[bool]:
    """Yields True with the lock held, or False when `stopping()` turned true while waiting for it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        started = time.monotonic()
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= wait_seconds:
                    raise VolumeBusy(path, _describe_holder(path), waited) from None
                if stopping():
                    yield False
                    return
                if not announced:
                    log.warning("waiting for another trainer to release the model store",
                                extra={"lock": str(path), "holder": _describe_holder(path),
                                       "wait_seconds": wait_seconds})
                    announced = True
                time.sleep(POLL_SECONDS)
        # Who holds it, for the message a second trainer prints (the lock itself is the flock, not this text).
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode(), 0)
        yield True
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def hold(directories: list[Path], wait_seconds: float,
         stopping: Callable[[], bool] = lambda: False) -> Iterator[bool]:
    """Hold the trainer lock of every directory (one lock per distinct directory, taken in a fixed order so two
    trainers waiting for each other's second lock cannot deadlock). Waits up to `wait_seconds` for a holder to go,
    then raises VolumeBusy; yields False if `stopping()` turns true while waiting (a stop signal)."""
    unique = sorted({d.resolve() for d in directories})
    with ExitStack() as stack:
        for directory in unique:
            if not stack.enter_context(_locked(directory, wait_seconds, stopping)):
                yield False
                return
        yield True
