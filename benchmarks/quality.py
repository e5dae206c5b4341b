"""Online-learning quality, measured with fixed seeds through the real components.

    python -m benchmarks.quality             # 28 minutes on 2 busy cores (10 of them River's ARF)
    python -m benchmarks.quality --quick     # smaller streams, one drift seed (about 10 minutes)
    python -m benchmarks.quality --only river --quick   # one part: tutorial (the first three) or river

Each stream is written by `streamtrain produce` into single-partition topics of the embedded broker
(so the order is the produced one), then `streamtrain train` runs on it as a process; its --trace-file
gives every record's prequential (test-then-train) error. The baselines read the same records back
from the same topics:

- the TensorFlow Kafka tutorial's online loop: each 100-record mini dataset is scored, then
  model.fit(epochs=3, batch_size=32) on it; same network, same running input standardisation and a
  correct loss, so only the loop differs (on breast-cancer also as published: raw features and
  BinaryCrossentropy(from_logits=True) on a sigmoid output);
- offline (SUSY-shaped stream): the same network trained for several epochs on all the train records.

Against River (the online-learning library; the quality extra, which `make venv` installs): the drift streams
of the literature, from the producer's generators, each with an abrupt and a gradual drift at the middle of
the stream (100,000 records; --quick 20,000): Agrawal (function 0, then 2), SEA (variant 0, then 2; 10 % label
noise) and the rotating hyperplane (10 features, 2 rotating, 5 % noise; at the middle its weights jump to a
fresh draw, at once or over the gradual width). River's LogisticRegression (after its StandardScaler),
HoeffdingAdaptiveTreeClassifier and ARFClassifier (seed 0) learn the records read back from the topic, one at
a time, test-then-train, in the topic's order. `streamtrain train` runs on its default settings (mlp) while
`streamtrain produce` streams the same records into a fresh topic at 2,000, 10,000 and 50,000 records/s, and
once on the filled topic (catch-up); `--model logreg` at 10,000 records/s. Its trace gives the per-record
prequential errors; its metrics messages (every 0.25 s here: beyond where it writes and when it stops, the
only setting changed) give the lag: the largest over the run, and after the first tenth of the stream.

Writes benchmarks/results/quality-<date>-<gitrev>.json, .png (the first three) and -river.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"

SEED = 42
RECOVERY_WINDOW = 1000  # trailing records over which accuracy is judged after a change
PRE_DRIFT = 2000  # records before the change that set the level to recover to
RECOVERY_MARGIN = 0.02
RECOVERY_TARGET = 5000
PARTS = ("tutorial", "river")
RIVER_MISSING = ("the comparison with River needs River 0.26.1: `make venv` installs it into .venv (the quality "
                 "extra), or pip install 'streamtrain[quality]'; --only tutorial runs without it")


def streams(quick: bool) -> dict[str, dict[str, Any]]:
    drift_at = 10_000 if quick else 20_000
    return {
        "breast-cancer": {"source": "breast-cancer", "passes": 1, "test_fraction": 0.0},
        "susy": {"source": "susy", "count": 25_000 if quick else 62_500, "test_fraction": 0.2},
        "drift": {"source": "drift", "count": 2 * drift_at, "drift_points": str(drift_at), "drift_type": "abrupt",
                  "test_fraction": 0.0},
    }


# The trainer's configuration per stream (everything else: the defaults, detection included).
TRAINER: dict[str, dict[str, Any]] = {
    "breast-cancer": {"batch_size": 32, "learning_rate": 0.01},  # 569 records: a few steps must count
    "susy": {"batch_size": 32, "learning_rate": 0.001},
    "drift": {"batch_size": 32, "learning_rate": 0.001},
}
DRIFT_VARIANTS: dict[str, dict[str, Any]] = {
    "detection off": {"drift_detector": "none", "drift_reaction": "none"},
    "adwin + reinit-output (default)": {"drift_detector": "adwin", "drift_reaction": "reinit-output"},
    "adwin + boost-lr": {"drift_detector": "adwin", "drift_reaction": "boost-lr"},
    "adwin + reset-optimizer": {"drift_detector": "adwin", "drift_reaction": "reset-optimizer"},
    "page-hinkley + reinit-output": {"drift_detector": "page-hinkley", "drift_reaction": "reinit-output"},
    # The trainer's default batch size: 8 times fewer optimizer steps per record (not plotted).
    "detection off, batch 256": {"drift_detector": "none", "drift_reaction": "none", "batch_size": 256},
    "adwin + reinit-output, batch 256": {"drift_detector": "adwin", "drift_reaction": "reinit-output",
                                         "batch_size": 256},
}
DEFAULT_VARIANT = "adwin + reinit-output (default)"
# Everything at the trainer's defaults: --batch-size auto (steps that keep up, rehearsal), --learning-rate auto.
DEFAULTS_VARIANT = "all defaults (auto steps and learning rate)"
DRIFT_VARIANTS[DEFAULTS_VARIANT] = {"batch_size": "auto", "learning_rate": "auto"}


# --- running the components -----------------------------------------------------------------------
class Run:
    def __init__(self, bootstrap: str, work: Path) -> None:
        self.bootstrap = bootstrap
        self.work = work

    def env(self, prefix: str, **options: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMTRAIN_")}
        env.update({"STREAMTRAIN_BOOTSTRAP_SERVERS": self.bootstrap, "STREAMTRAIN_LOG_FORMAT": "json",
                    "STREAMTRAIN_HTTP_PORT": "0", "TF_CPP_MIN_LOG_LEVEL": "2"})
        for topic in ("train", "test", "metrics", "model_events", "dead_letter"):
            env[f"STREAMTRAIN_{topic.upper()}_TOPIC"] = f"{prefix}.{topic.replace('_', '-')}"
        env.update({f"STREAMTRAIN_{k.upper()}": str(v) for k, v in options.items()})
        return env

    def component(self, command: str, name: str, env: dict[str, str], timeout: float = 1800) -> dict[str, Any]:
        return self.spawn(command, name, env).wait(timeout)

    def spawn(self, command: str, name: str, env: dict[str, str]) -> Child:
        """A component started as a process; `wait` gives its summary."""
        log = self.work / f"{name}.log"
        summary = self.work / f"{name}.json"
        env = {**env, "STREAMTRAIN_SUMMARY_FILE": str(summary)}
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "streamtrain", command], env=env, stdout=out,
                                       stderr=subprocess.STDOUT)
        return Child(f"{command} ({name})", process, log, summary)

    def messages(self, topic: str, until: Callable[[list[dict[str, Any]]], bool] | None = None,
                 timeout: float = 120) -> list[dict[str, Any]]:
        """The JSON messages of a one-partition topic: all of them, or until `until(messages so far)` holds."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "quality-reader",
                             "enable.auto.commit": False})
        found: list[dict[str, Any]] = []
        read = 0
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
                for msg in consumer.consume(1000, 0.2):
                    value = msg.value()
                    if msg.error() is None:
                        read += 1
                        if value:
                            found.append(json.loads(value))
                if until(found) if until is not None else read >= end:
                    return found
        finally:
            consumer.close()
        raise RuntimeError(f"{topic}: not found in {timeout:.0f} s ({len(found)} messages read)")

    def topics(self, prefix: str) -> None:
        from streamtrain.kafka import clients
        from streamtrain.service.config import CommonSettings

        env = self.env(prefix)
        fields: dict[str, Any] = {k.removeprefix("STREAMTRAIN_").lower(): v for k, v in env.items()
                                  if k.removeprefix("STREAMTRAIN_").lower() in CommonSettings.model_fields}
        settings = CommonSettings(**fields)
        clients.create_topics(clients.admin(settings, "quality"), clients.topic_names(settings), 1)

    def read(self, topic: str, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `count` records of a topic, decoded (counts come from the producer: exact)."""
        from confluent_kafka import Consumer, TopicPartition

        from streamtrain.wire import decode_batch

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "quality-reader",
                             "enable.auto.commit": False})
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            deadline = time.monotonic() + 300
            while len(values) < count and time.monotonic() < deadline:
                for msg in consumer.consume(10_000, 0.5):
                    if msg.error() is None:
                        keys.append(msg.key())
                        values.append(msg.value())
        finally:
            consumer.close()
        if len(values) != count:
            raise RuntimeError(f"{topic}: read {len(values)} records, expected {count}")
        decoded, _ = decode_batch(keys, values, None)
        assert not decoded.bad, decoded.bad[:3]
        return decoded.features, decoded.labels


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    summary: Path

    def wait(self, timeout: float = 1800) -> dict[str, Any]:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        if code != 0:
            raise RuntimeError(f"{self.name} exited {code}; see {self.log}")
        result: dict[str, Any] = json.loads(self.summary.read_text())
        return result


def produce(run: Run, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    prefix = f"quality-{name}-{int(time.time())}"
    run.topics(prefix)
    summary = run.component("produce", f"produce-{name}", run.env(prefix, **{"seed": SEED, **spec}))
    train = run.read(f"{prefix}.train", summary["produced"]["train"])
    test = run.read(f"{prefix}.test", summary["produced"]["test"]) if summary["produced"]["test"] else None
    return {"prefix": prefix, "train": train, "test": test, "produced": summary["produced"]}


def train(run: Run, stream: dict[str, Any], label: str, **options: Any) -> dict[str, Any]:
    """One trainer process over the whole train topic; returns its summary, per-record errors and drifts."""
    slug = label.replace(" ", "-").replace("+", "").replace("(", "").replace(")", "")
    work = run.work / slug
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    n = stream["produced"]["train"]
    env = run.env(stream["prefix"], model_dir=work / "models", checkpoint_dir=work / "ckpt",
                  trace_file=work / "trace.csv", max_records=n, idle_exit_seconds=60,
                  publish_every_seconds=3600, seed=0, **options)
    started = time.monotonic()
    summary = run.component("train", f"train-{slug}", env)
    seconds = time.monotonic() - started
    errors, drifts = read_trace(work / "trace.csv", n, summary)
    return {"summary": summary, "errors": errors, "drifts": drifts, "seconds": round(seconds, 1),
            "models": work / "models", "options": {k: str(v) for k, v in options.items()}}


def read_trace(path: Path, n: int, summary: dict[str, Any]) -> tuple[np.ndarray, list[int]]:
    """Per-record prequential errors (bool) and the positions of the drifts a trainer's --trace-file shows."""
    bits, drifts = [], []
    for line in path.read_text().splitlines()[1:]:
        fields = line.split(",")
        bits.append(fields[6])
        if fields[4] == "1":
            drifts.append(int(fields[0]))
    errors = np.frombuffer("".join(bits).encode(), np.uint8) - ord("0")
    assert errors.size == n == summary["records_trained"], (errors.size, n, summary["records_trained"])
    return errors.astype(bool), drifts


# --- baselines ------------------------------------------------------------------------------------
def tutorial_loop(x: np.ndarray, y: np.ndarray, as_published: bool = False, seed: int = 0) -> np.ndarray:
    """The tutorial's online loop: per 100-record mini dataset, score it, then fit(epochs=3, batch_size=32).

    Returns the per-record prequential errors. Same network as the trainer's mlp; unless as_published,
    its standardisation layer learns the stream's statistics as the trainer's does and the loss is told
    the output is a probability.
    """
    import keras

    from streamtrain import models

    model = models.build("mlp", x.shape[1], seed)
    standardizer = models.standardizer(model)
    model.compile(optimizer=keras.optimizers.Adam(), loss=keras.losses.BinaryCrossentropy(from_logits=as_published))
    errors = []
    for start in range(0, y.size, 100):
        xb, yb = x[start:start + 100], y[start:start + 100]
        scores = np.asarray(model.predict_on_batch(xb))[:, 0]
        errors.append((scores >= 0.5) != (yb >= 0.5))
        if standardizer is not None and not as_published:
            standardizer.update(xb)
        model.fit(xb, yb, epochs=3, batch_size=32, shuffle=True, verbose=0)
    return np.concatenate(errors)


def offline(x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, seed: int = 0) -> Any:
    """The same network trained offline: statistics from all train records, `epochs` shuffled passes."""
    import keras

    from streamtrain import models

    model = models.build("mlp", x.shape[1], seed)
    standardizer = models.standardizer(model)
    assert standardizer is not None
    standardizer.update(x)
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss=keras.losses.BinaryCrossentropy())
    keras.utils.set_random_seed(seed)
    model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    return model


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    scores = np.asarray(model.predict(x, batch_size=4096, verbose=0))[:, 0]
    return float(((scores >= 0.5) == (y >= 0.5)).mean())


def newest_model(models_dir: Path) -> Any:
    from streamtrain.store import model_store

    version = model_store.newest(models_dir, "streamtrain")
    assert version is not None
    model, _ = model_store.load(version.path)
    return model


# --- measures -------------------------------------------------------------------------------------
def trailing(errors: np.ndarray, window: int) -> np.ndarray:
    """Accuracy over the last `window` records at every position >= window (index i = records seen)."""
    right = np.concatenate(([0], np.cumsum(~errors)))
    return (right[window:] - right[:-window]) / window


def recovery(errors: np.ndarray, change: int) -> dict[str, Any]:
    """Pre-change level (accuracy over the PRE_DRIFT records before it) and how many records after the
    change the trailing RECOVERY_WINDOW accuracy first gets back within RECOVERY_MARGIN of it."""
    pre = float(1 - errors[change - PRE_DRIFT:change].mean())
    acc = trailing(errors, RECOVERY_WINDOW)  # acc[i] covers records [i, i + window)
    after = np.arange(change, errors.size - RECOVERY_WINDOW + 1)
    ok = np.flatnonzero(acc[after] >= pre - RECOVERY_MARGIN)
    records = int(after[ok[0]] + RECOVERY_WINDOW - change) if ok.size else None
    return {"pre_drift_accuracy": round(pre, 4), "recovered_after_records": records,
            "lowest_trailing_accuracy_after": round(float(acc[after].min()), 4),
            "prequential_accuracy_after_change": round(float(1 - errors[change:].mean()), 4)}


def rounded(value: float) -> float:
    return round(float(value), 4)


# --- the measurement ------------------------------------------------------------------------------
def measure(quick: bool, work: Path, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    from streamtrain.local.broker import EmbeddedBroker

    results: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    with EmbeddedBroker().start() as broker:
        run = Run(broker.bootstrap, work)
        if "tutorial" in parts:
            measure_tutorial(run, quick, results, curves)
        if "river" in parts:
            results["river"], curves["river"] = measure_river(run, quick)
    return {"results": results, "curves": curves}


def measure_tutorial(run: Run, quick: bool, results: dict[str, Any], curves: dict[str, Any]) -> None:
    """Breast-cancer, SUSY-shaped and drift streams: the trainer against the tutorial's loop and offline."""
    spec = streams(quick)

    # Breast cancer: prequential accuracy after the first 100 records, one shuffled pass.
    print("breast-cancer ...", flush=True)
    bc = produce(run, "bc", spec["breast-cancer"])
    ours = train(run, bc, "bc", **TRAINER["breast-cancer"])
    x, y = bc["train"]
    slow = train(run, bc, "bc lr 0.001", **{**TRAINER["breast-cancer"], "learning_rate": 0.001})
    defaults = train(run, bc, "bc defaults")
    tut = tutorial_loop(x, y)
    published = tutorial_loop(x, y, as_published=True)
    results["breast-cancer"] = {
        "records": int(y.size), "trainer": TRAINER["breast-cancer"],
        "prequential_accuracy_after_100": rounded(1 - ours["errors"][100:].mean()),
        "prequential_accuracy_all": rounded(1 - ours["errors"].mean()),
        "prequential_accuracy_after_100_at_learning_rate_0.001": rounded(1 - slow["errors"][100:].mean()),
        "prequential_accuracy_after_100_at_defaults": rounded(1 - defaults["errors"][100:].mean()),
        "rehearsal_steps_at_defaults": defaults["summary"].get("rehearsal_steps"),
        "tutorial_prequential_accuracy_after_100": rounded(1 - tut[100:].mean()),
        "tutorial_as_published_prequential_accuracy_after_100": rounded(1 - published[100:].mean()),
        "drift_events": ours["drifts"], "trainer_seconds": ours["seconds"],
    }
    curves["breast-cancer"] = {"ours": ours["errors"], "tutorial": tut}

    # SUSY-shaped: online (one pass) vs offline (several epochs) on the held-out test topic.
    print("susy ...", flush=True)
    susy = produce(run, "susy", spec["susy"])
    x, y = susy["train"]
    xt, yt = susy["test"]
    ours = train(run, susy, "susy", **TRAINER["susy"])
    replay = train(run, susy, "susy replay", **TRAINER["susy"], replay_size=5000, replay_ratio=0.25)
    epochs = 5
    started = time.monotonic()
    off = offline(x, y, epochs, TRAINER["susy"]["batch_size"])
    offline_seconds = time.monotonic() - started
    tut = tutorial_loop(x, y)
    online_acc = accuracy(newest_model(ours["models"]), xt, yt)
    offline_acc = accuracy(off, xt, yt)
    results["susy"] = {
        "train_records": int(y.size), "test_records": int(yt.size), "trainer": TRAINER["susy"],
        "online_test_accuracy": rounded(online_acc), "offline_test_accuracy": rounded(offline_acc),
        "offline_epochs": epochs, "gap_points": rounded(100 * (offline_acc - online_acc)),
        "online_with_replay_test_accuracy": rounded(accuracy(newest_model(replay["models"]), xt, yt)),
        "prequential_accuracy": rounded(1 - ours["errors"].mean()),
        "prequential_accuracy_with_replay": rounded(1 - replay["errors"].mean()),
        "tutorial_prequential_accuracy": rounded(1 - tut.mean()),
        "drift_events": ours["drifts"], "trainer_seconds": ours["seconds"],
        "offline_seconds": round(offline_seconds, 1),
    }
    curves["susy"] = {"ours": ours["errors"], "tutorial": tut, "online_test": online_acc,
                      "offline_test": offline_acc}

    # Drift: abrupt concept change; recovery with each reaction and without detection.
    change = int(spec["drift"]["drift_points"])
    seeds = [SEED] if quick else [SEED, 1, 2]
    drift_results: dict[str, Any] = {"change_at": change, "trainer": TRAINER["drift"], "runs": {}}
    for seed in seeds:
        print(f"drift (seed {seed}) ...", flush=True)
        stream = produce(run, f"drift{seed}", {**spec["drift"], "seed": seed} if seed != SEED else spec["drift"])
        variants = DRIFT_VARIANTS if seed == SEED else {k: v for k, v in DRIFT_VARIANTS.items()
                                                        if k in ("detection off", DEFAULT_VARIANT, DEFAULTS_VARIANT)}
        per_seed: dict[str, Any] = {}
        for label, options in variants.items():
            result = train(run, stream, f"drift{seed} {label}".replace(",", ""), **{**TRAINER["drift"], **options})
            per_seed[label] = {**recovery(result["errors"], change),
                               "prequential_accuracy": rounded(1 - result["errors"].mean()),
                               "detected_at": result["drifts"],
                               "detection_delay_records": (result["drifts"][0] - change)
                               if result["drifts"] and result["drifts"][0] >= change else None,
                               "trainer_seconds": result["seconds"]}
            if seed == SEED and "batch 256" not in label:
                curves.setdefault("drift", {})[label] = (result["errors"], result["drifts"])
        if seed == SEED:
            tut = tutorial_loop(*stream["train"])
            per_seed["tutorial loop"] = {**recovery(tut, change), "prequential_accuracy": rounded(1 - tut.mean())}
            curves["drift"]["tutorial loop"] = (tut, [])
        drift_results["runs"][str(seed)] = per_seed
    results["drift"] = drift_results


# --- against River -------------------------------------------------------------------------------
def river_streams(quick: bool) -> dict[str, dict[str, Any]]:
    """The producer's options of each stream: drift at the middle, a gradual one over a tenth of the stream."""
    n = 20_000 if quick else 100_000
    # The hyperplane on its defaults: 10 features, 2 of them rotating, 5 % noise.
    concepts: dict[str, dict[str, Any]] = {"agrawal": {"source": "agrawal", "agrawal_functions": "0,2"},
                                           "sea": {"source": "sea", "sea_variants": "0,2", "noise": 0.1},
                                           "hyperplane": {"source": "hyperplane"}}
    return {f"{name} {kind}": {**options, "count": n, "test_fraction": 0.0, "drift_points": n // 2,
                               "drift_type": kind, "drift_width": n // 10}
            for name, options in concepts.items() for kind in ("abrupt", "gradual")}


# streamtrain's runs: the trainer's options beyond its defaults, and the producer's rate (0: the topic is
# filled before the trainer starts, which then catches up).
STREAMTRAIN_CASES: dict[str, tuple[dict[str, Any], float]] = {
    "mlp 2,000/s": ({}, 2000), "mlp 10,000/s": ({}, 10_000), "mlp 50,000/s": ({}, 50_000),
    "mlp catch-up": ({}, 0), "logreg 10,000/s": ({"model": "logreg"}, 10_000),
}
METRICS_EVERY_SECONDS = 0.25  # the trainer's lag is sampled by its metrics messages


def river_learners() -> dict[str, Callable[[], Any]]:
    from river import forest, linear_model, preprocessing, tree

    return {"River LogisticRegression": lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(),
            "River HoeffdingAdaptiveTree": lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=0),
            "River ARF": lambda: forest.ARFClassifier(seed=0)}


def river_prequential(make: Callable[[], Any], x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-record errors of a River model that predicts each record, then learns it; and the seconds taken."""
    model = make()
    rows = [dict(enumerate(row)) for row in x.tolist()]
    labels = [int(v) for v in y.tolist()]
    errors = np.empty(len(labels), bool)
    started = time.monotonic()
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        errors[i] = model.predict_one(row) != label  # (None before it has learnt anything: an error)
        model.learn_one(row, label)
    return errors, time.monotonic() - started


def accuracies(errors: np.ndarray, change: int) -> dict[str, float]:
    return {"prequential_accuracy": rounded(1 - errors.mean()),
            "accuracy_before_drift": rounded(1 - errors[:change].mean()),
            "accuracy_after_drift": rounded(1 - errors[change:].mean())}


def train_live(run: Run, name: str, spec: dict[str, Any], rate: float, options: dict[str, Any],
               records: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Any]:
    """`streamtrain train` on its defaults (beyond `options`) over a fresh topic that `streamtrain produce` fills
    at `rate` while it trains (rate 0: before it starts). Checks that the topic holds `records`, if given."""
    slug = name.replace(" ", "-").replace(",", "").replace("/", "")
    prefix = f"quality-{slug}-{int(time.time())}"
    run.topics(prefix)
    work = run.work / slug
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    n = spec["count"]
    env = run.env(prefix, model_dir=work / "models", checkpoint_dir=work / "ckpt", trace_file=work / "trace.csv",
                  max_records=n, idle_exit_seconds=60, metrics_every_seconds=METRICS_EVERY_SECONDS, **options)
    producer_env = run.env(prefix, seed=SEED, rate=rate, **spec)
    if rate == 0:
        run.component("produce", f"produce-{slug}", producer_env)
    started = time.monotonic()
    trainer = run.spawn("train", f"train-{slug}", env)
    try:
        if rate:  # stream once the trainer reads: its first metrics message
            run.messages(f"{prefix}.metrics", until=lambda found: any(m.get("component") == "trainer"
                                                                      for m in found))
            run.component("produce", f"produce-{slug}", producer_env)
        summary = trainer.wait()
    finally:
        if trainer.process.poll() is None:
            trainer.process.kill()
    seconds = time.monotonic() - started
    if records is not None:
        x, y = run.read(f"{prefix}.train", n)
        assert np.array_equal(x, records[0]) and np.array_equal(y, records[1]), f"{name}: other records"
    errors, drifts = read_trace(work / "trace.csv", n, summary)
    lags = [(m["records_trained"], m["lag"]) for m in run.messages(f"{prefix}.metrics")
            if m.get("component") == "trainer" and m.get("lag") is not None]
    return {"topic": f"{prefix}.train", "errors": errors, "drift_detected_at": drifts,
            "rate": rate, "options": {k: str(v) for k, v in options.items()},
            "max_lag": max((lag for _, lag in lags), default=None),
            "max_lag_after_first_tenth": max((lag for done, lag in lags if done >= n // 10), default=None),
            "lag_samples": len(lags), "seconds": round(seconds, 1),
            # From the trainer's start to its first batch trained (importing TensorFlow, building and tracing the
            # model): the stream's records pile up meanwhile, which the lag over the whole run shows.
            "first_batch_seconds": summary.get("first_batch_seconds"),
            "steady_records_per_second": summary.get("steady_records_per_second")}


def measure_river(run: Run, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every stream: streamtrain catching up on the filled topic, River's learners on its records read back, then
    streamtrain at each rate on fresh topics holding the same records."""
    results: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    learners = river_learners()
    for name, spec in river_streams(quick).items():
        change = spec["drift_points"]
        runs: dict[str, dict[str, Any]] = {}
        print(f"{name}: streamtrain mlp catch-up ...", flush=True)
        runs["mlp catch-up"] = train_live(run, f"{name} mlp catch-up", spec, 0, {}, None)
        records = run.read(runs["mlp catch-up"]["topic"], spec["count"])
        theirs: dict[str, Any] = {}
        curves[name] = {}
        for learner, make in learners.items():
            print(f"{name}: {learner} ...", flush=True)
            errors, seconds = river_prequential(make, *records)
            theirs[learner] = {**accuracies(errors, change), "seconds": round(seconds, 1),
                               "records_per_second": round(errors.size / seconds)}
            curves[name][learner] = errors
        for case, (options, rate) in STREAMTRAIN_CASES.items():
            if case not in runs:
                print(f"{name}: streamtrain {case} ...", flush=True)
                runs[case] = train_live(run, f"{name} {case}", spec, rate, options, records)
        ours = {}
        for case in STREAMTRAIN_CASES:
            result = runs[case]
            curves[name][f"streamtrain {case}"] = result["errors"]
            ours[case] = {**accuracies(result["errors"], change),
                          **{k: v for k, v in result.items() if k not in ("errors", "topic")}}
        results[name] = {"records": spec["count"], "drift_at": change, "drift_type": spec["drift_type"],
                         "drift_width": spec["drift_width"] if spec["drift_type"] == "gradual" else None,
                         "producer": {k: v for k, v in spec.items() if k not in ("count", "test_fraction")},
                         "river": theirs, "streamtrain": ours}
    return results, curves

def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    bc, susy, drift = results["breast-cancer"], results["susy"], results["drift"]
    main = drift["runs"][str(SEED)]
    on, off, auto = main[DEFAULT_VARIANT], main["detection off"], main[DEFAULTS_VARIANT]
    rows = [
        {"target": "breast-cancer prequential accuracy after the first 100 records >= 0.95",
         "measured": bc["prequential_accuracy_after_100"], "met": bc["prequential_accuracy_after_100"] >= 0.95},
        {"target": "SUSY-shaped: online test accuracy within 2 points of offline",
         "measured": f"{susy['online_test_accuracy']:.4f} vs {susy['offline_test_accuracy']:.4f} "
                     f"({susy['gap_points']:+.2f} points)",
         "met": abs(susy["gap_points"]) <= 2.0},
        {"target": f"abrupt drift: back within {RECOVERY_MARGIN:.0%} of the pre-drift level within "
                   f"{RECOVERY_TARGET:,} records, detection on",
         "measured": f"{on['recovered_after_records']} records (detection off: {off['recovered_after_records']})",
         "met": on["recovered_after_records"] is not None and on["recovered_after_records"] <= RECOVERY_TARGET},
        {"target": "breast-cancer at all the trainer's defaults >= 0.95",
         "measured": bc["prequential_accuracy_after_100_at_defaults"],
         "met": bc["prequential_accuracy_after_100_at_defaults"] >= 0.95},
        {"target": f"abrupt drift at all the trainer's defaults: recovered within {RECOVERY_TARGET:,} records",
         "measured": f"{auto['recovered_after_records']} records",
         "met": auto["recovered_after_records"] is not None and auto["recovered_after_records"] <= RECOVERY_TARGET},
    ]
    for name, ours, theirs in (
            ("breast-cancer", bc["prequential_accuracy_after_100"], bc["tutorial_prequential_accuracy_after_100"]),
            ("SUSY-shaped", susy["prequential_accuracy"], susy["tutorial_prequential_accuracy"]),
            ("drift", on["prequential_accuracy"], main["tutorial loop"]["prequential_accuracy"])):
        rows.append({"target": f"{name}: prequential accuracy >= the tutorial's online loop",
                     "measured": f"{ours:.4f} vs {theirs:.4f}", "met": ours >= theirs})
    return rows


def plot(curves: dict[str, Any], results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    ax = axes[0][0]
    change = results["drift"]["change_at"]
    colours = {"detection off": "tab:grey", DEFAULT_VARIANT: "tab:blue", "adwin + boost-lr": "tab:green",
               "adwin + reset-optimizer": "tab:olive", "page-hinkley + reinit-output": "tab:cyan",
               "tutorial loop": "tab:orange"}
    for label, (errors, drifts) in curves["drift"].items():
        acc = trailing(errors, RECOVERY_WINDOW)
        x = np.arange(RECOVERY_WINDOW, errors.size + 1)
        ax.plot(x, acc, label=label, color=colours.get(label), linewidth=1.8 if label in (
            DEFAULT_VARIANT, "detection off", "tutorial loop") else 0.9)
        for d in drifts:
            ax.plot([d], [acc[min(max(d - RECOVERY_WINDOW, 0), acc.size - 1)]], "v", color=colours.get(label),
                    markersize=8)
    pre = results["drift"]["runs"][str(SEED)][DEFAULT_VARIANT]["pre_drift_accuracy"]
    ax.axvline(change, color="tab:red", linestyle="--", linewidth=1)
    ax.axvline(change + RECOVERY_TARGET, color="tab:red", linestyle=":", linewidth=1)
    ax.axhline(pre - RECOVERY_MARGIN, color="black", linestyle=":", linewidth=0.8)
    ax.set_xlim(change - 4000, min(change + 9000, max(e.size for e, _ in curves["drift"].values())))
    ax.set_ylim(0.3, 1.0)
    ax.set_title(f"Abrupt drift at record {change:,}: accuracy over the last {RECOVERY_WINDOW:,} records\n"
                 f"(dashed: change; dotted: +{RECOVERY_TARGET:,} records and pre-drift level - 2 points; "
                 "triangles: detections)", fontsize=10)
    ax.set_xlabel("records trained")
    ax.set_ylabel("prequential accuracy")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)

    ax = axes[0][1]
    window = 2000
    for label, errors, colour in (("streamtrain trainer", curves["susy"]["ours"], "tab:blue"),
                                  ("tutorial loop", curves["susy"]["tutorial"], "tab:orange")):
        ax.plot(np.arange(window, errors.size + 1), trailing(errors, window), label=f"{label} (prequential)",
                color=colour)
    ax.axhline(curves["susy"]["online_test"], color="tab:blue", linestyle="--",
               label=f"online model on the test topic: {curves['susy']['online_test']:.4f}")
    ax.axhline(curves["susy"]["offline_test"], color="black", linestyle=":",
               label=f"offline ({results['susy']['offline_epochs']} epochs) on the test topic: "
                     f"{curves['susy']['offline_test']:.4f}")
    ax.set_title(f"SUSY-shaped stream: prequential accuracy (last {window:,}) and held-out accuracy", fontsize=10)
    ax.set_xlabel("records trained")
    ax.set_ylim(0.5, 0.8)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)

    ax = axes[1][0]
    for label, errors, colour in (("streamtrain trainer", curves["breast-cancer"]["ours"], "tab:blue"),
                                  ("tutorial loop", curves["breast-cancer"]["tutorial"], "tab:orange")):
        after = ~errors[100:]
        ax.plot(np.arange(101, errors.size + 1), np.cumsum(after) / np.arange(1, after.size + 1), label=label,
                color=colour)
    ax.axhline(0.95, color="tab:red", linestyle=":", label="target 0.95")
    ax.set_title("Breast-cancer stream: prequential accuracy from record 101 on (cumulative)", fontsize=10)
    ax.set_xlabel("records trained")
    ax.set_ylim(0.8, 1.0)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)

    ax = axes[1][1]
    main = results["drift"]["runs"][str(SEED)]
    names = ["breast-cancer\n(after 100)", "SUSY-shaped", "drift"]
    ours = [results["breast-cancer"]["prequential_accuracy_after_100"], results["susy"]["prequential_accuracy"],
            main[DEFAULT_VARIANT]["prequential_accuracy"]]
    theirs = [results["breast-cancer"]["tutorial_prequential_accuracy_after_100"],
              results["susy"]["tutorial_prequential_accuracy"], main["tutorial loop"]["prequential_accuracy"]]
    xs = np.arange(3)
    bars = ax.bar(xs - 0.2, ours, 0.4, label="streamtrain trainer", color="tab:blue")
    ax.bar_label(bars, fmt="%.4f", fontsize=8)
    bars = ax.bar(xs + 0.2, theirs, 0.4, label="tutorial loop (fit 3 epochs per 100 records)", color="tab:orange")
    ax.bar_label(bars, fmt="%.4f", fontsize=8)
    ax.set_xticks(xs, names)
    ax.set_ylim(0.6, 1.0)
    ax.set_title("Prequential accuracy on the same streams", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def river_table(river: dict[str, Any]) -> list[str]:
    """Markdown: per stream, River's learners and streamtrain's runs: prequential accuracy, and the trainer's
    largest lag over the run (and after the first tenth of the stream)."""
    learners = list(next(iter(river.values()))["river"])
    cases = list(STREAMTRAIN_CASES)
    lines = ["| stream | " + " | ".join(name.removeprefix("River ") for name in learners) + " | "
             + " | ".join(f"streamtrain {case}" for case in cases) + " |",
             "|---|" + "---:|" * (len(learners) + len(cases))]
    for name, stream in river.items():
        theirs = [f"{stream['river'][learner]['prequential_accuracy']:.4f}" for learner in learners]
        ours = []
        for case in cases:
            run = stream["streamtrain"][case]
            lags = [f"{lag:,}" if lag is not None else "-"
                    for lag in (run["max_lag"], run["max_lag_after_first_tenth"])]
            ours.append(f"{run['prequential_accuracy']:.4f}, lag {lags[0]} ({lags[1]})")
        lines.append(f"| {name} | " + " | ".join(theirs + ours) + " |")
    return lines


def plot_river(curves: dict[str, Any], river: dict[str, Any], path: Path) -> None:
    """Accuracy over each stream (trailing window of a fiftieth of it), streamtrain's runs beside River's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(river)
    columns = 2
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(15, 4.2 * rows), squeeze=False)
    styles = {"River LogisticRegression": ("tab:red", "--"), "River HoeffdingAdaptiveTree": ("tab:orange", "--"),
              "River ARF": ("tab:brown", "--"), "streamtrain mlp 2,000/s": ("tab:blue", "-"),
              "streamtrain mlp 10,000/s": ("tab:cyan", "-"), "streamtrain mlp 50,000/s": ("tab:purple", "-"),
              "streamtrain mlp catch-up": ("tab:grey", "-"), "streamtrain logreg 10,000/s": ("tab:green", "-")}
    for ax, name in zip(axes.flat, names, strict=False):
        stream = river[name]
        window = max(100, stream["records"] // 50)
        for label, errors in curves[name].items():
            colour, line = styles.get(label, (None, "-"))
            ax.plot(np.arange(window, errors.size + 1), trailing(errors, window), label=label, color=colour,
                    linestyle=line, linewidth=1.0)
        change = stream["drift_at"]
        ax.axvline(change, color="black", linestyle=":", linewidth=1)
        if stream["drift_width"]:
            ax.axvspan(change - stream["drift_width"] / 2, change + stream["drift_width"] / 2, color="grey",
                       alpha=0.12)
        ax.set_title(f"{name}: accuracy over the last {window:,} records", fontsize=10)
        ax.set_xlabel("records")
        ax.set_ylabel("prequential accuracy")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="lower left", ncol=2)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle("streamtrain (solid) and River (dashed) on the same records; dotted: the drift, shaded: a gradual "
                 "drift's width", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def trainer_defaults() -> dict[str, str]:
    """The trainer's defaults the River comparison ran on (the settings classes are the definition)."""
    from streamtrain.service.config import TrainerSettings

    names = ("model", "batch_size", "min_batch_size", "max_batch_size", "learning_rate", "drift_detector",
             "drift_reaction", "rehearsal_steps", "rehearsal_records", "replay_size", "publish_every_seconds")
    fields = TrainerSettings.model_fields
    return {name: str(fields[name].default) for name in names if name in fields}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller streams, one drift seed")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run: {', '.join(PARTS)} (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and PNG")
    parser.add_argument("--keep-work", action="store_true", help="keep the logs, traces and models")
    args = parser.parse_args(argv)
    parts = tuple(part.strip() for part in args.only.split(",") if part.strip())
    if not parts or not set(parts) <= set(PARTS):
        parser.error(f"--only takes {', '.join(PARTS)}, got {args.only!r}")
    if "river" in parts:
        try:
            import river
        except ModuleNotFoundError:
            parser.exit(2, f"benchmarks.quality: {RIVER_MISSING}\n")
        if river.__version__ != "0.26.1":
            print(f"note: River {river.__version__}, not the 0.26.1 the committed results ran with", flush=True)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                         text=True).stdout.strip() or "unknown"
    stem = f"quality-{time.strftime('%Y-%m-%d')}-{rev}{'-quick' if args.quick else ''}"
    work = Path(tempfile.mkdtemp(prefix="streamtrain-quality-"))
    started = time.monotonic()
    load_before = os.getloadavg()
    try:
        measured = measure(args.quick, work, parts)
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    import tensorflow as tf

    results = measured["results"]
    report = {
        "kind": "quality", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_rev": rev, "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "tensorflow": tf.__version__, "load_average_at_start": [round(v, 2) for v in load_before]},
        "definitions": {
            "prequential accuracy": "each record scored by the model before it trains on that record",
            "recovery": f"records after the change until the accuracy over the last {RECOVERY_WINDOW:,} records is "
                        f"within {RECOVERY_MARGIN} of the accuracy over the {PRE_DRIFT:,} records before the change",
            "tutorial loop": "per 100-record mini dataset: score it, then model.fit(epochs=3, batch_size=32); same "
                             "network and input standardisation as the trainer",
            "seeds": f"streams seed {SEED} (drift robustness also 1 and 2); model seed 0",
            "River": "River's learners (seed 0; LogisticRegression after a StandardScaler) predict each record, then "
                     "learn it, on the records read back from the topic; streamtrain's trainer runs on its defaults "
                     f"(trainer_defaults) but for metrics every {METRICS_EVERY_SECONDS} s",
            "max lag": "the largest lag (records on the broker not yet trained on) in the trainer's metrics messages; "
                       "max_lag_after_first_tenth leaves out those before a tenth of the stream was trained on",
        },
        "parts": list(parts),
        "targets": targets(results) if "tutorial" in parts else [],
        "results": results,
    }
    if "river" in parts:
        report["trainer_defaults"] = trainer_defaults()
        report["river_version"] = river.__version__
        report["river_table"] = river_table(results["river"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    if "tutorial" in parts:
        plot(measured["curves"], results, args.out / f"{stem}.png")
    if "river" in parts:
        plot_river(measured["curves"]["river"], results["river"], args.out / f"{stem}-river.png")
    for row in report["targets"]:
        print(f"{'MET ' if row['met'] else 'MISS'}  {row['target']}: {row['measured']}")
    for line in report.get("river_table", []):
        print(line)
    print(f"wrote {args.out / (stem + '.json')} and the plots in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
