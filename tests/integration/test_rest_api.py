"""The REST API over real HTTP (streamtrain.service.http with the predictor's app) on a real Keras model: what an
application written against TensorFlow Serving sends, answered in TF Serving's shapes; every bad request refused
with a 4xx and one line, after which the server still answers; batching across concurrent clients; a version swap
in the middle of a request. No Kafka."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from streamtrain import models
from streamtrain.predictor import rest
from streamtrain.predictor.batching import Batcher
from streamtrain.service import http as service_http
from streamtrain.store.loaded import LoadedModel, compile_predict

pytestmark = pytest.mark.integration

WIDTH = 4
NAME = "susy"
MAX_BODY = 64 * 1024
PATIENCE = 60.0  # seconds before a test gives up on a step: a hang, not a speed


class Source:
    """The ModelSource a test steers: versions in memory, the served one swapped at will."""

    def __init__(self, *versions: LoadedModel) -> None:
        self.model_name = NAME
        self.versions = {v.version: v for v in versions}
        self.current: LoadedModel | None = versions[0]
        self.broken = False

    def serving(self) -> LoadedModel | None:
        if self.broken:
            raise RuntimeError("version manager crashed")
        return self.current

    def version(self, number: int) -> LoadedModel | None:
        return self.versions.get(number)

    def available(self) -> list[int]:
        return sorted(self.versions)


class Counting:
    """Wraps a LoadedModel's compiled predict: counts the calls; can hold them until released."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.inner = loaded.predict
        self.calls = 0
        self.entered = threading.Event()
        self.released = threading.Event()
        self.released.set()
        loaded.predict = self

    def __call__(self, x: Any) -> Any:
        self.calls += 1
        self.entered.set()
        assert self.released.wait(PATIENCE)
        return self.inner(x)


def loaded_model(version: int, seed: int) -> LoadedModel:
    return LoadedModel(version, model := models.mlp(WIDTH, seed=seed), compile_predict(model), {}, 0)


@pytest.fixture(scope="module")
def versions() -> tuple[LoadedModel, LoadedModel]:
    return loaded_model(1, seed=0), loaded_model(2, seed=1)


class Server:
    def __init__(self, source: Source, batcher: Batcher) -> None:
        self.source, self.batcher = source, batcher
        self.health = service_http.Health()
        self.health.ready = True
        self.http = service_http.serve("127.0.0.1", 0, self.health, lambda: {"component": "predictor"},
                                       app=rest.app(source, batcher, max_instances=100), max_body=MAX_BODY)
        self.port = self.http.server_address[1]

    def request(self, method: str, path: str, body: bytes | dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
        """(status, content type, parsed JSON or text) of one request on its own connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PATIENCE)
        try:
            raw = json.dumps(body).encode() if isinstance(body, dict) else body
            connection.request(method, path, body=raw, headers=headers or {})
            response = connection.getresponse()
            ctype, text = response.getheader("Content-Type") or "", response.read()
            return response.status, ctype, json.loads(text) if ctype == "application/json" else text.decode()
        finally:
            connection.close()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.batcher.close()

    def raw(self, data: bytes) -> bytes:
        """What the server answers to bytes written as they are (for requests http.client will not make)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=PATIENCE) as s:
            s.sendall(data)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
            return answer


@pytest.fixture
def server(versions: tuple[LoadedModel, LoadedModel]) -> Iterator[Server]:
    batcher = Batcher(max_batch=64, max_wait=0.002)
    running = Server(Source(*versions), batcher)
    yield running
    running.close()


def model_output(loaded: LoadedModel, x: np.ndarray) -> np.ndarray:
    return np.asarray(loaded.model(x, training=False))


def rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, WIDTH)).astype(np.float32)


# --- TF Serving's documented requests ------------------------------------------------------------------------

def test_status_answers_like_tf_servings_example(server: Server) -> None:
    code, ctype, answer = server.request("GET", f"/v1/models/{NAME}")
    assert (code, ctype) == (200, "application/json")
    ok = {"state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert answer == {"model_version_status": [{"version": "2", **ok}, {"version": "1", **ok}]}
    assert server.request("GET", f"/v1/models/{NAME}/versions/1")[2] == {
        "model_version_status": [{"version": "1", **ok}]}


def test_metadata_matches_the_signature_of_the_exported_saved_model(server: Server, tmp_path: Path,
                                                                    versions: tuple[LoadedModel, LoadedModel]) -> None:
    """What TF Serving would read from the SavedModel the trainer publishes is what this API describes."""
    versions[0].model.export(str(tmp_path / "1"), verbose=False)
    exported = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    (_, inputs), outputs = exported.structured_input_signature, exported.structured_outputs
    code, _, answer = server.request("GET", f"/v1/models/{NAME}/metadata")
    assert code == 200
    assert answer["model_spec"] == {"name": NAME, "signature_name": "", "version": "1"}
    signature = answer["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    for described, actual in ((signature["inputs"], inputs), (signature["outputs"], outputs)):
        assert set(described) == set(actual)
        for key, spec in actual.items():
            assert described[key]["dtype"] == "DT_FLOAT" and spec.dtype == tf.float32
            assert [int(d["size"]) for d in described[key]["tensor_shape"]["dim"]] == [
                -1 if d is None else d for d in spec.shape]
    assert server.request("GET", f"/v1/models/{NAME}/versions/2/metadata")[2]["model_spec"]["version"] == "2"


@pytest.mark.parametrize("n", [1, 50])
def test_predictions_are_the_models_own_output(server: Server, versions: tuple[LoadedModel, LoadedModel],
                                               n: int) -> None:
    x = rows(n, seed=n)
    code, ctype, answer = server.request("POST", f"/v1/models/{NAME}:predict", {"instances": x.tolist()})
    assert (code, ctype, list(answer)) == (200, "application/json", ["predictions"])
    assert np.asarray(answer["predictions"]).shape == (n, 1)
    np.testing.assert_allclose(answer["predictions"], model_output(versions[0], x), atol=1e-6, rtol=0)


def test_row_columnar_named_and_versioned_requests(server: Server, versions: tuple[LoadedModel, LoadedModel]) -> None:
    x = rows(3, seed=3)
    v1, v2 = (model_output(v, x) for v in versions)
    cases = [
        (f"/v1/models/{NAME}:predict", {"signature_name": "serving_default", "instances": x.tolist()},
         "predictions", v1),
        (f"/v1/models/{NAME}:predict", {"instances": [{"features": r} for r in x.tolist()]}, "predictions", v1),
        (f"/v1/models/{NAME}:predict", {"inputs": x.tolist()}, "outputs", v1),
        (f"/v1/models/{NAME}:predict", {"inputs": {"features": x.tolist()}}, "outputs", v1),
        (f"/v1/models/{NAME}/versions/2:predict", {"instances": x.tolist()}, "predictions", v2),
        (f"/v1/models/{NAME}/versions/2:predict", {"inputs": {"features": x.tolist()}}, "outputs", v2),
    ]
    for path, body, key, want in cases:
        code, _, answer = server.request("POST", path, body)
        assert code == 200 and list(answer) == [key], (path, body, answer)
        np.testing.assert_allclose(answer[key], want, atol=1e-6, rtol=0)


# --- refusals ------------------------------------------------------------------------------------------------

P = f"/v1/models/{NAME}:predict"
GOOD = [0.25] * WIDTH


def test_every_kind_of_bad_request_is_a_4xx_with_one_line_and_the_server_goes_on(
        server: Server, versions: tuple[LoadedModel, LoadedModel]) -> None:
    cases: list[tuple[str, str, bytes | dict[str, Any] | None, dict[str, str], int, str]] = [
        ("POST", P, b"{not json", {}, 400, "malformed JSON"),
        ("POST", P, {"data": [GOOD]}, {}, 400, "exactly one of 'instances'"),
        ("POST", P, {"instances": [GOOD], "inputs": [GOOD]}, {}, 400, "it has both"),
        ("POST", P, {"instances": [GOOD, GOOD, GOOD, [1.0] * 5]}, {}, 400,
         f"instance 3 has 5 values, the model takes {WIDTH}"),
        ("POST", P, {"instances": [GOOD, [0.1, "0.2", 0.3, 0.4]]}, {}, 400, "instance 1, value 1 is the string"),
        ("POST", P, b'{"instances": [[0.1, NaN, 0.3, 0.4]]}', {}, 400, "instance 0, value 1 is NaN"),
        ("POST", P, b'{"instances": [[0.1, 0.2, Infinity, 0.4]]}', {}, 400, "instance 0, value 2 is Infinity"),
        ("POST", P, {"instances": [[0.1, 0.2, 0.3, None]]}, {}, 400, "instance 0, value 3 is null"),
        ("POST", P, {"instances": []}, {}, 400, "'instances' is empty"),
        ("POST", P, {"instances": [GOOD] * 101}, {}, 413, "101 instances in one request; at most 100"),
        ("POST", P, b"[" * 30_000 + b"]" * 30_000, {}, 400, "nested too deeply"),
        ("POST", P, b" " * (MAX_BODY + 1), {}, 413, f"over the limit of {MAX_BODY} bytes"),
        ("POST", P, b"{}", {"Content-Length": "12x"}, 400, "is not a byte count"),
        ("POST", "/v1/models/other:predict", {"instances": [GOOD]}, {}, 404, "model 'other' is not served here"),
        ("POST", f"/v1/models/{NAME}/versions/7:predict", {"instances": [GOOD]}, {}, 404,
         "version 7 is not available; available: [1, 2]"),
        ("GET", f"/v1/models/{NAME}/versions/7/metadata", None, {}, 404, "version 7 is not available"),
        ("GET", P, None, {}, 405, "GET is not allowed on :predict; use POST"),
        ("PUT", f"/v1/models/{NAME}", b"{}", {}, 405, "PUT is not allowed"),
        ("DELETE", f"/v1/models/{NAME}", None, {}, 405, "DELETE is not allowed"),
        ("POST", "/status", b"{}", {}, 405, "POST is not allowed on /status; use GET"),
        ("POST", f"/v1/models/{NAME}:classify", {"examples": [{"x": 1}]}, {}, 400, ":classify is not supported"),
        ("GET", "/v1/nothing/here", None, {}, 404, "no such path"),
        ("GET", f"/v1/models/{NAME}?x=1", None, {}, 400, "query parameters are not supported"),
    ]
    for method, path, body, headers, code, reason in cases:
        answer_code, ctype, answer = server.request(method, path, body, headers)
        assert (answer_code, ctype) == (code, "application/json"), (method, path, answer)
        assert list(answer) == ["error"] and reason in answer["error"] and "\n" not in answer["error"], answer
    x = rows(2, seed=11)
    code, _, answer = server.request("POST", P, {"instances": x.tolist()})
    assert code == 200
    np.testing.assert_allclose(answer["predictions"], model_output(versions[0], x), atol=1e-6, rtol=0)


def test_a_post_without_content_length_is_411_and_a_large_body_is_refused_unread(server: Server) -> None:
    answer = server.raw(f"POST {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n0\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 411 ") and b'"error": "the request needs a Content-Length' in answer
    # 8 MiB announced and sent: the client still reads the 413 instead of a reset connection.
    code, _, refused = server.request("POST", P, b"0" * (8 * 1024 * 1024))
    assert code == 413 and "the request body of 8388608 bytes is over the limit" in refused["error"]


def test_the_fixed_routes_still_answer(server: Server) -> None:
    assert server.request("GET", "/healthz")[::2] == (200, "alive\n")
    assert server.request("GET", "/readyz")[::2] == (200, "ready\n")
    assert server.request("GET", "/status?verbose")[::2] == (200, {"component": "predictor"})
    code, ctype, _ = server.request("GET", "/metrics")
    assert code == 200 and ctype.startswith("text/plain")


def test_a_fault_of_the_server_is_a_logged_500_with_one_line(server: Server,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    server.source.broken = True
    with caplog.at_level(logging.ERROR, logger="streamtrain.service.http"):
        code, ctype, answer = server.request("POST", P, {"instances": [GOOD]})
    assert (code, ctype, answer) == (500, "application/json", {"error": "internal error: RuntimeError"})
    assert any("version manager crashed" in (r.exc_text or "") for r in caplog.records)
    server.source.broken = False
    assert server.request("POST", P, {"instances": [GOOD]})[0] == 200


# --- batching and version swaps ------------------------------------------------------------------------------

def test_concurrent_clients_share_predict_calls_and_each_gets_its_own_rows() -> None:
    loaded = loaded_model(1, seed=0)
    counting = Counting(loaded)
    batcher = Batcher(max_batch=64, max_wait=0.5)
    server = Server(Source(loaded), batcher)
    clients = 8
    inputs = [rows(1 + i % 3, seed=100 + i) for i in range(clients)]
    answers: dict[int, Any] = {}
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        start.wait()
        answers[i] = server.request("POST", P, {"instances": inputs[i].tolist()})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PATIENCE)
    finally:
        server.close()
    for i, x in enumerate(inputs):
        code, _, answer = answers[i]
        assert code == 200
        np.testing.assert_allclose(answer["predictions"], model_output(loaded, x), atol=1e-6, rtol=0)
    assert counting.calls < clients


def test_a_request_finishes_on_the_version_it_started_with_across_a_swap() -> None:
    v1, v2 = loaded_model(1, seed=0), loaded_model(2, seed=1)
    held = Counting(v1)
    held.released.clear()
    source = Source(v1, v2)
    batcher = Batcher(max_batch=64, max_wait=0.0)
    server = Server(source, batcher)
    x = rows(4, seed=21)
    answers: dict[str, Any] = {}

    def ask(label: str) -> None:
        answers[label] = server.request("POST", P, {"instances": x.tolist()})

    try:
        before = threading.Thread(target=ask, args=("before",))
        before.start()
        assert held.entered.wait(PATIENCE)  # in flight on version 1 ...
        source.current = v2  # ... when version 2 is promoted
        after = threading.Thread(target=ask, args=("after",))
        after.start()
        deadline = time.monotonic() + PATIENCE
        while batcher.waiting() < 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        held.released.set()
        before.join(PATIENCE)
        after.join(PATIENCE)
    finally:
        held.released.set()
        server.close()
    np.testing.assert_allclose(answers["before"][2]["predictions"], model_output(v1, x), atol=1e-6, rtol=0)
    np.testing.assert_allclose(answers["after"][2]["predictions"], model_output(v2, x), atol=1e-6, rtol=0)
    assert not np.allclose(model_output(v1, x), model_output(v2, x), atol=1e-6)
