"""A dry run of the cluster suite against a simulated deployment (virtual time, no cluster).

The cluster suite cannot run on the project's machines. This runs its test functions in order against a
fake `Cluster` that behaves like a healthy release, and then against faulty ones. The suite must pass on
the healthy release, and each fault must fail the test that is meant to catch it. This checks the suite's
own logic: its waits, its arithmetic and its assertions. It does not check the Kubernetes API calls that
clusterkit makes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import types
from collections.abc import Callable, Iterator
from typing import Any

import clusterkit
import pytest
import test_e2e_cluster as suite
import yaml

PARTITIONS = 3
TOPICS = {"train": "streamtrain.train", "test": "streamtrain.test", "input": "streamtrain.input",
          "output": "streamtrain.predictions", "model-files": "streamtrain.model-files"}
WIDTH = 30  # the breast-cancer stream's features
KIND_VALUES = yaml.safe_load((clusterkit.REPO / "k8s" / "streamtrain-kind-values.yaml").read_text())
# What `make deploy` installs on kind: evaluators and predictors read the versions from the volume or over Kafka.
KIND_SOURCE = KIND_VALUES.get("model", {}).get("source", "volume")
# The test that only a release with model.source kafka runs (it skips with volume).
OVER_KAFKA = "test_versions_reach_evaluators_and_predictors_on_any_node_over_kafka"


def ns(**kwargs: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**kwargs)


class Clock:
    """Virtual time: sleep() advances it and lets the simulation run."""

    def __init__(self, on_tick: Callable[[float], None]) -> None:
        self.now = 1_000_000.0
        self.on_tick = on_tick

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        step = 0.5
        while seconds > 0:
            self.now += min(step, seconds)
            self.on_tick(min(step, seconds))
            seconds -= step


class Sim:
    """A release: a bounded producer Job, one trainer (a StatefulSet of one), one evaluator that promotes the
    versions it judges, one predictor that serves the pinned or newest promoted one, a model volume (mounted by all
    three, or with model.source kafka by the trainer alone, the others receiving the versions into an emptyDir)."""

    def __init__(self, faults: set[str], source: str = KIND_SOURCE, trainer_kind: str = "StatefulSet",
                 kafka_storage: dict[str, Any] | None = None) -> None:
        self.faults = faults
        self.source = source
        # The trainer's workload: a StatefulSet's replacement pod keeps the old pod's name, a Deployment's does not.
        self.trainer_kind = trainer_kind
        self.kafka_storage = kafka_storage or KIND_VALUES.get("kafka", {}).get("storage", {"type": "ephemeral"})
        kafka_kept = self.kafka_storage["type"] == "persistent-claim" and not self.kafka_storage.get("deleteClaim")
        # The chart's helm.sh/resource-policy on the model PVC (a fault can put it beside ephemeral Kafka data).
        self.keep_pvc = kafka_kept or "pvc-kept-beside-ephemeral-kafka" in faults
        self.generations = {"evaluator": 1, "predictor": 1}
        self.trainer_age: float | None = None  # seconds since the trainer pod was replaced
        self.uids = 0
        self.count = 2276
        self.rate = 20.0
        self.produced = 0.0  # of the current Job
        self.job = self.new_job(seed=7)
        self.train = dict.fromkeys(range(PARTITIONS), 0)
        self.test = dict.fromkeys(range(PARTITIONS), 0)
        self.sent = 0
        self.trained = dict.fromkeys(range(PARTITIONS), 0)
        self.overlaps: list[dict[str, Any]] = []
        self.versions: list[dict[str, Any]] = []
        self.since_publish = 0.0
        self.trainer_n = 0
        self.trainer = self.new_pod("trainer")
        self.evaluator = self.new_pod("evaluator")
        self.predictor = self.new_pod("predictor")
        self.promoted: list[int] = []
        self.pinned: int | None = None
        self.client_users: set[str] = set()  # KafkaUsers the suite made for itself and has not deleted
        self.input_offsets = dict.fromkeys(range(PARTITIONS), 0)
        self.stopping: dict[str, float] = {}  # pod uid -> seconds until gone
        self.starting = 0.0  # seconds until the next trainer pod is Ready
        self.learning_rate = "auto"
        self.installed = True
        self.deleted: set[str] = set()  # plurals whose objects were deleted
        self.patched: list[tuple[str, str, dict[str, Any]]] = []  # (plural, name, patch) in the order sent
        self.pvc = True
        self.clock = Clock(self.tick)

    def new_job(self, seed: int) -> types.SimpleNamespace:
        self.produced = 0.0
        return ns(
            metadata=ns(name=f"streamtrain-producer-{seed:08x}", deletion_timestamp=None),
            status=ns(succeeded=None, failed=None, conditions=[]),
        )

    def new_pod(self, component: str) -> types.SimpleNamespace:
        self.trainer_n += 1
        self.uids += 1
        stateful = component == "trainer" and self.trainer_kind == "StatefulSet"
        name = f"streamtrain-{component}-0" if stateful else f"streamtrain-{component}-{self.trainer_n}"
        own_copy = self.source == "kafka" and component != "trainer"
        if component == "predictor" and "predictor-mounts-pvc" in self.faults:
            own_copy = False
        models = ns(name="models", persistent_volume_claim=None if own_copy else ns(claim_name="streamtrain-models"),
                    empty_dir=ns(size_limit="1Gi") if own_copy else None)
        tmp = ns(name="tmp", persistent_volume_claim=None, empty_dir=ns(size_limit="512Mi"))
        mounts = [ns(name="tmp", mount_path="/tmp"), ns(name="models", mount_path="/data")]
        if component == "evaluator":
            mounts.append(ns(name="reports", mount_path="/var/lib/streamtrain/reports"))
        affinity = None
        if component == "evaluator" and (self.source == "volume" or "evaluator-tied-to-trainer" in self.faults):
            term = ns(topology_key="kubernetes.io/hostname")
            affinity = ns(pod_affinity=ns(required_during_scheduling_ignored_during_execution=[term]))
        return ns(
            metadata=ns(name=name, uid=f"uid-{self.uids}", deletion_timestamp=None),
            spec=ns(node_name="kind-control-plane", termination_grace_period_seconds=40, volumes=[tmp, models],
                    containers=[ns(volume_mounts=mounts)], affinity=affinity),
            status=ns(
                phase="Running",
                pod_ip=f"10.244.0.{self.trainer_n}",
                container_statuses=[ns(restart_count=0)],
                conditions=[ns(type="Ready", status="True")],
            ),
            ready=True,
        )

    # ------------------------------------------------------------ the world moving on
    def tick(self, dt: float) -> None:
        for name in list(self.stopping):
            self.stopping[name] -= dt
            if self.stopping[name] <= 0:
                del self.stopping[name]
        if self.trainer is None and not self.stopping:
            self.starting -= dt
            if self.starting <= 0:
                self.trainer = self.new_pod("trainer")
                self.trainer_age = 0.0
                if "retrain-after-restart" in self.faults:
                    self.trained[0] = max(0, self.trained[0] - 10)
                    self.overlaps.append(
                        {
                            "topic": TOPICS["train"],
                            "partition": 0,
                            "start": self.trained[0],
                            "end": self.trained[0] + 10,
                        }
                    )
        if self.job.status.succeeded is None and self.installed:
            before = int(self.produced)
            self.produced = min(self.count, self.produced + self.rate * dt)
            for _ in range(before, int(self.produced)):
                self.sent += 1
                if "lose-records" in self.faults and self.sent % 97 == 0:
                    continue
                target = self.test if self.sent % 5 == 0 else self.train
                target[self.sent % PARTITIONS] += 1
            if self.produced >= self.count:
                self.job.status.succeeded = 1
        if self.trainer is not None and self.trainer_age is not None and "new-trainer-restarts" in self.faults:
            # A replacement trainer whose container crashes once a minute in, after the suite has seen it Ready.
            self.trainer_age += dt
            if self.trainer_age >= 60:
                self.trainer.status.container_statuses[0].restart_count = 1
        if self.trainer is not None:
            budget = 0 if "trainer-stalls" in self.faults and len(self.versions) >= 2 else int(60 * dt)
            for p in range(PARTITIONS):
                step = min(budget, self.train[p] - self.trained[p])
                self.trained[p] += step
            self.since_publish += dt
            records = sum(self.trained.values())
            if self.since_publish >= 5 and (not self.versions or records > self.versions[-1]["records_trained"]):
                self.since_publish = 0
                self.versions.append({"version": len(self.versions) + 1, "ok": True, "records_trained": records})
                if "gate-never-promotes" not in self.faults:
                    self.promoted.append(self.versions[-1]["version"])

    # ------------------------------------------------------------ the predictor
    def serving(self) -> int | None:
        if self.pinned is not None and "pin-ignored" not in self.faults:
            return self.pinned
        return max(self.promoted, default=None)

    def predictor_ready(self) -> bool:
        return self.predictor is not None and self.serving() is not None

    # ------------------------------------------------------------ what the suite reads
    def state(self) -> dict[str, Any]:
        return {
            "records_trained": sum(self.trained.values()),
            "records_dead_lettered": 0,
            "ledger": {TOPICS["train"]: {str(p): [[0, n]] for p, n in self.trained.items() if n}},
            "overlaps": list(self.overlaps),
        }

    def stop_trainer(self) -> None:
        old, self.trainer = self.trainer, None
        self.stopping[old.metadata.uid] = 45 if "sigkill" in self.faults else 3
        self.starting = 15


class FakeCluster:
    """Duck-types clusterkit.Cluster for the calls the suite makes."""

    namespace, release, kafka_name, context = "streamtrain", "streamtrain", "streamtrain-kafka", "kind-streamtrain"

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        s = sim
        empty = ns(items=[])
        self.core = ns(
            read_namespaced_secret=lambda name, _ns: ns(
                data={"ca.crt": "x"} if name.endswith("-ca-cert") else {"password": "x", "sasl.jaas.config": "x"}
            ),
            list_namespaced_config_map=lambda _ns, label_selector="": ns(
                items=[ns(data=self.configmap_env(c)) for c in ("producer", "trainer", "evaluator", "predictor")]
                if s.installed
                else []
            ),
            delete_namespaced_pod=lambda name, _ns: s.stop_trainer(),
            read_namespace=lambda name: ns(metadata=ns(labels={"pod-security.kubernetes.io/enforce": "restricted"})),
            create_namespaced_pod=self.admit,
            list_namespaced_service=lambda *a, **k: empty,
            list_namespaced_service_account=lambda *a, **k: empty,
            list_namespaced_pod=lambda *a, **k: ns(
                items=[p for p in (s.trainer, s.evaluator, s.predictor) if p and s.installed]
            ),
            list_namespaced_persistent_volume_claim=lambda *a, **k: ns(
                items=[ns(metadata=ns(name="streamtrain-models", annotations=(
                    {"helm.sh/resource-policy": "keep"} if s.keep_pvc else None)))] if s.pvc else []
            ),
        )
        self.batch = ns(
            read_namespaced_job=lambda name, _ns: s.job,
            list_namespaced_job=lambda *a, **k: ns(items=[s.job] if s.installed else []),
        )
        self.apps = ns(list_namespaced_deployment=lambda *a, **k: empty,
                       list_namespaced_stateful_set=lambda *a, **k: empty)
        self.net = ns(list_namespaced_network_policy=lambda *a, **k: empty)
        self.custom = ns(delete_namespaced_custom_object=lambda _g, _v, _ns, plural, _name: s.deleted.add(plural),
                         patch_namespaced_custom_object=lambda _g, _v, _ns, plural, name, body: s.patched.append(
                             (plural, name, body)))

    def admit(self, namespace: str, pod: dict[str, Any], dry_run: str | None = None) -> None:
        from kubernetes.client.exceptions import ApiException

        root = any(c.get("securityContext", {}).get("runAsUser") == 0 for c in pod["spec"]["containers"])
        if root and "no-pod-security" not in self.sim.faults:
            error = ApiException(status=403, reason="Forbidden")
            error.body = 'pods "x" is forbidden: violates PodSecurity "restricted:latest": runAsUser=0'
            raise error

    # objects
    def selector(self, component: str | None = None) -> str:
        return clusterkit.Cluster.selector(self, component)  # type: ignore[arg-type]

    @staticmethod
    def ready(obj: dict[str, Any]) -> bool:
        return clusterkit.Cluster.ready(obj)

    def kafka(self) -> dict[str, Any]:
        return {
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "listeners": [{"name": "clients", "bootstrapServers": "streamtrain-kafka-kafka-bootstrap:9093"}],
            }
        }

    def custom_objects(self, plural: str) -> list[dict[str, Any]]:
        if not self.sim.installed or plural in self.sim.deleted:
            return []
        ready = {"conditions": [{"type": "Ready", "status": "True"}]}
        if plural == "kafkanodepools":
            return [{"spec": {"replicas": 1}, "status": {"replicas": 1}}]
        if plural == "kafkatopics":
            count = 9 if self.sim.source == "kafka" else 8
            return [{"metadata": {"name": f"t{i}"}, "status": ready} for i in range(count)]
        if plural == "kafkausers":
            return [
                {
                    "metadata": {"name": f"streamtrain-{c}"},
                    "spec": {"authentication": {"type": "scram-sha-512"}},
                    "status": ready,
                }
                for c in ("producer", "trainer", "evaluator", "predictor")
            ]
        return []

    def pods(self, component: str) -> list[Any]:
        """Snapshots, as the API returns them: a later change to the pod does not show in one."""
        pod = {"trainer": self.sim.trainer, "evaluator": self.sim.evaluator, "predictor": self.sim.predictor}[component]
        if pod is not None and component == "predictor":  # Ready once it serves a version
            pod.status.conditions[0].status = "True" if self.sim.predictor_ready() else "False"
        return [copy.deepcopy(pod)] if pod else []

    def pod_now(self, pod: Any) -> Any:
        live = [p for p in (self.sim.trainer, self.sim.evaluator, self.sim.predictor) if p is not None]
        return next((copy.deepcopy(p) for p in live if p.metadata.uid == pod.metadata.uid), None)

    def workload_generations(self, component: str) -> dict[str, int]:
        return {f"Deployment/streamtrain-{component}": self.sim.generations[component]}

    def is_pod(self, pod: Any, live: Any) -> bool:
        return live is not None and pod.metadata.uid == live.metadata.uid

    @staticmethod
    def pod_ready(pod: Any) -> bool:
        return clusterkit.Cluster.pod_ready(pod)

    def ready_pod(self, component: str, timeout: float = 600) -> Any:
        return clusterkit.wait_for(
            f"a Ready {component} pod",
            lambda: next((p for p in self.pods(component) if self.pod_ready(p)), None),
            timeout,
        )

    def producer_jobs(self) -> list[Any]:
        return [self.sim.job] if self.sim.installed else []

    def configmap_env(self, component: str) -> dict[str, str]:
        env = {
            "STREAMTRAIN_TRAIN_TOPIC": TOPICS["train"],
            "STREAMTRAIN_TEST_TOPIC": TOPICS["test"],
            "STREAMTRAIN_INPUT_TOPIC": TOPICS["input"],
            "STREAMTRAIN_OUTPUT_TOPIC": TOPICS["output"],
            "STREAMTRAIN_BOOTSTRAP_SERVERS": "streamtrain-kafka-kafka-bootstrap.streamtrain.svc:9093",
            "STREAMTRAIN_HTTP_PORT": {"producer": "9101", "trainer": "9102", "evaluator": "9103",
                                      "predictor": "8501"}[component],
            "STREAMTRAIN_MODEL_DIR": "/data/models",
            "STREAMTRAIN_MODEL_NAME": "streamtrain",
            "STREAMTRAIN_LEARNING_RATE": self.sim.learning_rate,
            "STREAMTRAIN_COUNT": str(self.sim.count),
            "STREAMTRAIN_SERVE": "promoted",
            "STREAMTRAIN_OUTPUT_FORMAT": "json",
            "STREAMTRAIN_MODEL_FILES_TOPIC": TOPICS["model-files"],
        }
        if component == "trainer":
            env["STREAMTRAIN_SHIP_VERSIONS"] = str(self.sim.source == "kafka").lower()
        if component in ("evaluator", "predictor"):
            env["STREAMTRAIN_MODEL_SOURCE"] = self.sim.source
        return env

    def helm_values(self) -> dict[str, Any]:
        return {"persistence": {"keepOnUninstall": None, "accessMode": "ReadWriteOnce"},
                "model": {"source": self.sim.source}, "kafka": {"storage": dict(self.sim.kafka_storage)}}

    # exec and probes
    def exec(self, pod: Any, argv: list[str], timeout: float = 120) -> str:
        if argv == ["streamtrain", "inspect"]:
            return json.dumps(self.inspect("trainer"))
        if argv[:2] == ["streamtrain", "serving"]:
            return json.dumps(self.serving_command(pod, argv[2:]))
        if argv[:2] == ["id", "-u"] or argv[:3] == ["stat", "-c", "%u"]:
            return "10001\n"  # the user, and the owner of the image's directories that suite.IMAGE_USER_DIRS names
        if argv[0] == "cat" and argv[1].endswith("/manifest.json"):
            version = int(argv[1].split("/")[-2])
            assert any(v["version"] == version for v in self.sim.versions), f"no version {version}"
            damaged = "copy-differs" in self.sim.faults and self.is_pod(pod, self.sim.predictor)
            checksum = f"{version:064x}"[::-1] if damaged else f"{version:064x}"
            return json.dumps({"version": version, "input_width": WIDTH,
                               "files": {"model.keras": {"bytes": 4096, "sha256": checksum}}})
        writes_volume = "predictor-writes-volume" in self.sim.faults and self.is_pod(pod, self.sim.predictor)
        if argv[0] == "touch" and not argv[1].startswith("/tmp/") and not writes_volume:
            on_root = not argv[1].startswith("/data/")
            if on_root and "root-writable" in self.sim.faults:  # readOnlyRootFilesystem off: permissions decide
                if argv[1].startswith(suite.IMAGE_USER_DIRS):
                    return ""
                raise RuntimeError(f"touch: cannot touch '{argv[1]}': Permission denied")
            raise RuntimeError(f"touch: cannot touch '{argv[1]}': Read-only file system")
        return ""

    def serving_command(self, pod: Any, args: list[str]) -> dict[str, Any]:
        action = args[0]
        if action in ("pin", "unpin"):
            assert self.is_pod(pod, self.sim.evaluator), "only the evaluator's Kafka user may write the control topic"
            self.sim.pinned = int(args[1]) if action == "pin" else None
        return {"action": action, "versions_in_store": [v["version"] for v in self.sim.versions[-5:]],
                "serving": self.sim.serving(), "promoted": list(self.sim.promoted), "pinned": self.sim.pinned}

    def connect(self, pod: Any, host: str, port: int) -> str:
        return "open" if host.startswith("streamtrain-kafka-kafka-bootstrap") else "blocked"

    # the predictor's REST API and its topics
    def model_manifest(self, version: int, component: str = "predictor") -> dict[str, Any]:
        return dict(json.loads(self.exec(self.ready_pod(component), ["cat", f"/data/models/streamtrain/{version}/"
                                                                            "manifest.json"])))

    def serving(self, component: str, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.exec(self.ready_pod(component), ["streamtrain", "serving", *args])))

    def rest(self, component: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert component == "predictor" and path == "/v1/models/streamtrain:predict", path
        assert self.ready_pod("predictor")
        rows = body["instances"]
        if any(len(row) != WIDTH for row in rows) and "rest-accepts-a-wrong-width" not in self.sim.faults:
            return 400, {"error": f"expected rows of {WIDTH} features"}
        count = len(rows) - (1 if "rest-drops-an-instance" in self.sim.faults else 0)
        return 200, {"predictions": [[0.75]] * count}

    @contextlib.contextmanager
    def kafka_client(self, name: str, acls: list[dict[str, Any]], timeout: float = 300) -> Iterator[dict[str, str]]:
        self.sim.client_users.add(name)
        try:
            yield {"username": name, "password": "x"}
        finally:
            self.sim.client_users.discard(name)

    def predict_through_kafka(self, user: dict[str, str], rows: list[list[float]], timeout: float) -> dict[str, Any]:
        assert user["username"] in self.sim.client_users and all(len(row) == WIDTH for row in rows)
        delivered, predictions = {}, {}
        for i, _row in enumerate(rows):
            partition = i % PARTITIONS
            offset = self.sim.input_offsets[partition]
            self.sim.input_offsets[partition] += 1
            key = f"e2e-run-{i}"
            delivered[key] = [partition, offset]
            if "output-lost" in self.sim.faults and i % 10 == 3:
                continue
            value = {"probability": 0.25, "class": 0, "model_version": self.sim.serving(),
                     "topic": TOPICS["input"], "partition": partition, "offset": offset}
            count = 2 if "output-twice" in self.sim.faults and i == 7 else 1
            predictions[key] = {"value": json.dumps(value), "headers": {}, "count": count}
        return {"undelivered": 0, "errors": [], "delivered": delivered, "predictions": predictions}

    def watermarks(self, component: str, *topics: str) -> dict[str, dict[int, int]]:
        if topics[0] == TOPICS["model-files"]:
            shipped = self.sim.source == "kafka" and "nothing-shipped" not in self.sim.faults
            return {topics[0]: {0: 3 * len(self.sim.versions) if shipped else 0}}
        marks = self.sim.train if component == "trainer" else self.sim.test
        return {topics[0]: dict(marks)}

    def inspect(self, component: str = "trainer") -> dict[str, Any]:
        assert self.ready_pod(component)
        state = self.sim.state() if component == "trainer" else None
        return {"versions": [dict(v) for v in self.sim.versions], "checkpoint": state, "ledger_problems": []}

    def status(self, component: str, pod: Any = None) -> dict[str, Any]:
        if component == "predictor":
            assert self.ready_pod("predictor")
            return {"serving_version": self.sim.serving(), "promoted": list(self.sim.promoted),
                    "pinned": self.sim.pinned, "serve_policy": "promoted"}
        versions = self.sim.versions
        accuracy = 0.6 if "low-accuracy" in self.sim.faults else 0.95
        return {
            "model_version": versions[-1]["version"] if versions else None,
            "accuracy": accuracy if versions else None,
            "records_evaluated": sum(self.sim.test.values()),
            "versions_loaded": [v["version"] for v in versions],
        }

    def gone_or_exit_code(self, pod: Any) -> str | int | None:
        return None if pod.metadata.uid in self.sim.stopping else "gone"

    # helm
    def helm(self, *args: str, timeout: float = 900) -> str:
        if args[0] == "uninstall":
            self.sim.installed = False
            self.sim.trainer = self.sim.evaluator = self.sim.predictor = None
            self.sim.pvc = self.sim.keep_pvc and "delete-pvc" not in self.sim.faults
        return ""

    def helm_upgrade(self, values: dict[str, Any]) -> None:
        if "producer.seed" in values:
            self.sim.job = self.sim.new_job(int(values["producer.seed"]))
        if "trainer.learningRate" in values:
            self.sim.learning_rate = str(values["trainer.learningRate"])
            self.sim.stop_trainer()
            if "evaluator-rolls" in self.sim.faults:
                self.sim.evaluator = self.sim.new_pod("evaluator")
            if "predictor-rolls" in self.sim.faults:
                self.sim.predictor = self.sim.new_pod("predictor")
            for component in ("evaluator", "predictor"):
                # A new pod template: the generation moves at once, while the surge keeps the old pod for now.
                if f"{component}-rolls" in self.sim.faults or f"{component}-rolls-behind-a-surge" in self.sim.faults:
                    self.sim.generations[component] += 1


SUITE = [
    suite.test_kafka_cluster_is_ready,
    suite.test_topics_and_users_are_ready_with_their_secrets,
    suite.test_component_pods_are_ready_and_locked_down,
    suite.test_the_namespace_enforces_the_restricted_pod_security_standard,
    suite.test_network_policies_confine_the_components,
    suite.test_the_deployed_stream_is_trained_and_published,
    suite.test_evaluator_accuracy_passes_the_pipeline_threshold,
    suite.test_predictor_is_ready_serving_a_version_and_locked_down,
    suite.test_versions_reach_evaluators_and_predictors_on_any_node_over_kafka,
    suite.test_predictor_rest_api_answers_predictions_through_a_port_forward,
    suite.test_input_records_are_scored_into_the_output_topic_once,
    suite.test_a_pin_from_the_evaluator_moves_the_predictor_and_unpin_releases_it,
    suite.test_new_stream_arrives_and_a_trainer_restart_mid_stream_keeps_exactly_once,
    suite.test_helm_upgrade_rolls_the_trainer_and_keeps_the_model_lineage,
    suite.test_helm_uninstall_removes_the_release_and_keeps_the_pvc_only_if_asked,
]


@pytest.fixture
def simulate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeCluster]]:
    def make(faults: set[str], source: str = KIND_SOURCE, **options: Any) -> FakeCluster:
        sim = Sim(faults, source, **options)
        monkeypatch.setattr(clusterkit, "time", sim.clock)
        monkeypatch.setattr(suite, "time", sim.clock)
        for name in ("STREAMTRAIN_E2E_NETPOL", "STREAMTRAIN_E2E_UNINSTALL"):
            monkeypatch.delenv(name, raising=False)
        return FakeCluster(sim)

    yield make


def run(test: Callable[[Any], None], cluster: FakeCluster, skipped: list[str]) -> None:
    """Run one suite test; a skip (the Kafka-source test on a volume release) is noted, not raised."""
    try:
        test(cluster)
    except pytest.skip.Exception:
        skipped.append(test.__name__)


def test_the_kind_values_ship_the_versions_over_kafka() -> None:
    """The cluster suite exercises the source a cluster with only ReadWriteOnce storage needs on several nodes."""
    assert KIND_SOURCE == "kafka"


PERSISTENT_KAFKA = {"type": "persistent-claim", "size": "10Gi", "deleteClaim": False}


@pytest.mark.parametrize("trainer_kind", ["StatefulSet", "Deployment"])
@pytest.mark.parametrize(("source", "kafka_storage"), [("kafka", None), ("volume", None), ("kafka", PERSISTENT_KAFKA)],
                         ids=["kafka", "volume", "kafka-persistent-kafka"])
def test_the_suite_passes_on_a_healthy_release(
    simulate: Callable[..., FakeCluster], source: str, kafka_storage: dict[str, Any] | None, trainer_kind: str
) -> None:
    cluster = simulate(set(), source, trainer_kind=trainer_kind, kafka_storage=kafka_storage)
    skipped: list[str] = []
    for test in SUITE:
        run(test, cluster, skipped)
    assert skipped == ([] if source == "kafka" else [OVER_KAFKA])
    assert cluster.sim.versions[-1]["version"] >= 3 and not cluster.sim.installed
    # The model volume outlives the release only beside Kafka data that does (not on kind: ephemeral storage).
    assert cluster.sim.pvc == (kafka_storage is not None)
    # The suite's own KafkaUser is gone, and the pin it set was released.
    assert not cluster.sim.client_users and cluster.sim.pinned is None
    # Every KafkaTopic was unmanaged before its deletion (as `make undeploy` does): its topic follows Kafka's data.
    unmanaged = {"metadata": {"annotations": {"strimzi.io/managed": "false"}}}
    assert [(plural, body) for plural, _name, body in cluster.sim.patched] == [("kafkatopics", unmanaged)] * (
        9 if source == "kafka" else 8)


@pytest.mark.parametrize(
    ("fault", "failing_test", "message"),
    [
        ("no-pod-security", "test_the_namespace_enforces_the_restricted_pod_security_standard", "DID NOT RAISE"),
        ("root-writable", "test_component_pods_are_ready_and_locked_down", "DID NOT RAISE"),
        (
            "new-trainer-restarts",
            "test_new_stream_arrives_and_a_trainer_restart_mid_stream_keeps_exactly_once",
            "the new trainer pod restarted",
        ),
        ("low-accuracy", "test_evaluator_accuracy_passes_the_pipeline_threshold", "window accuracy >= 0.9"),
        ("trainer-stalls", "test_the_deployed_stream_is_trained_and_published", "the trainer to checkpoint all"),
        (
            "lose-records",
            "test_new_stream_arrives_and_a_trainer_restart_mid_stream_keeps_exactly_once",
            "the producer's records did not all arrive exactly once",
        ),
        (
            "retrain-after-restart",
            "test_new_stream_arrives_and_a_trainer_restart_mid_stream_keeps_exactly_once",
            "exactly-once ledger broken",
        ),
        (
            "sigkill",
            "test_new_stream_arrives_and_a_trainer_restart_mid_stream_keeps_exactly_once",
            "the trainer needed the whole grace period",
        ),
        (
            "evaluator-rolls",
            "test_helm_upgrade_rolls_the_trainer_and_keeps_the_model_lineage",
            "the evaluator rolled too",
        ),
        (
            "predictor-rolls",
            "test_helm_upgrade_rolls_the_trainer_and_keeps_the_model_lineage",
            "the predictor rolled too",
        ),
        (
            "evaluator-rolls-behind-a-surge",
            "test_helm_upgrade_rolls_the_trainer_and_keeps_the_model_lineage",
            "the evaluator rolled too",
        ),
        (
            "predictor-rolls-behind-a-surge",
            "test_helm_upgrade_rolls_the_trainer_and_keeps_the_model_lineage",
            "the predictor rolled too",
        ),
        ("gate-never-promotes", "test_predictor_is_ready_serving_a_version_and_locked_down", "a Ready predictor pod"),
        ("predictor-writes-volume", "test_predictor_is_ready_serving_a_version_and_locked_down", "DID NOT RAISE"),
        ("predictor-mounts-pvc", OVER_KAFKA, "mounts the PVCs ['streamtrain-models']"),
        ("evaluator-tied-to-trainer", OVER_KAFKA, "is tied to another pod's node"),
        ("nothing-shipped", OVER_KAFKA, "no record on streamtrain.model-files"),
        ("copy-differs", OVER_KAFKA, "the predictor's copy of"),
        (
            "rest-drops-an-instance",
            "test_predictor_rest_api_answers_predictions_through_a_port_forward",
            "8 instances, 7 predictions",
        ),
        ("rest-accepts-a-wrong-width", "test_predictor_rest_api_answers_predictions_through_a_port_forward", "(200, "),
        ("output-lost", "test_input_records_are_scored_into_the_output_topic_once", "no prediction of 5 of 50"),
        ("output-twice", "test_input_records_are_scored_into_the_output_topic_once", "2 committed predictions"),
        (
            "pin-ignored",
            "test_a_pin_from_the_evaluator_moves_the_predictor_and_unpin_releases_it",
            "the predictor to serve the pinned version",
        ),
        (
            "delete-pvc",
            "test_helm_uninstall_removes_the_release_and_keeps_the_pvc_only_if_asked",
            "the model PVC should be kept: True, but present: False",
        ),
        (
            "pvc-kept-beside-ephemeral-kafka",
            "test_helm_uninstall_removes_the_release_and_keeps_the_pvc_only_if_asked",
            "model volume kept: True, Kafka storage {'type': 'ephemeral'",
        ),
    ],
)
def test_each_fault_fails_the_test_meant_to_catch_it(
    simulate: Callable[..., FakeCluster], fault: str, failing_test: str, message: str
) -> None:
    # A fault of the model volume's readers is one of a release with model.source volume; a kept volume deleted
    # is one of a release whose Kafka data is kept too.
    cluster = simulate({fault}, "volume" if fault == "predictor-writes-volume" else KIND_SOURCE,
                       kafka_storage=PERSISTENT_KAFKA if fault == "delete-pvc" else None)
    for test in SUITE:
        if test.__name__ == failing_test:
            with pytest.raises((AssertionError, pytest.fail.Exception)) as error:
                test(cluster)  # type: ignore[arg-type]
            assert message in str(error.value)
            return
        test(cluster)  # type: ignore[arg-type]
    pytest.fail(f"{failing_test} is not in the suite")


def test_accuracy_threshold_and_data_match_the_pipeline_test() -> None:
    pipeline = clusterkit.REPO / "tests" / "integration" / "test_pipeline.py"
    if not pipeline.is_file():
        pytest.skip(f"{pipeline} is not there")
    found = re.search(r"^ACCURACY_THRESHOLD = ([0-9.]+)$", pipeline.read_text(), re.MULTILINE)
    assert found and float(found.group(1)) == suite.ACCURACY_THRESHOLD
    kind = yaml.safe_load((clusterkit.REPO / "k8s" / "streamtrain-kind-values.yaml").read_text())
    assert kind["producer"]["source"] == "breast-cancer" and kind["evaluator"]["window"] == 200
