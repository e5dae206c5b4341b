"""The operator Role grants exactly what `kubectl streamtrain`'s Kubernetes transport uses: the API calls are
collected by running every plugin command over the transport against a stand-in API server (the kubernetes
client's real classes make the requests), each request turned into the RBAC attributes the API server checks."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from chartkit import REPO, of_kind, render
from tests.support.fake_apiserver import FakeApiServer, Request, pod, serving

from streamtrain.kubectl import commands, kube

# CoreV1Api methods the transport may call, and the RBAC rule each needs.
KNOWN_CALLS = {"list_namespaced_pod", "connect_get_namespaced_pod_proxy_with_path", "connect_get_namespaced_pod_exec"}


def rbac(request: Request) -> set[tuple[str, str]]:
    """(resource, verb) pairs the API server authorizes a request of the core group by (its RequestInfo: GET of a
    collection is list, of one object get; exec over a websocket is get, and create from Kubernetes 1.35 on)."""
    parts = request.path.strip("/").split("/")  # api v1 namespaces NS pods [NAME [SUB ...]]
    assert parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods", request.path
    if len(parts) == 5:
        return {("pods", "list" if request.method == "GET" else "create")}
    resource = f"pods/{parts[6]}" if len(parts) > 6 else "pods"
    if resource == "pods/exec" and request.websocket:
        return {(resource, "get"), (resource, "create")}
    return {(resource, {"GET": "get", "POST": "create"}[request.method])}


def granted(role: dict[str, Any]) -> set[tuple[str, str]]:
    out = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""] and "resourceNames" not in rule
        out |= {(r, v) for r in rule["resources"] for v in rule["verbs"]}
    return out


def used_by_the_plugin(tmp_path: Path) -> set[tuple[str, str]]:
    pods = [pod("streamtrain-trainer-0", "trainer"), pod("streamtrain-evaluator-a", "evaluator", port=9103),
            pod("streamtrain-predictor-b", "predictor", port=8501)]
    answers = {"inspect": {"versions": [{"version": 1, "ok": True}]},
               "serving": {"serving": 1, "pinned": None, "promoted": [1], "rejected": {}},
               "control": {"paused": True}}
    api = FakeApiServer(pods, {p["metadata"]["name"]: {"component": p["metadata"]["labels"][
        "app.kubernetes.io/component"]} for p in pods},
        exec_handler=lambda _pod, argv: (0, json.dumps(answers[argv[1]]), ""))
    with serving(api, tmp_path) as kubeconfig:
        transport = kube.connect(str(kubeconfig), None, None, "streamtrain")
        commands.status(transport, sample_seconds=0.01)
        commands.versions(transport)
        commands.serving(transport, "pin", 1)
        commands.serving(transport, "rollback")
        commands.control(transport, "pause")
    assert {r.path.rsplit("/", 1)[-1] for r in api.requests} >= {"pods", "status", "exec"}
    return set().union(*(rbac(r) for r in api.requests))


def test_the_transport_calls_only_known_api_methods() -> None:
    """Every CoreV1Api method the transport names is one the exercise above reaches (no call escapes it)."""
    tree = ast.parse((REPO / "components" / "streamtrain" / "kubectl" / "kube.py").read_text())
    called = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
              and isinstance(node.value, ast.Attribute) and node.value.attr == "core"}
    assert called == KNOWN_CALLS


def test_the_role_grants_exactly_what_the_plugin_uses(tmp_path: Path) -> None:
    roles = of_kind(render({"operatorRole": {"enabled": True}}), "Role")
    assert len(roles) == 1 and roles[0]["metadata"]["name"] == "streamtrain-operator"
    assert granted(roles[0]) == used_by_the_plugin(tmp_path)


@pytest.mark.parametrize("values", [{}, {"operatorRole": {"enabled": False}}])
def test_no_role_unless_asked_for(values: dict[str, Any]) -> None:
    assert not of_kind(render(values), "Role") and not of_kind(render(values), "RoleBinding")


def test_the_kind_values_create_it() -> None:
    import yaml

    kind_values = yaml.safe_load((REPO / "k8s" / "streamtrain-kind-values.yaml").read_text())
    assert of_kind(render(kind_values), "Role")
