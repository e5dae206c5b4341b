"""Policies on the rendered objects: pod security, limits, secrets, network policies, labels, images,
and the environment contract between the chart and the components' settings classes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from chartkit import (
    CHART,
    COMPONENTS,
    RELEASE,
    RUNTIME_ENV,
    SETTINGS,
    VALUE_SETS,
    component_of,
    component_workload,
    containers,
    effective_env,
    of_kind,
    one,
    pod_spec,
    render,
    selector_matches,
    st_config,
    workloads,
)

LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
PEM = re.compile(r"-----BEGIN [A-Z ]+-----")


# ---------------------------------------------------------------- pod security ("restricted" PSS)
def test_pods_meet_the_restricted_pod_security_standard(rendered: list[dict[str, Any]]) -> None:
    assert sorted(component_of(w) for w in workloads(rendered)) == sorted(COMPONENTS)
    for workload in workloads(rendered):
        spec = pod_spec(workload)
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001, where
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
        for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(forbidden), f"{where}: {forbidden}"
        for volume in spec.get("volumes", []):
            types = set(volume) - {"name"}
            assert types <= RESTRICTED_VOLUME_TYPES, f"{where}: volume {volume['name']} is {types}"
        for container in containers(spec):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, where
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            assert not sc.get("privileged"), where
            assert all("hostPort" not in p for p in container.get("ports", [])), where


def test_every_pod_has_a_writable_tmp_and_a_home_there(rendered: list[dict[str, Any]]) -> None:
    for workload in workloads(rendered):
        spec = pod_spec(workload)
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in containers(spec):
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]] and not tmp[0].get("readOnly")
            env = {e["name"]: e["value"] for e in container["env"]}
            assert env == {"HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib", "KERAS_HOME": "/tmp/keras"}


def test_every_container_has_requests_limits_and_probes(rendered: list[dict[str, Any]]) -> None:
    for workload in workloads(rendered):
        for container in containers(pod_spec(workload)):
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{container['name']}: {kind}"
            port = container["ports"][0]
            assert port["name"] == "http"
            for probe, path in (
                ("startupProbe", "/healthz"),
                ("livenessProbe", "/healthz"),
                ("readinessProbe", "/readyz"),
            ):
                assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe


def test_service_accounts_one_per_component_without_token(rendered: list[dict[str, Any]]) -> None:
    accounts = {sa["metadata"]["name"]: sa for sa in of_kind(rendered, "ServiceAccount")}
    assert len(accounts) == len(COMPONENTS)
    for sa in accounts.values():
        assert sa["automountServiceAccountToken"] is False
    for workload in workloads(rendered):
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == f"{RELEASE}-{component_of(workload)}"
        assert spec["serviceAccountName"] in accounts


# ---------------------------------------------------------------- secrets
def test_no_secret_value_in_any_configmap(rendered: list[dict[str, Any]]) -> None:
    configmaps = of_kind(rendered, "ConfigMap")
    assert len(configmaps) == len(COMPONENTS)
    for cm in configmaps:
        for key, value in cm["data"].items():
            assert not key.endswith("PASSWORD"), f"{cm['metadata']['name']}: {key}"
            assert not PEM.search(str(value)), f"{cm['metadata']['name']}: {key} holds key material"
    assert not of_kind(rendered, "Secret"), "the chart never renders Secrets: Strimzi's operators create them"


def test_credential_settings_point_into_secret_volumes(rendered: list[dict[str, Any]]) -> None:
    kafka = one(rendered, "Kafka", f"{RELEASE}-kafka")
    users = {u["metadata"]["name"] for u in of_kind(rendered, "KafkaUser")}
    for workload in workloads(rendered):
        spec = pod_spec(workload)
        volumes = {v["name"]: v for v in spec["volumes"]}
        container = spec["containers"][0]
        env = effective_env(rendered, workload)[container["name"]]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for name in (
            "STREAMTRAIN_SASL_PASSWORD_FILE",
            "STREAMTRAIN_SSL_CA_LOCATION",
            "STREAMTRAIN_SSL_CERTIFICATE_LOCATION",
            "STREAMTRAIN_SSL_KEY_LOCATION",
        ):
            if name not in env:
                continue
            path = Path(env[name])
            mount = mounts[str(path.parent)]
            assert mount["readOnly"] is True
            secret = volumes[mount["name"]]["secret"]
            assert path.name in {item["path"] for item in secret["items"]}
            if name == "STREAMTRAIN_SSL_CA_LOCATION":
                assert secret["secretName"] == f"{kafka['metadata']['name']}-cluster-ca-cert" and path.name == "ca.crt"
            else:
                assert secret["secretName"] in users
                assert secret["secretName"] == env.get("STREAMTRAIN_SASL_USERNAME", secret["secretName"])


@pytest.mark.parametrize(
    ("name", "protocol", "files"),
    [
        ("default", "SASL_SSL", {"STREAMTRAIN_SASL_PASSWORD_FILE", "STREAMTRAIN_SSL_CA_LOCATION"}),
        (
            "mtls",
            "SSL",
            {
                "STREAMTRAIN_SSL_CA_LOCATION",
                "STREAMTRAIN_SSL_CERTIFICATE_LOCATION",
                "STREAMTRAIN_SSL_KEY_LOCATION",
            },
        ),
        ("plain-scram", "SASL_PLAINTEXT", {"STREAMTRAIN_SASL_PASSWORD_FILE"}),
        ("plain-listener", "PLAINTEXT", set()),
    ],
)
def test_security_protocol_matches_the_listener(name: str, protocol: str, files: set[str]) -> None:
    docs = render(VALUE_SETS[name])
    listener = one(docs, "Kafka", f"{RELEASE}-kafka")["spec"]["kafka"]["listeners"][0]
    assert listener["tls"] is (protocol in ("SSL", "SASL_SSL"))
    all_files = {
        "STREAMTRAIN_SASL_PASSWORD_FILE",
        "STREAMTRAIN_SSL_CA_LOCATION",
        "STREAMTRAIN_SSL_CERTIFICATE_LOCATION",
        "STREAMTRAIN_SSL_KEY_LOCATION",
    }
    for workload in workloads(docs):
        env = effective_env(docs, workload)[component_of(workload)]
        assert env["STREAMTRAIN_SECURITY_PROTOCOL"] == protocol
        assert set(env) & all_files == files
        assert ("STREAMTRAIN_SASL_USERNAME" in env) == protocol.startswith("SASL")
    if protocol == "PLAINTEXT":
        assert "authorization" not in one(docs, "Kafka", f"{RELEASE}-kafka")["spec"]["kafka"]
        assert not of_kind(docs, "KafkaUser")


def test_plain_listener_only_by_explicit_value(default_docs: list[dict[str, Any]]) -> None:
    listeners = one(default_docs, "Kafka", f"{RELEASE}-kafka")["spec"]["kafka"]["listeners"]
    assert [(lst["tls"], lst["authentication"]["type"]) for lst in listeners] == [(True, "scram-sha-512")]


# ---------------------------------------------------------------- the env contract with the code
def test_env_is_exactly_what_each_component_reads(rendered: list[dict[str, Any]]) -> None:
    required_common = {
        "STREAMTRAIN_BOOTSTRAP_SERVERS",
        "STREAMTRAIN_SECURITY_PROTOCOL",
        "STREAMTRAIN_HTTP_HOST",
        "STREAMTRAIN_HTTP_PORT",
        "STREAMTRAIN_TRAIN_TOPIC",
        "STREAMTRAIN_TEST_TOPIC",
        "STREAMTRAIN_METRICS_TOPIC",
        "STREAMTRAIN_MODEL_EVENTS_TOPIC",
        "STREAMTRAIN_DEAD_LETTER_TOPIC",
        "STREAMTRAIN_CONTROL_TOPIC",
        "STREAMTRAIN_MODEL_FILES_TOPIC",
        "STREAMTRAIN_INPUT_TOPIC",
        "STREAMTRAIN_OUTPUT_TOPIC",
    }
    required = {
        "producer": {"STREAMTRAIN_COUNT", "STREAMTRAIN_SOURCE"},
        "trainer": {
            "STREAMTRAIN_MODEL_DIR",
            "STREAMTRAIN_CHECKPOINT_DIR",
            "STREAMTRAIN_MODEL_NAME",
            "STREAMTRAIN_GROUP_ID",
            "STREAMTRAIN_STOP_GRACE_SECONDS",
            "STREAMTRAIN_SHIP_VERSIONS",
        },
        "evaluator": {
            "STREAMTRAIN_MODEL_DIR",
            "STREAMTRAIN_MODEL_NAME",
            "STREAMTRAIN_REPORT_DIR",
            "STREAMTRAIN_GROUP_ID",
            "STREAMTRAIN_GATE",
            "STREAMTRAIN_MODEL_SOURCE",
        },
        "predictor": {
            "STREAMTRAIN_MODEL_DIR",
            "STREAMTRAIN_MODEL_NAME",
            "STREAMTRAIN_GROUP_ID",
            "STREAMTRAIN_SERVE",
            "STREAMTRAIN_MODEL_SOURCE",
        },
    }
    for workload in workloads(rendered):
        component = component_of(workload)
        env = effective_env(rendered, workload)[component]
        readable = st_config.env_names(SETTINGS[component]) | RUNTIME_ENV
        unknown = set(env) - readable
        assert not unknown, f"{component} gets env vars its settings class does not read: {sorted(unknown)}"
        missing = (required_common | required[component]) - set(env)
        assert not missing, f"{component} lacks {sorted(missing)}"
        assert env["STREAMTRAIN_HTTP_HOST"] == "0.0.0.0"
        port = next(p["containerPort"] for p in pod_spec(workload)["containers"][0]["ports"] if p["name"] == "http")
        assert env["STREAMTRAIN_HTTP_PORT"] == str(port)


def test_the_components_accept_the_rendered_settings(
    rendered: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Load each settings class from the rendered env as the container would (stand-ins for mounted files)."""
    for workload in workloads(rendered):
        component = component_of(workload)
        env = effective_env(rendered, workload)[component]
        with monkeypatch.context() as patch:
            for name in [n for n in os.environ if n.startswith("STREAMTRAIN_")]:
                patch.delenv(name)
            for name, value in env.items():
                if name.endswith(("_FILE", "_LOCATION")):
                    stand_in = tmp_path / component / Path(value).name
                    stand_in.parent.mkdir(exist_ok=True)
                    stand_in.write_text("stand-in\n")
                    value = str(stand_in)
                patch.setenv(name, value)
            settings = st_config.load(SETTINGS[component])
        assert settings.bootstrap_servers == env["STREAMTRAIN_BOOTSTRAP_SERVERS"]
        assert settings.http_port == int(env["STREAMTRAIN_HTTP_PORT"])


def test_extra_env_names_in_the_schema_follow_the_code() -> None:
    """values.schema.json lists the settings extraEnv may carry; it must track the settings classes."""
    from sync_extra_env import allowed_extra_env

    schema = json.loads((CHART / "values.schema.json").read_text())
    for component, expected in allowed_extra_env().items():
        allowed = schema["properties"][component]["properties"]["extraEnv"]["propertyNames"]["enum"]
        assert set(allowed) == set(expected), (
            f"{component}: run `.venv/bin/python tests/chart/sync_extra_env.py`; the schema lacks "
            f"{sorted(set(expected) - set(allowed))} and has stale {sorted(set(allowed) - set(expected))}"
        )
        assert "STREAMTRAIN_SASL_PASSWORD" not in allowed


def test_extra_env_reaches_the_container() -> None:
    docs = render(VALUE_SETS["extra-env"])
    env = effective_env(docs, component_workload(docs, "producer"))["producer"]
    assert env["STREAMTRAIN_DRIFT_POINTS"] == "5000,10000" and env["STREAMTRAIN_N_FEATURES"] == "10"
    env = effective_env(docs, component_workload(docs, "predictor"))["predictor"]
    assert env["STREAMTRAIN_REQUEST_BATCH_SIZE"] == "128" and env["STREAMTRAIN_START_OFFSET"] == "latest"


def test_every_component_reads_the_same_topics(rendered: list[dict[str, Any]]) -> None:
    """Serving decisions travel on one control topic: every component must name the same one (and the same
    input and predictions topics)."""
    topics = {
        component_of(w): {k: v for k, v in effective_env(rendered, w)[component_of(w)].items() if k.endswith("_TOPIC")}
        for w in workloads(rendered)
    }
    assert len({tuple(sorted(t.items())) for t in topics.values()}) == 1, topics
    kafka_topics = {t["spec"]["topicName"] for t in of_kind(rendered, "KafkaTopic")}
    # The model-files topic exists (and is read) only when the versions travel over Kafka.
    source = effective_env(rendered, component_workload(rendered, "predictor"))["predictor"]["STREAMTRAIN_MODEL_SOURCE"]
    model_files = topics["predictor"].pop("STREAMTRAIN_MODEL_FILES_TOPIC")
    assert set(topics["predictor"].values()) <= kafka_topics
    assert (model_files in kafka_topics) == (source == "kafka")


def test_each_predictor_replica_keeps_its_own_transactional_id(rendered: list[dict[str, Any]]) -> None:
    """The chart never sets STREAMTRAIN_TRANSACTIONAL_ID (one id for all replicas would fence all but one): each
    replica takes the code's default, streamtrain-predictor-<host name>; the pod's host name is its own name."""
    predictor = component_workload(rendered, "predictor")
    env = effective_env(rendered, predictor)["predictor"]
    assert "STREAMTRAIN_TRANSACTIONAL_ID" not in env
    assert "hostname" not in pod_spec(predictor), "a fixed host name would be every replica's"
    description = SETTINGS["predictor"].model_fields["transactional_id"].description or ""
    assert "streamtrain-predictor-<host name>" in description
    schema = json.loads((CHART / "values.schema.json").read_text())
    extra = schema["properties"]["predictor"]["properties"]["extraEnv"]["propertyNames"]["enum"]
    assert "STREAMTRAIN_TRANSACTIONAL_ID" not in extra


def test_evaluator_gate_values_reach_its_settings() -> None:
    values = {"evaluator": {"gate": {"enabled": False, "minRecords": 50, "metric": "auc", "floor": 0.7,
                                     "tolerance": 0.05}}}
    docs = render(values)
    env = effective_env(docs, component_workload(docs, "evaluator"))["evaluator"]
    settings = st_config.EvaluatorSettings(**{
        k.removeprefix("STREAMTRAIN_").lower(): v for k, v in env.items() if k.startswith("STREAMTRAIN_GATE")
    })
    assert (settings.gate, settings.gate_min_records, settings.gate_metric, settings.gate_floor,
            settings.gate_tolerance) == (False, 50, "auc", 0.7, 0.05)
    default = effective_env(render({}), component_workload(render({}), "evaluator"))["evaluator"]
    assert default["STREAMTRAIN_GATE"] == "true" and default["STREAMTRAIN_GATE_MIN_RECORDS"] == "500"


# ---------------------------------------------------------------- network policies
def test_default_deny_and_a_policy_per_component(rendered: list[dict[str, Any]]) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    kafka_port = one(rendered, "Kafka", f"{RELEASE}-kafka")["spec"]["kafka"]["listeners"][0]["port"]
    deny = one(rendered, "NetworkPolicy", f"{RELEASE}-default-deny")
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    for workload in workloads(rendered):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector_matches(deny["spec"]["podSelector"], labels)
        own = [p for p in policies if p is not deny and selector_matches(p["spec"]["podSelector"], labels)]
        assert len(own) == 1, f"{component_of(workload)}: {len(own)} policies"
        spec = own[0]["spec"]
        assert [port["port"] for rule in spec["ingress"] for port in rule["ports"]] == ["http"]
        egress_ports = {(port["port"], port["protocol"]) for rule in spec["egress"] for port in rule["ports"]}
        assert egress_ports == {(53, "UDP"), (53, "TCP"), (kafka_port, "TCP")}
        kafka_rule = next(r for r in spec["egress"] if r["ports"][0]["port"] == kafka_port)
        # The labels Strimzi's own <cluster>-kafka-bootstrap Service selects broker pods by.
        assert kafka_rule["to"][0]["podSelector"]["matchLabels"] == {
            "strimzi.io/cluster": f"{RELEASE}-kafka",
            "strimzi.io/kind": "Kafka",
            "strimzi.io/name": f"{RELEASE}-kafka-kafka",
            "strimzi.io/broker-role": "true",
        }
    # The deny policy must not catch Strimzi's pods (the entity operator needs the API server).
    strimzi_pod = {
        "strimzi.io/cluster": f"{RELEASE}-kafka",
        "app.kubernetes.io/instance": f"{RELEASE}-kafka",
        "app.kubernetes.io/part-of": f"strimzi-{RELEASE}-kafka",
    }
    assert not selector_matches(deny["spec"]["podSelector"], strimzi_pod)


def _ingress_from(docs: list[dict[str, Any]], component: str) -> list[dict[str, Any]] | None:
    """The peers admitted to a component's http port; None: every peer (a rule without `from`)."""
    policy = one(docs, "NetworkPolicy", f"{RELEASE}-{component}")
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    return rule.get("from")


def test_predictor_rest_api_admits_its_clients_and_the_scrapers() -> None:
    docs = render({})
    assert _ingress_from(docs, "predictor") == [{"namespaceSelector": {}}, {"podSelector": {}}]
    production = VALUE_SETS["production"]["networkPolicy"]
    docs = render(VALUE_SETS["production"])
    assert _ingress_from(docs, "predictor") == production["metricsFrom"] + production["predictorFrom"]
    # The REST clients are the predictor's alone: the other components' ports still admit only the scrapers.
    for component in ("trainer", "evaluator"):
        assert _ingress_from(docs, component) == production["metricsFrom"]
    # An empty metricsFrom admits everyone already (no `from`); predictorFrom must not narrow that.
    docs = render({"networkPolicy": {"metricsFrom": []}})
    assert _ingress_from(docs, "predictor") is None and _ingress_from(docs, "evaluator") is None
    docs = render({"networkPolicy": {"metricsFrom": production["metricsFrom"], "predictorFrom": []}})
    assert _ingress_from(docs, "predictor") == production["metricsFrom"]


def test_kafka_listener_admits_only_the_components(default_docs: list[dict[str, Any]]) -> None:
    listener = one(default_docs, "Kafka", f"{RELEASE}-kafka")["spec"]["kafka"]["listeners"][0]
    peers = listener["networkPolicyPeers"]
    for workload in workloads(default_docs):
        assert any(
            selector_matches(p["podSelector"], workload["spec"]["template"]["metadata"]["labels"]) for p in peers
        )
    assert not any(selector_matches(p["podSelector"], {"app.kubernetes.io/instance": RELEASE}) for p in peers)


# ---------------------------------------------------------------- labels and images
def test_every_object_carries_the_recommended_labels(rendered: list[dict[str, Any]]) -> None:
    for doc in rendered:
        labels = doc["metadata"].get("labels", {})
        release_wide = doc["kind"] == "ServiceMonitor" or doc["metadata"]["name"].endswith("-default-deny")
        required = [lbl for lbl in LABELS if not (release_wide and lbl == "app.kubernetes.io/component")]
        missing = [lbl for lbl in required if lbl not in labels]
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']}: {missing}"
        assert labels["app.kubernetes.io/part-of"] == "streamtrain"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    for workload in workloads(rendered):
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert all(lbl in pod_labels for lbl in LABELS)
    for doc in rendered:
        if doc["kind"] in ("KafkaNodePool", "KafkaTopic", "KafkaUser"):
            assert doc["metadata"]["labels"]["strimzi.io/cluster"] == f"{RELEASE}-kafka"


def test_images_and_tags_come_from_values() -> None:
    values = {
        "image": {
            "repository": "registry.example.com/team/streamtrain",
            "tag": "9.9.9-abc1234",
            "pullPolicy": "Always",
            "pullSecrets": ["regcred"],
        }
    }
    docs = render(values)
    for workload in workloads(docs):
        spec = pod_spec(workload)
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        for container in containers(spec):
            assert container["image"] == "registry.example.com/team/streamtrain:9.9.9-abc1234"
            assert container["imagePullPolicy"] == "Always"
        assert workload["metadata"]["labels"]["app.kubernetes.io/version"] == "9.9.9-abc1234"
    default = render({})
    app_version = next(
        line.split(":", 1)[1].strip().strip('"')
        for line in (CHART / "Chart.yaml").read_text().splitlines()
        if line.startswith("appVersion:")
    )
    images = {c["image"] for w in workloads(default) for c in containers(pod_spec(w))}
    assert images == {f"streamtrain:{app_version}"}


def test_components_run_their_subcommand(default_docs: list[dict[str, Any]]) -> None:
    for component, command in (
        ("producer", "produce"),
        ("trainer", "train"),
        ("evaluator", "evaluate"),
        ("predictor", "predict"),
    ):
        container = pod_spec(component_workload(default_docs, component))["containers"][0]
        assert container["command"] == ["streamtrain", command]
