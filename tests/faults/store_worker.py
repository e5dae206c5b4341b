"""Writer and reader processes for the concurrent model-store test (run as `python -m tests.faults.store_worker`).

writer BASE COUNT KEEP: publishes versions 1..COUNT of a tiny model whose output bias equals the version
                        number, keeping the newest KEEP (so retention deletes while readers read).
reader BASE STOP OUT:   until the file STOP exists, loads the newest (or the oldest) version as the evaluator does
                        (verify every checksum, then load the bytes it verified) and checks that what it
                        got is all of one version: the bias, the manifest and the directory name agree.
                        Writes its counts to OUT as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from streamtrain.store import model_store

NAME = "m"
WIDTH = 4


def writer(base: Path, count: int, keep: int) -> None:
    inputs = keras.Input(shape=(WIDTH,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(inputs))
    started = time.monotonic()
    for version in range(1, count + 1):
        model.get_layer("out").bias.assign([float(version)])
        model_store.publish(base, NAME, model, version, {"stamp": version}, keep, savedmodel=False)
    print(json.dumps({"published": count, "seconds": round(time.monotonic() - started, 1)}), flush=True)


def reader(base: Path, stop: Path, out: Path) -> None:
    root = model_store.model_root(base, NAME)
    counts = {"loads": 0, "vanished": 0, "partial": 0, "mixed": 0, "scans": 0}
    problems: list[str] = []
    while not stop.exists():
        counts["scans"] += 1
        numbers = model_store.version_numbers(base, NAME)
        if not numbers:
            time.sleep(0.01)
        # Every other scan starts at the oldest kept version: the one retention is about to delete.
        for number in reversed(numbers) if counts["scans"] % 2 else numbers:
            path = root / str(number)
            try:
                model_store.verify(path)
                model, manifest = model_store.load(path, width=WIDTH)
            except (model_store.CorruptVersion, OSError) as exc:
                if path.exists():  # still published, yet not whole: a partial version was visible
                    counts["partial"] += 1
                    problems.append(f"{number}: {exc}")
                else:  # retention removed it while we read: not a fault
                    counts["vanished"] += 1
                continue
            bias = float(model.get_layer("out").bias.numpy()[0])
            if not bias == number == manifest["stamp"] == manifest["version"]:
                counts["mixed"] += 1
                problems.append(f"{number}: bias {bias}, manifest {manifest['stamp']}/{manifest['version']}")
            counts["loads"] += 1
            break
    out.write_text(json.dumps({**counts, "problems": problems[:20]}))


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "writer":
        writer(Path(args[0]), int(args[1]), int(args[2]))
    else:
        reader(Path(args[0]), Path(args[1]), Path(args[2]))
