"""Loads a model in a fresh process (so nothing is imported beforehand): `python -m tests.security.load_worker
MODE PATH`, MODE = store (model_store.load of a version directory, as the evaluator), unsafe (Keras without
safe mode: the control), build (models.build of a .keras file, as the trainer's --model). Prints JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(mode: str, path: Path) -> dict[str, object]:
    import keras

    from streamtrain import models
    from streamtrain.store import model_store

    try:
        if mode == "store":
            model_store.load(path, width=4)
        elif mode == "unsafe":
            model = keras.models.load_model(path / model_store.KERAS_FILE, compile=False, safe_mode=False)
            model(keras.ops.ones((1, 4)))
        else:
            models.build(str(path), 4)
    except Exception as exc:
        return {"refused": True, "reason": f"{exc.__class__.__name__}: {str(exc)[:300]}"}
    return {"refused": False, "reason": ""}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]))))
