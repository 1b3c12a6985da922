"""How hyperparameters reach the computation: optimizer arguments, schedules, defaults."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import vtune
from vtune.trial import hparams, optimizers, schedule


def sched(name, **kw):
    hp = {"schedule": jnp.int32(schedule.SCHEDULES.index(name)), "warmup": jnp.float32(0.0),
          "decay_rate": jnp.float32(0.5), "decay_every": jnp.float32(0.25)}
    hp.update({k: jnp.float32(v) for k, v in kw.items()})
    return lambda step: float(schedule.lr_factor(hp, jnp.int32(step), jnp.int32(100)))


def test_schedules():
    assert [sched("constant")(s) for s in (0, 50, 100)] == [1.0, 1.0, 1.0]
    cos = sched("cosine")
    assert cos(0) == 1.0 and cos(50) == pytest.approx(0.5) and cos(100) == pytest.approx(0.0)
    step = sched("step")
    assert [step(s) for s in (0, 24, 25, 50, 99)] == [1.0, 1.0, 0.5, 0.25, 0.125]
    warm = sched("constant", warmup=0.1)
    assert warm(0) == pytest.approx(0.1) and warm(4) == pytest.approx(0.5) and warm(50) == 1.0


def test_optimizer_arguments_become_hyperparameters():
    assert optimizers.optimizer_hparams(optax.adamw) == {
        "learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0,
        "weight_decay": 1e-4, "clip_norm": math.inf}
    assert optimizers.optimizer_hparams(optax.sgd) == {
        "learning_rate": 1e-3, "momentum": 0.0, "clip_norm": math.inf}
    assert set(optimizers.optimizer_hparams(vtune.sgdw)) == {
        "learning_rate", "momentum", "weight_decay", "clip_norm"}


def test_optimizer_that_needs_an_unknown_argument_is_refused():
    def needs(learning_rate, mystery):
        return optax.sgd(learning_rate)

    with pytest.raises(TypeError, match="mystery.*functools.partial"):
        optimizers.optimizer_hparams(needs)


def test_injected_values_drive_the_update():
    tx = optimizers.make_optimizer(optax.sgd)(learning_rate=jnp.float32(0.5),
                                           momentum=jnp.float32(0.0), clip_norm=jnp.float32(1.0))
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    updates, _ = tx.update({"w": jnp.array([3.0, 4.0])}, state, params)
    # |g| = 5 is clipped to 1, then scaled by -lr.
    np.testing.assert_allclose(updates["w"], [-0.3, -0.4], rtol=1e-6)


def test_resolve_fills_defaults_and_encodes_strings():
    space = vtune.Space({"init": vtune.choice(["zeros", "he_normal"]),
                         "learning_rate": vtune.loguniform(1e-3, 1e-1)})
    table = hparams.resolve(space, {"init", "dropout"}, optax.adamw, {"dropout": 0.25})
    assert table.defaults["dropout"] == 0.25 and table.defaults["schedule"] == "constant"
    values = table.complete({"init": np.array(["he_normal", "zeros"], object),
                             "learning_rate": np.array([0.01, 0.02])}, 2)
    enc = table.encode(values)
    assert enc["init"].dtype == np.int32
    assert enc["init"].tolist() == [vtune.nn.INIT_SCHEMES.index("he_normal"), 0]
    assert enc["dropout"].tolist() == [0.25, 0.25] and enc["dropout"].dtype == np.float32
    assert enc["schedule"].tolist() == [0, 0]


def test_user_string_choices_are_coded_by_their_position_in_the_space():
    space = vtune.Space({"mode": vtune.choice(["b", "a", "c"])})
    table = hparams.resolve(space, {"mode"}, optax.adamw, {})
    assert table.encode(table.complete({"mode": np.array(["c", "b"], object)}, 2))[
        "mode"].tolist() == [2, 0]
