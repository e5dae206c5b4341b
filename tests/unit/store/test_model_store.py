"""The model store: atomic versions in TF Serving's layout, checksums, retention, concurrent readers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from streamtrain import models
from streamtrain.store import model_store
from streamtrain.store.model_store import CorruptVersion

NAME = "m"
WIDTH = 4


@pytest.fixture
def model() -> keras.Model:
    built = models.build("logreg", WIDTH, seed=5)
    layer = models.standardizer(built)
    assert layer is not None
    layer.update(np.random.default_rng(0).normal(3, 2, (64, WIDTH)).astype(np.float32))
    return built


def publish(base: Path, model: keras.Model, version: int, keep: int = 5,
            **info: object) -> model_store.Version:
    return model_store.publish(base, NAME, model, version, dict(info), keep=keep, savedmodel=False)


def x_sample() -> np.ndarray:
    return np.random.default_rng(1).normal(3, 2, (10, WIDTH)).astype(np.float32)


def test_publish_verify_load(tmp_path: Path, model: keras.Model) -> None:
    version = publish(tmp_path, model, 1, records_trained=123)
    assert version.number == 1 and version.path == tmp_path / NAME / "1"
    manifest = model_store.verify(version.path)
    assert manifest == version.manifest
    assert manifest["version"] == 1 and manifest["model_name"] == NAME
    assert manifest["input_width"] == WIDTH and manifest["output_shape"] == [None, 1]
    assert manifest["format"] == "keras" and manifest["records_trained"] == 123
    assert set(manifest["files"]) == {"model.keras"}
    assert manifest["files"]["model.keras"]["bytes"] == (version.path / "model.keras").stat().st_size
    loaded, loaded_manifest = model_store.load(version.path, WIDTH)
    assert loaded_manifest == manifest
    np.testing.assert_allclose(loaded(x_sample()).numpy(), model(x_sample()).numpy(), rtol=1e-6)
    assert models.standardizer(loaded) is not None
    assert model_store.version_numbers(tmp_path, NAME) == [1]
    assert not [p for p in (tmp_path / NAME).iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_savedmodel_layout_for_tf_serving(tmp_path: Path, model: keras.Model) -> None:
    version = model_store.publish(tmp_path, NAME, model, 7, {}, keep=2, savedmodel=True)
    assert (version.path / "saved_model.pb").is_file()
    assert (version.path / "variables").is_dir()
    assert (version.path / "variables" / "variables.index").is_file()
    assert list((version.path / "variables").glob("variables.data-*"))
    manifest = model_store.verify(version.path)
    assert manifest["format"] == "keras+savedmodel"
    assert {"saved_model.pb", "variables/variables.index", "model.keras"} <= set(manifest["files"])
    # What TF Serving would run gives the Keras model's answers.
    served = tf.saved_model.load(str(version.path))
    np.testing.assert_allclose(served.serve(tf.constant(x_sample())).numpy(), model(x_sample()).numpy(),
                               rtol=1e-5)


def test_categorical_columns_travel_in_the_version(tmp_path: Path) -> None:
    """model.keras and the SavedModel encode codes as the trained model does; the manifest says which columns."""
    categories = {1: 3, 2: 200}  # one one-hot, one embedded
    built = models.build("mlp", WIDTH, seed=5, categories=categories)
    layer = models.standardizer(built)
    assert layer is not None
    rng = np.random.default_rng(4)
    layer.update(rng.normal(3, 2, (64, WIDTH)).astype(np.float32))
    x = rng.normal(3, 2, (12, WIDTH)).astype(np.float32)
    x[:, 1] = [0, 1, 2, 3, -1, 0, 1, 2, 7, 1, 2, 0]  # 3, -1 and 7: the "other" bucket
    x[:, 2] = [0, 199, 200, 5000, 17, 3, 3, 150, 0, 1, -2, 42]
    expected = built(x).numpy()
    version = model_store.publish(tmp_path, NAME, built, 1, {}, keep=2, savedmodel=True)
    assert version.manifest["categorical_columns"] == {"1": 3, "2": 200}
    loaded, manifest = model_store.load(version.path, WIDTH)
    assert models.categorical_columns(loaded) == categories and manifest == version.manifest
    np.testing.assert_array_equal(loaded(x).numpy(), expected)
    served = tf.saved_model.load(str(version.path))
    # The same answers to float32 rounding (the graph's fused kernels may round differently from eager ones).
    np.testing.assert_allclose(served.serve(tf.constant(x)).numpy(), expected, rtol=1e-6)


def test_manifest_of_a_model_without_categorical_columns(tmp_path: Path, model: keras.Model) -> None:
    assert publish(tmp_path, model, 1).manifest["categorical_columns"] == {}


def test_retention_keeps_the_newest_k(tmp_path: Path, model: keras.Model) -> None:
    for v in range(1, 8):
        publish(tmp_path, model, v, keep=3)
        assert model_store.version_numbers(tmp_path, NAME) == list(range(max(1, v - 2), v + 1))
    assert sorted(p.name for p in (tmp_path / NAME).iterdir()) == ["5", "6", "7"]


def test_version_numbers_sort_numerically_and_ignore_other_names(tmp_path: Path, model: keras.Model) -> None:
    for v in (2, 10, 9):
        publish(tmp_path, model, v)
    root = tmp_path / NAME
    (root / ".tmp-11-deadbeef").mkdir()
    (root / "latest").mkdir()
    (root / "12").write_text("a file, not a version")
    assert model_store.version_numbers(tmp_path, NAME) == [2, 9, 10]
    assert model_store.version_numbers(tmp_path, "other") == []


def test_publishing_an_existing_version_fails_cleanly(tmp_path: Path, model: keras.Model) -> None:
    publish(tmp_path, model, 1)
    before = (tmp_path / NAME / "1" / "manifest.json").read_bytes()
    with pytest.raises(FileExistsError):
        publish(tmp_path, model, 1)
    assert (tmp_path / NAME / "1" / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / NAME).iterdir()) == ["1"]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_bit])
@pytest.mark.parametrize("check", ["verify", "load"])
def test_damaged_file_is_a_checksum_error(tmp_path: Path, model: keras.Model, damage: object,
                                          check: str) -> None:
    version = publish(tmp_path, model, 1)
    size = (version.path / "model.keras").stat().st_size
    damage(version.path / "model.keras")  # type: ignore[operator]
    if damage is flip_bit:
        assert (version.path / "model.keras").stat().st_size == size
    with pytest.raises(CorruptVersion, match="checksum") as caught:
        if check == "verify":
            model_store.verify(version.path)
        else:
            model_store.load(version.path, WIDTH)
    assert "model.keras" in str(caught.value) and caught.value.kind == "checksum"


def test_damaged_savedmodel_file_is_a_checksum_error(tmp_path: Path, model: keras.Model) -> None:
    version = model_store.publish(tmp_path, NAME, model, 1, {}, keep=2, savedmodel=True)
    flip_bit(version.path / "saved_model.pb")
    with pytest.raises(CorruptVersion, match=r"checksum mismatch in saved_model\.pb"):
        model_store.verify(version.path)


def test_missing_manifest_or_file(tmp_path: Path, model: keras.Model) -> None:
    one, two = publish(tmp_path, model, 1), publish(tmp_path, model, 2)
    (one.path / "manifest.json").unlink()
    with pytest.raises(CorruptVersion, match="no manifest"):
        model_store.verify(one.path)
    with pytest.raises(CorruptVersion, match="no manifest"):
        model_store.load(one.path)
    (two.path / "model.keras").unlink()
    with pytest.raises(CorruptVersion, match="missing"):
        model_store.verify(two.path)
    with pytest.raises(CorruptVersion, match="missing"):
        model_store.load(two.path)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"version": 1}'])
def test_unusable_manifest(tmp_path: Path, model: keras.Model, text: str) -> None:
    version = publish(tmp_path, model, 1)
    (version.path / "manifest.json").write_text(text)
    with pytest.raises(CorruptVersion, match="manifest"):
        model_store.verify(version.path)


@pytest.mark.parametrize("tamper", ["entry-not-a-dict", "entry-null", "no-sha256", "no-bytes", "directory"])
def test_tampered_manifest_is_a_corrupt_version_and_newest_skips_it(tmp_path: Path, model: keras.Model,
                                                                     tamper: str) -> None:
    """'A torn or tampered version fails its checksums and is skipped' - never an error of another type,
    which would end the evaluator's watcher thread (it catches CorruptVersion only)."""
    publish(tmp_path, model, 1)
    version = publish(tmp_path, model, 2)
    manifest = json.loads((version.path / "manifest.json").read_text())
    entry = manifest["files"]["model.keras"]
    if tamper == "entry-not-a-dict":
        manifest["files"]["model.keras"] = entry["bytes"]
    elif tamper == "entry-null":
        manifest["files"]["model.keras"] = None
    elif tamper == "no-sha256":
        del entry["sha256"]
    elif tamper == "no-bytes":
        del entry["bytes"]
    else:  # a directory where the file was, of the size the manifest claims
        (version.path / "model.keras").unlink()
        (version.path / "model.keras").mkdir()
        entry["bytes"] = (version.path / "model.keras").stat().st_size
    (version.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptVersion):
        model_store.verify(version.path)
    found = model_store.newest(tmp_path, NAME)
    assert found is not None and found.number == 1


def test_incompatible_width(tmp_path: Path, model: keras.Model) -> None:
    version = publish(tmp_path, model, 1)
    model_store.verify(version.path)  # the files are fine ...
    with pytest.raises(CorruptVersion, match="incompatible") as refused:  # ... the model does not fit the data
        model_store.load(version.path, WIDTH + 1)
    assert refused.value.kind == "incompatible"


def test_newest_skips_a_corrupt_newest_version(tmp_path: Path, model: keras.Model) -> None:
    for v in (1, 2, 3):
        publish(tmp_path, model, v)
    flip_bit(tmp_path / NAME / "3" / "model.keras")
    skip: set[int] = set()
    found = model_store.newest(tmp_path, NAME, skip=skip)
    assert found is not None and found.number == 2 and found.path == tmp_path / NAME / "2"
    assert found.manifest["version"] == 2
    assert skip == {3}  # remembered as bad
    assert model_store.newest(tmp_path, NAME, above=2) is None  # nothing good above 2
    assert model_store.newest(tmp_path, NAME, skip={2, 3}).number == 1  # type: ignore[union-attr]
    (tmp_path / NAME / "1" / "manifest.json").unlink()
    flip_bit(tmp_path / NAME / "2" / "model.keras")
    assert model_store.newest(tmp_path, NAME) is None
    assert model_store.newest(tmp_path / "nowhere", NAME) is None


READER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import keras  # noqa: F401  (imported before "ready": the store imports it at the first load, 2.5 s)
    from streamtrain.store import model_store

    base, name, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    stop, ready = out.with_suffix(".stop"), out.with_suffix(".ready")
    verified, vanished, loads, partial, seen = 0, 0, 0, [], set()
    ready.write_text("ready")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        finished = stop.exists()  # one more full pass after the writer is done
        numbers = model_store.version_numbers(base, name)
        for n in numbers:
            path = base / name / str(n)
            try:
                manifest = model_store.verify(path)
                if manifest["version"] != n:
                    raise ValueError(f"manifest of version {manifest['version']} in {n}")
                if n == numbers[-1] and n not in seen:
                    model_store.load(path, 4)
                    loads += 1
            except Exception as exc:
                if path.exists():
                    partial.append(f"{n}: {type(exc).__name__}: {exc}")
                else:
                    vanished += 1  # retention removed it while we looked
                continue
            verified += 1
            seen.add(n)
        if finished:
            break
    out.write_text(json.dumps({"verified": verified, "vanished": vanished, "loads": loads,
                               "partial": partial, "seen": sorted(seen)}))
""")


def test_concurrent_reader_never_sees_a_partial_version(tmp_path: Path, model: keras.Model) -> None:
    script = tmp_path / "reader.py"
    script.write_text(READER)
    out = tmp_path / "reader.json"
    base = tmp_path / "store"
    reader = subprocess.Popen([sys.executable, str(script), str(base), NAME, str(out)])
    try:
        deadline = time.monotonic() + 60
        while not out.with_suffix(".ready").exists():
            assert reader.poll() is None, "reader died"
            assert time.monotonic() < deadline, "reader did not start"
            time.sleep(0.05)
        total = 120
        for v in range(1, total + 1):
            layer = models.standardizer(model)
            assert layer is not None
            layer.update(np.full((1, WIDTH), v, np.float32))  # every version has other bytes
            model_store.publish(base, NAME, model, v, {"records_trained": v}, keep=3, savedmodel=False)
        out.with_suffix(".stop").write_text("stop")
        assert reader.wait(timeout=60) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
    result = json.loads(out.read_text())
    assert result["partial"] == []
    assert result["verified"] >= 100, result
    assert len(result["seen"]) >= 30, result  # it checked versions all through the run, not only the last
    assert result["loads"] >= 10, result
    assert model_store.version_numbers(base, NAME) == [total - 2, total - 1, total]


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from streamtrain.store import model_store
    from streamtrain import models

    base, stop = Path(sys.argv[1]), Path(sys.argv[2])
    model = models.build("logreg", 18)
    stop.with_suffix(".ready").write_text("ready")
    version = 0
    while not stop.exists() and version < 100_000:
        version += 1
        model_store.publish(base, "m", model, version, {}, keep=1, savedmodel=False)
""")


def test_newest_raises_only_corrupt_version_while_retention_deletes(tmp_path: Path) -> None:
    """newest() must treat a version that vanishes mid-verification as skipped, not raise FileNotFoundError.

    The evaluator's watcher thread catches only CorruptVersion; any other error ends it silently.
    """
    script, stop, base = tmp_path / "writer.py", tmp_path / "writer.stop", tmp_path / "store"
    script.write_text(WRITER)
    writer = subprocess.Popen([sys.executable, str(script), str(base), str(stop)])
    unexpected: list[str] = []
    calls = 0
    try:
        deadline = time.monotonic() + 60
        while not stop.with_suffix(".ready").exists():
            assert writer.poll() is None and time.monotonic() < deadline, "writer did not start"
            time.sleep(0.05)
        until = time.monotonic() + 4.0
        while time.monotonic() < until and not unexpected:
            calls += 1
            try:
                model_store.newest(base, "m")
            except CorruptVersion:
                pytest.fail("newest() should skip corrupt versions, not raise")
            except Exception as exc:
                unexpected.append(f"{type(exc).__name__}: {exc}")
    finally:
        stop.write_text("stop")
        writer.wait(timeout=60)
    assert calls > 100
    assert unexpected == []


def test_candidates_are_the_versions_above_newest_first_without_the_skipped(tmp_path: Path) -> None:
    for name in ("1", "2", "3", "10", "tmp-4", "5.partial"):
        (tmp_path / "m" / name).mkdir(parents=True)
    found = list(model_store.candidates(tmp_path, "m", above=1, skip={3}))
    assert found == [(10, tmp_path / "m" / "10"), (2, tmp_path / "m" / "2")]
    assert list(model_store.candidates(tmp_path, "absent")) == []
