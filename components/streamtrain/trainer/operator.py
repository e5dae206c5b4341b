"""`streamtrain control status | pause | resume | rewind | skip`: an operator's orders to the trainer of a model.

Each is one event on the control topic (serving/control.py), where it survives restarts: a trainer reads the topic
to its end before it consumes anything, so one restarted while paused stays paused, and an order given while it
was down is carried out when it starts. A pause is a state (`operate/<model>`); a rewind or a skip is a one-off
action (`action/<model>/<id>`) that the trainer applies once, whole or not at all, and answers on the model-events
topic: the command waits for that answer and prints it, or the trainer's reason for refusing.

Exit codes: 0 done; 1 refused or not answered; 2 bad options; 3 a rewind to a version that is not in the model store
(or to a time no version in it was trained before), as `kubectl streamtrain` reports an unknown version.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streamtrain.kafka import clients
from streamtrain.service.config import ControlSettings, partition_offsets, time_ms
from streamtrain.serving import control

READ_TIMEOUT = 30.0
EXIT_FAILED = 1
EXIT_UNKNOWN_VERSION = 3


class ControlCommandError(RuntimeError):
    """An action that cannot be done (the control topic unreadable, the event not acknowledged, refused); says why."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run(s: ControlSettings) -> dict[str, Any]:
    try:
        if s.action in ("rewind", "skip"):
            return order(s)
        decisions = control.read(s, s.model_name, "control", READ_TIMEOUT)
        changed = s.action != "status" and decisions.paused != (s.action == "pause")
        if changed:
            event = control.operate(s.model_name, s.action == "pause", socket.gethostname(), s.reason)
            control.write(s, "control", event)
            decisions.apply(event)
    except TimeoutError as exc:
        raise ControlCommandError(str(exc)) from None
    operated = decisions.operate_event or {}
    return {"model_name": s.model_name, "action": s.action, "changed": changed, "paused": decisions.paused,
            "by": operated.get("by"), "reason": operated.get("reason"), "ts_ms": operated.get("ts_ms")}


def order(s: ControlSettings) -> dict[str, Any]:
    """Send a rewind or a skip and wait for the trainer's answer on the model-events topic."""
    params: dict[str, Any] = {}
    if s.to_version is not None:
        params["version"] = s.to_version
    if s.to_time is not None:
        params["to_time_ms"] = time_ms(s.to_time)
    if s.to_offsets is not None:
        params["to_offsets"] = {str(p): o for p, o in partition_offsets(s.to_offsets).items()}
    event = control.action(s.model_name, "rewind" if s.action == "rewind" else "skip", socket.gethostname(),
                           reason=s.reason, **params)
    answers = _answers(s)  # positioned before the order is sent, so its answer cannot be missed
    try:
        control.write(s, "control", event)
        answer = _wait_for(answers, event["id"], s.wait_seconds)
    finally:
        answers.close()
    if answer is None:
        raise ControlCommandError(f"the trainer did not answer within {s.wait_seconds:g} s (is it running?); the "
                                  f"{s.action} stays on the control topic and is carried out when the trainer starts")
    if not answer.get("applied"):
        unknown = answer.get("refusal") == "unknown-version"
        raise ControlCommandError(f"the trainer refused the {s.action}: {answer.get('reason')}",
                                  EXIT_UNKNOWN_VERSION if unknown else EXIT_FAILED)
    return {"model_name": s.model_name, "action": s.action, **{k: v for k, v in answer.items()
                                                                if k not in ("event", "model_name", "action")}}


def _answers(s: ControlSettings) -> Consumer:
    consumer = clients.consumer(s, "control", clients.reader_group(s, "control", "model-events"))
    marks = clients.watermarks(consumer, s.model_events_topic)
    consumer.assign([TopicPartition(s.model_events_topic, p, high) for p, (_, high) in marks.items()])
    return consumer


def _wait_for(answers: Consumer, action_id: str, seconds: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = answers.poll(0.5)
        if msg is None or msg.error() is not None:
            continue
        try:
            event = json.loads(msg.value() or b"")
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "operator-action" and event.get("id") == action_id:
            return event
    return None


def main(s: ControlSettings) -> int:
    try:
        print(json.dumps(run(s), indent=2))
    except ControlCommandError as exc:
        print(f"streamtrain control: error: {exc}")
        return exc.exit_code
    return 0
