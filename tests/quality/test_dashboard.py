"""The Grafana dashboard: its queries use only metric names the code exports; the chart ships it on request."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "streamtrain"
DASHBOARD = CHART / "dashboards" / "streamtrain.json"
COMPONENT_MODULES = ["streamtrain.producer.main", "streamtrain.trainer.main", "streamtrain.evaluator.main"]

# Each component runs in its own process and registers its metrics at import; importing all three in
# one interpreter would register the shared streamtrain_dead_letter_total counter three times. So each
# module is imported in a fresh interpreter and its REGISTRY is read there.
COLLECT = """
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import importlib
importlib.import_module(sys.argv[1])
from prometheus_client import REGISTRY
out = []
for family in REGISTRY.collect():
    if family.name.startswith("streamtrain_"):
        out.append({"name": family.name, "type": family.type})
print(json.dumps(out))
"""
SUFFIXES = {"counter": ["_total", "_created"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count", "_created"],
            "summary": ["", "_sum", "_count", "_created"], "info": ["_info"], "stateset": [""], "enum": [""]}


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """{module: series names its process exports}."""
    runs = {m: subprocess.Popen([sys.executable, "-c", COLLECT, m], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for m in COMPONENT_MODULES}
    result = {}
    for module, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        families = json.loads(out.strip().splitlines()[-1])
        result[module] = {f["name"] + suffix for f in families for suffix in SUFFIXES[f["type"]]}
    return result


def expressions(node: Any) -> list[str]:
    """Every PromQL expression in the dashboard: panel targets, annotations, template variable queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            promql = key in ("expr", "definition") or (key == "query" and node.get("type") != "datasource")
            if promql and isinstance(value, str):
                found.append(value)
            else:
                found.extend(expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(expressions(item))
    return found


def test_every_metric_the_dashboard_queries_is_exported(exported: dict[str, set[str]]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = expressions(dashboard)
    assert len(exprs) >= 25
    used = {name for e in exprs for name in re.findall(r"\bstreamtrain_[a-z0-9_]+\b", e)}
    available = set().union(*exported.values())
    assert used, "no streamtrain metric in the dashboard"
    assert used <= available, f"queried but not exported: {sorted(used - available)}"
    # The dashboard covers what the issue asks to see: quality, drift, throughput, lag, versions.
    for name in ("streamtrain_evaluator_accuracy", "streamtrain_evaluator_auc", "streamtrain_evaluator_loss",
                 "streamtrain_trainer_drift_events_total", "streamtrain_trainer_records_total",
                 "streamtrain_evaluator_records_total", "streamtrain_trainer_lag_records",
                 "streamtrain_evaluator_lag_records", "streamtrain_trainer_model_version"):
        assert name in used, name
    # Counters are only ever queried through their _total series, and never as raw family names.
    families = {n.removesuffix("_total") for n in available if n.endswith("_total")}
    assert not used & families


def test_the_check_catches_a_misspelt_metric(exported: dict[str, set[str]]) -> None:
    broken = json.loads(DASHBOARD.read_text())
    broken["panels"][0]["targets"][0]["expr"] = "avg(streamtrain_evaluator_acuracy)"
    used = {name for e in expressions(broken) for name in re.findall(r"\bstreamtrain_[a-z0-9_]+\b", e)}
    assert "streamtrain_evaluator_acuracy" in used - set().union(*exported.values())


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "streamtrain" and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace"} <= names
    assert any("drift" in a["expr"] for a in dashboard["annotations"]["list"])


# ---------------------------------------------------------------- the chart
def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    import helm_python

    rendered = helm_python.Chart.load(str(CHART)).render(copy.deepcopy(values), name="streamtrain",
                                                         namespace="streamtrain")
    return [doc for path, text in rendered.items() if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


def dashboards(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("grafana-dashboard")]


def test_chart_ships_the_dashboard_only_when_enabled() -> None:
    assert dashboards(render({})) == []
    docs = dashboards(render({"grafanaDashboard": {"enabled": True}}))
    assert len(docs) == 1
    cm = docs[0]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["app.kubernetes.io/part-of"] == "streamtrain"
    assert "annotations" not in cm["metadata"]
    assert json.loads(cm["data"]["streamtrain.json"]) == json.loads(DASHBOARD.read_text())
    custom = dashboards(render({"grafanaDashboard": {"enabled": True, "labels": {"team": "ml"},
                                                     "folder": "Streaming"}}))[0]
    assert custom["metadata"]["labels"]["team"] == "ml" and custom["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert custom["metadata"]["annotations"] == {"grafana_folder": "Streaming"}


def test_dashboard_configmap_validates_and_lints() -> None:
    import helm_python
    import kubernetes_validate

    values = {"grafanaDashboard": {"enabled": True, "folder": "Streaming"}}
    cm = dashboards(render(values))[0]
    kubernetes_validate.validate(cm, "1.34", strict=True)
    report = helm_python.lint(str(CHART), values, strict=True, namespace="streamtrain", kube_version="v1.34.0")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report
    chart = helm_python.Chart.load(str(CHART))
    chart.validate_schema(values)
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema({"grafanaDashboard": {"enable": True}})
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}})
