"""The consumer group ids the components' code really uses are the ones their KafkaUsers cover, and no others.

confluent-kafka needs a group id on every consumer, also on those that only assign() partitions, and librdkafka
looks that group's coordinator up about every second (FindCoordinator: Describe on the group). An id no ACL covers
is denied on every lookup, and the broker logs each denial. Here each component's start-up code runs as it does in
its pod (settings from the rendered env), with the Consumer class replaced by a recorder of the configurations it
is given: no broker, no Kafka mock in an integration test, only the configs the real code paths build."""

from __future__ import annotations

import ast
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from chartkit import REPO, component_workload, effective_env, of_kind, render

SOURCES = ("volume", "kafka")


class Recorder:
    """Stands in for confluent_kafka.Consumer: keeps each config; every topic has one empty partition."""

    made: list[Recorder] = []
    lock = threading.Lock()

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = dict(conf)
        self.subscribed = False
        self.commits = 0
        with Recorder.lock:
            Recorder.made.append(self)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions={0: None})})

    def get_watermark_offsets(self, *_args: Any, **_kwargs: Any) -> tuple[int, int]:
        return 0, 0

    def assign(self, _partitions: Any) -> None:
        pass

    def subscribe(self, _topics: Any, **_kwargs: Any) -> None:
        self.subscribed = True

    def poll(self, timeout: float = -1) -> None:
        time.sleep(min(max(timeout, 0), 0.02))

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        time.sleep(min(max(timeout, 0), 0.02))
        return []

    def commit(self, *_args: Any, **_kwargs: Any) -> None:
        self.commits += 1

    def close(self) -> None:
        pass


class FakeProducer:
    """What the components' constructors and open() hooks call on their producer before any record flows."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: 0


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Recorder]]:
    from streamtrain.kafka import clients

    monkeypatch.setattr(clients, "Consumer", Recorder)
    Recorder.made = []
    yield Recorder
    Recorder.made = []


def pod_settings(docs: list[dict[str, Any]], component: str, settings_cls: Any, tmp_path: Path,
                 patch: pytest.MonkeyPatch) -> Any:
    """The settings a process in the component's pod loads (mounted files and directories stood in for)."""
    from streamtrain.service import config

    env = effective_env(docs, component_workload(docs, component))[component]
    for name in [n for n in os.environ if n.startswith("STREAMTRAIN_")]:
        patch.delenv(name)
    for name, value in env.items():
        if name.endswith(("_FILE", "_LOCATION")):
            stand_in = tmp_path / component / Path(value).name
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("stand-in\n")
            value = str(stand_in)
        elif name.endswith("_DIR"):
            value = str(tmp_path / component / name.lower())
        patch.setenv(name, value)
    return config.load(settings_cls)


def used_groups(docs: list[dict[str, Any]], tmp_path: Path, recorder: type[Recorder],
                monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, set[str]]]:
    """{user: {group id: how the code used it ("subscribe", "assign", "commit")}}, from each component's start-up
    code and, in the evaluator's and the predictor's pods, `streamtrain serving status`."""
    from streamtrain.evaluator.main import Evaluator
    from streamtrain.kafka import clients
    from streamtrain.predictor.main import Predictor
    from streamtrain.service import config
    from streamtrain.service.runtime import StopFlag
    from streamtrain.serving import commands
    from streamtrain.trainer import main as trainer_main

    found: dict[str, dict[str, set[str]]] = {}

    def collect(user: str) -> None:
        for consumer in recorder.made:
            uses = found.setdefault(user, {}).setdefault(consumer.conf["group.id"], set())
            uses.add("subscribe" if consumer.subscribed else "assign")
            if consumer.commits:
                uses.add("commit")
        recorder.made = []

    with monkeypatch.context() as patch:
        s = pod_settings(docs, "trainer", config.TrainerSettings, tmp_path, patch)
        control = trainer_main.start_control(s)
        assert control is not None
        control.stop()
        clients.records_exist(s, s.train_topic, {0: 5}, timeout=0.05)  # the probe of Trainer.assign()
        # Trainer.assign() itself needs a model and a broker: its consumer is made with the trainer's group.
        recorder({"group.id": s.group_id}).commits = 1
        collect("trainer")

        s = pod_settings(docs, "evaluator", config.EvaluatorSettings, tmp_path, patch)
        evaluator = Evaluator(s, StopFlag(), producer=FakeProducer())  # type: ignore[arg-type]
        with ExitStack() as cleanup:
            reader = evaluator.open(cleanup)
            cleanup.callback(reader.stop)
        collect("evaluator")
        commands.run(pod_settings(docs, "evaluator", config.ServingSettings, tmp_path, patch))
        collect("evaluator")

        s = pod_settings(docs, "predictor", config.PredictorSettings, tmp_path, patch)
        predictor = Predictor(s, StopFlag(), producer=FakeProducer())  # type: ignore[arg-type]
        with ExitStack() as cleanup:
            predictor.open(cleanup).subscribe()  # subscribe(): once a version can score the input
        collect("predictor")
        commands.run(pod_settings(docs, "predictor", config.ServingSettings, tmp_path, patch))
        collect("predictor")
    return found


def group_acls(docs: list[dict[str, Any]]) -> dict[str, list[tuple[str, str, set[str]]]]:
    """{component: [(pattern type, name, operations)]} of the group resources in its KafkaUser."""
    out: dict[str, list[tuple[str, str, set[str]]]] = {}
    for user in of_kind(docs, "KafkaUser"):
        component = user["metadata"]["labels"]["app.kubernetes.io/component"]
        out[component] = [(a["resource"]["patternType"], a["resource"]["name"], set(a["operations"]))
                          for a in user["spec"]["authorization"]["acls"] if a["resource"]["type"] == "group"]
    return out


def covering(acls: list[tuple[str, str, set[str]]], group: str) -> list[tuple[str, str, set[str]]]:
    return [a for a in acls if (a[1] == group if a[0] == "literal" else group.startswith(a[1]))]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("groups", [{}, {"trainer": "ml-train", "evaluator": "eval-b", "predictor": "pred-b"}],
                         ids=["default-groups", "renamed-groups"])
def test_every_group_the_code_uses_is_covered_by_its_users_acls(
    source: str, groups: dict[str, str], tmp_path: Path, recorder: type[Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    values: dict[str, Any] = {"model": {"source": source}}
    for component, group in groups.items():
        values[component] = {"groupId": group}
    docs = render(values)
    used = used_groups(docs, tmp_path, recorder, monkeypatch)
    acls = group_acls(docs)
    readers = {"trainer": {"control", "probe"}, "evaluator": {"control", "model-events"}, "predictor": {"control"}}
    if source == "kafka":
        readers["evaluator"].add("model-files")
        readers["predictor"].add("model-files")
    for component, uses in used.items():
        group = groups.get(component, f"streamtrain-{component}")
        # The component's own group, and one reader group per topic it only assigns itself.
        assert set(uses) == {group} | {f"{group}.{reads}" for reads in readers[component]}, (component, uses)
        for group_id, how in uses.items():
            rules = covering(acls[component], group_id)
            assert rules, f"{component} uses group {group_id!r}, which none of its ACLs covers: {acls[component]}"
            granted = set().union(*(ops for _, _, ops in rules))
            if how == {"assign"}:
                # A reader: Describe only (FindCoordinator), so the broker refuses a join or a commit.
                assert granted == {"Describe"}, (component, group_id, granted)
            else:
                assert "Read" in granted, (component, group_id, granted)
        # And no group ACL that nothing uses.
        unused = [rule for rule in acls[component] if not any(rule in covering([rule], g) for g in uses)]
        assert not unused, f"{component} has group ACLs no code uses: {unused}"
    assert set(used) == {"trainer", "evaluator", "predictor"} and "producer" not in used


def test_no_consumer_is_made_with_a_group_id_of_its_own_invention() -> None:
    """Every consumer in the components gets its group from the settings (--group-id) or from reader_group(), and
    every reader_group() purpose is one the test above sees used (metrics: `streamtrain report`, no chart user)."""
    purposes: set[str] = set()
    calls = 0
    for path in (REPO / "components" / "streamtrain").rglob("*.py"):
        text = path.read_text()
        assert "group.id" not in text or path.name == "clients.py", f"{path} sets group.id itself"
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "reader_group":
                purposes.add(ast.literal_eval(node.args[2]))
            elif name in ("consumer", "make_consumer") and node.args:  # (loop.py calls a no-argument factory)
                calls += 1
                group = node.args[2] if len(node.args) > 2 else next(k.value for k in node.keywords
                                                                     if k.arg == "group_id")
                source = ast.unparse(group)
                # The Follower's group comes from its subclasses, which pass reader_group(...) (counted above).
                follower = path.name == "follow.py" and source == "self.group"
                assert source.endswith(".group_id") or "reader_group(" in source or follower, f"{path}:{node.lineno}"
    assert purposes == {"control", "probe", "model-events", "model-files", "metrics"}
    assert calls >= 5
