"""The label key of one-row records (CSV and f32): the label as text, "0" or "1" (the tutorial writes "0.0"/"1.0").

>>> decode_label(b"1.0")
1.0
>>> decode_label(b"2")
Traceback (most recent call last):
...
streamtrain.wire.base.BadRecordError: invalid-label: 2 is not 0 or 1
>>> encode_labels(np.array([0, 1, 1]))
[b'0', b'1', b'1']
"""

from __future__ import annotations

import numpy as np

from streamtrain.wire.base import BadRecordError

# Labels the fast paths accept as they are; others go record by record.
_CANONICAL = {b"0": 0.0, b"1": 1.0, b"0.0": 0.0, b"1.0": 1.0}


def encode_labels(labels: np.ndarray) -> list[bytes]:
    return [b"1" if v else b"0" for v in labels.astype(bool)]


def decode_label(key: bytes | None) -> float:
    if key is None or key == b"":
        raise BadRecordError("missing-label", "the record has no key (the label)")
    try:
        label = float(key.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRecordError("invalid-label", f"key {key[:20]!r} is not a number") from None
    if label not in (0.0, 1.0):
        raise BadRecordError("invalid-label", f"{label:g} is not 0 or 1")
    return label


def labels_fast(keys: list[bytes | None]) -> np.ndarray | None:
    """Labels when every key is a canonical 0/1 spelling; None sends the batch record by record."""
    try:
        return np.array([_CANONICAL[k] for k in keys], np.float32)  # type: ignore[index]
    except (KeyError, TypeError):
        return None
