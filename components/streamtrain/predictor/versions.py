"""Which version the predictor serves, loaded in the background and swapped without a gap.

The serving decisions (serving/control.py, read from the control topic) and the model store name the version: the
pinned one, else the newest promoted one (or, with --serve newest, the newest complete one). A thread loads it
when the decisions or the store change and swaps it in by reference: a batch or a request that took the old
version finishes on it. A version that fails its checksums or does not load is refused with a reason and not
retried; the version served before keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from prometheus_client import Counter, Gauge

from streamtrain.service.config import PredictorSettings
from streamtrain.serving.control import ControlReader
from streamtrain.store import model_store
from streamtrain.store.loaded import LoadedModel, load_version

log = logging.getLogger("streamtrain.predictor")

SERVING = Gauge("streamtrain_predictor_serving_version", "Model version the predictor serves")
SWAPS = Counter("streamtrain_predictor_version_swaps_total", "Versions swapped in")
REFUSED = Counter("streamtrain_predictor_version_refusals_total", "Versions refused", ["reason"])
CACHED = 3  # loaded versions kept for requests that name a version (the served one and those before it)


class Versions:
    """The predictor's model source: `serving()` for the stream and the REST API, `version(n)` for requests that
    name one."""

    def __init__(self, settings: PredictorSettings, control: ControlReader) -> None:
        self.s = settings
        self.model_name = settings.model_name
        self.control = control
        self.current: LoadedModel | None = None
        self.loaded: dict[int, LoadedModel] = {}
        self.refused: dict[int, str] = {}
        self.history: list[dict[str, Any]] = []
        self.changed = threading.Event()  # set after each swap
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="versions", daemon=True)

    # --- the model source (predictor/rest.py's ModelSource) ---------------------------------------
    def serving(self) -> LoadedModel | None:
        return self.current

    def available(self) -> list[int]:
        return [v for v in model_store.version_numbers(self.s.model_dir, self.model_name) if v not in self.refused]

    def version(self, number: int) -> LoadedModel | None:
        """A named version: from the cache, or loaded now if the store has it (None if not, or it is refused)."""
        with self._lock:
            if number in self.loaded:
                return self.loaded[number]
        if number in self.refused or number not in self.available():
            return None
        return self._load(number)

    # --- following the decisions --------------------------------------------------------------
    def start(self) -> Versions:
        self.check()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.control.changed.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.control.changed.wait(self.s.poll_seconds)
            self.control.changed.clear()
            if not self._stop.is_set():
                self.check()

    def target(self) -> int | None:
        return self.control.snapshot().serving(self.available(), self.s.serve)

    def check(self) -> None:
        """Swap in the version the decisions name, if it is not the one served."""
        number = self.target()
        if number is None or (self.current is not None and self.current.version == number):
            return
        loaded = self._load(number)
        if loaded is None:
            return
        previous = self.current.version if self.current else None
        self.current = loaded
        SERVING.set(number)
        SWAPS.inc()
        self.history.append({"version": number, "since_ms": int(time.time() * 1000), "previous": previous})
        del self.history[:-100]
        self.changed.set()
        log.info("serving model version", extra={"version": number, "previous": previous})

    def _load(self, number: int) -> LoadedModel | None:
        path = model_store.model_root(self.s.model_dir, self.model_name) / str(number)
        started = time.monotonic()
        try:
            loaded = load_version(number, path)
        except model_store.CorruptVersion as exc:
            if path.exists():  # (retention removing it while we looked is not a fault)
                self.refused[number] = str(exc)
                REFUSED.labels(exc.kind).inc()
                log.error("model version refused; serving the one before",
                          extra={"version": number, "reason": str(exc),
                                 "serving": self.current.version if self.current else None})
            return None
        with self._lock:
            self.loaded[number] = loaded
            for old in sorted(self.loaded)[:-CACHED]:
                if self.current is None or old != self.current.version:
                    del self.loaded[old]
        log.info("model version loaded", extra={"version": number, "seconds": round(time.monotonic() - started, 3)})
        return loaded

    def status(self) -> dict[str, Any]:
        decisions = self.control.snapshot()
        return {"serving_version": self.current.version if self.current else None, "serve_policy": self.s.serve,
                "versions_loaded": sorted(self.loaded), "versions_refused": self.refused,
                "serving_history": self.history[-20:], **decisions.summary()}
