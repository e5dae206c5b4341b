"""The chart renders for every value set, lints clean, validates against Kubernetes and Strimzi schemas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from chartkit import CHART, KUBE_VERSION, STRIMZI_CRDS, STRIMZI_KINDS, VALUE_SETS, strip

THIRD_PARTY_CRD_KINDS = {"ServiceMonitor"}


def test_every_value_set_renders_the_expected_kinds(
    value_set: tuple[str, dict[str, Any]], rendered: list[dict[str, Any]]
) -> None:
    name, _ = value_set
    kinds = {d["kind"] for d in rendered}
    expected = {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "ConfigMap",
        "Deployment",
        "ServiceAccount",
        "Service",
        "NetworkPolicy",
        "PersistentVolumeClaim",
    }
    assert expected <= kinds, f"{name}: missing {expected - kinds}"
    if name != "plain-listener":
        assert "KafkaUser" in kinds
    assert ("ServiceMonitor" in kinds) == (name == "service-monitor")
    assert ("Job" in kinds) == (name != "producer-deployment")
    assert ("HorizontalPodAutoscaler" in kinds) == (name == "predictor-autoscaling")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_is_clean(name: str) -> None:
    report = helm_python.lint(
        str(CHART), VALUE_SETS[name], strict=True, namespace="streamtrain", kube_version=f"v{KUBE_VERSION}.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], f"{name}: {report}"


def test_helm_lint_reports_a_broken_values_file() -> None:
    """The lint check can fail: an unknown key is an error through values.schema.json."""
    report = helm_python.lint(str(CHART), {"trainer": {"batchSise": 3}}, strict=True)
    assert any(m["severity"] >= 3 for m in report["messages"]) or report["errors"], report


def test_kubernetes_objects_validate_strictly(
    value_set: tuple[str, dict[str, Any]], rendered: list[dict[str, Any]]
) -> None:
    checked = 0
    for doc in rendered:
        if doc["kind"] in STRIMZI_KINDS | THIRD_PARTY_CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(strip(doc), KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{value_set[0]}: {doc['kind']}/{doc['metadata']['name']} ({doc['_template']}): {exc}")
        checked += 1
    assert checked >= 15


def test_kubernetes_validation_can_fail() -> None:
    bad = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automountToken": False}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSION, strict=True)


def _strimzi_validate(tmp_path: Path, docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    if not (STRIMZI_CRDS / "validate.py").is_file():
        pytest.skip(f"Strimzi CRDs not found: {STRIMZI_CRDS} (shared strimzi-crds folder beside the repo) is absent")
    target = tmp_path / "strimzi.yaml"
    target.write_text(yaml.safe_dump_all([strip(d) for d in docs], sort_keys=False))
    return subprocess.run(
        [sys.executable, str(STRIMZI_CRDS / "validate.py"), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_strimzi_resources_validate_against_the_1_2_0_crds(
    value_set: tuple[str, dict[str, Any]], rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    strimzi = [d for d in rendered if d["kind"] in STRIMZI_KINDS]
    assert all(d["apiVersion"] == "kafka.strimzi.io/v1" for d in strimzi)
    result = _strimzi_validate(tmp_path, strimzi)
    assert result.returncode == 0, f"{value_set[0]}:\n{result.stdout}\n{result.stderr}"
    ok = [line for line in result.stdout.splitlines() if line.rstrip().endswith(": OK")]
    assert len(ok) == len(strimzi), result.stdout


def test_strimzi_validation_catches_a_wrong_field(default_docs: list[dict[str, Any]], tmp_path: Path) -> None:
    kafka = next(d for d in default_docs if d["kind"] == "Kafka")
    kafka["spec"]["kafka"]["replicas"] = 1  # moved to KafkaNodePool in the v1 API
    result = _strimzi_validate(tmp_path, [kafka])
    assert result.returncode == 1, result.stdout


def test_notes_tell_how_to_watch_accuracy_read_the_model_and_scale() -> None:
    from chartkit import notes

    text = notes()
    assert "kubectl -n streamtrain wait kafka/streamtrain-kafka --for=condition=Ready" in text
    assert "port-forward svc/streamtrain-evaluator 9103" in text and "/status" in text
    assert "exec statefulset/streamtrain-trainer -- streamtrain inspect" in text
    assert "scale deploy/streamtrain-evaluator" in text
    assert "delete pvc" not in text  # the model volume goes with ephemeral Kafka data (test_chart_workloads.py)
    kind_notes = notes(VALUE_SETS["kind"])
    assert "localhost:30092" in kind_notes


def test_notes_tell_how_to_reach_the_predictor_and_change_what_it_serves() -> None:
    from chartkit import notes

    text = notes()
    assert "port-forward svc/streamtrain-predictor 8501:http" in text
    assert "curl -s -X POST localhost:8501/v1/models/streamtrain:predict" in text
    assert "exec deploy/streamtrain-predictor -- streamtrain serving status" in text
    # Pins go through the evaluator: the only Kafka user that may write the control topic.
    assert "exec deploy/streamtrain-evaluator -- streamtrain serving pin <version> --serve promoted" in text
    assert "serving rollback --serve promoted" in text and "isolation.level=read_committed" in text
    newest = notes({"predictor": {"serve": "newest", "httpPort": 9200}, "model": {"name": "churn"}})
    assert "port-forward svc/streamtrain-predictor 9200:http" in newest and "/v1/models/churn:predict" in newest
    assert "serving unpin --serve newest" in newest and "the newest complete one" in newest
    without = notes({"predictor": {"enabled": False}})
    assert "predictor" not in without and "serving" not in without


def test_notes_tell_where_evaluators_and_predictors_get_the_versions() -> None:
    from chartkit import notes

    assert "model.source=kafka" not in notes() and "model-files" not in notes()
    text = notes({"model": {"source": "kafka"}})
    assert "over the topic streamtrain.model-files" in text and "run on any node" in text
    assert "exec deploy/streamtrain-evaluator -- streamtrain inspect" in text
