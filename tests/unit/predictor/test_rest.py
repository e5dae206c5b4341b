"""The REST layer on its own (no HTTP): TF Serving's request and answer shapes, and every bad request refused with a
4xx and one line, on a real Keras model scored through a real Batcher."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from streamtrain import models
from streamtrain.predictor import rest
from streamtrain.predictor.batching import Batcher
from streamtrain.store.loaded import LoadedModel, compile_predict

WIDTH = 4
NAME = "susy"


def loaded_model(version: int, seed: int) -> LoadedModel:
    return LoadedModel(version, model := models.mlp(WIDTH, seed=seed), compile_predict(model), {}, 0)


class Source:
    """A ModelSource over models held in memory."""

    def __init__(self, *versions: LoadedModel) -> None:
        self.model_name = NAME
        self.versions = {v.version: v for v in versions}
        self.current: LoadedModel | None = versions[-1] if versions else None

    def serving(self) -> LoadedModel | None:
        return self.current

    def version(self, number: int) -> LoadedModel | None:
        return self.versions.get(number)

    def available(self) -> list[int]:
        return sorted(self.versions)


@pytest.fixture(scope="module")
def v1() -> LoadedModel:
    return loaded_model(1, seed=0)


@pytest.fixture(scope="module")
def v2() -> LoadedModel:
    return loaded_model(2, seed=1)


@pytest.fixture
def batcher() -> Iterator[Batcher]:
    batcher = Batcher(max_batch=64, max_wait=0.0)
    yield batcher
    batcher.close()


@pytest.fixture
def api(v1: LoadedModel, v2: LoadedModel, batcher: Batcher) -> rest.RestApi:
    return rest.RestApi(Source(v1, v2), batcher, max_instances=100)


def call(api: rest.RestApi, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    code, ctype, answer = api(method, path, raw)
    assert ctype == "application/json"
    return code, json.loads(answer)


def expected(loaded: LoadedModel, x: np.ndarray) -> np.ndarray:
    return np.asarray(loaded.model(x, training=False))  # [n, 1], the model's own output


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, WIDTH)).astype(np.float32)


# --- status and metadata ---------------------------------------------------------------------------------------

def test_status_lists_every_available_version_in_tf_servings_shape(api: rest.RestApi) -> None:
    code, answer = call(api, "GET", f"/v1/models/{NAME}")
    assert code == 200
    ok = {"state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert answer == {"model_version_status": [{"version": "2", **ok}, {"version": "1", **ok}]}
    one = call(api, "GET", f"/v1/models/{NAME}/versions/1")
    assert one == (200, {"model_version_status": [{"version": "1", **ok}]})


def test_metadata_describes_the_serving_default_signature(api: rest.RestApi) -> None:
    code, answer = call(api, "GET", f"/v1/models/{NAME}/metadata")
    assert code == 200
    assert answer["model_spec"] == {"name": NAME, "signature_name": "", "version": "2"}
    signature = answer["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    features = signature["inputs"]["features"]
    assert features["dtype"] == "DT_FLOAT"
    assert features["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}, {"size": str(WIDTH), "name": ""}],
                                        "unknown_rank": False}
    assert [d["size"] for d in signature["outputs"]["output_0"]["tensor_shape"]["dim"]] == ["-1", "1"]
    code, answer = call(api, "GET", f"/v1/models/{NAME}/versions/1/metadata")
    assert (code, answer["model_spec"]["version"]) == (200, "1")


def test_nothing_loaded_yet_is_503_not_404(batcher: Batcher) -> None:
    api = rest.RestApi(Source(), batcher, max_instances=100)
    for method, path in [("GET", f"/v1/models/{NAME}"), ("GET", f"/v1/models/{NAME}/metadata"),
                         ("POST", f"/v1/models/{NAME}:predict")]:
        code, answer = call(api, method, path, {"instances": [[0.0] * WIDTH]})
        assert (code, answer) == (503, {"error": f"model '{NAME}' has no version loaded yet"})


# --- predict ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 37])
def test_row_format_predictions_are_the_models_own_output(api: rest.RestApi, v2: LoadedModel, n: int) -> None:
    x = rows(n, seed=n)
    code, answer = call(api, "POST", f"/v1/models/{NAME}:predict", {"instances": x.tolist()})
    assert code == 200 and list(answer) == ["predictions"]
    assert np.asarray(answer["predictions"]).shape == (n, 1)
    np.testing.assert_allclose(answer["predictions"], expected(v2, x), atol=1e-6, rtol=0)


def test_named_instances_columnar_inputs_and_version_paths(api: rest.RestApi, v1: LoadedModel,
                                                          v2: LoadedModel) -> None:
    x = rows(3, seed=7)
    predict = f"/v1/models/{NAME}:predict"
    code, named = call(api, "POST", predict, {"signature_name": "serving_default",
                                              "instances": [{"features": r} for r in x.tolist()]})
    assert code == 200
    np.testing.assert_allclose(named["predictions"], expected(v2, x), atol=1e-6, rtol=0)
    for inputs in (x.tolist(), {"features": x.tolist()}):
        code, columnar = call(api, "POST", predict, {"inputs": inputs})
        assert code == 200 and list(columnar) == ["outputs"]
        np.testing.assert_allclose(columnar["outputs"], expected(v2, x), atol=1e-6, rtol=0)
    code, pinned = call(api, "POST", f"/v1/models/{NAME}/versions/1:predict", {"instances": x.tolist()})
    assert code == 200
    np.testing.assert_allclose(pinned["predictions"], expected(v1, x), atol=1e-6, rtol=0)
    assert not np.allclose(pinned["predictions"], named["predictions"], atol=1e-6)  # two versions, two answers


def test_integers_and_exponents_are_numbers(api: rest.RestApi, v2: LoadedModel) -> None:
    body = b'{"instances": [[1, -2, 3e-1, 4E2]]}'
    code, answer = call(api, "POST", f"/v1/models/{NAME}:predict", body)
    assert code == 200
    np.testing.assert_allclose(answer["predictions"], expected(v2, np.array([[1, -2, 0.3, 400]], np.float32)),
                               atol=1e-6, rtol=0)


# --- refusals --------------------------------------------------------------------------------------------------

P = f"/v1/models/{NAME}:predict"
GOOD = [0.5] * WIDTH
BAD_REQUESTS: list[tuple[str, str, str, bytes | dict[str, Any], int, str]] = [
    ("malformed JSON", "POST", P, b'{"instances": [[1, 2', 400, "malformed JSON"),
    ("not UTF-8", "POST", P, b"\xff\xfe\x00{", 400, "malformed JSON"),
    ("empty body", "POST", P, b"", 400, "malformed JSON"),
    ("nested too deeply", "POST", P, b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ("not an object", "POST", P, b"[[1, 2, 3, 4]]", 400, "must be a JSON object"),
    ("neither", "POST", P, {"rows": [GOOD]}, 400, "it has neither"),
    ("both", "POST", P, {"instances": [GOOD], "inputs": [GOOD]}, 400, "it has both"),
    ("unknown signature", "POST", P, {"signature_name": "other", "instances": [GOOD]}, 400, '"other" is not a sig'),
    ("instances not a list", "POST", P, {"instances": 3}, 400, "'instances' must be a list of instances, not 3"),
    ("empty instances", "POST", P, {"instances": []}, 400, "'instances' is empty"),
    ("empty inputs", "POST", P, {"inputs": {"features": []}}, 400, "'inputs' is empty"),
    ("too many instances", "POST", P, {"instances": [GOOD] * 101}, 413, "101 instances in one request; at most 100"),
    ("wrong width", "POST", P, {"instances": [GOOD, GOOD, GOOD, [1.0] * 5]}, 400,
     f"instance 3 has 5 values, the model takes {WIDTH}"),
    ("scalar instance", "POST", P, {"instances": [1.0, 2.0]}, 400, f"instance 0 is 1.0, not a list of {WIDTH}"),
    ("nested instance", "POST", P, {"instances": [[GOOD]]}, 400, f"instance 0 has 1 values, the model takes {WIDTH}"),
    ("string value", "POST", P, {"instances": [GOOD, [0.1, "x", 0.3, 0.4]]}, 400,
     'instance 1, value 1 is the string "x", not a number'),
    ("null value", "POST", P, {"instances": [[0.1, 0.2, 0.3, None]]}, 400, "instance 0, value 3 is null, not a number"),
    ("bool value", "POST", P, {"instances": [[True, 0.2, 0.3, 0.4]]}, 400, "instance 0, value 0 is true, not a number"),
    ("list value", "POST", P, {"instances": [[[1], 0.2, 0.3, 0.4]]}, 400, "instance 0, value 0 is a list of 1"),
    ("NaN", "POST", P, b'{"instances": [[0.1, 0.2, NaN, 0.4]]}', 400,
     "instance 0, value 2 is NaN; values must be finite numbers"),
    ("Infinity", "POST", P, b'{"instances": [[0.1, 0.2, 0.3, 0.4], [-Infinity, 0, 0, 0]]}', 400,
     "instance 1, value 0 is -Infinity; values must be finite"),
    ("overflowing literal", "POST", P, b'{"instances": [[1e999, 0, 0, 0]]}', 400, "instance 0, value 0 is Infinity"),
    ("beyond float32", "POST", P, {"instances": [[0, 0, 0, 1e39]]}, 400, "value 3 is 1e+39, beyond float32's range"),
    ("huge integer", "POST", P, b'{"instances": [[0, 0, 0, 1' + b"0" * 400 + b"]]}", 400,
     "value 3 is beyond float32's range"),
    ("columnar bad value", "POST", P, {"inputs": [GOOD, [0, 0, "a", 0]]}, 400, 'inputs row 1, value 2 is the string'),
    ("columnar wrong name", "POST", P, {"inputs": {"x": [GOOD]}}, 400, """'inputs' names ["x"]; the model has one"""),
    ("named instance wrong name", "POST", P, {"instances": [{"features": GOOD}, {"feature": GOOD}]}, 400,
     """instance 1 names ["feature"]; the model has one input, 'features'"""),
    ("mixed instance forms", "POST", P, {"instances": [{"features": GOOD}, GOOD]}, 400,
     "instance 1 is a list of 4; instance 0 is an object"),
    ("unknown model", "POST", "/v1/models/other:predict", {"instances": [GOOD]}, 404,
     "model 'other' is not served here; this predictor serves 'susy'"),
    ("unknown version", "POST", f"/v1/models/{NAME}/versions/7:predict", {"instances": [GOOD]}, 404,
     "version 7 is not available; available: [1, 2]"),
    ("unknown version status", "GET", f"/v1/models/{NAME}/versions/7", b"", 404, "version 7 is not available"),
    ("version not a number", "GET", f"/v1/models/{NAME}/versions/latest", b"", 400, "'latest' is not a version"),
    ("labels", "GET", f"/v1/models/{NAME}/labels/stable", b"", 404, "version labels are not supported"),
    ("GET predict", "GET", P, b"", 405, "GET is not allowed on :predict; use POST"),
    ("POST status", "POST", f"/v1/models/{NAME}", b"{}", 405, "use GET"),
    ("PUT metadata", "PUT", f"/v1/models/{NAME}/metadata", b"", 405, "use GET"),
    ("classify", "POST", f"/v1/models/{NAME}:classify", {"examples": []}, 400, ":classify is not supported"),
    ("regress", "POST", f"/v1/models/{NAME}:regress", {"examples": []}, 400, ":regress is not supported"),
    ("unknown verb", "POST", f"/v1/models/{NAME}:explain", b"{}", 404, "unknown method :explain"),
    ("unknown path", "GET", "/v2/things", b"", 404, "no such path: /v2/things"),
    ("trailing slash", "GET", f"/v1/models/{NAME}/", b"", 404, "no such path"),
    ("query string", "GET", f"/v1/models/{NAME}?verbose=1", b"", 400, "query parameters are not supported"),
]


@pytest.mark.parametrize(("method", "path", "body", "code", "reason"), [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_and_one_line_naming_the_problem(api: rest.RestApi, method: str, path: str,
                                                               body: bytes | dict[str, Any], code: int,
                                                               reason: str) -> None:
    answer_code, answer = call(api, method, path, body)
    assert answer_code == code, answer
    assert list(answer) == ["error"] and reason in answer["error"], answer
    assert "\n" not in answer["error"] and len(answer["error"]) < 400


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(["list", "row", "dict", "number", "special", "string", "null", "bool"] if depth < 4
                      else ["number", "special", "string", "null", "bool"])
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    if kind == "row":
        return [rng.choice([rng.uniform(-5, 5), rng.randint(-3, 3)]) for _ in range(rng.choice([0, 3, 4, 4, 4, 5]))]
    if kind == "dict":
        keys = ["instances", "inputs", "features", "signature_name", "x"]
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return {"number": rng.uniform(-1e40, 1e40), "special": rng.choice([float("nan"), float("inf"), 10**400]),
            "string": "serving_default", "null": None, "bool": rng.random() < 0.5}[kind]


def random_request(rng: random.Random) -> Any:
    """A good request with 0 to 2 random mutations, or random JSON of the API's vocabulary."""
    if rng.random() < 0.2:
        return random_json(rng)
    table = [[rng.uniform(-5, 5) for _ in range(WIDTH)] for _ in range(rng.randint(1, 4))]
    request: dict[str, Any] = {rng.choice(["instances", "inputs"]): table}
    for _ in range(rng.choice([0, 0, 1, 2])):
        row = rng.randrange(len(table))
        mutation = rng.randrange(5)
        if mutation == 0 and isinstance(table[row], list) and table[row]:
            table[row][rng.randrange(len(table[row]))] = random_json(rng, depth=3)
        elif mutation == 1:
            table[row] = random_json(rng)
        elif mutation == 2:
            request[rng.choice(["instances", "inputs", "signature_name", "other"])] = random_json(rng)
        elif mutation == 3:
            key = next(iter(request))
            request[key] = {rng.choice(["features", "x"]): request[key]}
        else:
            table.append(random_json(rng, depth=2))
    return request


def test_no_request_body_makes_the_api_fail(api: rest.RestApi) -> None:
    """Good requests mutated at random: every answer is a 200 or a 4xx with one line, never an exception."""
    rng = random.Random(5)
    codes = set()
    for _ in range(600):
        code, _, answer = api("POST", P, json.dumps(random_request(rng)).encode())
        codes.add(code)
        assert code == 200 or (400 <= code < 500 and "\n" not in json.loads(answer)["error"])
    assert 200 in codes and 400 in codes


def test_a_failing_predict_is_a_500_with_one_line_and_the_next_request_is_served(batcher: Batcher) -> None:
    loaded = loaded_model(3, seed=2)
    good = loaded.predict
    failures = iter([True])

    def failing_once(x: Any) -> Any:  # wraps the compiled function
        if next(failures, False):
            raise RuntimeError("device lost\nsecond line")
        return good(x)

    loaded.predict = failing_once
    api = rest.RestApi(Source(loaded), batcher, max_instances=100)
    code, answer = call(api, "POST", P, {"instances": [GOOD]})
    assert (code, answer) == (500, {"error": "prediction failed on version 3: RuntimeError: device lost second line"})
    code, answer = call(api, "POST", P, {"instances": [GOOD]})
    assert code == 200
    np.testing.assert_allclose(answer["predictions"], expected(loaded, np.array([GOOD], np.float32)), atol=1e-6)


def test_after_close_requests_are_refused_with_503(v1: LoadedModel) -> None:
    batcher = Batcher(max_batch=8, max_wait=0.0)
    batcher.close()
    code, answer = call(rest.RestApi(Source(v1), batcher, 100), "POST", P, {"instances": [GOOD]})
    assert (code, answer) == (503, {"error": "the predictor is shutting down"})
