"""Vectorized == sequential: a trial inside a population computes what it computes alone."""

import jax
import numpy as np
import pytest

import vtune
from vtune.population import take
from vtune.program import build

# Eight distinct trials: learning rates, dropout, init schemes, schedules, clipping, l2.
CONFIGS = {
    "learning_rate": np.array([1e-3, 3e-2, 1e-1, 1e-2, 5e-3, 2e-2, 1e-2, 3e-3]),
    "dropout": np.array([0.0, 0.3, 0.5, 0.0, 0.2, 0.0, 0.4, 0.1]),
    "init": np.array(["he_normal", "xavier_uniform", "lecun_normal", "normal", "he_uniform",
                      "xavier_normal", "zeros", "he_normal"], dtype=object),
    "schedule": np.array(["constant", "cosine", "step", "constant", "cosine", "constant",
                          "step", "constant"], dtype=object),
    "clip_norm": np.array([np.inf, 1.0, np.inf, 0.5, np.inf, np.inf, 2.0, np.inf]),
    "l2": np.array([0.0, 1e-3, 0.0, 0.0, 1e-2, 0.0, 0.0, 1e-4]),
}
SPACE = vtune.Space({
    "learning_rate": vtune.loguniform(1e-4, 1.0),
    "dropout": vtune.uniform(0.0, 0.7),
    "init": vtune.choice(list(vtune.nn.INIT_SCHEMES)),
    "schedule": vtune.choice(["constant", "cosine", "step"]),
    "clip_norm": vtune.choice([0.5, 1.0, 2.0, float("inf")]),
    "l2": vtune.choice([0.0, 1e-4, 1e-3, 1e-2]),
})


def population_vs_alone(data, steps):
    task = vtune.tasks.mlp_classifier(data, hidden_sizes=(16,), batch_size=32)
    program, table, *_ = build(task, SPACE, steps)
    hp = table.encode(table.complete(CONFIGS, 8))
    key, ids, dataset = jax.random.key(7), np.arange(8, dtype=np.int32) * 3, task.device_data()
    horizon = np.int32(4 * steps)
    pop = program.init(np.uint32(7), ids, hp)
    init_trial, train_trial = jax.jit(program.init_trial), jax.jit(program.train_trial)
    alone = []
    for i in range(8):
        trial = take((pop.params, pop.state, pop.opt_state, pop.hparams, pop.trial_id, pop.step), i)
        # The population's init of this trial equals its init alone.
        jax.tree.map(np.testing.assert_array_equal, trial[:3],
                     init_trial(key, ids[i], take(hp, i)))
        alone.append(jax.device_get(train_trial(trial, dataset, key, horizon)))
    pop, metrics = program.train(pop, dataset, np.uint32(7), horizon)
    return jax.device_get((pop.params, metrics)), alone


def max_relative_error(a, b):
    return max(float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-30))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def test_float64_population_matches_alone_over_50_steps(tiny_data, x64):
    (params, metrics), alone = population_vs_alone(tiny_data, steps=50)
    assert jax.tree.leaves(params)[0].dtype == np.float64
    for i, ((p, *_), m) in enumerate(alone):
        assert max_relative_error(take(params, i), p) <= 1e-9, f"trial in slot {i}"
        assert metrics["val_loss"][i] == pytest.approx(m["val_loss"], rel=1e-9)
    # The trials really differ (a population of copies would pass trivially).
    assert len({round(float(v), 6) for v in metrics["val_loss"]}) == 8


def test_float32_population_matches_alone_over_5_steps(tiny_data):
    (params, metrics), alone = population_vs_alone(tiny_data, steps=5)
    assert jax.tree.leaves(params)[0].dtype == np.float32
    for i, ((p, *_), m) in enumerate(alone):
        assert max_relative_error(take(params, i), p) <= 1e-4, f"trial in slot {i}"
        assert metrics["val_accuracy"][i] == pytest.approx(m["val_accuracy"], abs=1e-6)


def test_a_trial_computes_the_same_in_any_slot_and_population_size(tiny_task):
    program, table, *_ = build(tiny_task, SPACE, 5)
    hp8 = table.encode(table.complete(CONFIGS, 8))
    data = tiny_task.device_data()

    def run(slots):
        ids = np.asarray(slots, np.int32)
        hp = {k: v[ids] for k, v in hp8.items()}
        pop, metrics = program.train(program.init(np.uint32(1), ids, hp), data, np.uint32(1),
                                      np.int32(20))
        return dict(zip(slots, jax.device_get(metrics["val_loss"])))

    everyone, few = run(list(range(8))), run([6, 1, 3])  # other slots, other size
    for trial in (6, 1, 3):
        assert few[trial] == pytest.approx(everyone[trial], rel=1e-5)
