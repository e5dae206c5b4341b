"""Reactions to a drift do what they say; the replay buffer is bounded; weights reach the loss; state survives.

Drifts here are real: the Adaptation sees batches the model gets right, then batches it gets all
wrong (labels set against its own predictions), so its detector fires as it would in the trainer.
"""

from __future__ import annotations

import json
from typing import Any

import keras
import numpy as np
import pytest

from streamtrain import models
from streamtrain.service import config
from streamtrain.service.config import TrainerSettings
from streamtrain.trainer import adapt, drift, reactions
from streamtrain.trainer.adapt import Adaptation, ClassWeights
from streamtrain.trainer.learner import Learner
from streamtrain.trainer.replay import ReplayBuffer

WIDTH = 6
BATCH = 64


def settings(**overrides: Any) -> TrainerSettings:
    base: dict[str, Any] = {"drift_warmup_records": 0, "drift_cooldown_records": 0, "learning_rate": 0.001}
    return config.load(TrainerSettings, {**base, **overrides})


def features(rng: np.random.Generator, n: int = BATCH) -> np.ndarray:
    return rng.normal(0, 1, (n, WIDTH)).astype(np.float32)


def predictions(learner: Learner, x: np.ndarray) -> np.ndarray:
    return (learner.model(x, training=False).numpy()[:, 0] >= 0.5).astype(np.float32)


class Recorder:
    """Wraps Learner.step to see what each training step got and the learning rate it ran with."""

    def __init__(self, learner: Learner) -> None:
        self.calls: list[dict[str, Any]] = []
        self._step = learner.step
        self.learner = learner
        learner.step = self  # type: ignore[method-assign]

    def __call__(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
                 fresh: int | None = None) -> np.ndarray:
        self.calls.append({"x": x, "y": y, "w": w, "fresh": fresh,
                           "lr": float(self.learner.optimizer.learning_rate.numpy())})
        return self._step(x, y, w, fresh)


def run_until_drift(adaptation: Adaptation, learner: Learner, rng: np.random.Generator,
                    calm_batches: int = 40) -> tuple[dict[str, Any], int]:
    """Batches the model gets right, then all wrong until the detector reports; returns (event, position)."""
    position = 0
    for _ in range(calm_batches):
        x = features(rng)
        _, event = adaptation.step(learner, x, predictions(learner, x), position)
        assert event is None, "drift reported on a stream the model gets right"
        position += BATCH
    for _ in range(20):
        x = features(rng)
        _, event = adaptation.step(learner, x, 1 - predictions(learner, x), position)
        position += BATCH
        if event is not None:
            return event, position
    raise AssertionError("no drift reported after the errors jumped to 100%")


def make(spec: str = "mlp", seed: int = 0) -> Learner:
    return Learner(models.build(spec, WIDTH, seed), 0.001)


def test_boost_lr_raises_the_learning_rate_for_n_batches_then_restores_it() -> None:
    learner = make()
    recorder = Recorder(learner)
    adaptation = Adaptation(settings(drift_reaction="boost-lr", drift_boost_batches=3, drift_lr_boost=10))
    event, position = run_until_drift(adaptation, learner, np.random.default_rng(0))
    assert event["reaction"] == "boost-lr" and event["learning_rate"] == pytest.approx(0.01)
    assert event["records_trained"] == position
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = features(rng)
        adaptation.step(learner, x, predictions(learner, x), position)
        position += BATCH
    used = [round(c["lr"], 6) for c in recorder.calls]
    detected = len(used) - 6  # the batch that set off the alarm, then 5 more
    assert set(used[:detected + 1]) == {0.001}  # up to and including the batch that revealed the drift
    assert used[detected + 1:detected + 4] == [0.01, 0.01, 0.01]  # drift_boost_batches = 3
    assert used[detected + 4:] == [0.001, 0.001]
    assert adaptation.status()["lr_boost_batches_left"] == 0
    assert adapt.LEARNING_RATE._value.get() == pytest.approx(0.001)


def test_reset_optimizer_zeroes_its_state_and_keeps_the_weights_and_learning_rate() -> None:
    learner = make()
    adaptation = Adaptation(settings(drift_reaction="reset-optimizer"))
    rng = np.random.default_rng(2)
    position = 0
    for _ in range(40):  # learn something, so the moments are far from zero
        x = features(rng)
        adaptation.step(learner, x, (x[:, 0] > 0).astype(np.float32), position)
        position += BATCH
    moments = [v for v in learner.optimizer.variables if "momentum" in v.path or "velocity" in v.path]
    assert all(np.abs(v.numpy()).max() > 0 for v in moments)
    weights_before: list[np.ndarray] = []

    original = reactions.reset_optimizer

    def spy(optimizer: keras.optimizers.Optimizer) -> int:
        weights_before.extend(w.copy() for w in learner.model.get_weights())
        return original(optimizer)

    adapt.reactions.reset_optimizer = spy  # type: ignore[assignment]
    try:
        event, _ = run_until_drift(adaptation, learner, rng, calm_batches=10)
    finally:
        adapt.reactions.reset_optimizer = original  # type: ignore[assignment]
    assert event["reaction"] == "reset-optimizer"
    assert event["variables_zeroed"] == len(learner.optimizer.variables) - 1  # all but the learning rate
    for variable in learner.optimizer.variables:
        if variable.path.endswith("learning_rate"):
            assert float(variable.numpy()) == pytest.approx(0.001)
        else:
            assert not np.any(variable.numpy()), variable.path
    for before, after in zip(weights_before, learner.model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_reinit_output_reinitialises_only_the_output_layer() -> None:
    learner = make(seed=3)
    adaptation = Adaptation(settings(drift_reaction="reinit-output", seed=3))
    rng = np.random.default_rng(3)
    position = 0
    for _ in range(30):
        x = features(rng)
        adaptation.step(learner, x, (x[:, 1] > 0).astype(np.float32), position)
        position += BATCH
    out = reactions.output_layer(learner.model)
    assert out.name == "probability"
    snapshot: dict[str, np.ndarray] = {}
    original = reactions.reinit_output

    def spy(model: keras.Model, optimizer: keras.optimizers.Optimizer, seed: int) -> str:
        snapshot.update({v.path: np.array(v.numpy()) for v in model.weights})  # the weights at the alarm
        return original(model, optimizer, seed)

    adapt.reactions.reinit_output = spy  # type: ignore[assignment]
    try:
        event, _ = run_until_drift(adaptation, learner, rng, calm_batches=5)
    finally:
        adapt.reactions.reinit_output = original  # type: ignore[assignment]
    assert event["reaction"] == "reinit-output" and event["layer"] == "probability"
    # The output layer holds exactly what its initializers give with the event's seed (3 + 1): a fresh start.
    fresh_kernel = keras.initializers.GlorotUniform(seed=4)(tuple(out.kernel.shape)).numpy()
    np.testing.assert_allclose(out.kernel.numpy(), fresh_kernel)
    assert not np.any(out.bias.numpy())
    assert np.abs(snapshot[out.kernel.path] - fresh_kernel).max() > 0.01  # it did change
    # Every other weight is untouched by the reaction.
    for variable in learner.model.weights:
        if variable.path not in (out.kernel.path, out.bias.path):
            np.testing.assert_array_equal(variable.numpy(), snapshot[variable.path], err_msg=variable.path)
    optimizer = learner.optimizer
    for variable in out.trainable_weights:
        index = optimizer._get_variable_index(variable)
        assert not np.any(optimizer._momentums[index].numpy()) and not np.any(optimizer._velocities[index].numpy())
    hidden = next(layer for layer in learner.model.layers if isinstance(layer, keras.layers.Dense)).kernel
    assert np.any(optimizer._momentums[optimizer._get_variable_index(hidden)].numpy())


def test_no_reaction_still_reports_and_warmup_and_cooldown_hold_alarms_back() -> None:
    learner = make()
    adaptation = Adaptation(settings(drift_reaction="none", drift_warmup_records=100_000))
    rng = np.random.default_rng(4)
    position = 0
    for calm in (True,) * 30 + (False,) * 10:
        x = features(rng)
        y = predictions(learner, x)
        _, event = adaptation.step(learner, x, y if calm else 1 - y, position)
        assert event is None  # inside the warm-up
        position += BATCH
    adaptation = Adaptation(settings(drift_reaction="none", drift_cooldown_records=1_000_000))
    event, _ = run_until_drift(adaptation, learner, rng)
    assert event["reaction"] == "none" and adaptation.event_count == 1
    for calm in (True,) * 30 + (False,) * 10:  # a second rise within the cool-down is not reported
        x = features(rng)
        y = predictions(learner, x)
        _, event = adaptation.step(learner, x, y if calm else 1 - y, 10_000)
        assert event is None
    assert adaptation.event_count == 1


def test_replay_buffer_is_bounded_and_holds_the_newest_records() -> None:
    buffer = ReplayBuffer(capacity=100, ratio=0.25, seed=0)
    rng = np.random.default_rng(5)
    rows = rng.normal(0, 1, (1000, 3)).astype(np.float32)
    for start in range(0, 1000, 37):
        buffer.add(rows[start:start + 37], np.ones(len(rows[start:start + 37]), np.float32))
        assert len(buffer) <= 100
    assert len(buffer) == 100
    held = {tuple(r) for r in buffer._x}  # type: ignore[union-attr]
    assert held == {tuple(r) for r in rows[-100:]}
    x, y = buffer.sample(30)
    assert x.shape == (10, 3) and y.shape == (10,)  # 25 % of 40
    assert {tuple(r) for r in x} <= held and len({tuple(r) for r in x}) == 10
    assert buffer.sample(3000)[0].shape[0] == 100  # never more than it holds
    buffer.add(rows[:500], np.zeros(500, np.float32))  # a batch larger than the buffer
    assert len(buffer) == 100 and {tuple(r) for r in buffer._x} == {tuple(r) for r in rows[400:500]}  # type: ignore[union-attr]
    buffer.clear()
    assert len(buffer) == 0 and buffer.sample(50)[0].shape == (0, 3)
    assert ReplayBuffer(10, 0.0).replay_count(100) == 0
    with pytest.raises(ValueError):
        ReplayBuffer(10, 1.0)


def test_replayed_records_are_trained_on_but_not_scored_or_counted_in_the_statistics() -> None:
    learner = make()
    recorder = Recorder(learner)
    adaptation = Adaptation(settings(replay_size=500, replay_ratio=0.5, drift_detector="none"))
    rng = np.random.default_rng(6)
    for i in range(12):
        x = features(rng)
        scores, _ = adaptation.step(learner, x, (x[:, 0] > 0).astype(np.float32), i * BATCH)
        assert scores.shape == (BATCH,)
    sizes = [(c["fresh"], len(c["y"])) for c in recorder.calls]
    assert sizes[0] == (BATCH, BATCH)  # nothing to replay yet
    assert all(fresh == BATCH and total == 2 * BATCH for fresh, total in sizes[1:])  # ratio 0.5
    assert len(adaptation.replay or []) == 500
    standardizer = models.standardizer(learner.model)
    assert standardizer is not None and float(standardizer.count.numpy()) == 12 * BATCH


def test_a_drift_empties_the_replay_buffer() -> None:
    learner = make()
    adaptation = Adaptation(settings(replay_size=1000, replay_ratio=0.25, drift_reaction="none"))
    event, _ = run_until_drift(adaptation, learner, np.random.default_rng(7))
    assert event["replay_dropped"] > 0
    assert len(adaptation.replay or []) == 0


def test_class_weights_balanced_running_estimate_and_explicit() -> None:
    balanced = ClassWeights("balanced")
    labels = np.array([0.0] * 90 + [1.0] * 10, np.float32)
    w = balanced.of(labels)
    assert w is not None
    assert w[0] == pytest.approx(100 / 180) and w[-1] == pytest.approx(100 / 20)
    assert float((w * labels).sum()) == pytest.approx(float((w * (1 - labels)).sum()))  # classes weigh the same
    explicit = ClassWeights("0:1,1:5")
    np.testing.assert_array_equal(explicit.of(np.array([0, 1, 1], np.float32)), [1, 5, 5])
    assert ClassWeights("none").of(labels) is None
    for bad in ("2:1", "0:-1", "balanced,0:1", "0=1", "0:nan"):
        with pytest.raises(config.ConfigError, match="--class-weight"):
            config.load(TrainerSettings, {"class_weight": bad})


def plain_logreg(seed: int) -> Learner:
    """Logistic regression without the standardisation layer and without dropout: updates are exact."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(WIDTH,))
    return Learner(keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs)), 0.05)


def test_sample_weights_reach_the_loss() -> None:
    rng = np.random.default_rng(8)
    x = features(rng, 8)
    y = (x[:, 0] > 0).astype(np.float32)
    # Weight 2 on a record is the same step as the record twice.
    a, b = plain_logreg(1), plain_logreg(1)
    a.step(x, y, np.array([2, 1, 1, 1, 1, 1, 1, 1], np.float32))
    b.step(np.concatenate([x[:1], x]), np.concatenate([y[:1], y]))
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    # Weight 0 everywhere: nothing is learnt.
    c = plain_logreg(2)
    before = [w.copy() for w in c.model.get_weights()]
    c.step(x, y, np.zeros(8, np.float32))
    for w0, w1 in zip(before, c.model.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)
    # The trainer's Adaptation hands the class weights to the step.
    learner = make()
    recorder = Recorder(learner)
    adaptation = Adaptation(settings(class_weight="0:0.5,1:3", drift_detector="none"))
    adaptation.step(learner, x, y, 0)
    np.testing.assert_array_equal(recorder.calls[0]["w"], np.where(y == 1, 3.0, 0.5))


def test_adaptation_state_survives_a_json_round_trip() -> None:
    learner = make()
    s = settings(drift_reaction="boost-lr", drift_boost_batches=50, class_weight="balanced")
    adaptation = Adaptation(s)
    event, position = run_until_drift(adaptation, learner, np.random.default_rng(9))
    state = json.loads(json.dumps(adaptation.to_json()))
    restored = Adaptation(s)
    restored.load(state)
    assert restored.events == [event] and restored.event_count == 1
    assert restored.boost_left == adaptation.boost_left == 50
    assert restored.weights.counts == adaptation.weights.counts and sum(restored.weights.counts) == position
    assert isinstance(restored.detector, drift.Adwin) and isinstance(adaptation.detector, drift.Adwin)
    assert restored.detector.buckets == adaptation.detector.buckets
    fresh = make()  # a restarted trainer builds its learner with the configured rate; the boost is re-applied
    recorder = Recorder(fresh)
    x = features(np.random.default_rng(10))
    restored.step(fresh, x, predictions(fresh, x), position)
    assert recorder.calls[0]["lr"] == pytest.approx(0.01)


def test_trace_file_records_every_prequential_error(tmp_path: Any) -> None:
    trace = tmp_path / "trace.csv"
    learner = make()
    adaptation = Adaptation(settings(trace_file=trace, drift_reaction="none"))
    event, position = run_until_drift(adaptation, learner, np.random.default_rng(12), calm_batches=20)
    lines = trace.read_text().splitlines()
    assert lines[0] == "records_trained,records,errors,loss_sum,drift,learning_rate,error_bits"
    rows = [line.split(",") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == list(range(BATCH, position + 1, BATCH))
    assert all(len(r[6]) == int(r[1]) == BATCH and r[6].count("1") == int(r[2]) for r in rows)
    assert [int(r[0]) for r in rows if r[4] == "1"] == [event["records_trained"]]
    assert rows[0][6] == "0" * BATCH and rows[-1][6] == "1" * BATCH  # right, then all wrong


def test_rehearsal_trains_on_recent_records_only_and_forgets_them_at_a_drift() -> None:
    learner = make()
    recorder = Recorder(learner)
    adaptation = Adaptation(settings(rehearsal_records=100, drift_reaction="none"))
    rng = np.random.default_rng(3)
    assert not adaptation.rehearse(learner, 16)  # nothing seen yet
    seen = []
    for position in range(0, 3 * BATCH, BATCH):
        x = features(rng)
        adaptation.step(learner, x, predictions(learner, x), position)
        seen.append(x)
    recent = np.concatenate(seen)[-100:]
    stats = learner.standardizer.count.numpy()  # type: ignore[union-attr]
    weights = [w.copy() for w in learner.model.get_weights()]
    detector = adaptation.to_json()["detector"]
    assert adaptation.rehearse(learner, 16)
    step = recorder.calls[-1]
    assert step["fresh"] == 0 and len(step["x"]) == 16  # trained on, not scored
    assert {tuple(row) for row in step["x"]} <= {tuple(row) for row in recent}  # from the last 100 records
    assert any(not np.array_equal(a, b) for a, b in zip(weights, learner.model.get_weights(), strict=True))
    assert learner.standardizer.count.numpy() == stats  # type: ignore[union-attr]
    assert adaptation.to_json()["detector"] == detector and adaptation.status()["rehearsal_steps"] == 1
    assert not adaptation.rehearse(learner, 101)  # more than it holds
    run_until_drift(adaptation, learner, rng, calm_batches=0)
    assert not adaptation.rehearse(learner, 16)  # emptied: the old concept is not rehearsed
    x = features(rng)
    adaptation.step(learner, x, predictions(learner, x), 10 * BATCH)
    assert adaptation.rehearse(learner, 16)


def test_a_fixed_batch_size_takes_no_rehearsal_steps() -> None:
    learner = make()
    adaptation = Adaptation(settings(batch_size=32))
    x = features(np.random.default_rng(4))
    adaptation.step(learner, x, predictions(learner, x), 0)
    assert not adaptation.rehearse(learner, 16) and adaptation.memory is None


def test_auto_learning_rate_grows_with_the_square_root_of_the_step_and_a_number_holds() -> None:
    rng = np.random.default_rng(6)
    for learning_rate, expected in (("auto", [0.01, 0.01, 0.02, 0.08, 0.01]), (0.005, [0.005] * 5)):
        learner = make("logreg")
        recorder = Recorder(learner)
        adaptation = Adaptation(settings(model="logreg", learning_rate=learning_rate))
        for n in (16, 5, 64, 1024, 16):  # a short step learns like a step of 16 (--min-batch-size's default)
            x = features(rng, n)
            adaptation.step(learner, x, predictions(learner, x), 0)
        assert [round(c["lr"], 6) for c in recorder.calls] == expected, learning_rate
        assert adaptation.status()["learning_rate"] == pytest.approx(expected[-1])
