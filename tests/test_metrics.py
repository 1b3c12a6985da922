"""Metrics of your own in from_nnx, and the built-in regression metrics, against numpy."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vtune

SPACE = {"learning_rate": vtune.loguniform(1e-3, 1e-1)}
ARGS = dict(population_size=4, generations=2, steps_per_generation=10, verbose=False)


def f1(logits, labels):
    """Binary F1 of the positive class, in jax.numpy (what a user writes)."""
    pred = jnp.argmax(logits, -1)
    tp = jnp.sum((pred == 1) & (labels == 1))
    fp = jnp.sum((pred == 1) & (labels == 0))
    fn = jnp.sum((pred == 0) & (labels == 1))
    return 2 * tp / jnp.maximum(2 * tp + fp + fn, 1)


def numpy_f1(pred, labels):
    """The same F1 from precision and recall, independently, in numpy."""
    tp = np.sum((pred == 1) & (labels == 1))
    precision = tp / max(np.sum(pred == 1), 1)
    recall = tp / max(np.sum(labels == 1), 1)
    return 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)


class Classifier(nnx.Module):
    def __init__(self, hp, rngs):
        self.fc1 = nnx.Linear(8, 8, rngs=rngs)
        self.fc2 = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        return self.fc2(nnx.relu(self.fc1(x)))


class Regressor(nnx.Module):
    def __init__(self, hp, rngs):
        self.fc = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.fc(x)


def best_model(cls, result):
    model = cls(result.best.encoded_hparams, nnx.Rngs(0))
    nnx.update(model, result.best.params)
    model.eval()
    return model


@pytest.fixture(scope="module")
def binary():
    # Overlapping clusters, so F1 is neither 0 nor 1 and a wrong formula shows.
    return vtune.datasets.synthetic(num_examples=200, num_features=8, num_classes=2,
                                    noise=2.5, seed=1)


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]]) + 0.3 * rng.normal(size=(96, 1)))
    y = y.astype(np.float32)
    return vtune.datasets.Dataset(x[:64], y[:64], x[64:], y[64:], name="linear")


def test_a_custom_f1_is_the_objective_and_matches_numpy(binary):
    task = vtune.from_nnx(Classifier, binary, batch_size=32, metrics={"f1": f1})
    result = vtune.population_search(task, SPACE, objective="val_f1", **ARGS)
    assert result.mode == "max"  # inferred from the name
    assert {"train_f1", "val_f1"} <= set(result.metric_names)
    assert all({"train_f1", "val_f1"} <= set(row) for row in result.history)
    # The best trial is the one with the highest val_f1 in the history.
    assert result.best.metrics["val_f1"] == max(r["val_f1"] for r in result.history)
    model = best_model(Classifier, result)
    for x, y, name in ((binary.x_val, binary.y_val, "val_f1"),
                       (binary.x_train, binary.y_train, "train_f1")):
        pred = np.argmax(np.asarray(model(x)), -1)
        expected = numpy_f1(pred, y)
        assert 0.0 < expected < 1.0
        assert result.best.metrics[name] == pytest.approx(expected, abs=1e-6)


def test_regression_reports_mae_and_r2_matching_numpy(regression):
    task = vtune.from_nnx(Regressor, regression, batch_size=16, classification=False,
                          loss=lambda p, t: jnp.mean((p - t) ** 2))
    result = vtune.population_search(task, SPACE, objective="val_r2", **ARGS)
    assert result.mode == "max"
    assert set(result.metric_names) == {"train_loss", "val_loss", "train_mae", "val_mae",
                                        "train_r2", "val_r2"}
    assert result.best.metrics["val_r2"] == max(r["val_r2"] for r in result.history)
    pred = np.asarray(best_model(Regressor, result)(regression.x_val), np.float64)
    y = regression.y_val.astype(np.float64)
    r2 = 1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert result.best.metrics["val_r2"] == pytest.approx(r2, abs=1e-5)
    assert result.best.metrics["val_mae"] == pytest.approx(np.mean(np.abs(y - pred)), abs=1e-5)
    # Trials differ: R² is not a constant the formula happens to hit.
    assert len({round(r["val_r2"], 6) for r in result.history}) > 1


def test_r2_of_constant_targets_is_finite():
    y = jnp.ones((5, 1))
    assert float(vtune.trial.metrics.r2_score(y, y)) == 1.0
    assert float(vtune.trial.metrics.r2_score(y + 1, y)) == 0.0


def test_a_metric_that_is_not_a_scalar_is_refused_before_compiling(binary, compiles):
    per_example = lambda logits, labels: jnp.argmax(logits, -1) == labels
    task = vtune.from_nnx(Classifier, binary, batch_size=32, metrics={"hits": per_example})
    with pytest.raises(ValueError, match=r"metric 'hits' must return a scalar, got shape "
                                         r"\(\d+,\)"):
        vtune.population_search(task, SPACE, objective="val_hits", mode="max", **ARGS)
    as_numpy = lambda logits, labels: float(np.mean(np.asarray(labels)))
    task = vtune.from_nnx(Classifier, binary, batch_size=32, metrics={"mean": as_numpy})
    with pytest.raises(ValueError, match="metric 'mean' used its arguments as Python or numpy"):
        vtune.population_search(task, SPACE, **ARGS)
    assert sum(compiles.values()) == 0


@pytest.mark.parametrize("metrics, error, match", [
    ([f1], TypeError, "metrics must be a mapping"),
    ({"val_f1": f1}, ValueError, "without a split prefix \\('f1'\\)"),
    ({"accuracy": f1}, ValueError, "metric 'accuracy' is built in"),
    ({"f1": 1.0}, TypeError, "metric 'f1' must be a function"),
    ({"f 1": f1}, ValueError, "must be identifiers"),
])
def test_bad_metrics_are_named(binary, metrics, error, match):
    with pytest.raises(error, match=match):
        vtune.from_nnx(Classifier, binary, metrics=metrics)


def test_regression_builtins_cannot_be_shadowed(regression):
    with pytest.raises(ValueError, match="metric 'r2' is built in"):
        vtune.from_nnx(Regressor, regression, classification=False, metrics={"r2": f1})
