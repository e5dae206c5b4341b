"""The control topic: serving decisions as keyed JSON events on a compacted topic, folded into one state.

Kafka is the control plane (the model volume stays the store of the files). Two kinds of events:

- a verdict, key ``verdict/<model>/<version>``: the evaluator's gate promoted or rejected a version, with its numbers;
- a pin, key ``pin/<model>``: an operator pinned a version (or unpinned: version null); rollback is a pin;
- an operation, key ``operate/<model>``: an operator paused the model's trainer (or resumed it);
- an action, key ``action/<model>/<id>``: an operator asked the trainer to rewind or skip, once (the trainer keeps the
  ids it applied in its checkpoint and answers on the model-events topic).

Compaction keeps the last event of each key, so reading the topic from the start rebuilds the state: a restarted
predictor serves what it served before.

>>> d = Decisions("m")
>>> for event in (verdict("m", 3, "promoted", "accuracy", 0.91, 500), verdict("m", 4, "rejected", "accuracy", 0.52,
...               500, "accuracy 0.520 is below the floor 0.6"), verdict("m", 5, "promoted", "accuracy", 0.92, 500)):
...     d.apply(event)
>>> d.serving([3, 4, 5, 6], "promoted"), d.serving([3, 4, 5, 6], "newest")
(5, 6)
>>> d.rollback_target([3, 4, 5, 6], "promoted")
3
>>> d.apply(pin("m", 3, "rollback"))
>>> d.serving([3, 4, 5, 6], "promoted"), d.pinned
(3, 3)
>>> d.paused, d.apply(operate("m", True, "ops", "bad labels upstream")), d.paused
(False, None, True)
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import Message, Producer

from streamtrain.kafka import clients
from streamtrain.kafka.follow import Follower
from streamtrain.service.config import CommonSettings

log = logging.getLogger(__name__)

Decision = Literal["promoted", "rejected"]
Policy = Literal["promoted", "newest"]


class ControlEventError(ValueError):
    """A control-topic record that is not a control event (skipped with a warning, never fatal)."""


def verdict(model: str, version: int, decision: Decision, metric: str, value: float | None, records: int,
            reason: str = "", by: str = "") -> dict[str, Any]:
    return {"kind": "verdict", "model_name": model, "version": version, "decision": decision, "metric": metric,
            "value": value, "records": records, "reason": reason, "by": by, "ts_ms": int(time.time() * 1000)}


def pin(model: str, version: int | None, action: str = "pin", by: str = "") -> dict[str, Any]:
    """action: pin, unpin or rollback (a rollback is a pin of the previously promoted version)."""
    return {"kind": "pin", "model_name": model, "version": version, "action": action, "by": by,
            "ts_ms": int(time.time() * 1000)}


def operate(model: str, paused: bool, by: str = "", reason: str = "") -> dict[str, Any]:
    """The trainer's operator state: paused (it consumes nothing, keeps serving its status) or running."""
    return {"kind": "operate", "model_name": model, "paused": paused, "by": by, "reason": reason,
            "ts_ms": int(time.time() * 1000)}


def action(model: str, what: Literal["rewind", "skip"], by: str = "", **params: Any) -> dict[str, Any]:
    """A one-off order to the trainer: rewind (params: version) or skip (to_offsets {partition: offset}, or
    to_time_ms); its id is unique, so compaction keeps every action."""
    return {"kind": "action", "model_name": model, "id": uuid.uuid4().hex, "action": what, "by": by,
            "ts_ms": int(time.time() * 1000), **params}


def key_of(event: dict[str, Any]) -> str:
    if event["kind"] == "verdict":
        return f"verdict/{event['model_name']}/{event['version']}"
    if event["kind"] == "action":
        return f"action/{event['model_name']}/{event['id']}"
    return f"{event['kind']}/{event['model_name']}"


@dataclass
class Decisions:
    """The serving and operator state of one model, folded from its control events."""

    model_name: str
    promoted: dict[int, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[int, dict[str, Any]] = field(default_factory=dict)
    pinned: int | None = None
    pin_event: dict[str, Any] | None = None
    events: int = 0
    operate_event: dict[str, Any] | None = None  # the newest pause or resume
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)  # rewinds and skips by id, in topic order

    @property
    def paused(self) -> bool:
        return bool(self.operate_event and self.operate_event["paused"])

    def apply(self, event: dict[str, Any]) -> None:
        """Take in one event; events of other models are ignored; a malformed one raises ControlEventError."""
        if not isinstance(event, dict) or event.get("model_name") != self.model_name:
            return
        kind, version = event.get("kind"), event.get("version")
        if kind == "verdict" and isinstance(version, int) and event.get("decision") in ("promoted", "rejected"):
            self.promoted.pop(version, None)
            self.rejected.pop(version, None)
            (self.promoted if event["decision"] == "promoted" else self.rejected)[version] = event
        elif kind == "pin" and (version is None or isinstance(version, int)):
            self.pinned, self.pin_event = version, event
        elif kind == "operate" and isinstance(event.get("paused"), bool):
            self.operate_event = event
        elif kind == "action" and event.get("action") in ("rewind", "skip") and isinstance(event.get("id"), str):
            self.actions.setdefault(event["id"], event)
        else:
            raise ControlEventError(f"not a control event: {json.dumps(event)[:200]}")
        self.events += 1

    def serving(self, available: Iterable[int], policy: Policy) -> int | None:
        """The version to serve among those in the store: the pinned one, else the newest promoted (or, with the
        policy 'newest', the newest complete one). None: nothing servable yet (keep what is served)."""
        there = set(available)
        if self.pinned is not None:
            return self.pinned if self.pinned in there else None
        pool = there if policy == "newest" else there & self.promoted.keys()
        return max(pool, default=None)

    def rollback_target(self, available: Iterable[int], policy: Policy) -> int | None:
        """The version to go back to: the promoted one before the one served now (with the policy 'newest', the
        version before it that was not rejected); None if the store has none."""
        there = set(available)
        now = self.serving(there, policy)
        pool = self.promoted.keys() if policy == "promoted" else there - self.rejected.keys()
        return max((v for v in pool if v in there and (now is None or v < now)), default=None)

    def newest_promoted(self) -> dict[str, Any] | None:
        return self.promoted[max(self.promoted)] if self.promoted else None

    def keep(self, count: int) -> set[int]:
        """Versions the store must keep beyond its newest ones: the pinned one and the newest `count` promoted."""
        kept = set(sorted(self.promoted)[-count:])
        return kept | ({self.pinned} if self.pinned is not None else set())

    def summary(self) -> dict[str, Any]:
        return {"promoted": sorted(self.promoted), "rejected": {v: e.get("reason") for v, e in
                                                                sorted(self.rejected.items())},
                "pinned": self.pinned, "trainer_paused": self.paused, "control_events": self.events}


def send(kafka: Producer, topic: str, event: dict[str, Any]) -> None:
    kafka.produce(topic, key=key_of(event).encode(), value=json.dumps(event).encode())
    kafka.poll(0)


def read(settings: CommonSettings, model_name: str, client: str, timeout: float = 30.0) -> Decisions:
    """The state the control topic holds now, read from its start (the operators' commands); TimeoutError if the
    topic cannot be read to its end within `timeout`."""
    reader = ControlReader(settings, model_name, client).start()
    try:
        if not reader.wait(timeout):
            raise TimeoutError(f"could not read the control topic {settings.control_topic} within {timeout:g} s")
        return reader.snapshot()
    finally:
        reader.stop()


def write(settings: CommonSettings, client: str, event: dict[str, Any], timeout: float = 30.0) -> None:
    """One event onto the control topic, acknowledged by the broker; TimeoutError if not within `timeout`."""
    kafka = clients.producer(settings, client)
    send(kafka, settings.control_topic, event)
    if kafka.flush(timeout):
        raise TimeoutError(f"the control event was not acknowledged by the broker within {timeout:g} s")


class ControlReader(Follower):
    """Follows the control topic from its start (kafka/follow.py) and keeps `decisions` current; `changed` is set
    after every applied event, `caught_up` once the decisions at start-up are in."""

    def __init__(self, settings: CommonSettings, model_name: str, component: str) -> None:
        super().__init__(settings, settings.control_topic, f"{component}-control", self._apply,
                         clients.reader_group(settings, component, "control"))
        self.decisions = Decisions(model_name)
        self.lock = threading.Lock()
        self.changed = threading.Event()

    def snapshot(self) -> Decisions:
        with self.lock:
            d = self.decisions
            return Decisions(d.model_name, dict(d.promoted), dict(d.rejected), d.pinned, d.pin_event, d.events,
                             d.operate_event, dict(d.actions))

    def _apply(self, msg: Message) -> None:
        try:
            event = json.loads(msg.value() or b"")
            with self.lock:
                self.decisions.apply(event)
        except (ValueError, ControlEventError) as exc:
            log.warning("control record skipped", extra={"error": str(exc)[:300]})
            return
        self.changed.set()
