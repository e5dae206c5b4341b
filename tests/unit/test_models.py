"""Model factories: built-ins, user models (.keras file, module:function), shapes, running statistics."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import keras
import numpy as np
import pytest

from streamtrain import models
from streamtrain.models import CategoricalColumns, RunningStandardization


def n_params(variables: list[keras.Variable]) -> int:
    return sum(int(np.prod(v.shape)) for v in variables)


def standardize_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, RunningStandardization)]


def test_mlp_has_the_tutorial_parameter_count() -> None:
    model = models.build("mlp", 18)
    assert n_params(model.trainable_variables) == 68_481
    # mean + variance per feature and a count: statistics, not gradients
    assert n_params(model.non_trainable_weights) == 18 + 18 + 1
    assert n_params(models.standardizer(model).weights) == 18 + 18 + 1
    assert [type(layer).__name__ for layer in model.layers].count("Dropout") == 3
    assert tuple(model.inputs[0].shape) == (None, 18) and tuple(model.outputs[0].shape) == (None, 1)


def test_logreg_is_one_sigmoid_unit_after_standardization() -> None:
    model = models.build("logreg", 6)
    assert n_params(model.trainable_variables) == 7
    assert isinstance(model.layers[1], RunningStandardization)
    x = np.random.default_rng(0).normal(0, 3, (20, 6)).astype(np.float32)
    p = model(x).numpy()
    assert p.shape == (20, 1) and ((p > 0) & (p < 1)).all()
    kernel, bias = model.get_layer("probability").get_weights()
    # Fresh statistics (mean 0, variance 1) leave x as it is: p = sigmoid(x W + b).
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(x @ kernel + bias))), rtol=1e-4)


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, b, c = models.mlp(5, seed=3), models.mlp(5, seed=3), models.mlp(5, seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[3], c.get_weights()[3])


def user_model(width: int, out: int = 1) -> keras.Model:
    return keras.Sequential([keras.Input((width,)), keras.layers.Dense(4, activation="relu"),
                             keras.layers.Dense(out, activation="sigmoid")])


def assert_wrapped_and_equivalent(model: keras.Model, inner: keras.Model, width: int) -> None:
    """model = inner after a RunningStandardization, which standardizes with its statistics."""
    layers = standardize_layers(model)
    assert len(layers) == 1 and models.standardizer(model) is layers[0]
    assert tuple(model.inputs[0].shape) == (None, width)
    layer = layers[0]
    rng = np.random.default_rng(1)
    layer.mean.assign(rng.normal(0, 1, width).astype(np.float32))
    layer.variance.assign(rng.uniform(0.5, 4, width).astype(np.float32))
    x = rng.normal(0, 2, (8, width)).astype(np.float32)
    expected = inner((x - layer.mean.numpy()) / np.sqrt(layer.variance.numpy() + layer.epsilon)).numpy()
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_user_keras_file_is_wrapped_with_running_standardization(tmp_path: Path) -> None:
    path = tmp_path / "user.keras"
    original = user_model(5)
    original.save(path)
    model = models.build(str(path), 5)
    inner = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    for a, b in zip(inner.get_weights(), original.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert_wrapped_and_equivalent(model, inner, 5)


def test_keras_file_that_already_standardizes_is_not_wrapped_twice(tmp_path: Path) -> None:
    path = tmp_path / "ours.keras"
    models.logreg(4).save(path)
    model = models.build(str(path), 4)
    assert len(standardize_layers(model)) == 1
    assert n_params(model.trainable_variables) == 5


def write_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    name = f"user_factory_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_module_function_factory_is_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = write_factory(tmp_path, monkeypatch, """
        import keras

        CALLS = []

        def make(width):
            CALLS.append(width)
            return keras.Sequential([keras.Input((width,)), keras.layers.Dense(3, activation="tanh"),
                                     keras.layers.Dense(1, activation="sigmoid")])
    """)
    model = models.build(f"{module}:make", 7)
    assert sys.modules[module].CALLS == [7]
    inner = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    assert n_params(inner.trainable_variables) == 7 * 3 + 3 + 3 + 1
    assert_wrapped_and_equivalent(model, inner, 7)


def test_factory_with_wrong_output_shape_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = write_factory(tmp_path, monkeypatch, """
        import keras

        def two_outputs(width):
            return keras.Sequential([keras.Input((width,)), keras.layers.Dense(2, activation="softmax")])
    """)
    with pytest.raises(ValueError, match=r"output shape .* is not \(None, 1\)"):
        models.build(f"{module}:two_outputs", 5)


def test_factory_ignoring_width_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = write_factory(tmp_path, monkeypatch, """
        import keras

        def fixed(width):
            return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    """)
    with pytest.raises(ValueError):
        models.build(f"{module}:fixed", 5)
    assert models.build(f"{module}:fixed", 3) is not None  # the same factory at its own width is fine


def test_keras_file_of_another_width_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "narrow.keras"
    models.logreg(3).save(path)  # already standardizes, so it is used as it is
    with pytest.raises(ValueError, match="does not take 5 features"):
        models.build(str(path), 5)


def test_check_shape() -> None:
    models.check_shape(user_model(4), 4)
    with pytest.raises(ValueError, match="input shape"):
        models.check_shape(user_model(4), 5)
    with pytest.raises(ValueError, match="output shape"):
        models.check_shape(user_model(4, out=3), 4)


@pytest.mark.parametrize("sizes", [[5, 17, 1, 40], [1, 1, 1], [300], [2, 64, 3, 128, 9]])
def test_running_standardization_matches_numpy_over_batches(sizes: list[int]) -> None:
    rng = np.random.default_rng(len(sizes))
    width = 4
    layer = RunningStandardization()
    layer.build((None, width))
    batches = []
    for i, size in enumerate(sizes):  # the distribution moves between batches
        batch = rng.normal(loc=[0, 3, -2, 10 + i], scale=[1, 2, 0.5, 3], size=(size, width))
        batch = batch.astype(np.float32)
        batches.append(batch)
        layer.update(batch)
    everything = np.concatenate(batches).astype(np.float64)
    np.testing.assert_allclose(layer.mean.numpy(), everything.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.variance.numpy(), everything.var(axis=0), rtol=1e-4, atol=1e-4)
    assert float(layer.count.numpy()) == sum(sizes)
    x = rng.normal(size=(6, width)).astype(np.float32)
    expected = (x - everything.mean(axis=0)) / np.sqrt(everything.var(axis=0) + layer.epsilon)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-3, atol=1e-4)


def test_running_standardization_survives_save_and_load(tmp_path: Path) -> None:
    model = models.build("logreg", 3)
    layer = models.standardizer(model)
    assert layer is not None
    layer.update(np.random.default_rng(2).normal(5, 2, (50, 3)).astype(np.float32))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    loaded_layer = models.standardizer(loaded)
    assert loaded_layer is not None
    np.testing.assert_array_equal(loaded_layer.mean.numpy(), layer.mean.numpy())
    np.testing.assert_array_equal(loaded_layer.count.numpy(), 50)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)


# --- declared categorical columns ------------------------------------------------------------------------------

def encoder(model: keras.Model) -> CategoricalColumns:
    return next(layer for layer in model.layers if isinstance(layer, CategoricalColumns))


def test_categorical_codes_are_one_hot_with_an_other_bucket_for_anything_else() -> None:
    layer = CategoricalColumns([(1, 3)])
    codes = [0, 1, 2, 1.0000001, 1.4, 3, -1, 2.6, np.nan, 1e9]
    x = np.array([[10.0 + i, code, -5.0] for i, code in enumerate(codes)], np.float32)
    out = layer(x).numpy()
    # Numeric columns first, as they are; then 3 + 1 one-hot slots: codes 0, 1, 2 and "other".
    np.testing.assert_array_equal(out[:, :2], x[:, [0, 2]])
    expected_bucket = [0, 1, 2, 1, 1, 3, 3, 3, 3, 3]  # rounded to the nearest integer; the rest is "other"
    np.testing.assert_array_equal(out[:, 2:], np.eye(4, dtype=np.float32)[expected_bucket])


def test_logreg_with_a_categorical_column_has_one_weight_per_category() -> None:
    model = models.build("logreg", 4, categories={2: 5})
    assert encoder(model).columns == ((2, 5),)
    assert model.get_layer("probability").get_weights()[0].shape == (3 + 5 + 1, 1)
    layer = models.standardizer(model)
    assert layer is not None and layer.passthrough == (2,)
    layer.update(np.random.default_rng(0).normal(4, 2, (64, 4)).astype(np.float32))
    x = np.array([[1, 2, 0, 3], [1, 2, 4, 3], [1, 2, 9, 3]], np.float32)
    kernel, bias = model.get_layer("probability").get_weights()
    numeric = (x[:, [0, 1, 3]] - layer.mean.numpy()[[0, 1, 3]]) / np.sqrt(layer.variance.numpy()[[0, 1, 3]]
                                                                         + layer.epsilon)
    one_hot = np.eye(6, dtype=np.float32)[[0, 4, 5]]
    logits = np.concatenate([numeric, one_hot], axis=1) @ kernel + bias
    np.testing.assert_allclose(model(x).numpy(), 1 / (1 + np.exp(-logits)), rtol=1e-5)


def test_running_standardization_keeps_no_statistics_of_passthrough_columns() -> None:
    rng = np.random.default_rng(3)
    layer = RunningStandardization(passthrough=[1, 3])
    layer.build((None, 4))
    batches = [np.column_stack([rng.normal(5, 2, n), rng.integers(0, 20, n), rng.normal(-3, 1, n),
                                rng.integers(1, 9, n)]).astype(np.float32) for n in (30, 7, 100)]
    for batch in batches:
        layer.update(batch)
    everything = np.concatenate(batches).astype(np.float64)
    np.testing.assert_allclose(layer.mean.numpy()[[0, 2]], everything[:, [0, 2]].mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(layer.variance.numpy()[[0, 2]], everything[:, [0, 2]].var(axis=0), rtol=1e-4)
    np.testing.assert_array_equal(layer.mean.numpy()[[1, 3]], 0)  # the codes taught it nothing
    np.testing.assert_array_equal(layer.variance.numpy()[[1, 3]], 1)
    assert float(layer.count.numpy()) == 137
    out = layer(batches[0]).numpy()
    np.testing.assert_array_equal(out[:, [1, 3]], batches[0][:, [1, 3]])  # exactly the codes, for the encoder


def test_large_cardinality_is_embedded() -> None:
    model = models.build("mlp", 3, categories={0: 500, 2: 4})
    layer = encoder(model)
    assert [tuple(w.shape) for w in layer.trainable_weights] == [(501, models.EMBEDDING_WIDTH)]
    # numeric column 1, an 8-wide embedding of column 0 and 4 + 1 one-hot slots of column 2
    assert model.layers[3].get_weights()[0].shape == (1 + models.EMBEDDING_WIDTH + 5, 128)
    table = layer.trainable_weights[0].numpy()
    x = np.array([[7, 0.5, 1], [500, 0.5, 1], [-3, 0.5, 1]], np.float32)
    out = layer(x).numpy()
    np.testing.assert_array_equal(out[:, 1:9], table[[7, 500, 500]])  # out of range: the "other" row


def test_default_model_is_unchanged_by_the_feature() -> None:
    model = models.build("mlp", 18)
    assert not any(isinstance(layer, CategoricalColumns) for layer in model.layers)
    assert models.categorical_columns(model) == {}
    layer = models.standardizer(model)
    assert layer is not None and "passthrough" not in layer.get_config()  # saved config as before


def test_user_factory_gets_the_encoded_width(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = write_factory(tmp_path, monkeypatch, """
        import keras

        CALLS = []

        def make(width):
            CALLS.append(width)
            return keras.Sequential([keras.Input((width,)), keras.layers.Dense(1, activation="sigmoid")])
    """)
    model = models.build(f"{module}:make", 5, categories={0: 3, 4: 2})
    assert sys.modules[module].CALLS == [3 + 4 + 3] == [models.encoded_width(5, {0: 3, 4: 2})]
    assert tuple(model.inputs[0].shape) == (None, 5)
    assert models.categorical_columns(model) == {0: 3, 4: 2}


def test_user_keras_file_gets_the_encoder_or_must_already_declare_the_same(tmp_path: Path) -> None:
    plain = tmp_path / "plain.keras"
    user_model(models.encoded_width(4, {1: 6})).save(plain)
    wrapped = models.build(str(plain), 4, categories={1: 6})
    assert models.categorical_columns(wrapped) == {1: 6}
    with pytest.raises(ValueError, match="does not take the 11 encoded features"):
        models.build(str(plain), 4, categories={1: 7})
    ours = tmp_path / "ours.keras"
    models.logreg(4, categories={1: 6}).save(ours)
    assert models.categorical_columns(models.build(str(ours), 4, categories={1: 6})) == {1: 6}
    with pytest.raises(ValueError, match="with categorical columns 1:6, not 2:6"):
        models.build(str(ours), 4, categories={2: 6})


@pytest.mark.parametrize(("categories", "message"), [
    ({4: 3}, "categorical column 4 is beyond the 4 features"),
    ({-1: 3}, "categorical column -1 is beyond"),
    ({1: 1}, "needs at least 2"),
])
def test_bad_categorical_columns_are_refused(categories: dict[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        models.build("logreg", 4, categories=categories)
