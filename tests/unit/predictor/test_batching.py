"""The Batcher on a real Keras model: concurrent requests share predict calls, each gets its own rows' scores, a
batch never mixes versions, a failing call fails only its requests, close() scores what is queued."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from streamtrain import models
from streamtrain.predictor.batching import Batcher, Closed
from streamtrain.store.loaded import LoadedModel, compile_predict

WIDTH = 4
PATIENCE = 60.0  # seconds a step may take on a loaded machine before the test gives up: a hang, not a speed


class Counting:
    """Wraps a LoadedModel's compiled predict: records the rows of each call, and can hold calls until released."""

    def __init__(self, loaded: LoadedModel, hold: bool = False) -> None:
        self.inner = loaded.predict
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.released = threading.Event()
        if not hold:
            self.released.set()
        loaded.predict = self

    def __call__(self, x: Any) -> Any:
        self.calls.append(int(x.shape[0]))
        self.entered.set()
        assert self.released.wait(PATIENCE)
        return self.inner(x)


def loaded_model(version: int, seed: int) -> LoadedModel:
    return LoadedModel(version, model := models.mlp(WIDTH, seed=seed), compile_predict(model), {}, 0)


def expected(loaded: LoadedModel, x: np.ndarray) -> np.ndarray:
    return np.asarray(loaded.model(x, training=False))[:, 0]


def rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, WIDTH)).astype(np.float32)


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.005)


class Client(threading.Thread):
    """One request thread: submits its rows, keeps the scores or the exception."""

    def __init__(self, batcher: Batcher, loaded: LoadedModel, x: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.batcher, self.loaded, self.x = batcher, loaded, x
        self.scores: np.ndarray | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.scores = self.batcher.predict(self.loaded, self.x)
        except BaseException as exc:
            self.error = exc

    def result(self) -> np.ndarray:
        self.join(PATIENCE)
        assert not self.is_alive(), "the request was never answered"
        assert self.error is None, self.error
        assert self.scores is not None
        return self.scores


@pytest.fixture
def batcher() -> Iterator[Batcher]:
    batcher = Batcher(max_batch=64, max_wait=0.0)
    yield batcher
    batcher.close()


def test_a_single_request_gets_the_models_scores(batcher: Batcher) -> None:
    loaded = loaded_model(1, seed=0)
    x = rows(5, seed=1)
    np.testing.assert_allclose(batcher.predict(loaded, x), expected(loaded, x), atol=1e-6, rtol=0)


def test_queued_requests_share_one_call_and_each_gets_its_own_rows(batcher: Batcher) -> None:
    loaded = loaded_model(1, seed=0)
    counting = Counting(loaded, hold=True)
    first = Client(batcher, loaded, rows(2, seed=100))
    assert counting.entered.wait(PATIENCE)  # the worker is busy with the first request
    inputs = [rows(1 + i % 3, seed=i) for i in range(12)]
    clients = [Client(batcher, loaded, x) for x in inputs]
    until(lambda: batcher.waiting() == len(clients))
    counting.released.set()
    for client, x in zip(clients, inputs, strict=True):
        np.testing.assert_allclose(client.result(), expected(loaded, x), atol=1e-6, rtol=0)
    np.testing.assert_allclose(first.result(), expected(loaded, first.x), atol=1e-6, rtol=0)
    assert counting.calls == [2, sum(len(x) for x in inputs)]  # 13 requests, 2 predict calls


def test_the_first_request_waits_for_others_when_max_wait_is_set() -> None:
    loaded = loaded_model(1, seed=0)
    counting = Counting(loaded)
    batcher = Batcher(max_batch=1000, max_wait=0.5)
    start = threading.Barrier(8)
    inputs = [rows(2, seed=i) for i in range(8)]
    results: dict[int, np.ndarray] = {}

    def request(i: int) -> None:
        start.wait()
        results[i] = batcher.predict(loaded, inputs[i])

    threads = [threading.Thread(target=request, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    batcher.close()
    for i, x in enumerate(inputs):
        np.testing.assert_allclose(results[i], expected(loaded, x), atol=1e-6, rtol=0)
    assert len(counting.calls) < 8


def test_a_full_batch_goes_without_waiting_out_max_wait() -> None:
    loaded = loaded_model(1, seed=0)
    counting = Counting(loaded)
    batcher = Batcher(max_batch=4, max_wait=3600.0)  # were the batch held for max_wait, the clients would hang
    clients = [Client(batcher, loaded, rows(2, seed=i)) for i in range(2)]
    for client in clients:
        np.testing.assert_allclose(client.result(), expected(loaded, client.x), atol=1e-6, rtol=0)
    assert counting.calls == [4]
    batcher.close()


def test_batches_hold_at_most_max_batch_rows_and_a_larger_request_is_scored_alone() -> None:
    loaded = loaded_model(1, seed=0)
    counting = Counting(loaded, hold=True)
    batcher = Batcher(max_batch=5, max_wait=0.0)
    first = Client(batcher, loaded, rows(1, seed=99))
    assert counting.entered.wait(PATIENCE)
    sizes = [2, 2, 2, 9, 1, 3]
    clients = []
    for i, size in enumerate(sizes):  # one by one, so that the queue holds them in this order
        clients.append(Client(batcher, loaded, rows(size, seed=i)))
        until(lambda n=i + 1: batcher.waiting() == n)
    counting.released.set()
    for client in [first, *clients]:
        np.testing.assert_allclose(client.result(), expected(loaded, client.x), atol=1e-6, rtol=0)
    assert counting.calls == [1, 4, 2, 9, 4]  # 2+2 | 2 (the 9 does not fit) | 9 alone | 1+3
    batcher.close()


def test_a_batch_never_mixes_versions_and_each_request_keeps_the_version_it_came_with(batcher: Batcher) -> None:
    v1, v2 = loaded_model(1, seed=0), loaded_model(2, seed=1)
    counting = {1: Counting(v1, hold=True), 2: Counting(v2)}
    first = Client(batcher, v1, rows(1, seed=50))
    assert counting[1].entered.wait(PATIENCE)  # version 1 is in flight; the service swaps to version 2 now
    order = [v1, v2, v2, v1, v1, v2]
    clients = []
    for i, loaded in enumerate(order):
        clients.append(Client(batcher, loaded, rows(2, seed=i)))
        until(lambda n=i + 1: batcher.waiting() == n)
    counting[1].released.set()
    for client in [first, *clients]:
        np.testing.assert_allclose(client.result(), expected(client.loaded, client.x), atol=1e-6, rtol=0)
    assert counting[1].calls == [1, 2, 4] and counting[2].calls == [4, 2]  # runs of one version share a call
    assert not np.allclose(expected(v1, clients[0].x), expected(v2, clients[0].x), atol=1e-6)


def test_a_failing_call_fails_its_requests_only_and_the_worker_goes_on(batcher: Batcher) -> None:
    loaded = loaded_model(1, seed=0)
    good = loaded.predict
    blocked, release = threading.Event(), threading.Event()
    failing = iter([True])

    def fails_once(x: Any) -> Any:  # wraps the compiled function
        blocked.set()
        assert release.wait(PATIENCE)
        if next(failing, False):
            raise RuntimeError("out of memory")
        return good(x)

    loaded.predict = fails_once
    other = loaded_model(2, seed=1)
    first = Client(batcher, loaded, rows(1, seed=1))
    assert blocked.wait(PATIENCE)
    release.set()
    first.join(PATIENCE)
    assert isinstance(first.error, RuntimeError) and str(first.error) == "out of memory"
    x = rows(3, seed=2)
    np.testing.assert_allclose(batcher.predict(loaded, x), expected(loaded, x), atol=1e-6, rtol=0)
    np.testing.assert_allclose(batcher.predict(other, x), expected(other, x), atol=1e-6, rtol=0)


def test_close_scores_what_is_queued_then_refuses() -> None:
    loaded = loaded_model(1, seed=0)
    counting = Counting(loaded, hold=True)
    batcher = Batcher(max_batch=64, max_wait=0.0)
    clients = [Client(batcher, loaded, rows(1, seed=0))]
    assert counting.entered.wait(PATIENCE)  # the worker is busy: the next two wait in the queue
    clients += [Client(batcher, loaded, rows(1, seed=i)) for i in (1, 2)]
    until(lambda: batcher.waiting() == 2)
    closing = threading.Thread(target=batcher.close)
    closing.start()
    until(lambda: batcher.waiting() == 3)  # the two requests and the stop mark
    counting.released.set()
    closing.join(PATIENCE)
    assert not closing.is_alive()
    for client in clients:
        np.testing.assert_allclose(client.result(), expected(loaded, client.x), atol=1e-6, rtol=0)
    with pytest.raises(Closed):
        batcher.predict(loaded, rows(1, seed=9))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(max_batch=0, max_wait=0.0)
