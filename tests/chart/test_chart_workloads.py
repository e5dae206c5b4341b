"""What each workload and Strimzi resource must be: one trainer, shared volume, ACLs, sizing, options."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from chartkit import (
    CHART,
    RELEASE,
    REPO,
    SETTINGS,
    VALUE_SETS,
    component_workload,
    deep_merge,
    effective_env,
    notes,
    of_kind,
    one,
    pod_spec,
    render,
    render_raw,
    selector_matches,
    st_config,
)


# ---------------------------------------------------------------- trainer, evaluator, producer
def test_trainer_is_one_statefulset_replica_with_time_to_checkpoint(
    rendered: list[dict[str, Any]],
) -> None:
    # A StatefulSet replaces a deleted or evicted pod only once it is gone (a Deployment at once, even Recreate):
    # Kubernetes never runs two trainers on the model volume.
    trainer = component_workload(rendered, "trainer")
    assert trainer["kind"] == "StatefulSet"
    assert trainer["spec"]["replicas"] == 1
    assert trainer["spec"]["podManagementPolicy"] == "OrderedReady"
    assert trainer["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    assert "volumeClaimTemplates" not in trainer["spec"]  # the one PVC the chart creates (or an existing claim)
    services = {d["metadata"]["name"] for d in rendered if d["kind"] == "Service"}
    assert trainer["spec"]["serviceName"] in services
    env = effective_env(rendered, trainer)["trainer"]
    grace = pod_spec(trainer)["terminationGracePeriodSeconds"]
    assert grace > float(env["STREAMTRAIN_STOP_GRACE_SECONDS"])


def _model_volume(workload: dict[str, Any], model_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, mount) of the pod's volume that holds the model directory."""
    spec = pod_spec(workload)
    mounts = [m for m in spec["containers"][0]["volumeMounts"]
              if model_dir.startswith(m["mountPath"].rstrip("/") + "/")]
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    return next(v for v in spec["volumes"] if v["name"] == mount["name"]), mount


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), (64, 64)])
def test_trainer_batch_size_is_auto_or_a_number(value: Any, expected: Any) -> None:
    docs = render({"trainer": {"batchSize": value}})
    env = effective_env(docs, component_workload(docs, "trainer"))["trainer"]
    assert st_config.TrainerSettings(batch_size=env["STREAMTRAIN_BATCH_SIZE"]).batch_size == expected


def test_shared_model_volume_rw_for_trainer_ro_for_evaluators_and_predictors(rendered: list[dict[str, Any]]) -> None:
    pvc = of_kind(rendered, "PersistentVolumeClaim")
    assert len(pvc) == 1
    claim = pvc[0]["metadata"]["name"]
    mounts = {}
    components = ["trainer", "evaluator", "predictor"]
    if effective_env(rendered, component_workload(rendered, "evaluator"))["evaluator"]["STREAMTRAIN_MODEL_SOURCE"] \
            == "kafka":  # their own copies: test_versions_over_kafka_*
        components = ["trainer"]
    for component in components:
        workload = component_workload(rendered, component)
        spec = pod_spec(workload)
        volume = next(v for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim)
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
        mounts[component] = (
            volume["persistentVolumeClaim"].get("readOnly", False),
            mount.get("readOnly", False),
            mount,
        )
        env = effective_env(rendered, workload)[component]
        assert env["STREAMTRAIN_MODEL_DIR"].startswith(mount["mountPath"] + "/")
        if component == "trainer":
            assert env["STREAMTRAIN_CHECKPOINT_DIR"].startswith(mount["mountPath"] + "/")
        elif component == "evaluator":
            report = env["STREAMTRAIN_REPORT_DIR"]
            report_mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == report)
            assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == report_mount["name"])
    assert mounts["trainer"][:2] == (False, False)
    if "evaluator" in mounts:
        assert mounts["evaluator"][:2] == (True, True)
        assert mounts["predictor"][:2] == (True, True)
    # Predictors read the versions the trainer publishes: the same model directory and name.
    envs = {c: effective_env(rendered, component_workload(rendered, c))[c] for c in ("trainer", "predictor")}
    for name in ("STREAMTRAIN_MODEL_DIR", "STREAMTRAIN_MODEL_NAME"):
        assert envs["trainer"][name] == envs["predictor"][name]
    producer = pod_spec(component_workload(rendered, "producer"))
    assert not any("persistentVolumeClaim" in v for v in producer["volumes"])


def test_evaluators_colocate_with_the_trainer_for_readwriteonce() -> None:
    docs = render({})
    trainer_labels = component_workload(docs, "trainer")["spec"]["template"]["metadata"]["labels"]
    terms = pod_spec(component_workload(docs, "evaluator"))["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert [t["topologyKey"] for t in terms] == ["kubernetes.io/hostname"]
    assert selector_matches(terms[0]["labelSelector"], trainer_labels)
    production = render(VALUE_SETS["production"])
    assert "affinity" not in pod_spec(component_workload(production, "evaluator"))
    assert one(production, "PersistentVolumeClaim", f"{RELEASE}-models")["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("source", ["volume", "kafka"])
def test_versions_over_kafka_env_and_mounts(source: str) -> None:
    """model.source kafka: the trainer ships every version (and still owns the volume); evaluators and predictors
    receive them into an emptyDir at the same path, mount no PVC and are tied to no node. volume: as before."""
    kafka = source == "kafka"
    docs = render({"model": {"source": source, "localSizeLimit": "3Gi"}, "persistence": {"colocateEvaluators": True}})
    claim = f"{RELEASE}-models"
    envs = {c: effective_env(docs, component_workload(docs, c))[c] for c in ("trainer", "evaluator", "predictor")}
    assert envs["trainer"]["STREAMTRAIN_SHIP_VERSIONS"] == ("true" if kafka else "false")
    assert st_config.TrainerSettings(ship_versions=envs["trainer"]["STREAMTRAIN_SHIP_VERSIONS"]).ship_versions is kafka
    trainer_volume, trainer_mount = _model_volume(component_workload(docs, "trainer"),
                                                  envs["trainer"]["STREAMTRAIN_MODEL_DIR"])
    assert trainer_volume["persistentVolumeClaim"] == {"claimName": claim} and not trainer_mount.get("readOnly")
    for component in ("evaluator", "predictor"):
        workload = component_workload(docs, component)
        spec, env = pod_spec(workload), envs[component]
        assert env["STREAMTRAIN_MODEL_SOURCE"] == source
        assert SETTINGS[component](model_source=env["STREAMTRAIN_MODEL_SOURCE"]).model_source == source
        # The same directory and name as the trainer's: a received version lands where the trainer published it.
        for name in ("STREAMTRAIN_MODEL_DIR", "STREAMTRAIN_MODEL_NAME", "STREAMTRAIN_MODEL_FILES_TOPIC"):
            assert env[name] == envs["trainer"][name], name
        volume, mount = _model_volume(workload, env["STREAMTRAIN_MODEL_DIR"])
        claims = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
        required = spec.get("affinity", {}).get("podAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        if kafka:
            assert claims == [], f"{component} mounts a PVC: {claims}"
            assert volume["emptyDir"] == {"sizeLimit": "3Gi"}
            assert not mount.get("readOnly"), f"{component} must write the versions it receives"
            assert not required, f"{component} is tied to the trainer's node: {required}"
        else:
            assert claims == [volume] and volume["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
            assert mount["readOnly"] is True
            assert bool(required) == (component == "evaluator")


def test_changing_the_model_source_rolls_the_model_users_but_starts_no_new_stream() -> None:
    def checksum(docs: list[dict[str, Any]], component: str) -> str:
        return component_workload(docs, component)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    volume, kafka = render({}), render({"model": {"source": "kafka"}})
    for component in ("trainer", "evaluator", "predictor"):
        assert checksum(volume, component) != checksum(kafka, component), component
    producer = (component_workload(volume, "producer"), component_workload(kafka, "producer"))
    assert producer[0]["metadata"]["name"] == producer[1]["metadata"]["name"], "a new producer Job is a new stream"


def test_user_affinity_is_kept_next_to_colocation() -> None:
    anti = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 1,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "evaluator"}},
                    },
                }
            ]
        }
    }
    affinity = pod_spec(component_workload(render({"evaluator": {"affinity": anti}}), "evaluator"))["affinity"]
    assert affinity["podAntiAffinity"] == anti["podAntiAffinity"] and "podAffinity" in affinity


def test_producer_job_for_a_bounded_stream_deployment_for_an_endless_one() -> None:
    job = component_workload(render({}), "producer")
    assert job["kind"] == "Job" and pod_spec(job)["restartPolicy"] == "Never"
    docs = render({})
    assert int(effective_env(docs, job)["producer"]["STREAMTRAIN_COUNT"]) > 0
    docs = render(VALUE_SETS["producer-deployment"])
    deployment = component_workload(docs, "producer")
    env = effective_env(docs, deployment)["producer"]
    assert deployment["kind"] == "Deployment" and env["STREAMTRAIN_COUNT"] == "0"
    assert env["STREAMTRAIN_SOURCE"] == "drift" and env["STREAMTRAIN_RATE"] == "500"
    assert not any(d["kind"] == "Job" for d in docs)


def test_producer_can_be_left_out() -> None:
    docs = render({"producer": {"enabled": False}})
    assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "producer"]


def test_predictor_can_be_left_out_with_its_topics_but_not_the_control_topic() -> None:
    docs = render({"predictor": {"enabled": False, "autoscaling": {"enabled": True}}})
    assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "predictor"]
    topics = {t["spec"]["topicName"] for t in of_kind(docs, "KafkaTopic")}
    assert "streamtrain.control" in topics and not {"streamtrain.input", "streamtrain.predictions"} & topics
    acls = _acls(docs)
    assert set(acls) == {"producer", "trainer", "evaluator"}
    assert ("topic", "streamtrain.control", "Write") in acls["evaluator"]


def test_predictor_is_a_deployment_that_rolls_without_a_gap(default_docs: list[dict[str, Any]]) -> None:
    predictor = component_workload(default_docs, "predictor")
    assert predictor["kind"] == "Deployment" and predictor["spec"]["replicas"] == 1
    assert predictor["spec"]["strategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    container = pod_spec(predictor)["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 8501, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = effective_env(default_docs, predictor)["predictor"]
    assert env["STREAMTRAIN_HTTP_PORT"] == "8501" and env["STREAMTRAIN_SERVE"] == "promoted"
    three = component_workload(render({"predictor": {"replicas": 3}}), "predictor")
    assert three["spec"]["replicas"] == 3


def test_predictor_autoscaling_off_by_default_and_owning_the_replicas_when_on() -> None:
    assert not of_kind(render({}), "HorizontalPodAutoscaler")
    docs = render(VALUE_SETS["predictor-autoscaling"])
    hpa = one(docs, "HorizontalPodAutoscaler", f"{RELEASE}-predictor")
    predictor = component_workload(docs, "predictor")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": predictor["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]
    # The HPA owns the count: a replicas field would be reset by every `helm upgrade`.
    assert "replicas" not in predictor["spec"]
    # CPU utilization is measured against the request, which every container has.
    assert pod_spec(predictor)["containers"][0]["resources"]["requests"]["cpu"]


@pytest.mark.parametrize(
    ("values", "pdb"),
    [
        ({}, False),
        ({"predictor": {"replicas": 2}}, True),
        ({"predictor": {"replicas": 2, "pdb": {"enabled": False}}}, False),
        ({"predictor": {"autoscaling": {"enabled": True, "minReplicas": 1}}}, False),
        ({"predictor": {"replicas": 1, "autoscaling": {"enabled": True, "minReplicas": 2}}}, True),
    ],
)
def test_predictor_pdb_only_when_it_can_help(values: dict[str, Any], pdb: bool) -> None:
    docs = render(values)
    found = [d for d in of_kind(docs, "PodDisruptionBudget") if d["metadata"]["name"] == f"{RELEASE}-predictor"]
    assert bool(found) == pdb
    if found:
        assert found[0]["spec"]["maxUnavailable"] == 1
        labels = component_workload(docs, "predictor")["spec"]["template"]["metadata"]["labels"]
        assert selector_matches(found[0]["spec"]["selector"], labels)
        for other in ("trainer", "evaluator"):
            other_labels = component_workload(docs, other)["spec"]["template"]["metadata"]["labels"]
            assert not selector_matches(found[0]["spec"]["selector"], other_labels)


def test_evaluator_pdb_only_when_it_can_help() -> None:
    assert not of_kind(render({}), "PodDisruptionBudget")
    docs = render(VALUE_SETS["production"])
    pdb = one(docs, "PodDisruptionBudget", f"{RELEASE}-evaluator")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selector_matches(
        pdb["spec"]["selector"],
        component_workload(docs, "evaluator")["spec"]["template"]["metadata"]["labels"],
    )
    assert not selector_matches(
        pdb["spec"]["selector"], component_workload(docs, "trainer")["spec"]["template"]["metadata"]["labels"]
    )


def _kept(docs: list[dict[str, Any]]) -> bool:
    claim = one(docs, "PersistentVolumeClaim", f"{RELEASE}-models")
    return claim["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep"


def _kafka_data_outlives_uninstall(docs: list[dict[str, Any]]) -> bool:
    """Strimzi keeps a node pool's volumes when the cluster is deleted only as persistent claims without deleteClaim."""
    volumes = [volume for pool in of_kind(docs, "KafkaNodePool") for volume in pool["spec"]["storage"].get(
        "volumes", [pool["spec"]["storage"]])]  # JBOD, or one volume
    return bool(volumes) and all(v["type"] == "persistent-claim" and not v.get("deleteClaim", False) for v in volumes)


def test_the_model_volume_outlives_uninstall_exactly_when_kafkas_data_does(rendered: list[dict[str, Any]]) -> None:
    """Every value set, the chart's defaults and the kind values included: the checkpoint holds Kafka offsets, so a
    model volume kept beside Kafka data that goes (ephemeral storage) would stop the next install's trainer with
    offset loss, and a volume dropped beside kept Kafka data would lose the model that data was trained into."""
    if not of_kind(rendered, "PersistentVolumeClaim"):
        return  # an existing claim: the chart neither creates nor deletes it
    assert _kept(rendered) == _kafka_data_outlives_uninstall(rendered)


def test_the_shipped_values_files_keep_no_model_volume_beside_ephemeral_kafka() -> None:
    for path in [CHART / "values.yaml", *sorted((REPO / "k8s").glob("streamtrain*values*.yaml"))]:
        values = yaml.safe_load(path.read_text())
        docs = render(values if path.parent != CHART else {})
        assert _kept(docs) == _kafka_data_outlives_uninstall(docs), path
        if path.parent != CHART:
            # Left to the chart, which derives it from Kafka's storage; a `true` here fails the render.
            assert values.get("persistence", {}).get("keepOnUninstall") is None, path


def test_pvc_kept_on_uninstall_only_beside_kafka_data_that_is_kept() -> None:
    persistent = {"kafka": {"storage": {"type": "persistent-claim", "size": "10Gi", "deleteClaim": False}}}
    assert not _kept(render({}))  # ephemeral Kafka storage (the default)
    assert _kept(render(persistent))
    assert not _kept(render(deep_merge(persistent, {"kafka": {"storage": {"deleteClaim": True}}})))
    assert not _kept(render(deep_merge(persistent, {"persistence": {"keepOnUninstall": False}})))
    assert _kept(render(deep_merge(persistent, {"persistence": {"keepOnUninstall": True}})))
    assert "kubectl -n streamtrain delete pvc streamtrain-models" in notes(persistent)
    assert "delete pvc" not in notes({})
    existing = render({"persistence": {"existingClaim": "my-models"}})
    assert not of_kind(existing, "PersistentVolumeClaim")
    volume = next(
        v for v in pod_spec(component_workload(existing, "trainer"))["volumes"] if "persistentVolumeClaim" in v
    )
    assert volume["persistentVolumeClaim"]["claimName"] == "my-models"


def test_a_changed_training_value_rolls_only_the_trainer() -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        docs = render(values)
        return {
            c: component_workload(docs, c)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for c in ("producer", "trainer", "evaluator", "predictor")
        }

    before, after = checksums({}), checksums({"trainer": {"learningRate": 0.0005}})
    assert before["trainer"] != after["trainer"]
    assert before["evaluator"] == after["evaluator"] and before["producer"] == after["producer"]
    assert before["predictor"] == after["predictor"]
    served = checksums({"predictor": {"serve": "newest"}})
    assert served["predictor"] != before["predictor"]
    assert {c: served[c] for c in ("producer", "trainer", "evaluator")} == {
        c: before[c] for c in ("producer", "trainer", "evaluator")
    }


def test_services_and_service_monitor_reach_the_metrics_port() -> None:
    docs = render(VALUE_SETS["service-monitor"])
    monitor = one(docs, "ServiceMonitor", RELEASE)
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "http" and monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    services = [
        s for s in of_kind(docs, "Service") if selector_matches(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert len(services) == 4
    for service in services:
        assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
        component = service["metadata"]["labels"]["app.kubernetes.io/component"]
        workload = component_workload(docs, component)
        assert selector_matches(
            {"matchLabels": service["spec"]["selector"]}, workload["spec"]["template"]["metadata"]["labels"]
        )
        port = pod_spec(workload)["containers"][0]["ports"][0]["containerPort"]
        assert (
            service["spec"]["ports"][0]["port"]
            == port
            == {"producer": 9101, "trainer": 9102, "evaluator": 9103, "predictor": 8501}[component]
        )


# ---------------------------------------------------------------- Strimzi resources
def _acls(docs: list[dict[str, Any]]) -> dict[str, set[tuple[str, str, str]]]:
    """{component: {(resource type, name, operation)}}; a prefix pattern's name ends with '*'."""
    out = {}
    for user in of_kind(docs, "KafkaUser"):
        component = user["metadata"]["labels"]["app.kubernetes.io/component"]
        rules = set()
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            # Prefix patterns only for transactional ids: each predictor replica's id ends with its pod name.
            assert resource["patternType"] == ("prefix" if resource["type"] == "transactionalId" else "literal")
            assert acl.get("type", "allow") == "allow"
            name = resource["name"] + ("*" if resource["patternType"] == "prefix" else "")
            for op in acl["operations"]:
                rules.add((resource["type"], name, op))
        out[component] = rules
    return out


def _rw(topic: str, *ops: str) -> set[tuple[str, str, str]]:
    return {("topic", topic, op) for op in ops}


def _readers(group: str, *reads: str) -> set[tuple[str, str, str]]:
    """Describe on the groups of the consumers that only assign() (clients.reader_group): FindCoordinator only."""
    return {("group", f"{group}.{what}", "Describe") for what in reads}


def _expected_acls() -> dict[str, set[tuple[str, str, str]]]:
    """The ACLs of the default values: exactly what each component's code does with them."""
    rw = _rw
    w, r = ("Write", "Describe"), ("Read", "Describe")
    return {
        "producer": rw("streamtrain.train", *w)  # no metrics: the producer reports on /metrics only
        | rw("streamtrain.test", *w)
        | rw("streamtrain.dead-letter", *w),
        "trainer": rw("streamtrain.train", *r)
        | {("group", "streamtrain-trainer", "Read")}
        | _readers("streamtrain-trainer", "probe", "control")
        | rw("streamtrain.model-events", *w)
        | rw("streamtrain.metrics", *w)
        | rw("streamtrain.dead-letter", *w)
        | rw("streamtrain.control", *r),  # serving decisions, so retention keeps promoted and pinned versions
        "evaluator": rw("streamtrain.test", *r)
        | {("group", "streamtrain-evaluator", "Read")}
        | _readers("streamtrain-evaluator", "model-events", "control")
        | rw("streamtrain.model-events", *r)
        | rw("streamtrain.metrics", *w)
        | rw("streamtrain.dead-letter", *w)
        | rw("streamtrain.control", "Read", "Write", "Describe"),  # verdicts; operators' pins (serving pin)
        "predictor": rw("streamtrain.input", *r)
        | {("group", "streamtrain-predictor", "Read")}  # the group's offsets go in with each transaction
        | _readers("streamtrain-predictor", "control")
        | rw("streamtrain.predictions", *w)
        | rw("streamtrain.dead-letter", *w)
        | rw("streamtrain.control", *r)
        | {("transactionalId", "streamtrain-predictor-*", op) for op in w},
    }


def test_kafka_users_have_least_privilege_acls(default_docs: list[dict[str, Any]]) -> None:
    assert _acls(default_docs) == _expected_acls()
    for user in of_kind(default_docs, "KafkaUser"):
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"


def test_model_files_acls_only_for_versions_over_kafka() -> None:
    """The trainer writes the model-files topic only with --ship-versions, evaluators and predictors read it only
    with --model-source kafka (assigned, from the start: no group); with volume nobody may touch it."""
    expected = _expected_acls()
    expected["trainer"] |= _rw("ml.files", "Write", "Describe")
    for reader in ("evaluator", "predictor"):
        expected[reader] |= _rw("ml.files", "Read", "Describe") | _readers(f"streamtrain-{reader}", "model-files")
    docs = render({"model": {"source": "kafka"}, "topics": {"modelFiles": {"name": "ml.files"}}})
    assert _acls(docs) == expected
    volume = _acls(render({"topics": {"modelFiles": {"name": "ml.files"}}}))
    assert not {rule for rules in volume.values() for rule in rules if rule[1] == "ml.files"}
    # The ACLs follow the env: what may touch the topic is what is told to.
    for values in ({"model": {"source": "kafka"}}, {}):
        docs = render(values)
        acls = _acls(docs)
        for component in ("trainer", "evaluator", "predictor"):
            env = effective_env(docs, component_workload(docs, component))[component]
            uses = env.get("STREAMTRAIN_SHIP_VERSIONS") == "true" or env.get("STREAMTRAIN_MODEL_SOURCE") == "kafka"
            granted = {rule[2] for rule in acls[component] if rule[1] == env["STREAMTRAIN_MODEL_FILES_TOPIC"]}
            assert granted == ((({"Write"} if component == "trainer" else {"Read"}) | {"Describe"}) if uses
                               else set()), (values, component)


def test_model_files_topic_only_for_versions_over_kafka() -> None:
    from streamtrain.store.shipping import CHUNK

    def model_files(values: dict[str, Any]) -> list[dict[str, Any]]:
        return [t["spec"] for t in of_kind(render(values), "KafkaTopic") if t["spec"]["topicName"] == "ml.files"]

    assert model_files({"topics": {"modelFiles": {"name": "ml.files"}}}) == []
    [topic] = model_files({"model": {"source": "kafka"}, "topics": {"modelFiles": {"name": "ml.files"}}})
    config = topic["config"]
    # Compacted, never expired by age: the topic holds what the store holds, and a reader rebuilds it from the start.
    assert config["cleanup.policy"] == "compact" and "retention.ms" not in config
    # Room for a chunk with its key, header and batch overhead, whatever the broker's own limit.
    assert config["max.message.bytes"] >= max(600_000, CHUNK + 4096)
    assert config["segment.bytes"] == 67108864 and config["min.insync.replicas"] == 1
    # One partition: a version's files, then its manifest, then its tombstones, in order.
    assert topic["partitions"] == 1 and topic["replicas"] == 1
    docs = render(VALUE_SETS["production"] | {"model": {"source": "kafka"}})
    [topic] = [t["spec"] for t in of_kind(docs, "KafkaTopic") if t["spec"]["topicName"] == "streamtrain.model-files"]
    assert topic["replicas"] == 3 and topic["config"]["min.insync.replicas"] == 2 and topic["partitions"] == 1


def test_acls_follow_renamed_topics_and_groups() -> None:
    docs = render({
        "topics": {"train": {"name": "ml.train.v2"}, "control": {"name": "ml.control"},
                   "input": {"name": "shop.rows"}, "predictions": {"name": "shop.scores"}},
        "evaluator": {"groupId": "eval-b"},
        "predictor": {"groupId": "pred-b"},
    })
    acls = _acls(docs)
    assert ("topic", "ml.train.v2", "Write") in acls["producer"] and ("topic", "ml.train.v2", "Read") in acls["trainer"]
    assert ("group", "eval-b", "Read") in acls["evaluator"]
    assert ("group", "eval-b.control", "Describe") in acls["evaluator"]
    assert ("group", "pred-b.control", "Describe") in acls["predictor"]
    assert ("group", "pred-b", "Read") in acls["predictor"] and ("topic", "shop.rows", "Read") in acls["predictor"]
    assert ("topic", "shop.scores", "Write") in acls["predictor"]
    assert ("topic", "ml.control", "Write") in acls["evaluator"] and ("topic", "ml.control", "Read") in acls["trainer"]
    assert ("topic", "ml.control", "Read") in acls["predictor"]
    env = effective_env(docs, component_workload(docs, "predictor"))["predictor"]
    assert (env["STREAMTRAIN_INPUT_TOPIC"], env["STREAMTRAIN_OUTPUT_TOPIC"], env["STREAMTRAIN_GROUP_ID"]) == (
        "shop.rows", "shop.scores", "pred-b")
    env = effective_env(docs, component_workload(docs, "trainer"))["trainer"]
    assert env["STREAMTRAIN_TRAIN_TOPIC"] == "ml.train.v2"
    topic = one(docs, "KafkaTopic", f"{RELEASE}-train")
    assert topic["spec"]["topicName"] == "ml.train.v2"


def test_mtls_users_authenticate_with_certificates() -> None:
    docs = render(VALUE_SETS["mtls"])
    assert {u["spec"]["authentication"]["type"] for u in of_kind(docs, "KafkaUser")} == {"tls"}
    listener = one(docs, "Kafka", f"{RELEASE}-kafka")["spec"]["kafka"]["listeners"][0]
    assert listener["authentication"]["type"] == "tls" and listener["tls"] is True


def test_topics_from_values(default_docs: list[dict[str, Any]]) -> None:
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(default_docs, "KafkaTopic")}
    assert set(topics) == {
        "streamtrain.train",
        "streamtrain.test",
        "streamtrain.metrics",
        "streamtrain.model-events",
        "streamtrain.dead-letter",
        "streamtrain.control",
        "streamtrain.input",
        "streamtrain.predictions",
    }
    assert (
        topics["streamtrain.train"]["partitions"] == 3
        and topics["streamtrain.train"]["config"]["retention.ms"] == 604800000
    )
    assert all(t["replicas"] == 1 and t["config"]["min.insync.replicas"] == 1 for t in topics.values())
    # Serving decisions: compacted, never expired by age (a restarted predictor rebuilds them from the start).
    control = topics["streamtrain.control"]
    assert control["config"]["cleanup.policy"] == "compact" and "retention.ms" not in control["config"]
    assert all("cleanup.policy" not in t["config"] for name, t in topics.items() if name != "streamtrain.control")
    assert topics["streamtrain.predictions"]["partitions"] == topics["streamtrain.input"]["partitions"] == 3


def test_predictions_follow_the_input_partitions_unless_set() -> None:
    def partitions(values: dict[str, Any]) -> tuple[int, int]:
        topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(render(values), "KafkaTopic")}
        return topics["streamtrain.input"]["partitions"], topics["streamtrain.predictions"]["partitions"]

    assert partitions({"topics": {"input": {"partitions": 12}}}) == (12, 12)
    assert partitions({"topics": {"input": {"partitions": 12}, "predictions": {"partitions": 4}}}) == (12, 4)


def test_default_kafka_is_one_combined_kraft_node_for_kind(default_docs: list[dict[str, Any]]) -> None:
    pool = of_kind(default_docs, "KafkaNodePool")
    assert len(pool) == 1
    assert pool[0]["spec"]["replicas"] == 1 and set(pool[0]["spec"]["roles"]) == {"controller", "broker"}
    assert pool[0]["spec"]["storage"]["type"] == "ephemeral"
    kafka = one(default_docs, "Kafka", f"{RELEASE}-kafka")
    config = kafka["spec"]["kafka"]["config"]
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "default.replication.factor",
        "min.insync.replicas",
        "transaction.state.log.min.isr",
    ):
        assert config[key] == 1, key
    assert "zookeeper" not in kafka["spec"] and "replicas" not in kafka["spec"]["kafka"]
    assert set(kafka["spec"]["entityOperator"]) >= {"topicOperator", "userOperator"}


def test_production_sizing() -> None:
    docs = render(VALUE_SETS["production"])
    pool = of_kind(docs, "KafkaNodePool")[0]["spec"]
    assert pool["replicas"] == 3
    assert pool["storage"]["type"] == "jbod"
    volume = pool["storage"]["volumes"][0]
    assert volume["type"] == "persistent-claim" and volume["size"] == "100Gi" and volume["class"] == "fast-ssd"
    kafka = one(docs, "Kafka", f"{RELEASE}-kafka")["spec"]["kafka"]
    assert kafka["rack"] == {"topologyKey": "topology.kubernetes.io/zone"}
    assert kafka["config"]["min.insync.replicas"] == 2 and kafka["config"]["default.replication.factor"] == 3
    topics = of_kind(docs, "KafkaTopic")
    assert all(t["spec"]["replicas"] == 3 and t["spec"]["config"]["min.insync.replicas"] == 2 for t in topics)
    assert component_workload(docs, "evaluator")["spec"]["replicas"] == 3


def test_external_nodeport_listener_matches_the_kind_port_mappings() -> None:
    import yaml
    from chartkit import REPO

    docs = render(VALUE_SETS["kind"])
    listener = next(
        lst for lst in one(docs, "Kafka", f"{RELEASE}-kafka")["spec"]["kafka"]["listeners"] if lst["type"] == "nodeport"
    )
    ports = {listener["configuration"]["bootstrap"]["nodePort"]} | {
        b["nodePort"] for b in listener["configuration"]["brokers"]
    }
    assert all(b["advertisedHost"] == "localhost" for b in listener["configuration"]["brokers"])
    kind = yaml.safe_load((REPO / "k8s" / "kind-config.yaml").read_text())
    mapped = {m["containerPort"] for node in kind["nodes"] for m in node.get("extraPortMappings", [])}
    assert ports <= mapped, f"nodePorts {ports - mapped} are not mapped to the host by k8s/kind-config.yaml"
    three = render({"kafka": {"external": {"enabled": True}, "replicas": 3}, "topics": {"replicas": 3}})
    listener = next(
        lst
        for lst in one(three, "Kafka", f"{RELEASE}-kafka")["spec"]["kafka"]["listeners"]
        if lst["type"] == "nodeport"
    )
    assert {b["nodePort"] for b in listener["configuration"]["brokers"]} == {30093, 30094, 30095} <= mapped


def test_topic_finalizers_can_be_switched_off() -> None:
    kafka = one(render({"kafka": {"entityOperator": {"topicFinalizers": False}}}), "Kafka", f"{RELEASE}-kafka")
    env = kafka["spec"]["entityOperator"]["template"]["topicOperatorContainer"]["env"]
    assert {"name": "STRIMZI_USE_FINALIZERS", "value": "false"} in env


def test_release_names_keep_resources_apart() -> None:
    docs = render_raw({}, name="blue")
    text = "\n".join(docs.values())
    assert "name: blue-streamtrain-trainer" in text and "name: blue-kafka" in text
    assert "secretName: blue-kafka-cluster-ca-cert" in text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"producer": {"count": 0}}, "producer.kind=Job needs producer.count > 0"),
        ({"producer": {"kind": "Deployment"}}, "producer.kind=Deployment runs an endless stream"),
        (
            {"producer": {"kind": "Deployment", "count": 0, "source": "breast-cancer"}},
            "needs an endless generator source",
        ),
        ({"trainer": {"terminationGracePeriodSeconds": 20}}, "must exceed trainer.stopGraceSeconds"),
        (
            {"trainer": {"publishEverySeconds": 0, "publishEveryBatches": 0}},
            "no model version is ever published",
        ),
        ({"kafka": {"listener": {"tls": False, "authentication": "tls"}}}, "needs kafka.listener.tls=true"),
        ({"topics": {"replicas": 3}}, "cannot exceed kafka.replicas"),
        ({"trainer": {"extraEnv": {"STREAMTRAIN_BATCH_SIZE": "9"}}}, None),
        (
            {"predictor": {"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}},
            "predictor.autoscaling.minReplicas (4) cannot exceed predictor.autoscaling.maxReplicas (2)",
        ),
        (
            {"persistence": {"keepOnUninstall": True}},
            "persistence.keepOnUninstall=true keeps the model volume, whose checkpoint holds Kafka offsets, while "
            "Kafka's data does not outlive helm uninstall (kafka.storage.type=ephemeral",
        ),
        (
            {"persistence": {"keepOnUninstall": True},
             "kafka": {"storage": {"type": "persistent-claim", "size": "10Gi", "deleteClaim": True}}},
            "(kafka.storage.type=persistent-claim, deleteClaim=true)",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(values: dict[str, Any], message: str | None) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError) as error:
        render_raw(values)
    if message:
        assert message in str(error.value)


def test_producer_job_name_follows_its_pod_template() -> None:
    """A Job's template is immutable: unchanged producer settings keep the name (no new stream on upgrade),
    changed ones get a new Job (a new bounded stream) instead of a failing upgrade."""

    def job_name(values: dict[str, Any]) -> str:
        return component_workload(render(values), "producer")["metadata"]["name"]

    base = job_name({})
    assert base.startswith(f"{RELEASE}-producer-") and len(base) <= 63
    assert job_name({"trainer": {"learningRate": 0.01}, "evaluator": {"replicas": 2}}) == base
    assert job_name({"producer": {"seed": 7}}) != base
    assert job_name({"image": {"tag": "0.1.0-fffffff"}}) != base
