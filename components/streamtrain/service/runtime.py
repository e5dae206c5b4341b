"""Process plumbing shared by the components: stop signals and the JSON summary file."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


class StopFlag:
    """Set by SIGTERM/SIGINT; the main loop checks it between batches and finishes cleanly."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None

    def install(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means now
        self.signal_name = signal.Signals(signum).name
        log.info("stop requested", extra={"signal": self.signal_name})
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


def write_summary(path: Path | None, summary: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(path)


class Throughput:
    """Records per second after the first batch (which pays for model building and tracing).

    The summaries carry it so benchmarks measure the steady state of a run, not its start-up.
    """

    def __init__(self) -> None:
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] | None = None

    def mark(self, records_total: int) -> None:
        """Call after each batch with the running total of records handled."""
        now = time.monotonic()
        if self.first is None:
            self.first = (now, records_total)
        self.last = (now, records_total)

    def summary(self) -> dict[str, Any]:
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return {"steady_records": 0, "steady_seconds": 0.0, "steady_records_per_second": None}
        records, seconds = self.last[1] - self.first[1], self.last[0] - self.first[0]
        return {"steady_records": records, "steady_seconds": round(seconds, 3),
                "steady_records_per_second": round(records / seconds, 1)}
