"""The deployed system on a live cluster: Kafka, pods, the stream, versions, accuracy, the predictor (REST through
a port-forward, the input topic scored into the output topic, a pin), a trainer restart in the middle of a stream,
`helm upgrade` and `helm uninstall`. Run with `make e2e` after `make kind-up deploy`. The kind values set
model.source kafka: evaluators and predictors receive the versions over the model-files topic and mount no volume;
the suite checks whichever source the release has.

The tests run in file order and build on each other (the restart and upgrade tests start new streams);
each still checks its own preconditions. Assertions on exactly-once use the same helper as the
process-level pipeline test (tests/support/ledger.py).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from clusterkit import Cluster, claims, required_pod_affinity, volume_at, wait_for, when

pytestmark = pytest.mark.e2e

# The process-level pipeline test's threshold (tests/integration/test_pipeline.py; the kind values stream the
# same data set with the same window). Kept equal by a test in test_e2e_dryrun.py.
ACCURACY_THRESHOLD = 0.90
STREAM_TIMEOUT = float(os.environ.get("STREAMTRAIN_E2E_TIMEOUT", "900"))
# What the chart creates with the predictor on (the default): train, test, metrics, model-events, dead-letter,
# control, input and predictions (and model-files with model.source kafka); a KafkaUser per component.
TOPICS, USERS = 8, 4
# Input records the Kafka test writes, and how long it waits for all their predictions.
KAFKA_ROWS, KAFKA_TIMEOUT = 50, 180.0
# Directories of the image that belong to its user 10001 (docker/Dockerfile): a write there fails only because the
# root filesystem is read-only. A pod may mount a volume over one; `/` is the last resort (root's, never ours).
IMAGE_USER_DIRS = ("/var/lib/streamtrain/reports", "/data")


def check_exactly_once(state: dict[str, Any], produced: dict[str, dict[int, int]]) -> None:
    from tests.support.ledger import check_exactly_once as check

    check(state, produced)


def model_source(cluster: Cluster) -> str:
    """volume (evaluators and predictors mount the model volume read-only) or kafka (they receive the versions over
    the model-files topic into an emptyDir of their own): the chart's model.source, as the evaluator is told."""
    return cluster.configmap_env("evaluator").get("STREAMTRAIN_MODEL_SOURCE", "volume")


def topics(cluster: Cluster) -> dict[str, str]:
    env = cluster.configmap_env("trainer")
    return {"train": env["STREAMTRAIN_TRAIN_TOPIC"], "test": env["STREAMTRAIN_TEST_TOPIC"]}


def total(marks: dict[str, dict[int, int]]) -> int:
    return sum(sum(parts.values()) for parts in marks.values())


def stream_marks(cluster: Cluster) -> tuple[dict[str, dict[int, int]], dict[str, dict[int, int]]]:
    """(train, test) high watermarks, read with the trainer's and the evaluator's own credentials."""
    names = topics(cluster)
    return cluster.watermarks("trainer", names["train"]), cluster.watermarks("evaluator", names["test"])


def wait_jobs_done(cluster: Cluster, timeout: float = STREAM_TIMEOUT) -> list[Any]:
    def done() -> list[Any] | None:
        jobs = [j for j in cluster.producer_jobs() if j.metadata.deletion_timestamp is None]
        for job in jobs:
            failed = any(c.type == "Failed" and c.status == "True" for c in job.status.conditions or [])
            assert not failed, f"producer Job {job.metadata.name} failed: {job.status.conditions}"
        return jobs if jobs and all(job.status.succeeded for job in jobs) else None

    return wait_for("the producer Job to complete", done, timeout)


def wait_trained_all(
    cluster: Cluster, train: dict[str, dict[int, int]], timeout: float = STREAM_TIMEOUT
) -> dict[str, Any]:
    """The trainer's newest checkpoint once it accounts for every record in the train topic."""

    def caught_up() -> dict[str, Any] | None:
        state = cluster.inspect("trainer")["checkpoint"]
        if state and state["records_trained"] + state["records_dead_lettered"] >= total(train):
            return state
        return None

    return wait_for(f"the trainer to checkpoint all {total(train)} train records", caught_up, timeout)


def stream_trained_exactly_once(cluster: Cluster) -> dict[str, Any]:
    """Wait for the producer Jobs and the trainer; the checkpoint ledger covers the train topic once."""
    wait_jobs_done(cluster)
    train, _ = stream_marks(cluster)
    state = wait_trained_all(cluster, train)
    check_exactly_once(state, train)
    return state


def wait_new_trainer(cluster: Cluster, old: Any, timeout: float) -> Any:
    """A Ready trainer pod other than `old`, found by its labels and told apart by uid: the trainer's workload may
    be a Deployment (new pod, new name) or a StatefulSet (new pod, the same name)."""
    return wait_for(
        "a new Ready trainer pod",
        lambda: next(
            (p for p in cluster.pods("trainer") if p.metadata.uid != old.metadata.uid and cluster.pod_ready(p)), None
        ),
        timeout,
    )


def root_filesystem_probe(pod: Any) -> str:
    """A path to create that only a read-only root filesystem refuses: in a directory of the image that user 10001
    owns and that no volume covers (writing `/` would fail for that user anyway, read-only or not)."""
    mounts = [m.mount_path for c in pod.spec.containers for m in c.volume_mounts or []]
    for directory in IMAGE_USER_DIRS:
        if not any(directory == m or directory.startswith(m.rstrip("/") + "/") for m in mounts):
            return f"{directory}/root-filesystem-is-read-only"
    return "/root-filesystem-is-read-only"


def start_new_stream(cluster: Cluster) -> tuple[int, str]:
    """helm upgrade with a new producer seed: a new Job, hence a new bounded stream. Returns (count, job)."""
    before = {job.metadata.name for job in cluster.producer_jobs()}
    seed = int(time.time()) % 1_000_000
    cluster.helm_upgrade({"producer.seed": seed})
    job = wait_for(
        "the new producer Job",
        lambda: next((j for j in cluster.producer_jobs() if j.metadata.name not in before), None),
        120,
    )
    count = int(cluster.configmap_env("producer")["STREAMTRAIN_COUNT"])
    return count, job.metadata.name


# ---------------------------------------------------------------- Kafka and pods
def test_kafka_cluster_is_ready(cluster: Cluster) -> None:
    kafka = wait_for("Kafka Ready", lambda: when(cluster.kafka(), cluster.ready), STREAM_TIMEOUT)
    listeners = {lst["name"]: lst for lst in kafka["status"]["listeners"]}
    assert "clients" in listeners and listeners["clients"]["bootstrapServers"]
    pools = cluster.custom_objects("kafkanodepools")
    assert pools and all(p["status"]["replicas"] == p["spec"]["replicas"] for p in pools)


def test_topics_and_users_are_ready_with_their_secrets(cluster: Cluster) -> None:
    for plural in ("kafkatopics", "kafkausers"):
        objects = wait_for(
            f"{plural} Ready",
            lambda plural=plural: (
                objs if (objs := cluster.custom_objects(plural)) and all(cluster.ready(o) for o in objs) else None
            ),
            300,
        )
        topic_count = TOPICS + (1 if model_source(cluster) == "kafka" else 0)
        assert len(objects) == (topic_count if plural == "kafkatopics" else USERS)
    auth = cluster.custom_objects("kafkausers")[0]["spec"]["authentication"]["type"]
    for user in cluster.custom_objects("kafkausers"):
        secret = cluster.core.read_namespaced_secret(user["metadata"]["name"], cluster.namespace)
        assert ("password" if auth == "scram-sha-512" else "user.key") in secret.data
    ca = cluster.core.read_namespaced_secret(f"{cluster.kafka_name}-cluster-ca-cert", cluster.namespace)
    assert "ca.crt" in ca.data
    for name in cluster.core.list_namespaced_config_map(cluster.namespace, label_selector=cluster.selector()).items:
        assert not any(key.endswith("PASSWORD") for key in (name.data or {}))


def test_component_pods_are_ready_and_locked_down(cluster: Cluster) -> None:
    for component in ("trainer", "evaluator"):
        pod = cluster.ready_pod(component)
        assert cluster.exec(pod, ["id", "-u"]).strip() == "10001"
        probe = root_filesystem_probe(pod)
        if probe != "/root-filesystem-is-read-only":
            # The user may write there as far as permissions go: only readOnlyRootFilesystem can refuse it.
            assert cluster.exec(pod, ["stat", "-c", "%u", os.path.dirname(probe)]).strip() == "10001"
        # EROFS, not EACCES: the kernel reports a read-only mount before it checks permissions.
        with pytest.raises(RuntimeError, match="Read-only file system"):
            cluster.exec(pod, ["touch", probe])
        cluster.exec(pod, ["touch", "/tmp/writable"])
    if model_source(cluster) == "kafka":
        return  # no model volume in the evaluator, no node to share: test_versions_reach_..._over_kafka
    evaluator = cluster.ready_pod("evaluator")
    volume = os.path.dirname(cluster.configmap_env("evaluator")["STREAMTRAIN_MODEL_DIR"])
    cluster.exec(evaluator, ["ls", volume])
    with pytest.raises(RuntimeError, match="Read-only file system"):
        cluster.exec(evaluator, ["touch", f"{volume}/evaluator-must-not-write"])
    trainer_pod = cluster.ready_pod("trainer")
    evaluator_pod = cluster.ready_pod("evaluator")
    assert (
        trainer_pod.spec.node_name == evaluator_pod.spec.node_name
        or cluster.helm_values()["persistence"]["accessMode"] == "ReadWriteMany"
    )


def test_the_namespace_enforces_the_restricted_pod_security_standard(cluster: Cluster) -> None:
    """`make kind-up` labels the namespace; the API server then admits only restricted pods, ours included."""
    from kubernetes.client.exceptions import ApiException

    labels = cluster.core.read_namespace(cluster.namespace).metadata.labels or {}
    if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
        pytest.skip(f"namespace {cluster.namespace} does not enforce restricted (make kind-up POD_SECURITY=restricted)")
    assert cluster.ready_pod("trainer") and cluster.ready_pod("evaluator")
    root_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "streamtrain-e2e-root-probe"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"runAsUser": 0}}]},
    }
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_pod(cluster.namespace, root_pod, dry_run="All")
    assert error.value.status == 403 and "PodSecurity" in str(error.value.body)


def test_network_policies_confine_the_components(cluster: Cluster) -> None:
    if os.environ.get("STREAMTRAIN_E2E_NETPOL", "1") != "1":
        pytest.skip("STREAMTRAIN_E2E_NETPOL=0: this cluster's CNI does not enforce NetworkPolicies")
    evaluator = cluster.ready_pod("evaluator")
    trainer = cluster.ready_pod("trainer")
    bootstrap = cluster.configmap_env("evaluator")["STREAMTRAIN_BOOTSTRAP_SERVERS"].split(",")[0]
    host, port = bootstrap.rsplit(":", 1)
    assert cluster.connect(evaluator, host, int(port)) == "open", "the evaluator cannot reach Kafka"
    # Egress is Kafka and DNS only: the trainer's metrics port and the API server are out of reach.
    trainer_port = int(cluster.configmap_env("trainer")["STREAMTRAIN_HTTP_PORT"])
    assert cluster.connect(evaluator, trainer.status.pod_ip, trainer_port) == "blocked"
    assert cluster.connect(evaluator, "kubernetes.default.svc", 443) == "blocked"


# ---------------------------------------------------------------- the deployed stream
def test_the_deployed_stream_is_trained_and_published(cluster: Cluster) -> None:
    stream_trained_exactly_once(cluster)
    report = wait_for(
        "two published versions",
        lambda: when(cluster.inspect("trainer"), lambda r: len([v for v in r["versions"] if v["ok"]]) >= 2),
        300,
    )
    assert report["ledger_problems"] == []
    assert all(v["ok"] for v in report["versions"]), report["versions"]
    # Lineage: each version was trained on at least as many records as the one before it.
    trained = [v["records_trained"] for v in sorted(report["versions"], key=lambda v: v["version"])]
    assert trained == sorted(trained), report["versions"]
    # The evaluators see the same store, on the shared volume (read-only) or received over Kafka (a moment
    # later): the newest version, or a newer one.
    newest = max(v["version"] for v in report["versions"])
    wait_for(
        f"the evaluator's store to hold version {newest}",
        lambda: when(cluster.inspect("evaluator")["versions"],
                     lambda seen: bool(seen) and max(v["version"] for v in seen) >= newest),
        120,
    )


def test_evaluator_accuracy_passes_the_pipeline_threshold(cluster: Cluster) -> None:
    def good() -> dict[str, Any] | None:
        status = cluster.status("evaluator")
        accuracy = status.get("accuracy")
        return (
            status if status.get("model_version") and accuracy is not None and accuracy >= ACCURACY_THRESHOLD else None
        )

    try:
        status = wait_for(f"window accuracy >= {ACCURACY_THRESHOLD}", good, 300)
    except AssertionError as exc:
        pytest.fail(f"{exc}\nevaluator status: {cluster.status('evaluator')}")
    assert status["records_evaluated"] > 0 and len(status["versions_loaded"]) >= 1


# ---------------------------------------------------------------- the predictor
def serving_predictor(cluster: Cluster, timeout: float = 300) -> dict[str, Any]:
    """The /status of a Ready predictor once it serves a version."""
    return wait_for(
        "a predictor serving a version",
        lambda: when(cluster.status("predictor"), lambda s: s.get("serving_version") is not None),
        timeout,
    )


def input_width(cluster: Cluster) -> int:
    """The served version's input width, from its manifest in the model store (as the predictor reads it)."""

    def width() -> int | None:
        version = serving_predictor(cluster)["serving_version"]
        return int(cluster.model_manifest(version)["input_width"])

    return wait_for("the served version's manifest", width, 120)


def feature_rows(count: int, width: int) -> list[list[float]]:
    return [[round(((i * 7 + j * 3) % 11) / 10 - 0.5, 3) for j in range(width)] for i in range(count)]


def probability(prediction: Any) -> float:
    """A REST prediction as a probability: a number, a one-element list (TF Serving's shape for [n, 1] outputs)
    or an object with "probability"."""
    if isinstance(prediction, dict):
        prediction = prediction["probability"]
    if isinstance(prediction, list):
        assert len(prediction) == 1, prediction
        prediction = prediction[0]
    assert isinstance(prediction, int | float) and 0 <= prediction <= 1, prediction
    return float(prediction)


def output_record(value: str, output_format: str) -> dict[str, Any]:
    """One record of the output topic (json, or csv: class,probability,version)."""
    if output_format == "csv":
        label, prob, version = value.split(",")
        return {"class": int(label), "probability": float(prob), "model_version": int(version)}
    return dict(json.loads(value))


def test_predictor_is_ready_serving_a_version_and_locked_down(cluster: Cluster) -> None:
    """Ready means serving: with serve=promoted, a version the evaluator's gate promoted on the control topic."""
    pod = cluster.ready_pod("predictor", timeout=STREAM_TIMEOUT)
    status = serving_predictor(cluster)
    env = cluster.configmap_env("predictor")
    if status.get("pinned") is None and env["STREAMTRAIN_SERVE"] == "promoted":
        assert status["serving_version"] in status["promoted"], status
    assert cluster.exec(pod, ["id", "-u"]).strip() == "10001"
    with pytest.raises(RuntimeError):
        cluster.exec(pod, ["touch", "/root-filesystem-is-read-only"])
    cluster.exec(pod, ["touch", "/tmp/writable"])
    if model_source(cluster) == "volume":  # with kafka its own copy: test_versions_reach_..._over_kafka
        volume = os.path.dirname(env["STREAMTRAIN_MODEL_DIR"])
        with pytest.raises(RuntimeError, match="Read-only file system"):
            cluster.exec(pod, ["touch", f"{volume}/predictor-must-not-write"])
        trainer = cluster.ready_pod("trainer")
        assert (
            pod.spec.node_name == trainer.spec.node_name
            or cluster.helm_values()["persistence"]["accessMode"] == "ReadWriteMany"
        )
    if os.environ.get("STREAMTRAIN_E2E_NETPOL", "1") == "1":
        assert cluster.connect(pod, "kubernetes.default.svc", 443) == "blocked"


def test_versions_reach_evaluators_and_predictors_on_any_node_over_kafka(cluster: Cluster) -> None:
    """model.source kafka (the kind values): evaluators and predictors mount no PVC and are tied to no node; the
    trainer ships every version on the model-files topic, each of them rebuilds the store in an emptyDir of its own,
    and the version the predictor serves is one the trainer published, manifest (every file's checksum) and all."""
    if model_source(cluster) != "kafka":
        pytest.skip("model.source is volume: evaluators and predictors read the model volume (tests above)")
    trainer_env = cluster.configmap_env("trainer")
    assert trainer_env["STREAMTRAIN_SHIP_VERSIONS"] == "true"
    topic = trainer_env["STREAMTRAIN_MODEL_FILES_TOPIC"]
    for component in ("evaluator", "predictor"):
        env = cluster.configmap_env(component)
        assert (env["STREAMTRAIN_MODEL_SOURCE"], env["STREAMTRAIN_MODEL_FILES_TOPIC"]) == ("kafka", topic)
        pods = cluster.pods(component)
        assert pods, f"no {component} pod"
        for pod in pods:
            name = pod.metadata.name
            assert claims(pod) == [], f"{name} mounts the PVCs {claims(pod)}"
            volume = volume_at(pod, env["STREAMTRAIN_MODEL_DIR"])
            assert volume is not None and volume.empty_dir is not None, f"{name}: the model dir is on {volume}"
            assert required_pod_affinity(pod) == [], f"{name} is tied to another pod's node"
    # The trainer's records are on the topic, and the predictor's own Kafka user may read it.
    assert total(cluster.watermarks("predictor", topic)) > 0, f"no record on {topic}"
    evaluator = wait_for(
        "the evaluator scoring a version",
        lambda: when(cluster.status("evaluator"), lambda s: s.get("model_version") is not None),
        300,
    )
    served = serving_predictor(cluster)["serving_version"]
    published = {v["version"] for v in cluster.inspect("trainer")["versions"] if v["ok"]}
    assert served in published, f"the predictor serves {served}; the trainer's store has {sorted(published)}"
    assert evaluator["model_version"] <= max(published), (evaluator["model_version"], sorted(published))
    original = cluster.model_manifest(served, "trainer")
    assert cluster.model_manifest(served, "predictor") == original, f"the predictor's copy of {served} differs"
    assert cluster.model_manifest(served, "evaluator") == original, f"the evaluator's copy of {served} differs"


def test_predictor_rest_api_answers_predictions_through_a_port_forward(cluster: Cluster) -> None:
    name = cluster.configmap_env("predictor")["STREAMTRAIN_MODEL_NAME"]
    width = input_width(cluster)
    rows = feature_rows(8, width)
    code, body = cluster.rest("predictor", f"/v1/models/{name}:predict", {"instances": rows})
    assert code == 200, body
    predictions = [probability(p) for p in body["predictions"]]
    assert len(predictions) == len(rows), f"{len(rows)} instances, {len(predictions)} predictions: {body}"
    # A row of the wrong width is the client's error, answered as such.
    code, body = cluster.rest("predictor", f"/v1/models/{name}:predict", {"instances": [[0.5] * (width + 1)]})
    assert 400 <= code < 500, (code, body)


def test_input_records_are_scored_into_the_output_topic_once(cluster: Cluster) -> None:
    """A client of the predictor (a KafkaUser of the test's: Write on input, Read on the predictions) writes
    rows from a predictor pod; each gets exactly one committed prediction, keyed by its key and naming it."""
    env = cluster.configmap_env("predictor")
    width = input_width(cluster)

    def acl(kind: str, name: str, *ops: str, pattern: str = "literal") -> dict[str, Any]:
        return {"resource": {"type": kind, "name": name, "patternType": pattern}, "operations": list(ops)}

    acls = [
        acl("topic", env["STREAMTRAIN_INPUT_TOPIC"], "Write", "Describe"),
        acl("topic", env["STREAMTRAIN_OUTPUT_TOPIC"], "Read", "Describe"),
        acl("group", "streamtrain-e2e-", "Read", pattern="prefix"),
    ]
    with cluster.kafka_client(f"{cluster.release}-e2e-client", acls) as user:
        result = cluster.predict_through_kafka(user, feature_rows(KAFKA_ROWS, width), KAFKA_TIMEOUT)
    assert result["undelivered"] == 0 and len(result["delivered"]) == KAFKA_ROWS, result
    missing = set(result["delivered"]) - set(result["predictions"])
    assert not missing, (
        f"no prediction of {len(missing)} of {KAFKA_ROWS} input records on {env['STREAMTRAIN_OUTPUT_TOPIC']} "
        f"within {KAFKA_TIMEOUT:.0f}s"
    )
    for key, (partition, offset) in result["delivered"].items():
        seen = result["predictions"][key]
        assert seen["count"] == 1, f"{key}: {seen['count']} committed predictions"
        record = output_record(seen["value"], env["STREAMTRAIN_OUTPUT_FORMAT"])
        assert 0 <= record["probability"] <= 1 and record["class"] in (0, 1), record
        assert isinstance(record["model_version"], int), record
        if "offset" in record:
            assert (record["topic"], record["partition"], record["offset"]) == (
                env["STREAMTRAIN_INPUT_TOPIC"], partition, offset), record


def test_a_pin_from_the_evaluator_moves_the_predictor_and_unpin_releases_it(cluster: Cluster) -> None:
    """Operators write serving decisions where the Kafka user may (the evaluator's); predictors follow them."""
    serve = cluster.configmap_env("predictor")["STREAMTRAIN_SERVE"]
    before = cluster.serving("predictor", "status", "--serve", serve)
    assert before["pinned"] is None, before
    others = [v for v in before["versions_in_store"] if v != before["serving"]]
    target = max(others) if others else before["serving"]
    try:
        assert cluster.serving("evaluator", "pin", str(target), "--serve", serve)["pinned"] == target
        wait_for(
            f"the predictor to serve the pinned version {target}",
            lambda: when(cluster.status("predictor"), lambda s: s["pinned"] == s["serving_version"] == target),
            120,
        )
    finally:
        cluster.serving("evaluator", "unpin", "--serve", serve)
    wait_for(
        "the predictor to follow the unpin",
        lambda: when(cluster.status("predictor"), lambda s: s["pinned"] is None and s["serving_version"] is not None),
        120,
    )
    assert cluster.serving("predictor", "status", "--serve", serve)["pinned"] is None


# ---------------------------------------------------------------- faults and lifecycle
def test_new_stream_arrives_and_a_trainer_restart_mid_stream_keeps_exactly_once(cluster: Cluster) -> None:
    wait_jobs_done(cluster)
    train_before, test_before = stream_marks(cluster)
    count, job = start_new_stream(cluster)
    old = cluster.ready_pod("trainer")
    old_state = cluster.inspect("trainer")["checkpoint"]
    done_before = old_state["records_trained"] + old_state["records_dead_lettered"] if old_state else 0
    # Mid-stream: the trainer has checkpointed some of the new records, the Job still runs.
    wait_for(
        "the trainer to train on the new stream",
        lambda: (
            (s := cluster.inspect("trainer")["checkpoint"])
            and s["records_trained"] + s["records_dead_lettered"] > done_before + 100
        ),
        300,
        interval=2,
    )
    assert not cluster.batch.read_namespaced_job(job, cluster.namespace).status.succeeded, (
        "the stream ended before the restart: lower producer.rate or raise producer.count"
    )
    grace = old.spec.termination_grace_period_seconds
    deleted_at = time.monotonic()
    cluster.core.delete_namespaced_pod(old.metadata.name, cluster.namespace)
    exit_code = wait_for(
        "the old trainer pod to stop",
        lambda: cluster.gone_or_exit_code(old),
        grace + 60,
        interval=1,
    )
    # SIGTERM handling: the trainer finished its batch, checkpointed and exited by itself (0), before the
    # grace period ran out and the kubelet would have killed it.
    assert time.monotonic() - deleted_at < grace, f"the trainer needed the whole grace period ({grace}s)"
    assert exit_code == "gone", f"the trainer exited {exit_code} on SIGTERM"
    new = wait_new_trainer(cluster, old, grace + 600)
    wait_jobs_done(cluster)
    train_after, test_after = stream_marks(cluster)
    assert total(train_after) + total(test_after) - total(train_before) - total(test_before) == count, (
        "the producer's records did not all arrive exactly once"
    )
    state = wait_trained_all(cluster, train_after)
    check_exactly_once(state, train_after)
    # The pod as it is now: the object wait_new_trainer returned was read before the stream was trained.
    now = cluster.pod_now(new)
    assert now is not None, f"the new trainer pod {new.metadata.name} was replaced"
    restarts = sum(cs.restart_count for cs in now.status.container_statuses or [])
    assert restarts == 0, "the new trainer pod restarted"


def test_helm_upgrade_rolls_the_trainer_and_keeps_the_model_lineage(cluster: Cluster) -> None:
    trainer = cluster.ready_pod("trainer")
    generations = {component: cluster.workload_generations(component) for component in ("evaluator", "predictor")}
    assert all(generations.values()), generations
    before = cluster.inspect("trainer")
    last_version = max(v["version"] for v in before["versions"])
    old_rate = cluster.configmap_env("trainer")["STREAMTRAIN_LEARNING_RATE"]
    new_rate = 0.0005 if old_rate == "auto" else float(old_rate) / 2  # (auto: 0.001 for the chart's mlp)
    seed = int(time.time()) % 1_000_000
    cluster.helm_upgrade({"trainer.learningRate": new_rate, "producer.seed": seed})
    assert float(cluster.configmap_env("trainer")["STREAMTRAIN_LEARNING_RATE"]) == new_rate
    wait_new_trainer(cluster, trainer, 900)
    # Their pod templates did not change: a pod that outlived the upgrade would prove nothing (a rollout keeps the
    # old pods until the new ones are Ready).
    for component, generation in generations.items():
        assert cluster.workload_generations(component) == generation, f"the {component} rolled too"
    state = stream_trained_exactly_once(cluster)
    after = wait_for(
        "a version published after the upgrade",
        lambda: when(cluster.inspect("trainer"), lambda r: max(v["version"] for v in r["versions"]) > last_version),
        300,
    )
    # Lineage: numbering continues after the upgrade (no restart from 1), and the new versions carry on from
    # the checkpointed model (records trained never go back).
    new_versions = [v for v in after["versions"] if v["version"] > last_version]
    assert new_versions and all(v["ok"] for v in new_versions)
    trained = [v["records_trained"] for v in sorted(after["versions"], key=lambda v: v["version"])]
    assert trained == sorted(trained), after["versions"]
    assert min(v["records_trained"] for v in new_versions) >= before["checkpoint"]["records_trained"]
    assert state["records_trained"] >= before["checkpoint"]["records_trained"]


def test_helm_uninstall_removes_the_release_and_keeps_the_pvc_only_if_asked(cluster: Cluster) -> None:
    if os.environ.get("STREAMTRAIN_E2E_UNINSTALL", "1") != "1":
        pytest.skip("STREAMTRAIN_E2E_UNINSTALL=0 keeps the release")
    claim = next(
        p
        for p in cluster.core.list_namespaced_persistent_volume_claim(
            cluster.namespace, label_selector=cluster.selector("model-store")
        ).items
    )
    keep = (claim.metadata.annotations or {}).get("helm.sh/resource-policy") == "keep"
    # The checkpoint holds Kafka offsets: the volume may outlive the release only beside Kafka data that does.
    storage = cluster.helm_values()["kafka"]["storage"]
    kafka_kept = storage["type"] == "persistent-claim" and not storage.get("deleteClaim", False)
    assert keep == kafka_kept, f"model volume kept: {keep}, Kafka storage {storage}"
    # As `make undeploy`: KafkaTopics/KafkaUsers first, while the entity operator can remove their finalizers; the
    # KafkaTopics unmanaged before, so that their topics share the fate of Kafka's storage.
    for obj in cluster.custom_objects("kafkatopics"):
        cluster.custom.patch_namespaced_custom_object(
            "kafka.strimzi.io", "v1", cluster.namespace, "kafkatopics", obj["metadata"]["name"],
            {"metadata": {"annotations": {"strimzi.io/managed": "false"}}},
        )
    for plural in ("kafkatopics", "kafkausers"):
        for obj in cluster.custom_objects(plural):
            cluster.custom.delete_namespaced_custom_object(
                "kafka.strimzi.io", "v1", cluster.namespace, plural, obj["metadata"]["name"]
            )
    wait_for(
        "KafkaTopics and KafkaUsers to go",
        lambda: not cluster.custom_objects("kafkatopics") and not cluster.custom_objects("kafkausers"),
        300,
    )
    cluster.helm("uninstall", cluster.release, "--wait", "--timeout", "10m")
    selector = cluster.selector()

    def gone() -> bool:
        listings = [
            cluster.apps.list_namespaced_deployment(cluster.namespace, label_selector=selector).items,
            cluster.apps.list_namespaced_stateful_set(cluster.namespace, label_selector=selector).items,
            cluster.batch.list_namespaced_job(cluster.namespace, label_selector=selector).items,
            cluster.core.list_namespaced_service(cluster.namespace, label_selector=selector).items,
            cluster.core.list_namespaced_config_map(cluster.namespace, label_selector=selector).items,
            cluster.core.list_namespaced_service_account(cluster.namespace, label_selector=selector).items,
            cluster.net.list_namespaced_network_policy(cluster.namespace, label_selector=selector).items,
            cluster.custom_objects("kafkas"),
            cluster.custom_objects("kafkanodepools"),
            [p for p in cluster.core.list_namespaced_pod(cluster.namespace, label_selector=selector).items],
        ]
        return not any(listings)

    wait_for("every object of the release to be deleted", gone, 600)
    claims = {p.metadata.name for p in cluster.core.list_namespaced_persistent_volume_claim(cluster.namespace).items}
    assert (claim.metadata.name in claims) == keep, (
        f"the model PVC should be kept: {keep}, but present: {claim.metadata.name in claims}"
    )
