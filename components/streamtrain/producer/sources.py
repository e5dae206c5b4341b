"""Record sources for the producer. Each yields Chunks of (label, CSV feature row) as wire bytes.

Generators are seeded, so the same settings give the same stream. Finite sources (CSV file,
breast-cancer set) can be repeated for several passes; generators are endless unless bounded.
The drift streams of the literature (Agrawal, SEA, rotating hyperplane) are in `generators/`.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import numpy as np

from streamtrain.producer.generators import agrawal, concepts, hyperplane, sea
from streamtrain.service.config import ProducerSettings
from streamtrain.wire import F32_FORMAT, BadKind, decode_batch, encode_f32, encode_labels, encode_rows

CHUNK = 4096


@dataclass(frozen=True)
class BadRow:
    """A row the source itself could not use, for the dead-letter topic."""

    where: str  # <file>:<line>
    raw: bytes
    kind: BadKind
    detail: str


@dataclass
class Chunk:
    keys: list[bytes]
    values: list[bytes]
    bad: list[BadRow] = field(default_factory=list)
    # Per record, the value format for the streamtrain.format header; None: all CSV (no header).
    formats: list[bytes | None] | None = None


def _open(path: Path) -> IO[bytes]:
    with path.open("rb") as probe:
        magic = probe.read(2)
    return cast(IO[bytes], gzip.open(path, "rb")) if magic == b"\x1f\x8b" else path.open("rb")


def _is_number(text: bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_file(path: Path, label_column: int = 0, header: str = "auto", passes: int = 1) -> Iterator[Chunk]:
    """Rows of a CSV file (plain or gzip), label in `label_column` (SUSY: first column, 18 features)."""
    for _ in itertools.count() if passes == 0 else range(passes):
        with _open(path) as handle:
            for line_no, keys, values, bad in _csv_chunks(handle, path.name, label_column, header):
                del line_no
                yield Chunk(keys, values, bad)


def _csv_chunks(handle: IO[bytes], name: str, label_column: int,
                header: str) -> Iterator[tuple[int, list[bytes], list[bytes], list[BadRow]]]:
    keys: list[bytes] = []
    values: list[bytes] = []
    bad: list[BadRow] = []
    for line_no, raw in enumerate(handle, start=1):
        line = raw.rstrip(b"\r\n")
        if line_no == 1 and header != "no":
            first = line.split(b",")
            if header == "yes" or not all(_is_number(f) for f in first if f):
                continue
        if not line:
            continue
        if label_column == 0:
            label, _, row = line.partition(b",")
        elif label_column == -1:
            row, _, label = line.rpartition(b",")
        else:
            fields = line.split(b",")
            if not -len(fields) <= label_column < len(fields):
                bad.append(BadRow(f"{name}:{line_no}", line, "missing-label", f"no column {label_column}"))
                continue
            label = fields.pop(label_column)
            row = b",".join(fields)
        if not row:
            bad.append(BadRow(f"{name}:{line_no}", line, "wrong-column-count", "no feature columns"))
            continue
        keys.append(_normalise_label(label))
        values.append(row)
        if len(values) >= CHUNK:
            yield line_no, keys, values, bad
            keys, values, bad = [], [], []
    if values or bad:
        yield -1, keys, values, bad


def _normalise_label(label: bytes) -> bytes:
    """SUSY writes labels as 1.000000000000000000e+00; send 0/1 when it is one of them."""
    try:
        number = float(label)
    except ValueError:
        return label  # the trainer dead-letters it with the reason
    return b"1" if number == 1.0 else b"0" if number == 0.0 else label


def _from_arrays(features: np.ndarray, labels: np.ndarray, wire: str = "csv") -> Chunk:
    if wire in ("f32", "f32-block"):  # the producer packs f32 rows into blocks per topic
        return Chunk(encode_labels(labels), encode_f32(features), formats=[F32_FORMAT] * len(labels))
    return Chunk(encode_labels(labels), encode_rows(features))


def as_f32(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """CSV chunks re-encoded as float32; rows that do not parse stay CSV, so consumers dead-letter them
    with the reason, exactly as when the whole stream is CSV."""
    width: int | None = None
    for chunk in chunks:
        decoded, width = decode_batch(list(chunk.keys), list(chunk.values), width)
        values = list(chunk.values)
        formats: list[bytes | None] = [None] * len(values)
        for i, row in zip(decoded.good.tolist(), encode_f32(decoded.features) if decoded.good.size else [],
                          strict=True):
            values[i], formats[i] = row, F32_FORMAT
        yield Chunk(chunk.keys, values, chunk.bad, formats)


def breast_cancer(seed: int, passes: int = 1, wire: str = "csv") -> Iterator[Chunk]:
    """scikit-learn's breast-cancer set (569 rows, 30 features), shuffled anew on every pass."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    for _ in itertools.count() if passes == 0 else range(passes):
        order = rng.permutation(len(data.target))
        yield _from_arrays(data.data[order].astype(np.float32), data.target[order], wire)


SUSY_FEATURES = 18


def susy_like(seed: int, n_features: int = SUSY_FEATURES, wire: str = "csv") -> Iterator[Chunk]:
    """A synthetic stream shaped like SUSY: 8 'low-level' kinematic features and derived 'high-level' ones.

    Signal (label 1) has harder leptons and more missing energy; the high-level features are
    non-linear functions of the low-level ones plus noise, so classes overlap (a good model gets
    about 0.8 accuracy, like on the real SUSY set).
    """
    rng = np.random.default_rng(seed)
    while True:
        yield _from_arrays(*susy_arrays(rng, CHUNK, n_features), wire)


def susy_arrays(rng: np.random.Generator, n: int, n_features: int = SUSY_FEATURES) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.46).astype(np.float32)
    scale = np.where(y == 1, 1.25, 0.85)
    pt1 = rng.gamma(2.2, scale)
    pt2 = rng.gamma(2.0, scale * 0.8)
    eta1, eta2 = rng.normal(0, 1.1, n), rng.normal(0, 1.1, n)
    phi1, phi2 = rng.uniform(-np.pi, np.pi, n), rng.uniform(-np.pi, np.pi, n)
    met = rng.gamma(1.6, np.where(y == 1, 1.35, 0.7))
    met_phi = rng.uniform(-np.pi, np.pi, n)
    low = [pt1, eta1, phi1, pt2, eta2, phi2, met, met_phi]
    dphi = np.cos(phi1 - phi2)
    mass = np.sqrt(np.maximum(2 * pt1 * pt2 * (np.cosh(eta1 - eta2) - dphi), 0))
    mt = np.sqrt(np.maximum(2 * pt1 * met * (1 - np.cos(phi1 - met_phi)), 0))
    high = [
        met / (1 + pt1 + pt2),  # MET_rel-like
        met * np.abs(np.cos(met_phi - phi1)),  # axial MET
        mass,  # M_R-like
        mt,  # M_T-like
        mt / (mass + 1.0),  # R-like
        np.sqrt(pt1 * pt2) * (1 - dphi),  # MT2-like
        pt1 + pt2 + met,  # S_R-like
        mass * np.abs(np.tanh(eta1 - eta2)),  # M_Delta_R-like
        np.abs(np.arctan2(np.sin(phi1 - met_phi), np.cos(phi1 - met_phi))),  # dPhi_r_b-like
        np.tanh(eta1) * np.tanh(eta2),  # cos(theta)-like
    ]
    columns = (low + high)[:n_features]
    while len(columns) < n_features:  # wider streams pad with noise columns
        columns.append(rng.normal(0, 1, n))
    x = np.stack(columns, axis=1)
    x += rng.normal(0, 0.05, x.shape) * (np.abs(x) + 0.1)
    return x.astype(np.float32), y


DRIFT_FEATURES = 10


def drift(seed: int, points: list[int], kind: str = "abrupt", width: int = 2000,
          n_features: int = DRIFT_FEATURES, label_noise: float = 0.02, wire: str = "csv") -> Iterator[Chunk]:
    """Hyperplane concepts that change at `points` (record indices): abrupt switch or gradual blend.

    Concept k labels x as 1 when w_k . x > 0; consecutive concepts flip the sign of half the
    weights, so the old model is about as good as chance on the new concept.
    """
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0, 1, n_features)]
    for _ in points:
        w = weights[-1].copy()
        flip = rng.permutation(n_features)[: n_features // 2 + 1]
        w[flip] *= -1
        weights.append(w)
    start = 0
    while True:
        yield _from_arrays(*drift_arrays(rng, start, CHUNK, weights, points, kind, width, label_noise), wire)
        start += CHUNK


def drift_arrays(rng: np.random.Generator, start: int, n: int, weights: list[np.ndarray], points: list[int],
                 kind: str, width: int, label_noise: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0, 1, (n, weights[0].size))
    # Gradual: the share of the next concept rises linearly over [point - width/2, point + width/2).
    concept = concepts(rng, start, n, points, kind, width)
    w = np.stack(weights)[concept]
    y = ((x * w).sum(axis=1) > 0).astype(np.float32)
    noise = rng.random(n) < label_noise
    y[noise] = 1 - y[noise]
    return x.astype(np.float32), y


def _blocks(arrays: Iterator[tuple[np.ndarray, np.ndarray]], wire: str) -> Iterator[Chunk]:
    return (_from_arrays(x.astype(np.float32), y, wire) for x, y in arrays)


def from_settings(settings: ProducerSettings) -> Iterator[Chunk]:
    if settings.source == "csv":
        assert settings.csv_path is not None  # the settings validator guarantees it
        rows = csv_file(settings.csv_path, settings.csv_label_column, settings.csv_header, settings.passes)
        return as_f32(rows) if settings.wire_format in ("f32", "f32-block") else rows
    if settings.source == "breast-cancer":
        return breast_cancer(settings.seed, settings.passes, settings.wire_format)
    if settings.source == "susy":
        return susy_like(settings.seed, settings.n_features or SUSY_FEATURES, settings.wire_format)
    s = settings
    points, kind, width = s.drift_points, s.drift_type, s.drift_width
    if s.source == "agrawal":
        return _blocks(agrawal.stream(s.seed, s.agrawal_functions, points, kind, width, s.agrawal_perturbation,
                                      noise=s.noise or 0.0), s.wire_format)
    if s.source == "sea":
        return _blocks(sea.stream(s.seed, s.sea_variants, points, kind, width, 0.1 if s.noise is None else s.noise),
                       s.wire_format)
    if s.source == "hyperplane":
        return _blocks(hyperplane.stream(s.seed, s.n_features or DRIFT_FEATURES, s.hyperplane_mag_change,
                                         s.hyperplane_sigma, s.hyperplane_drift_features, points, kind, width,
                                         0.05 if s.noise is None else s.noise), s.wire_format)
    return drift(s.seed, s.drift_points, s.drift_type, s.drift_width, s.n_features or DRIFT_FEATURES,
                 label_noise=0.02 if s.noise is None else s.noise, wire=s.wire_format)
