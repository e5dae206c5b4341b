"""A module that leaves traces: importing it touches $STREAMTRAIN_TEST_IMPORT_MARKER, calling plant() touches
$STREAMTRAIN_TEST_CALL_MARKER. Model files that name it must never get it imported or called."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

if os.environ.get("STREAMTRAIN_TEST_IMPORT_MARKER"):
    Path(os.environ["STREAMTRAIN_TEST_IMPORT_MARKER"]).touch()


def plant(tensor: Any) -> Any:
    if os.environ.get("STREAMTRAIN_TEST_CALL_MARKER"):
        Path(os.environ["STREAMTRAIN_TEST_CALL_MARKER"]).touch()
    return tensor
