"""population_search end to end: recompilation, determinism, divergence, results."""

import jax
import numpy as np
import pytest
from flax import nnx

import vtune

SPACE = {
    "learning_rate": vtune.loguniform(1e-3, 1e-1),
    "dropout": vtune.uniform(0.0, 0.5),
    "init": vtune.choice(["he_normal", "xavier_uniform", "lecun_normal"]),
    "weight_decay": vtune.loguniform(1e-6, 1e-2),
}


def without_wall_time(history):
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in history]


def search(task, space=SPACE, **kw):
    kw = {"population_size": 8, "generations": 3, "steps_per_generation": 10,
          "verbose": False, **kw}
    return vtune.population_search(task, space, **kw)


def test_train_program_compiles_once_across_generations_and_refills(tiny_task, compiles):
    # steps_per_generation=7 is used by no other test, so nothing is cached yet.
    result = search(tiny_task, generations=4, steps_per_generation=7, strategy="truncation")
    fresh = [h for h in result.history if h["generation"] > 0 and h["parent_id"] == -1
             and h["trial_id"] >= 8]
    assert fresh, "the search must refill slots with new trials"
    pruned = [h for h in result.history if h["status"] == "pruned"]
    assert len(pruned) == 3 * 4  # half of 8 slots pruned after each of the first 3 generations
    assert compiles["_train"] == 1
    assert compiles["_refill"] == 1
    assert compiles["_init"] == 1
    # Another search over other values of the same hyperparameters reuses the program.
    other = dict(SPACE, learning_rate=vtune.loguniform(1e-2, 1.0), dropout=vtune.fixed(0.1))
    search(tiny_task, other, generations=3, steps_per_generation=7, seed=5)
    assert (compiles["_train"], compiles["_refill"], compiles["_init"]) == (1, 1, 1)


def test_same_seed_is_bit_identical_and_another_seed_differs(tiny_task):
    a, b = search(tiny_task, seed=3), search(tiny_task, seed=3)
    assert without_wall_time(a.history) == without_wall_time(b.history)
    jax.tree.map(np.testing.assert_array_equal, a.best.params, b.best.params)
    c = search(tiny_task, seed=4)
    assert [h["val_loss"] for h in c.history] != [h["val_loss"] for h in a.history]


def test_best_is_the_best_row_of_the_history(tiny_task):
    result = search(tiny_task, objective="val_accuracy")
    assert result.mode == "max"
    alive = [h for h in result.history if h["status"] != "diverged"]
    top = max(h["val_accuracy"] for h in alive)
    assert result.best.metrics["val_accuracy"] == top
    row = next(h for h in result.history if h["trial_id"] == result.best.trial_id
               and h["generation"] == result.best.generation)
    assert row["val_accuracy"] == top
    assert {k: row[k] for k in result.best.hparams} == result.best.hparams


def test_best_params_load_into_the_model(tiny_task, tiny_data):
    from vtune.tasks import MLP

    result = search(tiny_task, generations=2)
    hp = {"init": 0, "init_scale": 1.0, "dropout": 0.0}
    model = MLP(hp, nnx.Rngs(0), sizes=(16, 16, 4), activation="relu", dropout=True,
                dtype=np.float32)
    nnx.update(model, result.best.params)
    model.eval()
    acc = np.mean(np.argmax(model(tiny_data.x_val), -1) == tiny_data.y_val)
    assert acc == pytest.approx(result.best.metrics["val_accuracy"], abs=1e-6)


def test_diverged_trials_are_reported_and_never_best(tiny_sgd_task):
    space = {"learning_rate": vtune.choice([1e3, 3e-2])}
    result = search(tiny_sgd_task, space, generations=2, population_size=6, seed=1)
    diverged = [h for h in result.history if h["status"] == "diverged"]
    assert diverged and all(h["learning_rate"] == 1e3 for h in diverged)
    assert all(np.isnan(h["val_loss"]) for h in diverged)
    assert result.best.hparams["learning_rate"] == 3e-2
    # A diverged trial is always refilled: no diverged trial id appears in a later generation.
    ids = {h["trial_id"] for h in diverged}
    later = {h["trial_id"] for h in result.history if h["generation"] == 1}
    assert not ids & {h["trial_id"] for h in diverged if h["generation"] == 0} & later


def test_rank_puts_nan_last():
    order = vtune.strategies.rank(np.array([0.3, np.nan, 0.1, 0.2, np.nan]))
    assert order.tolist() == [2, 3, 0, 1, 4]
