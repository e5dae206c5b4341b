"""`streamtrain control status | pause | resume`: an operator pauses the trainer of a model, or resumes it.

The action is one `operate/<model>` event on the control topic (serving/control.py), where it survives restarts:
a trainer reads the topic to its end before it consumes anything, so one restarted while paused stays paused.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from streamtrain.kafka import clients
from streamtrain.service.config import ControlSettings
from streamtrain.serving import control

READ_TIMEOUT = 30.0


class ControlCommandError(RuntimeError):
    """An action that cannot be done (the control topic unreadable, the event not acknowledged); says why."""


def run(s: ControlSettings) -> dict[str, Any]:
    reader = control.ControlReader(s, s.model_name, "control").start()
    try:
        if not reader.wait(READ_TIMEOUT):
            raise ControlCommandError(f"could not read the control topic {s.control_topic} within {READ_TIMEOUT:g} s")
        decisions = reader.snapshot()
    finally:
        reader.stop()
    changed = False
    if s.action != "status" and decisions.paused != (s.action == "pause"):
        event = control.operate(s.model_name, s.action == "pause", socket.gethostname(), s.reason)
        kafka = clients.producer(s, "control")
        control.send(kafka, s.control_topic, event)
        if kafka.flush(30):
            raise ControlCommandError("the control event was not acknowledged by the broker within 30 s")
        decisions.apply(event)
        changed = True
    operated = decisions.operate_event or {}
    return {"model_name": s.model_name, "action": s.action, "changed": changed, "paused": decisions.paused,
            "by": operated.get("by"), "reason": operated.get("reason"), "ts_ms": operated.get("ts_ms")}


def main(s: ControlSettings) -> int:
    try:
        print(json.dumps(run(s), indent=2))
    except ControlCommandError as exc:
        print(f"streamtrain control: error: {exc}")
        return 1
    return 0
