"""`kubectl streamtrain` against the deployed release through its Kubernetes transport: pods by the chart's labels,
/status through the pod proxy, inspect and serving commands by exec. Runs before test_e2e_cluster.py (file order),
while the release is installed; skipped, with the reason, where no cluster is reachable (conftest.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from clusterkit import Cluster, wait_for, when

pytestmark = pytest.mark.e2e


def plugin(cluster: Cluster, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The installed entry point (what `kubectl streamtrain` runs), with the suite's context and namespace."""
    script = Path(sys.executable).with_name("kubectl-streamtrain")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "streamtrain.kubectl.main"]
    where = ["-n", cluster.namespace, "--release", cluster.release,
             *(["--context", cluster.context] if cluster.context else [])]
    return subprocess.run([*argv, *where, *args], capture_output=True, text=True, timeout=timeout)


def as_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    done = plugin(cluster, *args, "-o", "json")
    assert done.returncode == 0, f"{args}: exit {done.returncode}: {done.stderr}"
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_kubectl_plugin_status_versions_and_serving(cluster: Cluster) -> None:
    status = wait_for("a served version in the plugin's status",
                      lambda: when(as_json(cluster, "status"), lambda s: bool(s["summary"]["serving_versions"])), 600)
    components = {p["component"] for p in status["pods"]}
    assert {"trainer", "evaluator", "predictor"} <= components
    trainer = next(p for p in status["pods"] if p["component"] == "trainer")
    assert trainer["ready"] and trainer["records"] is not None  # /status read through the pod proxy
    assert yaml.safe_load(plugin(cluster, "status", "-o", "yaml", "--sample-seconds", "0").stdout)["summary"]

    versions = as_json(cluster, "versions")  # inspect in the trainer's pod, serving status in an evaluator's
    stored = [r["version"] for r in versions["versions"] if r["in_store"]]
    assert stored and versions["serving"] in stored

    target = stored[0]
    try:
        assert as_json(cluster, "pin", str(target))["pinned"] == target
        wait_for(f"the predictors on the pinned version {target}",
                 lambda: when(as_json(cluster, "status", "--sample-seconds", "0"),
                              lambda s: s["summary"]["serving_versions"] == [target]), 120)
    finally:
        assert as_json(cluster, "unpin")["pinned"] is None

    missing = plugin(cluster, "pin", "999999")
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1, missing.stderr
    gone = plugin(cluster, "--release", f"{cluster.release}-absent", "status")
    assert gone.returncode == 3 and "no streamtrain pods found" in gone.stderr


def test_kubectl_plugin_is_a_kubectl_plugin(cluster: Cluster) -> None:
    """kubectl finds `kubectl-streamtrain` on PATH (where it and kubectl are both installed)."""
    if shutil.which("kubectl") is None or shutil.which("kubectl-streamtrain") is None:
        pytest.skip("kubectl or kubectl-streamtrain is not on PATH")
    listed = subprocess.run(["kubectl", "plugin", "list"], capture_output=True, text=True, timeout=60)
    assert "kubectl-streamtrain" in listed.stdout, listed.stdout + listed.stderr
