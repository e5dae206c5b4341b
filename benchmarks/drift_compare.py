"""Our drift detectors (streamtrain.trainer.drift) against River's ADWIN and PageHinkley, on the same streams.

    pip install river==0.26.1                     # River is not a dependency of streamtrain
    python -m benchmarks.drift_compare            # about 2-4 minutes on 2 busy cores
    python -m benchmarks.drift_compare --quick    # fewer seeds and shorter stationary streams

What it measures, on generated 0/1 prequential error streams with fixed seeds (Bernoulli records):

(a) detection quality at the trainer's default micro-batch size (256) and at 32: after abrupt rises of the error
    rate, gradual rises and a rise-fall-rise sequence, the delay in records from the change to the end
    of the batch where a rise is reported (median, p90, max over the seeds), missed changes, false
    alarms before the change, repeated alarms after the first one, falls reported; on stationary
    streams, alarms per million records. Ours at the trainer's defaults (service/config.py, drift.make),
    River's at its defaults and at settings matched to ours.
(b) cost per micro-batch of 32, 256 and 1024 records: median microseconds of one `update` call for ours
    and of feeding the same records one at a time to River (raw loop, and through the adapter below that
    gives River our Detector interface), interleaved in the same run.
(c) whether River's detector state fits our JSON checkpoint (exact round trip), and what River tells at
    a drift compared with our `Change(before, after, records_before, records_after)`.

River is always fed the same records as ours, one value at a time with `update(x)`; the batch
protocol (`update(errors) -> Change | None`) is provided by `RiverAdwin` / `RiverPageHinkley`, which
only observe River's detector (its decisions are River's own). Writes
benchmarks/results/drift-compare-<date>.json and prints tables.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import pickle
import platform
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

try:
    import river
    from river import drift as river_drift
except ModuleNotFoundError:  # not a dependency of streamtrain: this comparison is its only user
    raise SystemExit("benchmarks.drift_compare needs River: pip install river==0.26.1 (numpy >= 2)") from None

from streamtrain.service.config import TrainerSettings
from streamtrain.trainer import drift
from streamtrain.trainer.drift import Change, Detector

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


# --- the trainer's defaults ---------------------------------------------------------------------------
def trainer_defaults() -> dict[str, Any]:
    fields = TrainerSettings.model_fields
    names = ("drift_detector", "drift_delta", "drift_threshold", "drift_min_change", "drift_warmup_records",
             "drift_cooldown_records", "batch_size")
    return {name: fields[name].default for name in names}


DEFAULTS = trainer_defaults()


# --- River behind our Detector interface ----------------------------------------------------------------
# River's ADWIN keeps its window in a Rust object (river._river_rust.drift.AdaptiveWindowing) whose only
# state API is __getstate__/__setstate__: serde/bincode bytes of the private struct, followed by the
# constructor arguments. Layout (river 0.26.1, rust_src/adwin.rs): header fields, then the bucket list.
_ADWIN_HEADER = (("delta", "d"), ("clock", "i"), ("max_buckets", "Q"), ("min_window_length", "d"),
                 ("grace_period", "d"), ("total", "d"), ("variance", "d"), ("width", "d"), ("total_width", "d"),
                 ("n_buckets", "i"), ("max_n_buckets", "i"), ("tick", "i"), ("n_detections", "i"))
_ADWIN_ARGS = (("delta", "d"), ("clock", "i"), ("max_buckets", "Q"), ("min_window_length", "i"),
               ("grace_period", "i"))


def adwin_state_to_json(blob: bytes) -> dict[str, Any]:
    """River ADWIN's bincode state as plain JSON (every float kept exactly; Python floats round-trip)."""
    offset = 0

    def take(fmt: str) -> Any:
        nonlocal offset
        (value,) = struct.unpack_from("<" + fmt, blob, offset)
        offset += struct.calcsize("<" + fmt)
        return value

    state: dict[str, Any] = {name: take(fmt) for name, fmt in _ADWIN_HEADER}
    buckets = []
    for _ in range(take("Q")):
        max_size, current = take("Q"), take("Q")
        totals = [take("d") for _ in range(take("Q"))]
        variances = [take("d") for _ in range(take("Q"))]
        buckets.append({"max_size": max_size, "current_idx": current, "totals": totals, "variances": variances})
    state["bucket_list"] = buckets
    state["args"] = {name: take(fmt) for name, fmt in _ADWIN_ARGS}
    if offset != len(blob):
        raise ValueError(f"unexpected River ADWIN state layout ({offset} of {len(blob)} bytes decoded)")
    return state


def adwin_state_from_json(state: dict[str, Any]) -> bytes:
    parts = [struct.pack("<" + fmt, state[name]) for name, fmt in _ADWIN_HEADER]
    parts.append(struct.pack("<Q", len(state["bucket_list"])))
    for b in state["bucket_list"]:
        parts.append(struct.pack("<QQQ", b["max_size"], b["current_idx"], len(b["totals"])))
        parts.append(struct.pack(f"<{len(b['totals'])}d", *b["totals"]))
        parts.append(struct.pack(f"<Q{len(b['variances'])}d", len(b["variances"]), *b["variances"]))
    parts.extend(struct.pack("<" + fmt, state["args"][name]) for name, fmt in _ADWIN_ARGS)
    return b"".join(parts)


class RiverAdwin:
    """river.drift.ADWIN fed record by record, with our batch interface.

    At a detection River has already dropped the oldest buckets; the Change is the dropped part (before)
    against what is left (after), from the width and total before and after that record. River then
    clears its whole window at the next update.
    """

    kind = "adwin"

    def __init__(self, **params: Any) -> None:
        self.river = river_drift.ADWIN(**params)
        self.seen = 0

    @property
    def width(self) -> int:
        return int(self.river.width)

    @property
    def mean(self) -> float | None:
        return float(self.river.estimation) if self.river.width else None

    def update(self, errors: np.ndarray) -> Change | None:
        det = self.river
        values = np.asarray(errors, np.float64).ravel().tolist()
        self.seen += len(values)
        change: Change | None = None
        width, total = (0.0, 0.0) if det.drift_detected else (float(det.width), float(det.total))
        for x in values:
            det.update(x)
            if det.drift_detected:
                if change is None:
                    left, left_total = float(det.width), float(det.total)
                    dropped = width + 1.0 - left
                    change = Change((total + x - left_total) / dropped, left_total / left if left else x,
                                    int(dropped), int(left))
                width, total = 0.0, 0.0  # River starts an empty window at the next record
            else:
                width += 1.0
                total += x
        return change

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "impl": "river", "seen": self.seen, "drift_detected": self.river.drift_detected,
                "window": adwin_state_to_json(self.river._helper.__getstate__())}

    def load(self, data: dict[str, Any]) -> None:
        blob = adwin_state_from_json(data["window"])
        self.river._helper.__setstate__(blob)
        self.river._drift_detected = bool(data["drift_detected"])
        self.seen = int(data["seen"])


class RiverPageHinkley:
    """river.drift.PageHinkley fed record by record, with our batch interface.

    River says only `drift_detected`; the adapter works out the direction (which of River's two sums
    crossed the threshold) and, like ours, the running mean at the lowest point of the cumulative sum and
    the mean since then (River's `_sum_increase`/`_min_increase`), to fill a Change.
    """

    kind = "page-hinkley"

    def __init__(self, **params: Any) -> None:
        self.river = river_drift.PageHinkley(**params)
        self.seen = 0
        self.low = [0.0, 0.0, 0.0, 0.0]  # at the lowest _sum_increase: mean, records; since: sum, records
        self.high = [0.0, 0.0, 0.0, 0.0]  # the same at the highest _sum_decrease (for a fall)

    @property
    def mean(self) -> float | None:
        return float(self.river._x_mean.get()) if self.river._x_mean.n else None

    def update(self, errors: np.ndarray) -> Change | None:
        det = self.river
        values = np.asarray(errors, np.float64).ravel().tolist()
        self.seen += len(values)
        change: Change | None = None
        low, high = self.low, self.high
        for x in values:
            det.update(x)
            m = det._x_mean
            if det._sum_increase == det._min_increase:
                low[:] = [m.get(), m.n, 0.0, 0.0]
            else:
                low[2] += x
                low[3] += 1
            if det._sum_decrease == det._max_decrease:
                high[:] = [m.get(), m.n, 0.0, 0.0]
            else:
                high[2] += x
                high[3] += 1
            if det.drift_detected and change is None:
                rise = det._sum_increase - det._min_increase > det.threshold
                ref = low if rise else high
                after = ref[2] / ref[3] if ref[3] else x
                change = Change(ref[0], after, int(ref[1]), int(ref[3]))
        return change

    def to_json(self) -> dict[str, Any]:
        det = self.river

        def finite(v: float) -> float | None:  # _min_increase starts at +inf, which JSON does not have
            return v if math.isfinite(v) else None

        return {"kind": self.kind, "impl": "river", "seen": self.seen, "drift_detected": det.drift_detected,
                "n": det._x_mean.n, "mean": det._x_mean._mean, "sum_increase": det._sum_increase,
                "sum_decrease": det._sum_decrease, "min_increase": finite(det._min_increase),
                "max_decrease": det._max_decrease, "low": self.low, "high": self.high}

    def load(self, data: dict[str, Any]) -> None:
        det: Any = self.river
        det._reset()
        det._drift_detected = bool(data["drift_detected"])
        det._x_mean.n, det._x_mean._mean = float(data["n"]), float(data["mean"])
        det._sum_increase, det._sum_decrease = float(data["sum_increase"]), float(data["sum_decrease"])
        det._min_increase = math.inf if data["min_increase"] is None else float(data["min_increase"])
        det._max_decrease = float(data["max_decrease"])
        self.low, self.high = [float(v) for v in data["low"]], [float(v) for v in data["high"]]
        self.seen = int(data["seen"])


# --- the compared configurations -------------------------------------------------------------------------
Factory = Callable[[int], Detector]  # batch size -> fresh detector


def variants() -> dict[str, tuple[str, str, Factory]]:
    """name -> (family, settings, factory)."""
    d = DEFAULTS

    def ours(kind: str) -> Factory:
        def build(batch: int) -> Detector:
            det = drift.make(kind, d["drift_delta"], d["drift_threshold"], d["drift_min_change"])
            assert det is not None
            return det
        return build

    return {
        "ours-adwin": ("adwin", f"delta={d['drift_delta']}, min_side=64, per_level=5, check once per batch",
                       ours("adwin")),
        "river-adwin": ("adwin", "defaults: delta=0.002, clock=32, max_buckets=5, min_window_length=5, "
                        "grace_period=10", lambda batch: RiverAdwin()),
        "river-adwin-matched": ("adwin", f"delta={d['drift_delta']}, clock=<batch size>, min_window_length=64",
                                lambda batch: RiverAdwin(delta=d["drift_delta"], clock=batch, min_window_length=64)),
        "ours-ph": ("page-hinkley", f"threshold={d['drift_threshold']}, min_change={d['drift_min_change']}, "
                    "min_records=30, rises only", ours("page-hinkley")),
        "river-ph": ("page-hinkley", "defaults: threshold=50, delta=0.005, alpha=0.9999, min_instances=30, "
                     "mode=both", lambda batch: RiverPageHinkley()),
        "river-ph-matched": ("page-hinkley", f"threshold={d['drift_threshold']}, delta={d['drift_min_change']}, "
                             "alpha=1.0, min_instances=30, mode=up",
                             lambda batch: RiverPageHinkley(threshold=d["drift_threshold"],
                                                            delta=d["drift_min_change"], alpha=1.0,
                                                            min_instances=30, mode="up")),
    }


# --- (a) detection quality ---------------------------------------------------------------------------------
def bernoulli(rng: np.random.Generator, rates: np.ndarray) -> np.ndarray:
    return (rng.random(rates.size) < rates).astype(np.float64)


def piecewise(segments: Sequence[tuple[int, float]]) -> np.ndarray:
    return np.concatenate([np.full(n, p) for n, p in segments])


def run(detector: Detector, stream: np.ndarray, batch: int) -> tuple[list[int], list[int]]:
    """Batch ends where a rise was reported, and where a fall was reported."""
    rises: list[int] = []
    falls: list[int] = []
    for start in range(0, stream.size, batch):
        change = detector.update(stream[start:start + batch])
        if change is not None:
            (rises if change.increase else falls).append(min(start + batch, stream.size))
    return rises, falls


def summary(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"median": None, "p90": None, "max": None}
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)), "max": int(max(values))}


def onset_scenario(factory: Factory, rates: np.ndarray, onset: int, seeds: Sequence[int],
                   batch: int) -> dict[str, Any]:
    """One change starting at `onset` (abrupt or the start of a ramp)."""
    delays: list[int] = []
    missed = false_before = seeds_false = repeats = falls = 0
    for seed in seeds:
        stream = bernoulli(np.random.default_rng(seed), rates)
        rises, fall_at = run(factory(batch), stream, batch)
        before = [r for r in rises if r <= onset]
        after = [r for r in rises if r > onset]
        false_before += len(before)
        seeds_false += bool(before)
        falls += len(fall_at)
        if after:
            delays.append(after[0] - onset)
            repeats += len(after) - 1
        else:
            missed += 1
    return {"seeds": len(seeds), "detected": len(delays), "missed": missed, "delay": summary(delays),
            "false_rises_before": false_before, "seeds_with_false_rise": seeds_false,
            "repeated_rises_after": repeats, "falls_reported": falls}


def rise_fall_rise(factory: Factory, seeds: Sequence[int], batch: int) -> dict[str, Any]:
    """0.1 for 10k, 0.4 for 10k (rise), 0.1 for 10k (fall: not a drift), 0.35 for 10k (rise)."""
    rates = piecewise([(10_000, 0.1), (10_000, 0.4), (10_000, 0.1), (10_000, 0.35)])
    first: list[int] = []
    second: list[int] = []
    missed = [0, 0]
    wrong = fall_flagged = exactly_two = 0
    for seed in seeds:
        rises, falls = run(factory(batch), bernoulli(np.random.default_rng(seed), rates), batch)
        r1 = [r for r in rises if 10_000 < r <= 20_000]
        r2 = [r for r in rises if r > 30_000]
        wrong += len([r for r in rises if r <= 10_000 or 20_000 < r <= 30_000])
        fall_flagged += len([f for f in falls if 20_000 < f <= 30_000])
        exactly_two += len(rises) == 2 and len(r1) == 1 and len(r2) == 1
        for found, delays, i, at in ((r1, first, 0, 10_000), (r2, second, 1, 30_000)):
            if found:
                delays.append(found[0] - at)
            else:
                missed[i] += 1
    return {"seeds": len(seeds), "first_rise_delay": summary(first), "second_rise_delay": summary(second),
            "missed_first": missed[0], "missed_second": missed[1], "rises_outside_the_rises": wrong,
            "falls_reported_during_fall": fall_flagged, "seeds_with_exactly_the_two_rises": exactly_two}


def stationary(factory: Factory, rate: float, length: int, seeds: Sequence[int], batch: int) -> dict[str, Any]:
    rises = falls = seeds_with = 0
    for seed in seeds:
        r, f = run(factory(batch), bernoulli(np.random.default_rng(seed), np.full(length, rate)), batch)
        rises += len(r)
        falls += len(f)
        seeds_with += bool(r)
    records = length * len(seeds)
    return {"seeds": len(seeds), "records": records, "rises": rises, "falls": falls,
            "rises_per_million": rises * 1e6 / records, "alarms_per_million": (rises + falls) * 1e6 / records,
            "seeds_with_a_rise": seeds_with}


ABRUPT = [(0.10, 0.40), (0.20, 0.30), (0.05, 0.15), (0.05, 0.50)]
STATIONARY_RATES = [0.02, 0.10, 0.30, 0.50]


def quality(names: Sequence[str], seeds: int, stationary_length: int, batch: int) -> dict[str, Any]:
    table = variants()
    out: dict[str, Any] = {"batch_size": batch, "scenarios": {}}
    change_at = 20_000
    scenarios: dict[str, tuple[np.ndarray, int, int]] = {}
    for k, (before, after) in enumerate(ABRUPT):
        scenarios[f"abrupt {before:.2f}->{after:.2f}"] = (
            piecewise([(change_at, before), (20_000, after)]), change_at, 100_000 + 1000 * k)
    scenarios["gradual 0.10->0.40 over 4k"] = (
        np.concatenate([np.full(10_000, 0.1), np.linspace(0.1, 0.4, 4000), np.full(6000, 0.4)]), 10_000, 200_000)
    scenarios["gradual 0.10->0.30 over 20k"] = (
        np.concatenate([np.full(10_000, 0.1), np.linspace(0.1, 0.3, 20_000), np.full(10_000, 0.3)]), 10_000, 210_000)
    for label, (rates, onset, base) in scenarios.items():
        out["scenarios"][label] = {
            "kind": label.split()[0], "onset": onset, "records": int(rates.size),
            "results": {n: onset_scenario(table[n][2], rates, onset, range(base, base + seeds), batch) for n in names},
        }
        print(f"  {label}: done", file=sys.stderr, flush=True)
    out["scenarios"]["rise-fall-rise"] = {
        "kind": "sequence", "records": 40_000,
        "results": {n: rise_fall_rise(table[n][2], range(300_000, 300_000 + seeds), batch) for n in names},
    }
    print("  rise-fall-rise: done", file=sys.stderr, flush=True)
    out["stationary"] = {}
    for k, rate in enumerate(STATIONARY_RATES):
        base = 400_000 + 1000 * k
        out["stationary"][f"{rate:.2f}"] = {
            n: stationary(table[n][2], rate, stationary_length, range(base, base + seeds), batch) for n in names}
        print(f"  stationary {rate:.2f}: done", file=sys.stderr, flush=True)
    return out


# --- (b) cost per micro-batch ------------------------------------------------------------------------------
def river_raw_loop(det: Any) -> Callable[[np.ndarray], bool]:
    def update(errors: np.ndarray) -> bool:
        hit = False
        for x in np.asarray(errors, np.float64).tolist():
            det.update(x)
            if det.drift_detected:
                hit = True
        return hit
    return update


def cost(batches: Sequence[int], repetitions: dict[int, int], warm_records: int) -> dict[str, Any]:
    """Median microseconds of one micro-batch update, all detectors interleaved (rotating order)."""
    rng = np.random.default_rng(77)
    out: dict[str, Any] = {}
    d = DEFAULTS
    for batch in batches:
        reps = repetitions[batch]
        warm = bernoulli(rng, np.full(warm_records, 0.2))
        timed = bernoulli(rng, np.full(batch * reps, 0.2))
        ours_adwin = drift.Adwin(d["drift_delta"])  # what drift.make builds with the trainer's defaults
        ours_ph = drift.PageHinkley(d["drift_threshold"], d["drift_min_change"])
        river_adwin, river_ph = river_drift.ADWIN(), river_drift.PageHinkley()
        adapter_adwin = RiverAdwin(delta=d["drift_delta"], clock=batch, min_window_length=64)
        adapter_ph = RiverPageHinkley(threshold=d["drift_threshold"], delta=d["drift_min_change"], alpha=1.0,
                                      mode="up")
        calls: dict[str, Callable[[np.ndarray], Any]] = {
            "ours-adwin": ours_adwin.update,
            "river-adwin raw loop (defaults)": river_raw_loop(river_adwin),
            "river-adwin adapter (matched)": adapter_adwin.update,
            "ours-ph": ours_ph.update,
            "river-ph raw loop (defaults)": river_raw_loop(river_ph),
            "river-ph adapter (matched)": adapter_ph.update,
        }
        for start in range(0, warm.size, batch):
            for call in calls.values():
                call(warm[start:start + batch])
        times: dict[str, list[float]] = {name: [] for name in calls}
        order = list(calls)
        gc.collect()
        gc.disable()
        try:
            for i in range(reps):
                x = timed[i * batch:(i + 1) * batch]
                for name in order[i % len(order):] + order[:i % len(order)]:
                    call = calls[name]
                    t0 = time.perf_counter()
                    call(x)
                    times[name].append(time.perf_counter() - t0)
        finally:
            gc.enable()
        out[str(batch)] = {
            "repetitions": reps, "warm_records": warm_records,
            "us_per_batch": {n: {"median": statistics.median(v) * 1e6,
                                 "p10": float(np.percentile(v, 10)) * 1e6, "p90": float(np.percentile(v, 90)) * 1e6}
                             for n, v in times.items()},
            "window_after": {"ours-adwin buckets": len(ours_adwin.buckets), "ours-adwin width": ours_adwin.width,
                             "river-adwin width": int(river_adwin.width)},
        }
        print(f"  cost at batch {batch}: done", file=sys.stderr, flush=True)
    return out


# --- (c) checkpoint and what is reported at a drift ------------------------------------------------------
def same_continuation(a: Detector, b: Detector, stream: np.ndarray, batch: int) -> bool:
    for start in range(0, stream.size, batch):
        x = stream[start:start + batch]
        if a.update(x) != b.update(x):
            return False
    return True


def _changes(detector: Detector, stream: np.ndarray, batch: int) -> list[dict[str, Any]]:
    """The changes `detector` reports on `stream` fed in batches, each with the record count it was reported at."""
    found = []
    for start in range(0, stream.size, batch):
        change = detector.update(stream[start:start + batch])
        if change is not None:
            found.append({"at": start + batch, **change.__dict__})
    return found


def checkpoint(batch: int) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    head = bernoulli(rng, np.full(100_000, 0.2))
    tail = bernoulli(rng, piecewise([(20_000, 0.2), (20_000, 0.45), (20_000, 0.1), (20_000, 0.5)]))
    out: dict[str, Any] = {}

    river_adwin = river_drift.ADWIN()
    out["river_base_api"] = {
        "ADWIN._get_params()": river_adwin._get_params(),
        "PageHinkley._get_params()": river_drift.PageHinkley()._get_params(),
        "note": "_get_params() returns constructor arguments only; clone() builds a fresh detector from them "
                "(no window); clone(include_attributes=True) deep-copies the state in memory (through pickle "
                "for the Rust window), which is no JSON form.",
    }
    for x in head[:5000].tolist():
        river_adwin.update(x)
    out["river_base_api"]["clone() width after 5000 records"] = int(river_adwin.clone().width)
    out["river_base_api"]["clone(include_attributes=True) width"] = int(
        river_adwin.clone(include_attributes=True).width)

    # State after 100k stationary records, both families, each through JSON, then the same continuation.
    sizes: dict[str, Any] = {}
    d = DEFAULTS
    pairs: dict[str, tuple[Callable[[], Detector], str]] = {
        "ours-adwin": (lambda: drift.Adwin(d["drift_delta"]), "ours"),
        "river-adwin (defaults)": (lambda: RiverAdwin(), "river"),
        "river-adwin-matched": (lambda: RiverAdwin(clock=batch, min_window_length=64), "river"),
        "ours-ph": (lambda: drift.PageHinkley(d["drift_threshold"], d["drift_min_change"]), "ours"),
        "river-ph (defaults)": (lambda: RiverPageHinkley(), "river"),
        "river-ph-matched": (lambda: RiverPageHinkley(threshold=d["drift_threshold"], delta=d["drift_min_change"],
                                                      alpha=1.0, mode="up"), "river"),
    }
    for name, (build, impl) in pairs.items():
        original = build()
        run(original, head, batch)
        text = json.dumps(original.to_json(), allow_nan=False)
        restored = build()
        restored.load(json.loads(text))
        entry: dict[str, Any] = {"json_bytes": len(text), "exact_continuation_after_json": same_continuation(
            original, restored, tail, batch)}
        if impl == "river":
            river_obj = original.river  # type: ignore[attr-defined]
            entry["pickle_bytes"] = len(pickle.dumps(river_obj))
            if isinstance(original, RiverAdwin):
                blob = river_obj._helper.__getstate__()
                entry["rust_state_bytes"] = len(blob)
                entry["bincode_decoded_and_reencoded_identically"] = (
                    adwin_state_from_json(adwin_state_to_json(blob)) == blob)
        sizes[name] = entry
    out["json_round_trip"] = sizes

    # What is known at a drift: 0.05 for 8000 records then 0.5 (as in our test of the reported rates).
    stream = bernoulli(np.random.default_rng(11), piecewise([(8000, 0.05), (2000, 0.5)]))
    ours_changes = _changes(drift.Adwin(), stream, batch)
    det = river_drift.ADWIN()
    river_seen: list[dict[str, Any]] = []
    for i, x in enumerate(stream.tolist()):
        det.update(x)
        if det.drift_detected:
            river_seen.append({"record": i + 1, "drift_detected": True, "width": int(det.width),
                               "estimation": det.estimation, "variance": det.variance, "n_detections":
                               det.n_detections})
    after_next = river_drift.ADWIN()
    for i, x in enumerate(stream.tolist()):
        after_next.update(x)
        if after_next.drift_detected:
            after_next.update(float(stream[i + 1]))
            break
    adapter_changes = _changes(RiverAdwin(), stream, batch)
    ph = river_drift.PageHinkley()
    ph_seen = []
    for i, x in enumerate(stream.tolist()):
        ph.update(x)
        if ph.drift_detected:
            ph_seen.append({"record": i + 1, "public": {"drift_detected": True}})
    out["at_a_drift"] = {
        "stream": "0.05 for 8000 records, then 0.5 for 2000 (seed 11)",
        "ours-adwin Change": ours_changes,
        "river ADWIN public attributes": river_seen,
        "river ADWIN width after the next update": int(after_next.width),
        "river-adwin adapter Change (derived from width/total before and after)": adapter_changes,
        "river PageHinkley detections (public API: drift_detected only)": ph_seen,
    }
    return out


# --- output -----------------------------------------------------------------------------------------------
def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}".rstrip("0").rstrip(".")
    return str(v)


def print_quality(q: dict[str, Any], seeds: int) -> None:
    print(f"\n(a) detection at batch size {q['batch_size']}, {seeds} seeds; delays in records after the change "
          "(to the end of the batch where the rise is reported)")
    head = f"{'scenario':30} {'detector':20} {'found':>6} {'miss':>5} {'med':>6} {'p90':>6} {'max':>6} " \
           f"{'false<':>6} {'repeat':>6} {'falls':>5}"
    print(head)
    for label, sc in q["scenarios"].items():
        if label == "rise-fall-rise":
            continue
        for name, r in sc["results"].items():
            print(f"{label:30} {name:20} {r['detected']:>6} {r['missed']:>5} {fmt(r['delay']['median']):>6} "
                  f"{fmt(r['delay']['p90']):>6} {fmt(r['delay']['max']):>6} {r['false_rises_before']:>6} "
                  f"{r['repeated_rises_after']:>6} {r['falls_reported']:>5}")
    print(f"\nrise-fall-rise (0.1 | 0.4 at 10k | 0.1 at 20k | 0.35 at 30k) at batch size {q['batch_size']}")
    print(f"{'detector':20} {'both-ok':>7} {'d1 med':>7} {'d1 max':>7} {'d2 med':>7} {'d2 max':>7} {'miss1':>5} "
          f"{'miss2':>5} {'wrong':>5} {'fall!':>5}")
    for name, r in q["scenarios"]["rise-fall-rise"]["results"].items():
        print(f"{name:20} {r['seeds_with_exactly_the_two_rises']:>7} {fmt(r['first_rise_delay']['median']):>7} "
              f"{fmt(r['first_rise_delay']['max']):>7} {fmt(r['second_rise_delay']['median']):>7} "
              f"{fmt(r['second_rise_delay']['max']):>7} {r['missed_first']:>5} {r['missed_second']:>5} "
              f"{r['rises_outside_the_rises']:>5} {r['falls_reported_during_fall']:>5}")
    print(f"\nstationary streams at batch size {q['batch_size']}: rises per million records "
          "(all alarms incl. falls, per million)")
    names = list(next(iter(q["stationary"].values())))
    print(f"{'rate':>6} " + " ".join(f"{n:>22}" for n in names))
    for rate, row in q["stationary"].items():
        print(f"{rate:>6} " + " ".join(
            f"{row[n]['rises_per_million']:>11.1f} ({row[n]['alarms_per_million']:>7.1f})" for n in names))


def print_tables(result: dict[str, Any]) -> None:
    for q in result["quality"].values():
        print_quality(q, result["settings"]["seeds"])
    print("\n(b) microseconds per micro-batch update (median; p10-p90), interleaved")
    c = result["cost"]
    for batch, entry in c.items():
        for name, t in entry["us_per_batch"].items():
            print(f"  batch {batch:>5}  {name:34} {t['median']:>9.1f}   ({t['p10']:.1f}-{t['p90']:.1f})")
    print("\n(c) JSON checkpoint round trip (state after 100k records, then 80k records with changes)")
    for name, e in result["checkpoint"]["json_round_trip"].items():
        extra = {k: v for k, v in e.items() if k not in ("json_bytes", "exact_continuation_after_json")}
        print(f"  {name:24} json {e['json_bytes']:>6} bytes  exact: {e['exact_continuation_after_json']}  {extra}")
    at = result["checkpoint"]["at_a_drift"]
    print(f"\n(c) what is reported at a drift, {at['stream']}")
    for key, value in at.items():
        if key != "stream":
            print(f"  {key}: {value}")
    legend = ("found/miss: seeds where the change was / was not detected; false<: rises reported before the change; "
              "repeat: further rises after the first; falls: decreases reported (a Change with increase False, "
              "which the trainer ignores; River's drift_detected fires for them too); both-ok: seeds with exactly "
              "the two rises; wrong: rises outside the two rising stretches; fall!: decreases reported during the fall")
    print("\n" + legend)


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--", "components/streamtrain/trainer/drift/"))
    return rev + ("-dirty" if dirty else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10 seeds, 40k-record stationary streams")
    parser.add_argument("--batch-sizes", default=f"{DEFAULTS['batch_size']},32",
                        help="micro-batch sizes for the detection part (default: the trainer's, and the smallest)")
    parser.add_argument("--river-tests", type=Path, default=None,
                        help="JSON summary of our tests run against River's detectors, to include")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    seeds = 10 if args.quick else 30
    stationary_length = 40_000 if args.quick else 100_000
    started = time.monotonic()
    load_before = os.getloadavg()
    names = list(variants())
    print("cost per micro-batch ...", file=sys.stderr, flush=True)
    reps = {32: 1000, 256: 500, 1024: 200} if args.quick else {32: 4000, 256: 2000, 1024: 800}
    result: dict[str, Any] = {
        "benchmark": "drift-compare",
        "date": time.strftime("%Y-%m-%d"),
        "revision": git_revision(),
        "environment": {"python": platform.python_version(), "river": river.__version__, "numpy": np.__version__,
                        "machine": platform.machine(), "cpus": os.cpu_count(), "load_before": load_before},
        "settings": {"seeds": seeds, "stationary_length": stationary_length, "trainer_defaults": DEFAULTS,
                     "variants": {n: {"family": f, "settings": s} for n, (f, s, _) in variants().items()}},
    }
    result["cost"] = cost([32, 256, 1024], reps, warm_records=100_000)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    result["quality"] = {}
    for batch in batch_sizes:
        print(f"detection quality at batch size {batch} ...", file=sys.stderr, flush=True)
        result["quality"][str(batch)] = quality(names, seeds, stationary_length, batch)
    print("checkpoint ...", file=sys.stderr, flush=True)
    result["checkpoint"] = checkpoint(batch_sizes[0])
    if args.river_tests is not None:
        result["our_tests_against_river"] = json.loads(args.river_tests.read_text())
    result["environment"]["load_after"] = os.getloadavg()
    result["seconds"] = round(time.monotonic() - started, 1)
    output = args.output or RESULTS / f"drift-compare-{result['date']}{'-quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print_tables(result)
    print(f"\nwrote {output} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
