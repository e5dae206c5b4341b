"""Failing writes the trainer survives: a checkpoint or a publication that fails (a full volume, say) leaves the
previous one in place, training goes on, and the next attempt retries. One helper keeps the state both show:
a counter of failures, a gauge that is 1 while the newest attempt failed, one that says whether for lack of space,
and one log line when it fails and one when it works again.

>>> str(no_space(OSError(28, "No space left on device")))
'True'
>>> shorten("x" * 400, keep=5)
'xxxxx ... xxxxx'
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

log = logging.getLogger("streamtrain.trainer")


def no_space(exc: BaseException) -> bool:
    """A full volume, whichever library wrote: errno ENOSPC or EDQUOT, or TensorFlow's message for it."""
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc) \
        or "Disk quota exceeded" in str(exc)


def shorten(text: str, keep: int = 150) -> str:
    """One line; long messages (TensorFlow's name the op first, the cause last) keep both ends."""
    text = " ".join(text.split())
    return text if len(text) <= 2 * keep else f"{text[:keep]} ... {text[-keep:]}"


@dataclass
class FailureState:
    recovered: str  # what the log says when an attempt works after failing
    failures: Counter
    failing_gauge: Gauge
    no_space_gauge: Gauge
    failing: bool = False

    def failed(self, exc: BaseException, message: str, **extra: Any) -> None:
        full = no_space(exc)
        self.failures.inc()
        self.failing_gauge.set(1)
        self.no_space_gauge.set(1 if full else 0)
        self.failing = True
        log.error(message, extra={"error": f"{exc.__class__.__name__}: {shorten(str(exc))}", "no_space_left": full,
                                  **extra})

    def succeeded(self, **extra: Any) -> None:
        if self.failing:
            log.warning(self.recovered, extra=extra)
            self.failing = False
        self.failing_gauge.set(0)
        self.no_space_gauge.set(0)
