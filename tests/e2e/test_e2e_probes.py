"""The pieces the cluster suite runs inside pods, checked here without a cluster: the interpreter launcher,
the watermark, HTTP and TCP probes, the predictor's Kafka client, the port-forward and REST helpers, and the skip
reasons when no cluster is reachable."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit import (
    CONNECT,
    HTTP_GET,
    PREDICT_IO,
    REPO,
    WATERMARKS,
    Cluster,
    claims,
    forwarded_port,
    forwarding,
    http_json,
    launcher_argv,
    required_pod_affinity,
    volume_at,
    wait_for,
)

VENV_BIN = Path(sys.executable).parent


def run_in_pod_like(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a probe as Cluster.python does in a pod: through the launcher, with the entry point on PATH."""
    if shutil.which("streamtrain", path=str(VENV_BIN)) is None:
        pytest.skip(f"the streamtrain entry point is not installed in {VENV_BIN} (pip install -e .)")
    full_env = {**os.environ, **(env or {}), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        launcher_argv(code, *args), capture_output=True, text=True, timeout=60, env=full_env, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_launcher_uses_the_entry_points_interpreter() -> None:
    out = run_in_pod_like("import sys, streamtrain; print(sys.argv[1:], streamtrain.__name__)", "a", "b c")
    assert out.strip() == "['a', 'b c'] streamtrain"


@pytest.fixture
def status_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"path": self.path, "accuracy": 0.93}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # a TF-Serving-like :predict: one prediction per instance, 400 on no instances
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            instances = request.get("instances") or []
            status, reply = (200, {"predictions": [[0.5]] * len(instances)}) if instances else (400, {"error": "no"})
            body = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_http_probe_reads_the_components_own_port(status_server: int) -> None:
    out = run_in_pod_like(HTTP_GET, "/status", env={"STREAMTRAIN_HTTP_PORT": str(status_server)})
    assert json.loads(out) == {"path": "/status", "accuracy": 0.93}


def test_http_json_gets_posts_and_returns_error_statuses(status_server: int) -> None:
    base = f"http://127.0.0.1:{status_server}"
    assert http_json(f"{base}/status") == (200, {"path": "/status", "accuracy": 0.93})
    assert http_json(f"{base}/v1/models/m:predict", {"instances": [[1, 2], [3, 4]]}) == (
        200, {"predictions": [[0.5], [0.5]]})
    assert http_json(f"{base}/v1/models/m:predict", {"instances": []}) == (400, {"error": "no"})


def test_forwarded_port_reads_kubectls_line() -> None:
    assert forwarded_port("Forwarding from 127.0.0.1:43127 -> 8501\n") == 43127
    assert forwarded_port("Forwarding from [::1]:43127 -> 8501") is None
    assert forwarded_port("Handling connection for 43127") is None


def test_forwarding_yields_the_local_port_and_stops_the_command() -> None:
    code = ("import time; print('Forwarding from 127.0.0.1:43127 -> 8501', flush=True); "
            "print('Forwarding from [::1]:43127 -> 8501', flush=True); time.sleep(120)")
    started = time.monotonic()
    with forwarding([sys.executable, "-c", code], timeout=30) as port:
        assert port == 43127
    assert time.monotonic() - started < 30, "the command was not stopped"
    failing = [sys.executable, "-c", "print('error: services \"x\" not found', flush=True); raise SystemExit(1)"]
    with pytest.raises(AssertionError, match=r"exited 1.*services \"x\" not found"), forwarding(failing, 30):
        pass


def test_connect_probe_tells_open_from_blocked(status_server: int) -> None:
    assert run_in_pod_like(CONNECT, "127.0.0.1", str(status_server)).strip() == "open"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert run_in_pod_like(CONNECT, "127.0.0.1", str(closed)).strip() == "blocked"


@pytest.mark.integration
def test_watermark_probe_matches_the_broker(topics: dict[str, str]) -> None:
    from confluent_kafka import Producer
    from tests.support.kafka import partition_ends

    bootstrap, train = topics["STREAMTRAIN_BOOTSTRAP_SERVERS"], topics["STREAMTRAIN_TRAIN_TOPIC"]
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(30):  # one record a batch: tansu's watermarks are exact then
        producer.produce(train, value=b"x", partition=i % 2)
        producer.flush(30)
    env = {
        "STREAMTRAIN_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMTRAIN_SECURITY_PROTOCOL": "PLAINTEXT",
        "STREAMTRAIN_GROUP_ID": "e2e-probe-test",
    }
    marks = json.loads(run_in_pod_like(WATERMARKS, train, env=env))
    assert {int(p): h for p, h in marks[train].items()} == partition_ends(bootstrap, train) == {0: 15, 1: 15}


@pytest.mark.integration
def test_predict_io_probe_writes_rows_and_reads_their_predictions(broker: object) -> None:
    """PREDICT_IO against the embedded broker, with a stand-in predictor that answers each input record on the
    output topic under the record's key, and one answer for a record the probe did not write."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from tests.conftest import common_settings

    from streamtrain.kafka import clients

    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    prefix = f"p{uuid.uuid4().hex[:8]}"
    topics = {"input": f"{prefix}.input", "output": f"{prefix}.predictions"}
    settings = common_settings({"STREAMTRAIN_BOOTSTRAP_SERVERS": bootstrap})
    clients.create_topics(clients.admin(settings, "tests"), list(topics.values()), partitions=2)
    stop = threading.Event()
    answered: list[str] = []

    def predictor() -> None:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-predictor",
                             "auto.offset.reset": "earliest"})
        consumer.assign([TopicPartition(topics["input"], p, OFFSET_BEGINNING) for p in (0, 1)])
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce(topics["output"], key=b"someone-else", value=b"{}")
        while not stop.is_set():
            for msg in consumer.consume(100, 0.2):
                if msg.error() is None:
                    value = {"probability": 0.5, "class": 1, "model_version": 3, "topic": msg.topic(),
                             "partition": msg.partition(), "offset": msg.offset()}
                    producer.produce(topics["output"], key=msg.key(), value=json.dumps(value).encode())
                    answered.append(msg.value().decode())
            producer.flush(5)
        consumer.close()

    thread = threading.Thread(target=predictor, daemon=True)
    thread.start()
    try:
        job = {**topics, "rows": [[0.5, -1.25, 2.0], [0.0, 1e-3, 3.0]], "group": f"{prefix}-e2e", "timeout": 60,
               "user": {}}
        env = {"STREAMTRAIN_BOOTSTRAP_SERVERS": bootstrap, "STREAMTRAIN_SECURITY_PROTOCOL": "PLAINTEXT"}
        result = json.loads(run_in_pod_like(PREDICT_IO, json.dumps(job), env=env))
    finally:
        stop.set()
        thread.join(10)
    assert result["undelivered"] == 0 and len(result["delivered"]) == 2
    assert sorted(answered) == ["0.0,0.001,3.0", "0.5,-1.25,2.0"]
    assert set(result["predictions"]) == set(result["delivered"])
    for key, (partition, offset) in result["delivered"].items():
        seen = result["predictions"][key]
        assert seen["count"] == 1
        assert json.loads(seen["value"])["partition"] == partition and json.loads(seen["value"])["offset"] == offset


def test_no_kubeconfig_gives_a_skip_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    reason = Cluster.unavailable(None, "streamtrain", "streamtrain")
    assert reason is not None and reason.startswith("no Kubernetes cluster") and "make kind-up" in reason


def test_unreachable_api_server_gives_a_skip_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "other",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "kind-test", "context": {"cluster": "c", "user": "u"}},
                    {"name": "other", "context": {"cluster": "c", "user": "u"}},
                ],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    reason = Cluster.unavailable("kind-test", "streamtrain", "streamtrain")
    assert reason is not None and "no Kubernetes cluster reachable through kube context 'kind-test'" in reason
    assert "cannot load" in (Cluster.unavailable("absent-context", "streamtrain", "streamtrain") or "")


def test_wait_for_names_what_it_waited_for() -> None:
    assert wait_for("a value", lambda: 5, 1, interval=0.01) == 5
    with pytest.raises(AssertionError, match="waiting for the impossible; last: None"):
        wait_for("the impossible", lambda: None, 0.05, interval=0.01)


@pytest.mark.parametrize("source", ["volume", "kafka"])
def test_pod_volume_helpers_read_kubernetes_client_pods(source: str) -> None:
    """claims, volume_at and required_pod_affinity on the kubernetes client's V1Pod objects, made from the pod
    templates the chart renders: the attribute names the cluster suite relies on for model.source kafka."""
    pytest.importorskip("kubernetes")
    if str(REPO / "tests" / "chart") not in sys.path:
        sys.path.insert(0, str(REPO / "tests" / "chart"))
    chartkit = pytest.importorskip("chartkit")
    from kubernetes.client import ApiClient

    docs = chartkit.render({"model": {"source": source}})
    for component in ("trainer", "evaluator", "predictor"):
        workload = chartkit.component_workload(docs, component)
        template = workload["spec"]["template"]
        pod = ApiClient().deserialize(json.dumps({"apiVersion": "v1", "kind": "Pod", **template}), "V1Pod", None)
        model_dir = chartkit.effective_env(docs, workload)[component]["STREAMTRAIN_MODEL_DIR"]
        volume = volume_at(pod, model_dir)
        own_copy = source == "kafka" and component != "trainer"
        assert claims(pod) == ([] if own_copy else ["streamtrain-models"]), component
        assert (volume.empty_dir is not None, volume.persistent_volume_claim is not None) == (own_copy, not own_copy)
        assert volume_at(pod, "/var/nothing-mounted-here") is None
        assert volume_at(pod, "/tmp/x").empty_dir is not None
        tied = required_pod_affinity(pod)
        assert [term.topology_key for term in tied] == (
            ["kubernetes.io/hostname"] if component == "evaluator" and source == "volume" else []), component
