"""The predictor's REST API, TensorFlow Serving's, so that an application written against TF Serving works unchanged.

    GET  /v1/models/<name>[/versions/<n>]            status of the versions (of one version)
    GET  /v1/models/<name>[/versions/<n>]/metadata   the serving_default signature: input [-1, width], output [-1, 1]
    POST /v1/models/<name>[/versions/<n>]:predict    {"instances": rows}  -> {"predictions": [[p], ...]}
                                                     {"inputs": columns}  -> {"outputs": [[p], ...]}

Without /versions/<n> the version the predictor serves now answers. Rows are lists of `width` numbers, or objects
{"<input name>": [...]} naming the model's one input; columns are a list of rows or {"<input name>": rows}.

Every refusal is a 4xx JSON {"error": "<one line>"} naming the problem (instance and position for a bad value); a
500 means a fault of the server, never a bad request. Where this API differs from TensorFlow Serving's:
- no version loaded yet: 503 (TF Serving answers 404 "Servable not found"), so that clients and load balancers
  retry instead of concluding the model does not exist;
- NaN, Infinity and numbers beyond float32's range are refused (TF Serving scores them): the trainer dead-letters
  such records too, and a prediction from one is meaningless;
- more than `max_instances` instances in one request: 413 (TF Serving has no limit);
- :classify and :regress (tf.Example input), version labels and query strings are not supported: 400 or 404.
"""

from __future__ import annotations

import json
import logging
import re
from itertools import chain
from typing import Any, NoReturn, Protocol

import numpy as np

from streamtrain.predictor.batching import Batcher, Closed
from streamtrain.service.http import App
from streamtrain.store.loaded import LoadedModel

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
METHOD_NAME = "tensorflow/serving/predict"
OUTPUT_NAME = "output_0"  # what Keras' export calls the one output of the SavedModels the trainer publishes
FLOAT32_MAX = float(np.finfo(np.float32).max)
JSON = "application/json"

_PATH = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                   r"(?:(?P<metadata>/metadata)|:(?P<verb>[^/:]*))?")
_NUMBER_TYPES = {int, float}  # bool is neither: true/false are refused


class ModelSource(Protocol):
    """Where the API finds model versions (the predictor's version manager implements it)."""

    model_name: str

    def serving(self) -> LoadedModel | None:
        """The version served now (None: none loaded yet)."""

    def version(self, number: int) -> LoadedModel | None:
        """A specific version if it is available (this may load it), None if not."""

    def available(self) -> list[int]:
        """The versions that can be asked for by number."""


class RequestError(Exception):
    """A request the API refuses: the HTTP status and the one line of its {"error": ...}."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def app(source: ModelSource, batcher: Batcher, max_instances: int) -> App:
    """The REST API as the `app` of streamtrain.service.http.serve."""
    return RestApi(source, batcher, max_instances)


class RestApi:
    """Routes a request to the status, metadata or predict answer; turns refusals into 4xx JSON."""

    def __init__(self, source: ModelSource, batcher: Batcher, max_instances: int) -> None:
        self.source = source
        self.batcher = batcher
        self.max_instances = max_instances

    def __call__(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        try:
            return self._route(method, path, body)
        except RequestError as refused:
            return _json(refused.code, {"error": refused.message})

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        if "?" in path:
            raise RequestError(400, "query parameters are not supported")
        match = _PATH.fullmatch(path)
        if match is None:
            if path.startswith("/v1/models/") and "/labels/" in path:
                raise RequestError(404, "version labels are not supported; use /versions/<n>")
            raise RequestError(404, f"no such path: {_clip(path)}; the API is "
                                    "/v1/models/<name>[/versions/<n>][/metadata|:predict]")
        name, version_text, metadata, verb = match.group("name", "version", "metadata", "verb")
        if verb is not None:
            if method != "POST":
                raise RequestError(405, f"{method} is not allowed on :{_clip(verb)}; use POST")
            if verb in ("classify", "regress"):
                raise RequestError(400, f":{verb} is not supported (it takes tf.Example input); use :predict")
            if verb != "predict":
                raise RequestError(404, f"unknown method :{_clip(verb)}; the API has :predict")
        elif method != "GET":
            raise RequestError(405, f"{method} is not allowed on {_clip(path)}; use GET")
        if name != self.source.model_name:
            raise RequestError(404, f"model {_clip(name)!r} is not served here; this predictor serves "
                                    f"{self.source.model_name!r}")
        version = _version_number(version_text)
        if verb is not None:
            return self._predict(version, body)
        if metadata is not None:
            return self._metadata(version)
        return self._status(version)

    def _status(self, version: int | None) -> tuple[int, str, bytes]:
        known = self._versions()
        if version is None and not known:
            raise RequestError(503, self._nothing_loaded())
        if version is not None and version not in known:
            raise RequestError(404, _unavailable(version, known))
        listed = [version] if version is not None else sorted(known, reverse=True)
        return _json(200, {"model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in listed
        ]})

    def _metadata(self, version: int | None) -> tuple[int, str, bytes]:
        loaded = self._resolve(version)
        return _json(200, {
            "model_spec": {"name": self.source.model_name, "signature_name": "", "version": str(loaded.version)},
            "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature_def(loaded)}}},
        })

    def _predict(self, version: int | None, body: bytes) -> tuple[int, str, bytes]:
        loaded = self._resolve(version)
        rows, key = parse_predict(body, input_name(loaded), loaded.width, self.max_instances)
        try:
            scores = self.batcher.predict(loaded, rows)
        except Closed as closed:
            raise RequestError(503, str(closed)) from None
        except Exception as exc:  # the batcher logged it; the client gets one line
            return _json(500, {"error": _one_line(f"prediction failed on version {loaded.version}: "
                                                  f"{type(exc).__name__}: {exc}")})
        # The model's output is [n, 1]: one list per instance, as TF Serving answers for it.
        return _json(200, {key: np.asarray(scores, np.float32).reshape(-1, 1).tolist()})

    def _resolve(self, version: int | None) -> LoadedModel:
        if version is None:
            loaded = self.source.serving()
            if loaded is None:
                raise RequestError(503, self._nothing_loaded())
            return loaded
        loaded = self.source.version(version)
        if loaded is None:
            raise RequestError(404, _unavailable(version, self._versions()))
        return loaded

    def _versions(self) -> list[int]:
        serving = self.source.serving()
        return sorted({*self.source.available(), *([serving.version] if serving is not None else [])})

    def _nothing_loaded(self) -> str:
        return f"model {self.source.model_name!r} has no version loaded yet"


def input_name(loaded: LoadedModel) -> str:
    """The model's one input, as its exported signature names it (`features` for the models built here)."""
    return str(loaded.model.inputs[0].name)


def signature_def(loaded: LoadedModel) -> dict[str, Any]:
    """The serving_default SignatureDef as TF Serving shows it for the SavedModel of this version."""
    name = input_name(loaded)
    output = [-1 if d is None else int(d) for d in loaded.model.outputs[0].shape]
    return {
        "inputs": {name: _tensor_info([-1, loaded.width], f"{SIGNATURE}_{name}:0")},
        "outputs": {OUTPUT_NAME: _tensor_info(output, "StatefulPartitionedCall:0")},
        "method_name": METHOD_NAME,
    }


def _tensor_info(shape: list[int], tensor: str) -> dict[str, Any]:
    return {"dtype": "DT_FLOAT", "name": tensor,
            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in shape], "unknown_rank": False}}


def parse_predict(body: bytes, name: str, width: int, max_instances: int) -> tuple[np.ndarray, str]:
    """A predict request's features as float32 [n, width], and the key its answer goes under ("predictions" for
    the row format, "outputs" for the columnar one). Raises RequestError naming the first problem."""
    try:
        request = json.loads(body)
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes that are no text
        raise RequestError(400, _one_line(f"malformed JSON: {exc}")) from None
    if not isinstance(request, dict):
        raise RequestError(400, f"the request must be a JSON object with 'instances' or 'inputs', "
                                f"not {_describe(request)}")
    signature = request.get("signature_name", "")
    if signature not in (None, "", SIGNATURE):
        raise RequestError(400, f"signature_name {_clip(json.dumps(signature))} is not a signature of this model; "
                                f"it has {SIGNATURE!r}")
    if ("instances" in request) == ("inputs" in request):
        raise RequestError(400, "the request needs exactly one of 'instances' (row format) or 'inputs' "
                                f"(columnar format); it has {'both' if 'inputs' in request else 'neither'}")
    if "instances" in request:
        rows, field, noun, key = _instances(request["instances"], name), "instances", "instance", "predictions"
    else:
        rows, field, noun, key = _inputs(request["inputs"], name), "inputs", "inputs row", "outputs"
    if not rows:
        raise RequestError(400, f"'{field}' is empty: nothing to predict")
    if len(rows) > max_instances:
        raise RequestError(413, f"{len(rows)} {noun}s in one request; at most {max_instances} are accepted")
    return _matrix(rows, width, noun), key


def _instances(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise RequestError(400, f"'instances' must be a list of instances, not {_describe(value)}")
    if not value or not isinstance(value[0], dict):
        return value
    rows = []
    for i, instance in enumerate(value):
        if not isinstance(instance, dict):
            raise RequestError(400, f"instance {i} is {_describe(instance)}; instance 0 is an object, "
                                    "so every instance must be one")
        if set(instance) != {name}:
            raise RequestError(400, f"instance {i} names {_names(instance)}; the model has one input, {name!r}")
        rows.append(instance[name])
    return rows


def _inputs(value: Any, name: str) -> list[Any]:
    if isinstance(value, dict):
        if set(value) != {name}:
            raise RequestError(400, f"'inputs' names {_names(value)}; the model has one input, {name!r}")
        value = value[name]
    if not isinstance(value, list):
        raise RequestError(400, f"'inputs' must be a list of rows (or {{{name!r}: rows}}), not {_describe(value)}")
    return value


def _matrix(rows: list[Any], width: int, noun: str) -> np.ndarray:
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise RequestError(400, f"{noun} {i} is {_describe(row)}, not a list of {width} numbers")
        if len(row) != width:
            raise RequestError(400, f"{noun} {i} has {len(row)} values, the model takes {width}")
    flat = list(chain.from_iterable(rows))
    if set(map(type, flat)) <= _NUMBER_TYPES:
        try:
            values = np.array(flat, np.float64)
        except OverflowError:  # an integer beyond float64: found and named below
            pass
        else:
            if np.all(np.abs(values) <= FLOAT32_MAX):  # NaN compares false: refused too
                return values.astype(np.float32).reshape(len(rows), width)
    _refuse_first_bad_value(rows, noun)


def _refuse_first_bad_value(rows: list[list[Any]], noun: str) -> NoReturn:
    """The slow path, for a request with a bad value only: find the first one and name it."""
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if type(value) not in _NUMBER_TYPES:
                problem = f"is {_describe(value)}, not a number"
            elif value != value or value in (float("inf"), float("-inf")):
                problem = f"is {_describe(value)}; values must be finite numbers"
            elif abs(value) > FLOAT32_MAX:
                problem = f"is {float(value):.3g}, beyond float32's range" if abs(value) < 1e308 \
                    else "is beyond float32's range"
            else:
                continue
            raise RequestError(400, f"{noun} {i}, value {j} {problem}")
    raise AssertionError("no bad value found in a request refused for one")


def _version_number(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise RequestError(400, f"version {_clip(text)!r} is not a version number")
    return int(text)


def _unavailable(version: int, known: list[int]) -> str:
    return f"version {version} is not available; available: {known}"


def _describe(value: Any) -> str:
    """A JSON value as an error message names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, str):
        return f"the string {_clip(json.dumps(value))}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return _clip(repr(value))


def _names(value: dict[str, Any]) -> str:
    return _clip(json.dumps(sorted(value))) if value else "no input"


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _one_line(text: str, limit: int = 300) -> str:
    return _clip(" ".join(text.split()), limit)


def _json(code: int, payload: dict[str, Any]) -> tuple[int, str, bytes]:
    return code, JSON, json.dumps(payload).encode()
