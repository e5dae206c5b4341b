"""The model store on the shared volume, in TensorFlow Serving's layout.

    <base>/<model-name>/<version>/saved_model.pb, variables/   (the SavedModel, for TF Serving)
                                  model.keras                  (what the evaluator loads)
                                  manifest.json                (written last; checksums of every file)

A version appears by one rename of a fully written, fsynced directory, so readers see all or nothing;
a torn or tampered version fails its checksums and is skipped.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from streamtrain.store import atomic

if TYPE_CHECKING:  # Keras (2.5 s to import) only where a version is loaded: `streamtrain serving` lists versions
    import keras

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
KERAS_FILE = "model.keras"


RefusalKind = Literal["checksum", "incompatible", "unreadable"]


class CorruptVersion(ValueError):
    """A version whose files do not match its manifest, or that cannot be used; `kind` says which, in one word."""

    def __init__(self, message: str, kind: RefusalKind = "unreadable") -> None:
        super().__init__(message)
        self.kind: RefusalKind = kind


@dataclass(frozen=True)
class Version:
    number: int
    path: Path
    manifest: dict[str, Any]
    removed: tuple[tuple[int, dict[str, Any]], ...] = ()  # (number, manifest) of the versions retention removed


def model_root(base: Path, name: str) -> Path:
    return base / name


def version_numbers(base: Path, name: str) -> list[int]:
    """Published version numbers, ascending (only all-digit names count, as in TF Serving)."""
    root = model_root(base, name)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and p.is_dir())


def publish(base: Path, name: str, model: keras.Model, version: int, info: dict[str, Any],
            keep: int, savedmodel: bool = True, protect: Container[int] = ()) -> Version:
    """Write version `version` atomically, then drop versions beyond the newest `keep`, except those in `protect`
    (the promoted and pinned versions predictors may serve)."""
    from streamtrain.models import categorical_columns

    root = model_root(base, name)
    staged = atomic.staging_dir(root, str(version))
    try:
        if savedmodel:
            model.export(str(staged), verbose=False)
            # Each export leaves ~1 MB of TensorFlow graph objects in reference cycles that the cyclic GC
            # reaches late (60 exports in a row: +55 MB). Collecting now leaves ~0.1 MB per export (120
            # exports: +18 MB), so frequent publication stays flat. It costs ~0.25 s in a process that has
            # not frozen its long-lived objects, ~5 ms in one that has (gc.freeze: the trainer's first batch).
            gc.collect()
        model.save(staged / KERAS_FILE)
        files = {str(p.relative_to(staged)): {"sha256": atomic.sha256_file(p), "bytes": p.stat().st_size}
                 for p in atomic.tree_files(staged)}
        manifest = {
            "version": version,
            "model_name": name,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "created_at_ms": int(time.time() * 1000),
            "input_width": int(model.inputs[0].shape[1]),
            # {column: categories} of the raw row the model one-hot encodes or embeds itself; {}: all numeric
            "categorical_columns": {str(c): n for c, n in categorical_columns(model).items()},
            "output_shape": [None, *[int(d) for d in model.outputs[0].shape[1:]]],
            "format": "keras+savedmodel" if savedmodel else "keras",
            **info,
            "files": files,
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        final = root / str(version)
        atomic.commit_dir(staged, final)
    except BaseException:
        atomic.remove_dir(staged)
        raise
    return Version(version, final, manifest, tuple(retain(base, name, keep, protect)))


def retain(base: Path, name: str, keep: int, protect: Container[int] = ()) -> list[tuple[int, dict[str, Any]]]:
    """Remove the versions beyond the newest `keep` but those in `protect`; returns their (number, manifest)."""
    root = model_root(base, name)
    removed = []
    for old in version_numbers(base, name)[:-keep]:
        if old in protect:
            continue
        try:
            manifest = read_manifest(root / str(old))
        except CorruptVersion:
            manifest = {"files": {}}
        atomic.remove_dir(root / str(old))
        removed.append((old, manifest))
    return removed


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise CorruptVersion(f"version {path.name}: no manifest") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptVersion(f"version {path.name}: unreadable manifest ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CorruptVersion(f"version {path.name}: manifest has no file list")
    return manifest


def verify(path: Path) -> dict[str, Any]:
    """Check every file against the manifest; returns the manifest or raises CorruptVersion."""
    manifest = read_manifest(path)
    for rel, expected in manifest["files"].items():
        file = path / rel
        if not isinstance(expected, dict) or not {"bytes", "sha256"} <= expected.keys():
            raise CorruptVersion(f"version {path.name}: manifest entry of {rel} is malformed")
        try:
            intact = file.stat().st_size == expected["bytes"] and atomic.sha256_file(file) == expected["sha256"]
        except FileNotFoundError:  # torn, or removed by retention while we read
            raise CorruptVersion(f"version {path.name}: {rel} is missing") from None
        except OSError as exc:
            raise CorruptVersion(f"version {path.name}: {rel} is unreadable ({exc.__class__.__name__})") from None
        if not intact:
            raise CorruptVersion(f"version {path.name}: checksum mismatch in {rel}", "checksum")
    return manifest


def load(path: Path, width: int | None = None) -> tuple[keras.Model, dict[str, Any]]:
    """Load a version's Keras model from bytes that match the manifest (no window to swap the file).

    safe_mode=True: Keras refuses to deserialize lambdas, so a version cannot run arbitrary code;
    only layer classes registered by importable code (ours, Keras') can be instantiated.
    """
    manifest = read_manifest(path)
    expected = manifest["files"].get(KERAS_FILE)
    if expected is None:
        raise CorruptVersion(f"version {path.name}: no {KERAS_FILE} in manifest")
    try:
        data = (path / KERAS_FILE).read_bytes()
    except FileNotFoundError:
        raise CorruptVersion(f"version {path.name}: {KERAS_FILE} is missing") from None


    if len(data) != expected["bytes"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise CorruptVersion(f"version {path.name}: checksum mismatch in {KERAS_FILE}", "checksum")
    import keras

    from streamtrain.models import check_shape

    with tempfile.TemporaryDirectory(prefix="streamtrain-load-") as tmp:
        local = Path(tmp) / KERAS_FILE
        local.write_bytes(data)
        try:
            model = keras.models.load_model(local, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many types for a bad file
            raise CorruptVersion(f"version {path.name}: cannot load ({exc.__class__.__name__}: "
                                 f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    try:  # the output is checked even before any data told the input width
        check_shape(model, width if width is not None else int(model.inputs[0].shape[1]))
    except (ValueError, TypeError, IndexError) as exc:
        raise CorruptVersion(f"version {path.name}: incompatible: {exc}", "incompatible") from None
    return model, manifest


def candidates(base: Path, name: str, above: int = 0, skip: Container[int] = ()) -> Iterator[tuple[int, Path]]:
    """(number, path) of the published versions above `above`, newest first; those in `skip` are passed over.

    >>> import tempfile
    >>> base = Path(tempfile.mkdtemp())
    >>> for name in ("1", "2", "3", ".staging-4"):
    ...     (base / "model" / name).mkdir(parents=True)
    >>> [number for number, _ in candidates(base, "model", above=1, skip={2})]
    [3]
    """
    root = model_root(base, name)
    for number in reversed(version_numbers(base, name)):
        if number <= above:
            return
        if number not in skip:
            yield number, root / str(number)


def newest(base: Path, name: str, skip: set[int] | None = None, above: int = 0) -> Version | None:
    """The newest version above `above` that verifies; versions in `skip` (known bad) are passed over."""
    for number, path in candidates(base, name, above, skip or ()):
        try:
            return Version(number, path, verify(path))
        except CorruptVersion as exc:
            if not path.exists():
                continue  # retention removed it while we looked: not a fault
            log.warning("skipping model version", extra={"version": number, "reason": str(exc)})
            if skip is not None:
                skip.add(number)
    return None
