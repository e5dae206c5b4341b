"""`streamtrain serving status | pin VERSION | unpin | rollback`: the operators' side of the control topic.

Each action reads the decisions back from the control topic, checks the version against the model store, and
writes one pin event; every predictor replica follows it (predictor/versions.py).
"""

from __future__ import annotations

import json
import socket
from typing import Any

from streamtrain.service.config import ServingSettings
from streamtrain.serving import control
from streamtrain.store import model_store

READ_TIMEOUT = 30.0


class ServingCommandError(RuntimeError):
    """An action that cannot be done (unknown version, nothing to roll back to); the message says why."""


def run(s: ServingSettings) -> dict[str, Any]:
    try:
        decisions = control.read(s, s.model_name, "serving", READ_TIMEOUT)
        available = model_store.version_numbers(s.model_dir, s.model_name)
        event = _event(s, decisions, available)
        if event is not None:
            control.write(s, "serving", event)
            decisions.apply(event)
    except TimeoutError as exc:
        raise ServingCommandError(str(exc)) from None
    return {"model_name": s.model_name, "action": s.action, "versions_in_store": available,
            "serving": decisions.serving(available, s.serve), **decisions.summary(),
            "rollback_target": decisions.rollback_target(available, s.serve)}


def _event(s: ServingSettings, decisions: control.Decisions, available: list[int]) -> dict[str, Any] | None:
    by = f"{socket.gethostname()}"
    if s.action == "status":
        return None
    if s.action == "unpin":
        return control.pin(s.model_name, None, "unpin", by)
    if s.action == "rollback":
        target = decisions.rollback_target(available, s.serve)
        if target is None:
            raise ServingCommandError("no earlier promoted version is in the model store to roll back to")
        return control.pin(s.model_name, target, "rollback", by)
    if s.version is None:
        raise ServingCommandError("pin needs a VERSION")
    if s.version not in available:
        raise ServingCommandError(f"version {s.version} is not in the model store (there: {available})")
    return control.pin(s.model_name, s.version, "pin", by)


def main(s: ServingSettings) -> int:
    try:
        print(json.dumps(run(s), indent=2))
    except ServingCommandError as exc:
        print(f"streamtrain serving: error: {exc}")
        return 1
    return 0
