"""The plugin's commands, each a plain function of a transport that returns a View (or raises a PluginError).

Every figure comes from what the components report: their /status JSON, `streamtrain inspect` in the trainer's
pod and `streamtrain serving status` in an evaluator's. A figure a component does not report is None (shown "—").
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from streamtrain.kubectl.errors import ActionFailed, NotFound
from streamtrain.kubectl.transport import Completed, Pod, Transport, pick
from streamtrain.kubectl.views import Section, View, cell

COMMAND_TIMEOUT = 120.0
# Serving decisions and the trainer's orders (pause, resume, rewind, skip) are written to the control topic, which
# only the evaluator's Kafka user may write (docs/kubernetes.md); a rewind's or a skip's answer comes back on the
# model-events topic, which that user reads too.
SERVING_COMPONENT = "evaluator"
TRAINER = "trainer"
# `streamtrain control`'s exit code for a rewind to a version not in the store (trainer/operator.py).
CONTROL_UNKNOWN_VERSION = 3


# --- status --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PodRow:
    component: str
    pod: str
    phase: str
    ready: bool
    restarts: int | None
    records: int | None  # records done: produced, trained, evaluated, predicted
    records_per_second: float | None
    lag: int | None
    accuracy: float | None  # the trainer's prequential accuracy, the evaluator's window accuracy
    version: int | None  # trained last, evaluated, served
    lineage: int | None  # the trainer's: how many rewinds its model has been through (0: none)


def records_of(status: dict[str, Any] | None) -> int | None:
    if not status:
        return None
    produced = status.get("produced")
    if isinstance(produced, dict):
        return sum(int(v) for v in produced.values() if isinstance(v, int))
    for key in ("records_trained", "records_evaluated", "records_predicted"):
        if isinstance(status.get(key), int):
            return int(status[key])
    return None


def rate_of(first: dict[str, Any] | None, second: dict[str, Any] | None, seconds: float) -> float | None:
    """records/s: the component's own figure if it reports one, else the growth of its count between two reads."""
    reported = (second or {}).get("records_per_second")
    if isinstance(reported, int | float):
        return float(reported)
    before, after = records_of(first), records_of(second)
    if before is None or after is None or seconds <= 0:
        return None
    return max(after - before, 0) / seconds


def accuracy_of(component: str, status: dict[str, Any]) -> float | None:
    key = {"trainer": "prequential_accuracy", "evaluator": "accuracy"}.get(component)
    value = status.get(key) if key else None
    return float(value) if isinstance(value, int | float) else None


def version_of(component: str, status: dict[str, Any]) -> int | None:
    key = {"trainer": "last_version", "evaluator": "model_version", "predictor": "serving_version"}.get(component)
    value = status.get(key) if key else None
    return value if isinstance(value, int) else None


def checkpoint_age(status: dict[str, Any], now_ms: int) -> float | None:
    """Seconds since the trainer's last checkpoint, where its /status says (an age, or a time in ms)."""
    if isinstance(status.get("checkpoint_age_seconds"), int | float):
        return float(status["checkpoint_age_seconds"])
    for key in ("last_checkpoint_ms", "checkpoint_ts_ms"):
        if isinstance(status.get(key), int):
            return max(now_ms - int(status[key]), 0) / 1000
    return None


def read_statuses(transport: Transport, pods: list[Pod]) -> dict[str, dict[str, Any] | None]:
    return {pod.name: transport.status(pod) for pod in pods}


def status(transport: Transport, sample_seconds: float = 1.0) -> View:
    pods = transport.pods()
    if not pods:
        raise NotFound(f"no streamtrain pods found for {transport.description}")
    started = time.monotonic()
    first = read_statuses(transport, pods)
    second = first
    if sample_seconds > 0 and any(first.values()):
        time.sleep(max(sample_seconds - (time.monotonic() - started), 0))
        second = read_statuses(transport, pods)
    seconds = time.monotonic() - started if second is not first else 0.0
    rows = []
    for pod in pods:
        now = second[pod.name] or {}
        rows.append(PodRow(pod.component, pod.name, pod.phase, pod.ready, pod.restarts, records_of(now or None),
                           rate_of(first[pod.name], second[pod.name], seconds), _int(now.get("lag")),
                           accuracy_of(pod.component, now), version_of(pod.component, now),
                           _int(now.get("lineage")) if pod.component == TRAINER else None))
    summary = summarize(pods, second)
    view = View({"where": transport.description, "pods": [asdict(r) for r in rows], "summary": summary})
    view.sections.append(Section("", ["COMPONENT", "POD", "READY", "STATUS", "RESTARTS", "RECORDS", "RECORDS/S",
                                      "LAG", "ACCURACY", "VERSION"],
                                 [[r.component, r.pod, r.ready, r.phase, r.restarts, r.records,
                                   None if r.records_per_second is None else round(r.records_per_second, 1),
                                   r.lag, r.accuracy, r.version] for r in rows]))
    labels = {"prequential_accuracy": "trainer prequential accuracy", "evaluator_accuracy": "evaluator accuracy",
              "newest_version": "newest version", "promoted_version": "promoted version",
              "serving_versions": "serving version", "pinned_version": "pinned version",
              "drift_events": "drift events", "checkpoint_age_seconds": "last checkpoint (s ago)",
              "paused": "trainer paused", "records_skipped": "records skipped by operators"}
    view.lines = [f"{label}: {cell(summary[key])}" for key, label in labels.items()]
    view.lines.append(f"trainer lineage: {lineage_text(summary['lineage'], summary['lineage_started'])}")
    return view


def lineage_text(lineage: int | None, started: dict[str, Any] | None) -> str:
    """`2 (since a rewind to version 3, from version 9, by ops-host, at 2026-05-01T10:00:00Z)` in one line."""
    if lineage is None:
        return cell(None)
    if lineage == 0:
        return "0 (never rewound)"
    if not started:
        return str(lineage)
    when = started.get("ts_ms")
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when / 1000)) if isinstance(when, int) else None
    parts = [f"since a rewind to version {cell(started.get('to_version'))}",
             f"from version {cell(started.get('from_version'))}",
             *([f"by {started['by']}"] if started.get("by") else []), *([f"at {at}"] if at else [])]
    return f"{lineage} ({', '.join(parts)})"


def summarize(pods: list[Pod], statuses: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        if statuses.get(pod.name):
            by.setdefault(pod.component, []).append(statuses[pod.name] or {})
    trainer = (by.get("trainer") or [{}])[0]
    evaluators, predictors = by.get("evaluator", []), by.get("predictor", [])
    deciders = evaluators + predictors  # both follow the control topic
    promoted = [max(s["promoted"]) for s in deciders if isinstance(s.get("promoted"), list) and s["promoted"]]
    pinned = [s.get("pinned") for s in deciders if "pinned" in s]
    accuracies = [a for s in evaluators if (a := accuracy_of("evaluator", s)) is not None]
    return {
        "prequential_accuracy": accuracy_of("trainer", trainer),
        "evaluator_accuracy": sum(accuracies) / len(accuracies) if accuracies else None,
        "newest_version": version_of("trainer", trainer),
        "promoted_version": max(promoted) if promoted else None,
        "serving_versions": sorted({v for s in predictors if (v := version_of("predictor", s)) is not None}),
        "pinned_version": next((p for p in pinned if p is not None), None),
        "drift_events": _int(trainer.get("drift_events")),
        "checkpoint_age_seconds": checkpoint_age(trainer, int(time.time() * 1000)) if trainer else None,
        "paused": trainer.get("paused") if isinstance(trainer.get("paused"), bool) else None,
        "records_skipped": _int(trainer.get("records_skipped")),
        "lineage": _int(trainer.get("lineage")),
        # where the current lineage began: the rewind's version, offsets, who and when (the trainer's entry)
        "lineage_started": trainer.get("lineage_started") if isinstance(trainer.get("lineage_started"), dict)
        else None,
    }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- commands in pods ----------------------------------------------------------------------------------------
def run_json(transport: Transport, pod: Pod, argv: list[str], timeout: float) -> tuple[Completed, dict[str, Any]]:
    """Run a streamtrain command that prints one JSON object; a non-zero exit or other output fails the action."""
    return parse_json(transport.run(pod, argv, timeout), argv)


def parse_json(done: Completed, argv: list[str]) -> tuple[Completed, dict[str, Any]]:
    if done.exit_code != 0:
        raise ActionFailed(f"`{' '.join(argv)}` in {done.where} exited {done.exit_code}: {done.last_line()}")
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise ActionFailed(f"`{' '.join(argv)}` in {done.where} printed no JSON: {done.last_line()}") from None
    if not isinstance(data, dict):
        raise ActionFailed(f"`{' '.join(argv)}` in {done.where} printed {type(data).__name__}, not an object")
    return done, data


def serve_policy(transport: Transport, pods: list[Pod], given: str | None) -> str:
    """The predictors' --serve policy (their /status says), so that serving status and rollback match what they
    serve; `promoted` (the default) when no predictor answers."""
    if given:
        return given
    for pod in pods:
        if pod.component == "predictor":
            policy = (transport.status(pod) or {}).get("serve_policy")
            if policy in ("promoted", "newest"):
                return str(policy)
    return "promoted"


def versions(transport: Transport, serve: str | None = None, timeout: float = COMMAND_TIMEOUT) -> View:
    pods = transport.pods()
    if not pods:
        raise NotFound(f"no streamtrain pods found for {transport.description}")
    trainer = pick(pods, TRAINER, transport.description)
    evaluator = pick(pods, SERVING_COMPONENT, transport.description)
    policy = serve_policy(transport, pods, serve)
    _, inspected = run_json(transport, trainer, ["streamtrain", "inspect"], timeout)
    _, decisions = run_json(transport, evaluator, ["streamtrain", "serving", "status", "--serve", policy], timeout)
    evaluated = (transport.status(evaluator) or {}).get("per_version") or {}
    verdicts = {int(v["version"]): v for v in (transport.status(evaluator) or {}).get("verdicts") or []
                if isinstance(v, dict) and isinstance(v.get("version"), int)}
    rows = version_rows(inspected, decisions, evaluated, verdicts)
    view = View({"where": transport.description, "serve_policy": policy, "versions": rows,
                 "serving": decisions.get("serving"), "pinned": decisions.get("pinned"),
                 "rollback_target": decisions.get("rollback_target")})
    view.sections.append(Section("", ["VERSION", "RECORDS TRAINED", "OFFSETS", "CREATED", "EVAL RECORDS",
                                      "EVAL ACCURACY", "GATE", "GATE VALUE", "SERVING", "NOTE"],
                                 [[r["version"], r["records_trained"], offsets_text(r["offsets"]), r["created_at"],
                                   r["records_evaluated"], r["accuracy"], r["gate"], r["gate_value"],
                                   "pinned" if r["pinned"] else ("serving" if r["serving"] else ""), r["note"]]
                                  for r in rows]))
    view.lines = [f"serve policy: {policy}", f"serving: {cell(decisions.get('serving'))}",
                  f"pinned: {cell(decisions.get('pinned'))}",
                  f"rollback target: {cell(decisions.get('rollback_target'))}"]
    return view


def version_rows(inspected: dict[str, Any], decisions: dict[str, Any], evaluated: dict[str, Any],
                 verdicts: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per version in the store, plus promoted or rejected ones retention has removed since."""
    store = {int(v["version"]): v for v in inspected.get("versions") or [] if isinstance(v.get("version"), int)}
    promoted = {int(v) for v in decisions.get("promoted") or []}
    rejected = {int(k): reason for k, reason in (decisions.get("rejected") or {}).items()}
    rows = []
    for number in sorted(store.keys() | promoted | rejected.keys()):
        stored = store.get(number)
        metrics = evaluated.get(str(number)) or evaluated.get(number) or {}  # type: ignore[call-overload]
        gate = "promoted" if number in promoted else "rejected" if number in rejected else None
        note = ("not in the model store" if stored is None else
                (stored.get("reason") or "unreadable") if stored.get("ok") is False else rejected.get(number) or "")
        rows.append({"version": number, "in_store": stored is not None,
                     "records_trained": (stored or {}).get("records_trained"),
                     "offsets": (stored or {}).get("offsets"),
                     "records_dead_lettered": (stored or {}).get("records_dead_lettered"),
                     "metrics": (stored or {}).get("metrics"),
                     "created_at": (stored or {}).get("created_at"),
                     "records_evaluated": metrics.get("records"), "accuracy": metrics.get("accuracy"),
                     "gate": gate, "gate_value": (verdicts.get(number) or {}).get("value"),
                     "serving": decisions.get("serving") == number, "pinned": decisions.get("pinned") == number,
                     "note": note})
    return rows


def offsets_text(offsets: Any) -> str | None:
    """A version's offsets as `skip --to-offsets` takes them, `0:1138,1:1140` (the topic first when there are
    several): the next offset to train, per partition.

    >>> offsets_text({"t.train": {"1": 1140, "0": 1138}})
    '0:1138,1:1140'
    >>> offsets_text({"a": {"0": 5}, "b": {"0": 7}})
    'a 0:5; b 0:7'
    """
    if not isinstance(offsets, dict) or not offsets:
        return None
    texts = {topic: ",".join(f"{p}:{o}" for p, o in sorted(parts.items(), key=lambda item: int(item[0])))
             for topic, parts in sorted(offsets.items()) if isinstance(parts, dict)}
    if len(texts) == 1:
        return next(iter(texts.values()))
    return "; ".join(f"{topic} {text}" for topic, text in texts.items())


NOT_IN_STORE = "is not in the model store"


def serving(transport: Transport, action: str, version: int | None = None, serve: str | None = None,
            timeout: float = COMMAND_TIMEOUT) -> View:
    """`streamtrain serving pin N | unpin | rollback | status` in an evaluator pod."""
    pods = transport.pods()
    if not pods:
        raise NotFound(f"no streamtrain pods found for {transport.description}")
    evaluator = pick(pods, SERVING_COMPONENT, transport.description)
    policy = serve_policy(transport, pods, serve)
    argv = ["streamtrain", "serving", action, *([str(version)] if version is not None else []), "--serve", policy]
    done = transport.run(evaluator, argv, timeout)
    if done.exit_code != 0:
        line = done.last_line()
        if NOT_IN_STORE in line:
            raise NotFound(f"version {version} {NOT_IN_STORE} ({line.split('(there: ', 1)[-1].rstrip(')')} there)"
                           if "(there: " in line else line)
        raise ActionFailed(f"{action} failed in {done.where}: {line}")
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise ActionFailed(f"`{' '.join(argv)}` in {done.where} printed no JSON: {done.last_line()}") from None
    view = View({"where": transport.description, "pod": done.where, **data})
    view.lines = [f"{action}: done in {done.where}" if action != "status" else f"read in {done.where}",
                  f"serving: {cell(data.get('serving'))}", f"pinned: {cell(data.get('pinned'))}",
                  f"promoted: {cell(data.get('promoted'))}",
                  f"rollback target: {cell(data.get('rollback_target'))}"]
    return view


def control(transport: Transport, action: str, reason: str = "", timeout: float = COMMAND_TIMEOUT,
            target: list[str] | None = None) -> View:
    """`streamtrain control pause|resume|rewind|skip` in an evaluator pod (target: the rewind's or skip's
    --to-... option and value); the command's own exit code and line decide."""
    pods = transport.pods()
    if not pods:
        raise NotFound(f"no streamtrain pods found for {transport.description}")
    evaluator = pick(pods, SERVING_COMPONENT, transport.description)
    argv = ["streamtrain", "control", action, *(target or []), *(["--reason", reason] if reason else [])]
    done = transport.run(evaluator, argv, timeout)
    if done.exit_code == CONTROL_UNKNOWN_VERSION:
        raise NotFound(f"`{' '.join(argv)}` in {done.where}: {done.last_line()}")
    done, data = parse_json(done, argv)
    view = View({"where": transport.description, "pod": done.where, "action": action, **data})
    view.lines = [f"{action}: done in {done.where}",
                  *(f"{k}: {cell(v)}" for k, v in data.items() if k not in ("action",))]
    return view
