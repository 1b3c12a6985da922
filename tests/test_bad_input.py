"""Bad input gets a clear error naming the problem, before anything compiles."""

import numpy as np
import pytest
from flax import nnx

import vtune

GOOD = {"learning_rate": vtune.loguniform(1e-3, 1e-1)}


def run(task, space=GOOD, **kw):
    kw = {"population_size": 4, "generations": 1, "steps_per_generation": 2, "verbose": False,
          **kw}
    return vtune.population_search(task, space, **kw)


def bad_dataset(**override):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(20, 4)).astype(np.float32),
              "y_train": np.zeros(20, np.int32),
              "x_val": rng.normal(size=(8, 4)).astype(np.float32), "y_val": np.zeros(8, np.int32)}
    arrays.update(override)
    return vtune.datasets.Dataset(**arrays)


class Wide(nnx.Module):
    """Reads a hyperparameter no default exists for."""

    def __init__(self, hp, rngs):
        self.fc = nnx.Linear(16, 4, rngs=rngs)
        self.scale = vtune.nn.HParam(hp["my_scale"], hp_name="my_scale")

    def __call__(self, x):
        return self.fc(x) * self.scale[...]


class WrongInput(nnx.Module):
    def __init__(self, hp, rngs):
        self.fc = nnx.Linear(10, 4, rngs=rngs)

    def __call__(self, x):
        return self.fc(x)


CASES = {
    "unknown hyperparameter": (lambda t, d: run(t, {"momentum": vtune.uniform(0.5, 0.99)}),
                               ValueError, r"\['momentum'\].*accepts.*learning_rate"),
    "raw number in space": (lambda t, d: run(t, {"learning_rate": 0.1}), TypeError, "fixed"),
    "loguniform at zero": (lambda t, d: run(t, {"learning_rate": vtune.loguniform(0.0, 1.0)}),
                           ValueError, "lo must be > 0"),
    "dropout out of range": (lambda t, d: run(t, {"dropout": vtune.uniform(0.0, 1.2)}),
                             ValueError, r"'dropout'.*1\.2"),
    "unknown init scheme": (lambda t, d: run(t, {"init": vtune.choice(["he_normal", "glorot"])}),
                            ValueError, "glorot"),
    "population size zero": (lambda t, d: run(t, population_size=0), ValueError,
                             "population_size.*0"),
    "fractional generations": (lambda t, d: run(t, generations=2.5), ValueError,
                               "generations.*2.5"),
    "zero steps": (lambda t, d: run(t, steps_per_generation=0), ValueError,
                   "steps_per_generation.*0"),
    "unknown objective": (lambda t, d: run(t, objective="val_acc"), ValueError,
                          "'val_acc'.*val_accuracy"),
    "bad mode": (lambda t, d: run(t, mode="maximize"), ValueError, "maximize"),
    "unknown strategy": (lambda t, d: run(t, strategy="bayes"), ValueError, "bayes"),
    "negative seed": (lambda t, d: run(t, seed=-1), ValueError, "seed.*-1"),
    "not a task": (lambda t, d: run("mlp"), TypeError, "str"),
    "empty space": (lambda t, d: run(t, {}), ValueError, "at least one parameter"),
    "rows differ": (lambda t, d: bad_dataset(y_train=np.zeros(19, np.int32)), ValueError,
                    "20 rows.*19"),
    "feature shapes differ": (lambda t, d: bad_dataset(x_val=np.zeros((8, 5), np.float32)),
                              ValueError, r"\(4,\).*\(5,\)"),
    "integer inputs": (lambda t, d: bad_dataset(x_train=np.zeros((20, 4), np.int64)), TypeError,
                       "int64"),
    "batch larger than data": (lambda t, d: vtune.tasks.mlp_classifier(d, batch_size=4096),
                               ValueError, "4096"),
    "model input does not match data": (
        lambda t, d: run(vtune.from_nnx(WrongInput, d)), ValueError, "does not run on its data"),
    "hyperparameter without default": (
        lambda t, d: run(vtune.from_nnx(Wide, d)), ValueError, "my_scale"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_before_compiling(case, tiny_task, tiny_data, compiles):
    call, error, match = CASES[case]
    with pytest.raises(error, match=match):
        call(tiny_task, tiny_data)
    assert sum(compiles.values()) == 0, dict(compiles)


def test_wide_model_runs_once_its_hyperparameter_is_in_the_space(tiny_data):
    # The same model as the failing case works when the space names the value.
    result = run(vtune.from_nnx(Wide, tiny_data),
                 {"learning_rate": vtune.fixed(0.01), "my_scale": vtune.uniform(0.5, 2.0)})
    assert 0.5 <= result.best.hparams["my_scale"] <= 2.0
