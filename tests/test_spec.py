"""The search specification: what makes two calls the same search, and what is refused."""

import functools
import pathlib
import shutil

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import vtune
from helpers.digest import tree_digest
from vtune.report import codec
from vtune.search import SearchSpec

ROOT = pathlib.Path(__file__).resolve().parent
SPACE = {"learning_rate": vtune.loguniform(1e-3, 1e-1)}
#: The call that wrote tests/data/checkpoint-v0.1 with vtune 0.1.0 (commit f5d8f55),
#: keeping only its step 2 of 3.
OLD = dict(population_size=4, generations=3, steps_per_generation=5)


def without_times(result):
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in result.history]


@pytest.fixture(scope="module")
def pbt_dir(tiny_task, tmp_path_factory):
    d = tmp_path_factory.mktemp("pbt")
    vtune.population_search(tiny_task, SPACE, **OLD, strategy=vtune.strategies.pbt(quantile=0.25),
                            checkpoint_dir=d, verbose=False)
    return d


def test_other_strategy_settings_are_refused_naming_the_setting(tiny_task, pbt_dir, compiles):
    before = tree_digest(pbt_dir)
    with pytest.raises(ValueError, match=r"strategy_settings\.quantile: checkpoint has 0\.25, "
                                         r"this call has 0\.5"):
        vtune.population_search(tiny_task, SPACE, **OLD, checkpoint_dir=pbt_dir, verbose=False,
                                strategy=vtune.strategies.pbt(quantile=0.5))
    with pytest.raises(ValueError, match=r"strategy_settings\.burn_in"):
        vtune.population_search(tiny_task, SPACE, **OLD, checkpoint_dir=pbt_dir, verbose=False,
                                strategy=vtune.strategies.pbt(burn_in=0))
    assert tree_digest(pbt_dir) == before
    # The same settings spelled differently are the same search: it resumes (finished).
    done = vtune.population_search(tiny_task, SPACE, **OLD, checkpoint_dir=pbt_dir,
                                   verbose=False, strategy="pbt")
    assert len(done.history) == OLD["population_size"] * OLD["generations"]


def test_a_directory_written_by_vtune_0_1_is_never_damaged(tiny_task, tmp_path):
    """vtune 0.1's spec does not record the parameter tree, and mlp_classifier's tree has
    changed since (masked layers): resuming cannot restore, and must not move anything aside."""
    d = tmp_path / "old"
    shutil.copytree(ROOT / "data" / "checkpoint-v0.1", d)
    assert sorted(p.name for p in d.iterdir()) == ["2", "vtune_spec.json"]
    before = tree_digest(d)
    with pytest.warns(RuntimeWarning, match="unreadable"), \
            pytest.raises(RuntimeError, match="written by vtune 0.1.0.*Nothing was moved or "
                                              "deleted"):
        vtune.population_search(tiny_task, SPACE, **OLD, verbose=False, checkpoint_dir=d,
                                strategy=vtune.strategies.pbt(quantile=0.25))
    assert tree_digest(d) == before
    assert not [p for p in d.iterdir() if "unreadable" in p.name]


def test_factories_record_their_settings():
    assert dict(vtune.strategies.pbt().settings) == dict(
        vtune.strategies.pbt(quantile=0.25).settings)
    assert vtune.strategies.pbt(quantile=0.4).settings["quantile"] == 0.4
    hb = vtune.strategies.hyperband(eta=4)
    assert hb.settings["eta"] == 4 and hb.settings["brackets"] == 3 and "refine" in hb.settings
    for name, make in vtune.strategies.REGISTRY.items():
        assert make().settings, name


def test_a_strategy_module_is_not_hidden_by_its_factory():
    assert callable(vtune.strategies.pbt)
    assert vtune.strategies.PBTState.__name__ == "PBTState"
    assert vtune.strategies.HalvingState.__name__ == "HalvingState"


@pytest.mark.parametrize("parent, fresh, message", [
    (np.zeros(3, np.int32), np.zeros(4, bool), "one entry per slot"),
    (np.array([0, 1, 2, 4]), np.zeros(4, bool), r"parent slots must lie in \[0, 4\), got \[4\]"),
    (np.zeros(4), np.zeros(4, bool), "parent must be ints"),
])
def test_decisions_say_which_check_failed(parent, fresh, message):
    dec = vtune.strategies.Decisions(parent, fresh, {"learning_rate": np.ones(4)})
    with pytest.raises(RuntimeError, match=message):
        dec.check(4, "strategy 'mine'")


def test_the_spec_validates_once_before_anything_runs():
    spec = SearchSpec.create(vtune.Space(SPACE), objective="val_accuracy")
    assert spec.mode == "max" and spec.strategy.name == vtune.strategies.DEFAULT
    with pytest.raises(ValueError, match="population_size must be a positive int, got 0"):
        SearchSpec.create(vtune.Space(SPACE), population_size=0)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        SearchSpec.create(vtune.Space(SPACE), mode="up")


def test_from_nnx_is_three_pure_functions(tiny_data):
    """metrics (and loss) run before init was ever called: no state is filled by a trace."""

    class Net(nnx.Module):
        def __init__(self, hp, rngs):
            self.fc = nnx.Linear(16, 4, rngs=rngs)
            self.drop = vtune.nn.Dropout(hp["dropout"], rngs=rngs)

        def __call__(self, x):
            return self.drop(self.fc(x))

    task = vtune.from_nnx(Net, tiny_data)
    hp = {"dropout": jax.numpy.float32(0.1)}
    params, state = vtune.from_nnx(Net, tiny_data).init(jax.random.key(0), hp)  # another Task
    metrics = task.metrics(params, state, task.device_data(), hp)
    assert set(metrics) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    loss, _ = task.loss(params, state, task.device_data()["train"], jax.random.key(1), hp)
    assert np.isfinite(float(loss))


def test_the_result_records_the_task_metrics_so_nothing_guesses(tiny_data, tmp_path):
    """A metric whose name ends in nothing known (val_f1) is a metric, not a hyperparameter."""

    def metrics(params, state, data, hp):
        x, y = data["val"]
        pred = x @ params["w"]
        return {"val_loss": optax.softmax_cross_entropy_with_integer_labels(pred, y).mean(),
                "val_f1": jax.numpy.mean(jax.numpy.argmax(pred, -1) == y)}

    def loss(params, state, batch, key, hp):
        x, y = batch
        return optax.softmax_cross_entropy_with_integer_labels(x @ params["w"], y).mean(), state

    task = vtune.Task(init=lambda key, hp: ({"w": jax.random.normal(key, (16, 4)) * 0.1}, {}),
                      loss=loss, metrics=metrics, data=tiny_data, batch_size=32, name="linear")
    result = vtune.population_search(task, SPACE, population_size=4, generations=2,
                                     steps_per_generation=3, strategy="pbt", verbose=False)
    assert result.metrics == ("val_f1", "val_loss")
    assert "val_f1" not in result.hparam_names and "learning_rate" in result.hparam_names
    for row in result.lineage():
        assert "val_f1" not in row["changes"]
    back = vtune.SearchResult.from_json(result.to_json(tmp_path / "r.json"))
    assert back.metrics == result.metrics


def test_one_codec_for_checkpoints_and_results():
    state = {"ids": np.arange(3, dtype=np.int16), "pair": (1.5, float("-inf")),
             "nan": float("nan"), "s": np.float32(2.5)}
    back = codec.decode(codec.encode(state))
    assert back["ids"].dtype == np.int16 and back["pair"][1] == -np.inf
    assert np.isnan(back["nan"]) and back["s"].dtype == np.float32
    assert codec.dumps({"x": float("inf")}) == '{"x": "Infinity"}'
    assert codec.loads('{"x": "NaN"}')["x"] != codec.loads('{"x": "NaN"}')["x"]  # a real NaN


def test_device_helpers_use_public_jax_only():
    # The backend already runs in this process: the split is refused, not forced.
    jax.devices()
    assert vtune.population.devices.split_cpu(2) == 1


def test_version_comes_from_the_package_metadata():
    from importlib import metadata
    assert vtune.__version__ == metadata.version("vtune")


def test_partial_optimizers_are_told_apart():
    from vtune.search.spec import describe_callable
    a = describe_callable(functools.partial(optax.adamw, b1=0.8))
    b = describe_callable(functools.partial(optax.adamw, b1=0.9))
    assert a != b and "adamw" in a and "b1=0.8" in a
