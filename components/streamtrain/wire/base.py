"""What every wire format shares: the format header, the record limits, and how a bad record is described.

A bad record is never an exception that escapes a batch: decoding names it with a kind (a fixed word, the
dead-letter topic's `streamtrain.reason` prefix and the Prometheus label) and a one-line detail.

>>> error = BadRecordError("invalid-label", "2 is not 0 or 1")
>>> str(error)
'invalid-label: 2 is not 0 or 1'
>>> BadRecord(3, error.kind, error.detail).reason
'invalid-label: 2 is not 0 or 1'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

FORMAT_HEADER = "streamtrain.format"
MAX_VALUE_BYTES = 64 * 1024
F32 = np.dtype("<f4")

BadKind = Literal[
    "empty-value", "oversized", "not-utf8", "multiple-rows", "wrong-column-count", "non-numeric", "non-finite",
    "missing-label", "invalid-label", "unknown-format",
]


class BadRecordError(ValueError):
    """One record cannot be used; `kind` says why in one word, `detail` in one line."""

    def __init__(self, kind: BadKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind: BadKind = kind
        self.detail = detail


@dataclass(frozen=True)
class BadRecord:
    index: int  # position in the batch
    kind: BadKind
    detail: str

    @property
    def reason(self) -> str:
        """The one line the dead-letter topic carries: '<kind>: <detail>'."""
        return f"{self.kind}: {self.detail}"

    def at(self, index: int) -> BadRecord:
        """The same bad record at another position (a sub-batch's index mapped back to the batch's)."""
        return BadRecord(index, self.kind, self.detail)


@dataclass
class Decoded:
    features: np.ndarray  # float32 [n_good, width]
    labels: np.ndarray  # float32 [n_good]
    good: np.ndarray  # per row, the index into the batch of its record (rows of a block share it)
    bad: list[BadRecord] = field(default_factory=list)

    @classmethod
    def empty(cls, width: int | None, bad: list[BadRecord] | None = None) -> Decoded:
        return cls(np.zeros((0, width or 0), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), bad or [])


# decode_one(key, value, width) -> (row, label), or (rows [k, width], labels [k]) for a many-row format;
# raises BadRecordError.
DecodeOne = Callable[[bytes | None, bytes | None, int | None], tuple[Any, Any]]
# decode_many(keys, values, width) -> the whole batch at once, or None when a record needs the per-record pass.
DecodeMany = Callable[[list[bytes | None], list[bytes | None], int], "Decoded | None"]


@dataclass(frozen=True)
class WireFormat:
    """A value format: the `streamtrain.format` header it sets and how its records decode."""

    name: str
    header: bytes | None  # the header's value; None: records carry no header (CSV, the tutorial's format)
    rows_per_record: Literal["one", "many"]  # "many": a record is trained, checkpointed, dead-lettered whole
    decode_one: DecodeOne
    decode_many: DecodeMany | None  # the vectorised path for a batch of this format alone, if there is one

    def headers(self) -> list[tuple[str, bytes]] | None:
        """The record headers a producer sends with this format."""
        return [(FORMAT_HEADER, self.header)] if self.header is not None else None

