"""Loading a model never runs code from the model volume.

Versions are loaded from model.keras with Keras' safe_mode (model_store.load): a Python lambda stored
in the file is refused, and so is a file whose configuration names a function of another module
(Keras 3.15 resolves only registered or Keras objects). Each payload here leaves a marker file if it
ever runs; the control shows it does run when loaded without safe mode. Each load happens in a fresh
process, so "never imported" means what it says. The checksums in the manifest are recomputed for the
crafted files: the attacker here can write the volume, so integrity checks do not stop them; only
the loader's refusal does.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import keras
import pytest

from streamtrain.store import model_store

REPO = Path(__file__).resolve().parents[2]
CALL = "STREAMTRAIN_TEST_CALL_MARKER"
IMPORT = "STREAMTRAIN_TEST_IMPORT_MARKER"


def _load(mode: str, path: Path, markers: Path) -> dict[str, Any]:
    env = {**os.environ, CALL: str(markers / "called"), IMPORT: str(markers / "imported"),
           "STREAMTRAIN_TEST_LAMBDA_MARKER": str(markers / "called")}
    result = subprocess.run([sys.executable, "-m", "tests.security.load_worker", mode, str(path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    outcome["called"] = (markers / "called").exists()
    outcome["imported"] = (markers / "imported").exists()
    return outcome


def _base_model(with_lambda: bool) -> keras.Model:
    inputs = keras.Input(shape=(4,))
    x = inputs
    if with_lambda:
        x = keras.layers.Lambda(
            lambda t: (__import__("pathlib").Path(__import__("os").environ["STREAMTRAIN_TEST_LAMBDA_MARKER"])
                       .touch(), t)[1]  # type: ignore[func-returns-value]
            if __import__("os").environ.get("STREAMTRAIN_TEST_LAMBDA_MARKER") else t)(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def _publish(base: Path, number: int, model: keras.Model) -> Path:
    return model_store.publish(base, "m", model, number, {}, keep=100, savedmodel=False).path


def _rewrite(version: Path, edit: Any) -> None:
    """Change model.keras's config.json and re-sign the manifest, as an attacker with write access could."""
    keras_file = version / model_store.KERAS_FILE
    with zipfile.ZipFile(keras_file) as archive:
        items = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(items["config.json"])
    edit(config)
    items["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(keras_file, "w") as archive:
        for name, data in items.items():
            archive.writestr(name, data)
    manifest = json.loads((version / model_store.MANIFEST).read_text())
    data = keras_file.read_bytes()
    manifest["files"][model_store.KERAS_FILE] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (version / model_store.MANIFEST).write_text(json.dumps(manifest))


def _dense_activation(module: str, name: str) -> Any:
    def edit(config: dict[str, Any]) -> None:
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense["config"]["activation"] = {"module": module, "class_name": "function", "config": name,
                                         "registered_name": "function"}
    return edit


def test_a_lambda_in_a_version_is_refused_and_never_runs(tmp_path: Path) -> None:
    version = _publish(tmp_path / "models", 1, _base_model(with_lambda=True))
    (tmp_path / "store").mkdir()
    refused = _load("store", version, tmp_path / "store")
    assert refused["refused"] and "Lambda" in refused["reason"] and not refused["called"], refused
    (tmp_path / "control").mkdir()
    control = _load("unsafe", version, tmp_path / "control")
    assert not control["refused"] and control["called"], control  # the payload is live code


@pytest.mark.parametrize(("module", "name"), [("tests.security.payload", "plant"), ("os", "system"),
                                              ("builtins", "exec"), ("subprocess", "getoutput")])
def test_a_version_naming_a_function_of_another_module_is_refused(tmp_path: Path, module: str, name: str) -> None:
    version = _publish(tmp_path / "models", 1, _base_model(with_lambda=False))
    _rewrite(version, _dense_activation(module, name))
    model_store.verify(version)  # the checksums match: only the loader stands in the way
    markers = tmp_path / "markers"
    markers.mkdir()
    outcome = _load("store", version, markers)
    assert outcome["refused"] and not outcome["imported"] and not outcome["called"], outcome


def test_the_payload_module_is_live(tmp_path: Path) -> None:
    """Control for the test above: importing the named module does leave its marker."""
    env = {**os.environ, IMPORT: str(tmp_path / "imported")}
    subprocess.run([sys.executable, "-c", "import tests.security.payload"], cwd=REPO, env=env, check=True, timeout=60)
    assert (tmp_path / "imported").exists()


def test_the_trainers_model_file_is_loaded_in_safe_mode_too(tmp_path: Path) -> None:
    path = tmp_path / "user-model.keras"
    _base_model(with_lambda=True).save(path)
    markers = tmp_path / "markers"
    markers.mkdir()
    outcome = _load("build", path, markers)
    assert outcome["refused"] and "Lambda" in outcome["reason"] and not outcome["called"], outcome
