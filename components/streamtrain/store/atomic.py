"""Crash-safe directory publication: write aside, fsync, rename; plus checksums to detect torn files."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def fsync_tree(root: Path) -> None:
    """fsync every file and directory below root (and root), so a rename publishes durable bytes."""
    for path in tree_files(root):
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    for directory in sorted({p.parent for p in tree_files(root)} | {root}, key=lambda p: -len(p.parts)):
        fsync_dir(directory)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def staging_dir(parent: Path, label: str) -> Path:
    """A fresh hidden directory beside the final one; readers (and TF Serving) ignore dot-names."""
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f".tmp-{label}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def commit_dir(staged: Path, final: Path) -> None:
    """Make `staged` visible as `final` in one rename; fails if `final` exists."""
    fsync_tree(staged)
    if final.exists():
        raise FileExistsError(final)
    os.rename(staged, final)
    fsync_dir(final.parent)


def remove_dir(path: Path) -> None:
    """Hide first (one rename), then delete, so no reader ever sees a half-deleted directory."""
    hidden = path.parent / f".del-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, hidden)
    except FileNotFoundError:
        return
    shutil.rmtree(hidden, ignore_errors=True)


def clean_staging(parent: Path) -> None:
    """Remove leftovers of writers that died mid-publication."""
    if parent.is_dir():
        for leftover in parent.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in parent.glob(".del-*"):
            shutil.rmtree(leftover, ignore_errors=True)
