"""What a drift detector is: it reads the prequential 0/1 error stream a batch at a time and reports a `Change`
when the error rate has moved significantly. Its state is plain JSON, so it goes into the trainer's checkpoint.

>>> Change(before=0.1, after=0.4, records_before=900, records_after=100).increase
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Change:
    """A significant change of the error rate: `before` over `records_before`, `after` over `records_after`."""

    before: float
    after: float
    records_before: int
    records_after: int

    @property
    def increase(self) -> bool:
        return self.after > self.before


class Detector(Protocol):
    kind: str

    def update(self, errors: np.ndarray) -> Change | None: ...

    def to_json(self) -> dict[str, Any]: ...

    def load(self, data: dict[str, Any]) -> None: ...
