"""The Kubernetes transport, with the kubernetes client's real classes (CoreV1Api, the websocket exec client)
talking HTTP to a stand-in API server (tests/support/fake_apiserver.py): the label selector, the pod proxy paths,
the exec commands and containers, exit codes, RBAC refusals, and the whole plugin over it. No cluster needed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from streamtrain.kubectl import commands, main
from streamtrain.kubectl.errors import NotFound, UsageError
from streamtrain.kubectl.kube import connect, exit_code_of, label_selector
from tests.support.fake_apiserver import FakeApiServer, pod, serving

PODS = [pod("streamtrain-trainer-0", "trainer", port=9102, restarts=2),
        pod("streamtrain-evaluator-7d9-abc", "evaluator", port=9103),
        pod("streamtrain-predictor-5c4-xyz", "predictor", port=8501, ready=False)]
STATUSES = {
    "streamtrain-trainer-0": {"component": "trainer", "records_trained": 1200, "last_version": 4,
                              "prequential_accuracy": 0.91, "drift_events": 1, "paused": False, "lag": 12,
                              "records_skipped": 300, "lineage": 1,
                              "lineage_started": {"lineage": 1, "to_version": 2, "from_version": 3,
                                                  "offsets": {"t.train": {"0": 300, "1": 300}},
                                                  "by": "ops-host", "ts_ms": 1_780_000_000_000}},
    "streamtrain-evaluator-7d9-abc": {"component": "evaluator", "records_evaluated": 300, "accuracy": 0.93,
                                      "model_version": 4, "lag": 7, "promoted": [2, 4], "pinned": None,
                                      "per_version": {"4": {"records": 100, "accuracy": 0.95, "loss": 0.2}},
                                      "verdicts": [{"version": 4, "decision": "promoted", "value": 0.95}]},
    "streamtrain-predictor-5c4-xyz": {"component": "predictor", "records_predicted": 50, "serving_version": 4,
                                      "serve_policy": "newest", "promoted": [2, 4], "pinned": None},
}


def fake(**kwargs: object) -> FakeApiServer:
    return FakeApiServer([*PODS], dict(STATUSES), **kwargs)  # type: ignore[arg-type]


def test_selector_is_the_charts_labels() -> None:
    assert label_selector("prod") == ("app.kubernetes.io/part-of=streamtrain,app.kubernetes.io/instance=prod,"
                                      "app.kubernetes.io/component in (producer,trainer,evaluator,predictor)")


def test_pods_and_status_through_the_pod_proxy(tmp_path: Path) -> None:
    api = fake()
    with serving(api, tmp_path) as kubeconfig:
        kube = connect(str(kubeconfig), None, None, "streamtrain")
        assert kube.namespace == "streamtrain"  # the context's namespace, as kubectl takes it
        pods = kube.pods()
        assert [(p.component, p.ready, p.restarts, p.port) for p in pods] == [
            ("trainer", True, 2, 9102), ("evaluator", True, 0, 9103), ("predictor", False, 0, 8501)]
        assert kube.status(pods[0]) == STATUSES["streamtrain-trainer-0"]
    listed, proxied = api.requests[0], api.requests[1]
    assert (listed.method, listed.path) == ("GET", "/api/v1/namespaces/streamtrain/pods")
    assert listed.query["labelSelector"] == [label_selector("streamtrain")]
    # the port by number (the API server resolves no port names for pods), from the pod's port named http
    assert (proxied.method, proxied.path) == ("GET",
                                              "/api/v1/namespaces/streamtrain/pods/streamtrain-trainer-0:9102/proxy/status")


def test_namespace_and_context_flags(tmp_path: Path) -> None:
    api = fake()
    with serving(api, tmp_path) as kubeconfig:
        assert connect(str(kubeconfig), "other", None, "r").namespace == "default"  # a context without one
        kube = connect(str(kubeconfig), "other", "ops", "r")
        kube.pods()
        with pytest.raises(UsageError, match="cannot load the kube config context nope"):
            connect(str(kubeconfig), "nope", None, "r")
    assert api.requests[-1].path == "/api/v1/namespaces/ops/pods"
    assert "instance=r," in api.requests[-1].query["labelSelector"][0]


def test_exec_runs_in_the_components_container_with_its_exit_code(tmp_path: Path) -> None:
    seen: list[tuple[str, list[str]]] = []

    def run(name: str, argv: list[str]) -> tuple[int, str, str]:
        seen.append((name, argv))
        return (0, '{"ok": true}\n', "") if argv[1] == "inspect" else (1, "streamtrain serving: error: no\n", "")

    api = fake(exec_handler=run)
    with serving(api, tmp_path) as kubeconfig:
        kube = connect(str(kubeconfig), None, None, "streamtrain")
        trainer, evaluator, _ = kube.pods()
        done = kube.run(trainer, ["streamtrain", "inspect"], 30)
        assert (done.exit_code, json.loads(done.stdout), done.where) == (0, {"ok": True}, "streamtrain-trainer-0")
        failed = kube.run(evaluator, ["streamtrain", "serving", "rollback"], 30)
        assert (failed.exit_code, failed.last_line()) == (1, "streamtrain serving: error: no")
    execs = [r for r in api.requests if r.path.endswith("/exec")]
    assert [r.websocket for r in execs] == [True, True]
    assert execs[0].path == "/api/v1/namespaces/streamtrain/pods/streamtrain-trainer-0/exec"
    assert execs[0].query["command"] == ["streamtrain", "inspect"] and execs[0].query["container"] == ["trainer"]
    assert execs[1].query["container"] == ["evaluator"]


def test_exit_code_of_the_exec_status() -> None:
    assert exit_code_of('{"status": "Success"}') == 0
    assert exit_code_of('{"status": "Failure", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}') == 3
    assert exit_code_of('{"status": "Failure", "message": "executable file not found"}') == 1
    assert exit_code_of("") == 1


def test_forbidden_is_a_configuration_error(tmp_path: Path) -> None:
    for what in ("list", "proxy", "exec"):
        api = fake(forbidden={what})
        with serving(api, tmp_path) as kubeconfig:
            kube = connect(str(kubeconfig), None, None, "streamtrain")
            with pytest.raises(UsageError, match=r"not allowed to .*operator Role"):
                pods = kube.pods()
                kube.status(pods[0])
                kube.run(pods[0], ["streamtrain", "inspect"], 30)


def test_status_and_versions_over_the_kube_transport(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inspect = {"versions": [{"version": 2, "ok": True, "records_trained": 600, "created_at": "t2",
                             "offsets": {"t.train": {"0": 300, "1": 300}}, "metrics": {"prequential_accuracy": 0.9}},
                            {"version": 4, "ok": True, "records_trained": 1200, "created_at": "t4",
                             "offsets": {"t.train": {"1": 650, "0": 850}}}]}
    decisions = {"serving": 4, "pinned": None, "promoted": [2, 4], "rejected": {"3": "below the floor"},
                 "rollback_target": 2}

    def run(name: str, argv: list[str]) -> tuple[int, str, str]:
        return 0, json.dumps(inspect if argv[1] == "inspect" else decisions), ""

    api = fake(exec_handler=run)
    with serving(api, tmp_path) as kubeconfig:
        kube = connect(str(kubeconfig), None, None, "streamtrain")
        view = commands.status(kube, sample_seconds=0)
        trainer = STATUSES["streamtrain-trainer-0"]
        assert view.data["summary"] == {
            "prequential_accuracy": 0.91, "evaluator_accuracy": 0.93, "newest_version": 4, "promoted_version": 4,
            "serving_versions": [4], "pinned_version": None, "drift_events": 1, "checkpoint_age_seconds": None,
            "paused": False, "records_skipped": 300, "lineage": 1, "lineage_started": trainer["lineage_started"]}
        assert [(p["component"], p["lineage"], p["lag"]) for p in view.data["pods"]] == [
            ("trainer", 1, 12), ("evaluator", None, 7), ("predictor", None, None)]
        assert "records skipped by operators: 300" in view.lines
        assert ("trainer lineage: 1 (since a rewind to version 2, from version 3, by ops-host, at "
                "2026-05-28T20:26:40Z)") in view.lines
        listed = commands.versions(kube)
        rows = listed.data["versions"]
        assert [(r["version"], r["gate"], r["in_store"]) for r in rows] == [
            (2, "promoted", True), (3, "rejected", False), (4, "promoted", True)]
        assert rows[2]["accuracy"] == 0.95 and rows[2]["gate_value"] == 0.95 and rows[2]["serving"]
        # offsets whole in the data, compact (as `skip --to-offsets` takes them) in the table
        assert [r["offsets"] for r in rows] == [{"t.train": {"0": 300, "1": 300}}, None,
                                                {"t.train": {"1": 650, "0": 850}}]
        assert rows[0]["metrics"] == {"prequential_accuracy": 0.9}
        table = listed.sections[0]
        column = table.headers.index("OFFSETS")
        assert [row[column] for row in table.rows] == ["0:300,1:300", None, "0:850,1:650"]
        # the serving command got the predictors' policy, read from a predictor's /status
        served = [r for r in api.requests if r.path.endswith("/exec") and r.query["command"][1] == "serving"]
        assert served[0].query["command"] == ["streamtrain", "serving", "status", "--serve", "newest"]
        assert main.main(["--kubeconfig", str(kubeconfig), "status", "--sample-seconds", "0", "-o", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["summary"]["newest_version"] == 4
        assert main.main(["--kubeconfig", str(kubeconfig), "status", "--sample-seconds", "0", "-o", "yaml"]) == 0
        shown = yaml.safe_load(capsys.readouterr().out)["summary"]
        assert (shown["lineage"], shown["lineage_started"]["to_version"], shown["records_skipped"]) == (1, 2, 300)
        assert main.main(["--kubeconfig", str(kubeconfig), "versions", "-o", "yaml"]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["versions"][0]["offsets"] == {"t.train": {"0": 300, "1": 300}}


def test_no_release_is_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApiServer([])
    with serving(api, tmp_path) as kubeconfig:
        with pytest.raises(NotFound, match="release gone in namespace streamtrain"):
            commands.status(connect(str(kubeconfig), None, None, "gone"))
        assert main.main(["--kubeconfig", str(kubeconfig), "--release", "gone", "versions"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no streamtrain pods found for release gone" in err


def test_bad_kubeconfig_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["--kubeconfig", str(tmp_path / "missing"), "status"]) == 2
    assert capsys.readouterr().err.startswith("kubectl streamtrain status: error: cannot load the kube config")


def test_plain_table_when_not_a_terminal() -> None:
    from streamtrain.kubectl.views import Section, View, render

    out = io.StringIO()
    render(View({}, [Section("", ["A", "B"], [[1, None], [0.5, True]])], ["x: —"]), "table", out)
    assert out.getvalue() == "A       B\n1       —\n0.500   yes\n\nx: —\n"
