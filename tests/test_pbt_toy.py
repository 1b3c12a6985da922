"""The toy example of Jaderberg et al. 2017 (Population Based Training, Fig. 2).

theta in R^2, true objective Q(theta) = 1.2 - (theta0^2 + theta1^2). Each member
does gradient ascent on the surrogate Q_hat(theta | h) = 1.2 - (h0 theta0^2 +
h1 theta1^2) with its own hyperparameters h, from theta = (0.9, 0.5), in a
population of two starting at h = (1, 0) and h = (0, 1). Without exploit and
explore (the paper's "grid search") each member can only shrink one coordinate,
so Q stays at or below 0.95; PBT copies the better theta and perturbs h, and
reaches the optimum. Built on the engine: a Task with no data, trained by
``population_search``.
"""

import jax.numpy as jnp
import optax
import pytest

import vtune
from vtune.report.lineage import lineage

GENERATIONS, STEPS = 20, 4  # a budget of 80 gradient steps per member
SPACE = {"h0": vtune.uniform(0.0, 1.0), "h1": vtune.uniform(0.0, 1.0)}
START = {"h0": [1.0, 0.0], "h1": [0.0, 1.0]}


def toy_task() -> vtune.Task:
    def init(key, hp):
        return {"theta": jnp.array([0.9, 0.5], jnp.float32)}, {}

    def loss(params, state, batch, key, hp):  # ascent on Q_hat = descent on -Q_hat
        t = params["theta"]
        return -(1.2 - (hp["h0"] * t[0] ** 2 + hp["h1"] * t[1] ** 2)), state

    def metrics(params, state, data, hp):
        return {"q": 1.2 - jnp.sum(params["theta"] ** 2)}

    return vtune.Task(init=init, loss=loss, metrics=metrics, data=None, optimizer=optax.sgd,
                      defaults={"learning_rate": 0.05}, name="pbt_toy")


TASK = toy_task()  # one Task object, so every search reuses one compiled program


def search(strategy, seed=0):
    return vtune.population_search(TASK, SPACE, population_size=2, generations=GENERATIONS,
                                   steps_per_generation=STEPS, objective="q", mode="max",
                                   strategy=strategy, seed=seed, verbose=False)


@pytest.fixture(scope="module")
def runs():
    grid = search(vtune.strategies.grid(points=START))
    pbt = [search(vtune.strategies.pbt(initial=START), seed) for seed in range(3)]
    return grid, pbt


def test_pbt_reaches_the_optimum_where_grid_search_does_not(runs):
    grid, pbt = runs
    assert max(r["q"] for r in grid.history) == pytest.approx(0.95, abs=1e-4)  # 1.2 - 0.5^2
    for result in pbt:
        assert result.best.metrics["q"] >= 1.19
    # Same engine, same budget: 2 slots x 20 generations x 4 steps, every row a real step count.
    assert all(len(r.history) == 2 * GENERATIONS for r in (grid, *pbt))
    assert max(r["step"] for r in grid.history) == GENERATIONS * STEPS


def test_the_winner_followed_a_schedule_of_cloned_and_perturbed_hyperparameters(runs):
    result = runs[1][0]
    path = lineage(result.history, result.best.trial_id, names=["h0", "h1"])
    assert [r["generation"] for r in path] == list(range(result.best.generation + 1))
    assert [r["step"] for r in path] == [STEPS * (g + 1) for g in range(len(path))]
    assert path[0]["parent_id"] == -1 and path[0]["cloned_at"] == -1
    assert {(r["h0"], r["h1"]) for r in path[:1]} <= {(1.0, 0.0), (0.0, 1.0)}
    clones = [r for r in path if r["cloned_at"] >= 0 and r["generation"] == r["cloned_at"] + 1]
    assert clones, "the winner must descend from an exploit"
    assert any(r["changes"] for r in clones)
    # Both coordinates shrank, so the path trained under h0 > 0 and under h1 > 0.
    assert any(r["h0"] > 0 for r in path) and any(r["h1"] > 0 for r in path)
    for a, b in zip(path, path[1:]):
        assert {k for k in ("h0", "h1") if a[k] != b[k]} == set(b["changes"])
