"""Rendering and inspection helpers for the chart tests (no cluster needed)."""

from __future__ import annotations

import copy
import functools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "streamtrain"
STRIMZI_CRDS = REPO.parent / "shared" / "strimzi-crds"
# A Kubernetes version kind ships a node image for (KIND_NODE_IMAGE in mk/kind.mk).
KUBE_VERSION = "1.34"
RELEASE = "streamtrain"
NAMESPACE = "streamtrain"
COMPONENTS = ("producer", "trainer", "evaluator", "predictor")
RUNTIME_ENV = {"HOME", "MPLCONFIGDIR", "KERAS_HOME"}
STRIMZI_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}

if str(REPO / "components") not in sys.path:
    try:
        import streamtrain.service.config  # noqa: F401  (installed with pip install -e .)
    except ImportError:
        sys.path.insert(0, str(REPO / "components"))

from streamtrain.service import config as st_config  # noqa: E402

SETTINGS = {
    "producer": st_config.ProducerSettings,
    "trainer": st_config.TrainerSettings,
    "evaluator": st_config.EvaluatorSettings,
    "predictor": st_config.PredictorSettings,
}

# Meaningful value sets the chart must render, validate and pass every policy with.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "kind": yaml.safe_load((REPO / "k8s" / "streamtrain-kind-values.yaml").read_text()),
    "production": {
        "image": {
            "repository": "registry.example.com/ml/streamtrain",
            "tag": "0.1.0-abc1234",
            "pullPolicy": "Always",
        },
        "kafka": {
            "replicas": 3,
            "storage": {
                "type": "persistent-claim",
                "size": "100Gi",
                "storageClass": "fast-ssd",
                "deleteClaim": False,
            },
            "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}},
            "jvm": {"xms": "4g", "xmx": "4g"},
            "rack": {"enabled": True, "topologyKey": "topology.kubernetes.io/zone"},
            "config": {
                "offsets.topic.replication.factor": 3,
                "transaction.state.log.replication.factor": 3,
                "transaction.state.log.min.isr": 2,
                "default.replication.factor": 3,
                "min.insync.replicas": 2,
                "auto.create.topics.enable": False,
            },
        },
        "topics": {
            "replicas": 3,
            "minInsyncReplicas": 2,
            "train": {"partitions": 12},
            "test": {"partitions": 6},
        },
        "persistence": {
            "accessMode": "ReadWriteMany",
            "storageClass": "nfs",
            "size": "50Gi",
            "colocateEvaluators": False,
        },
        "evaluator": {"replicas": 3},
        "predictor": {"replicas": 3, "serve": "promoted"},
        "networkPolicy": {
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "predictorFrom": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
                    "podSelector": {"matchLabels": {"app": "checkout"}},
                }
            ],
        },
    },
    # The image with tensorflow-io (<tag>-tfio); its ingest is tested in test_chart_image_variant.py, since the
    # settings classes refuse STREAMTRAIN_INGEST=tensorflow-io where tensorflow-io is not installed.
    "tfio-image": {"image": {"variant": "tfio"}},
    "plain-listener": {"kafka": {"listener": {"tls": False, "authentication": "none"}}},
    "plain-scram": {"kafka": {"listener": {"tls": False, "authentication": "scram-sha-512"}}},
    "mtls": {"kafka": {"listener": {"authentication": "tls"}}},
    "producer-deployment": {"producer": {"kind": "Deployment", "count": 0, "source": "drift", "rate": 500}},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "predictor-autoscaling": {
        "topics": {"input": {"partitions": 6}},
        "predictor": {
            "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 60},
            "serve": "newest",
            "outputFormat": "csv",
        },
    },
    # A multi-node cluster whose only storage class is ReadWriteOnce: the versions travel over Kafka, so evaluators
    # and predictors mount no volume and run on any node (the kind values use this source too, on one node).
    "models-over-kafka": {
        "model": {"source": "kafka", "localSizeLimit": "2Gi"},
        "topics": {"modelFiles": {"name": "ml.model-files", "segmentBytes": 33554432}},
        "persistence": {"accessMode": "ReadWriteOnce", "colocateEvaluators": True},
        "evaluator": {"replicas": 2},
        "predictor": {"replicas": 2},
    },
    "extra-env": {
        "producer": {"extraEnv": {"STREAMTRAIN_DRIFT_POINTS": "5000,10000", "STREAMTRAIN_N_FEATURES": 10}},
        "trainer": {"extraEnv": {"STREAMTRAIN_ON_OFFSET_LOSS": "restart-from-earliest"}},
        "evaluator": {"extraEnv": {"STREAMTRAIN_PLOT_EVERY_SECONDS": 60}},
        "predictor": {"extraEnv": {"STREAMTRAIN_REQUEST_BATCH_SIZE": 128, "STREAMTRAIN_START_OFFSET": "latest"}},
    },
}


@functools.cache
def chart() -> Any:
    import helm_python

    return helm_python.Chart.load(str(CHART))


def render_raw(values: dict[str, Any] | None = None, name: str = RELEASE) -> dict[str, str]:
    return chart().render(copy.deepcopy(values or {}), name=name, namespace=NAMESPACE)


@functools.cache
def _render_cached(key: str) -> tuple[dict[str, Any], ...]:
    values = json.loads(key)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render_raw(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("_template", path)
                docs.append(doc)
    return tuple(docs)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rendered objects (with their template path in '_template'), a fresh copy each call."""
    return copy.deepcopy(list(_render_cached(json.dumps(values or {}, sort_keys=True))))


def notes(values: dict[str, Any] | None = None) -> str:
    return next(text for path, text in render_raw(values).items() if path.endswith("NOTES.txt"))


def strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_template"}


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob")]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def component_of(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def component_workload(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    found = [w for w in workloads(docs) if component_of(w) == component]
    assert len(found) == 1, f"expected one workload for {component}, found {len(found)}"
    return found[0]


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def effective_env(docs: list[dict[str, Any]], workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{container name: {env name: value}}, envFrom ConfigMaps resolved (Secrets are not allowed there)."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in of_kind(docs, "ConfigMap")}
    result = {}
    for container in containers(pod_spec(workload)):
        env: dict[str, Any] = {}
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, "envFrom a Secret would put every key in the environment"
            env.update(maps[source["configMapRef"]["name"]])
        for item in container.get("env", []):
            env[item["name"]] = item.get("value", item.get("valueFrom"))
        result[container["name"]] = env
    return result


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
