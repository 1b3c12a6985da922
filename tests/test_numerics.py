"""Documented numerics computed as documented: SGDW, step decay, dtypes, divergence."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import vtune
from vtune.trial import schedule


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


# --- SGDW -------------------------------------------------------------------

A = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
B = np.array([[1.0, 0.0, -2.0], [0.5, -0.5, 3.0]])


def grad(theta):
    """Gradient of sum(A * theta**2 / 2 + B * sin(theta)): a curved, non-quadratic loss."""
    return A * theta + B * np.cos(theta)


def sgdw_reference(theta, lrs, momentum, weight_decay, nesterov):
    """Loshchilov & Hutter's SGDW, written from the formula (float64 numpy).

    The momentum trace accumulates gradients only; the decay is applied outside
    it, scaled by the step's learning rate (base rate times schedule):
    m <- mu m + g;  d = g + mu m (Nesterov) or m;  theta <- theta - lr_t d - lr_t wd theta.
    """
    m = np.zeros_like(theta)
    for lr in lrs:
        g = grad(theta)
        m = momentum * m + g
        d = g + momentum * m if nesterov else m
        theta = theta - lr * d - lr * weight_decay * theta
    return theta


def run_optax(tx_factory, theta, lrs, **kw):
    """Steps an inject_hyperparams optimizer whose learning rate changes every step, as vtune's
    schedule does."""
    tx = optax.inject_hyperparams(tx_factory)(learning_rate=lrs[0], **kw)
    params = jnp.asarray(theta)
    state = tx.init(params)
    for lr in lrs:
        state.hyperparams["learning_rate"] = jnp.asarray(lr)
        updates, state = tx.update(jnp.asarray(grad(np.asarray(params))), state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params)


LRS = [0.05 * f for f in (0.2, 0.6, 1.0, 1.0, 0.8, 0.5, 0.3, 0.1)]  # warm-up then decay


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_sgdw_is_the_textbook_formula(x64, momentum, nesterov):
    theta0 = np.linspace(-1.0, 1.5, 6).reshape(2, 3)
    want = sgdw_reference(theta0, LRS, momentum, 0.1, nesterov)
    got = run_optax(vtune.sgdw, theta0, LRS, momentum=momentum, weight_decay=0.1,
                    nesterov=nesterov)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_sgdw_without_momentum_is_sgd_plus_decoupled_decay(x64):
    theta0 = np.linspace(-1.0, 1.5, 6).reshape(2, 3)
    got = run_optax(vtune.sgdw, theta0, LRS, momentum=0.0, weight_decay=0.1)
    plain = lambda learning_rate: optax.chain(optax.add_decayed_weights(0.1),
                                              optax.sgd(learning_rate))
    np.testing.assert_allclose(got, run_optax(plain, theta0, LRS), rtol=0, atol=1e-12)


def test_sgdw_decay_is_not_accumulated_by_momentum(x64):
    """Zero gradient: only the decay acts, and it must not build up speed."""
    tx = vtune.sgdw(0.1, momentum=0.9, weight_decay=0.5)
    params = jnp.ones(3)
    state = tx.init(params)
    for _ in range(5):
        updates, state = tx.update(jnp.zeros(3), state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params, (1 - 0.1 * 0.5) ** 5, rtol=1e-12)


# --- step decay and warm-up -------------------------------------------------

HORIZON = 200


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decay_every", [0.1, 0.05, 0.15, 0.3, 0.35, 0.7, 0.001])
def test_step_decay_counts_whole_steps(x64, dtype, decay_every):
    hp = {"schedule": jnp.int32(schedule.SCHEDULES.index("step")), "warmup": jnp.asarray(0, dtype),
          "decay_rate": jnp.asarray(0.5, dtype), "decay_every": jnp.asarray(decay_every, dtype)}
    period = max(1, round(decay_every * HORIZON))  # textbook: decay every `period` steps
    got = np.array([float(schedule.lr_factor(hp, jnp.int32(s), jnp.int32(HORIZON)))
                    for s in range(HORIZON)])
    want = np.array([0.5 ** (s // period) for s in range(HORIZON)])
    # atol: float32 flushes factors below its normal range (0.5**127) to zero.
    tiny = float(np.finfo(dtype).tiny)
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=tiny)


def test_warmup_convention_is_documented():
    doc = schedule.lr_factor.__doc__
    assert "min(1, (s + 1) / W)" in doc
    readme = (__import__("pathlib").Path(__file__).parents[1] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| schedule"))
    assert "(s+1)/W" in row.replace(" ", "")


# --- dtypes -----------------------------------------------------------------

class Float32Net(nnx.Module):
    """The README's nnx.Linear defaults: float32 parameters whatever jax_enable_x64 says."""

    def __init__(self, hp, rngs):
        self.fc1 = nnx.Linear(16, 8, rngs=rngs)
        self.drop = vtune.nn.Dropout(hp["dropout"], rngs=rngs)
        self.fc2 = nnx.Linear(8, 4, rngs=rngs)

    def __call__(self, x):
        return self.fc2(self.drop(nnx.relu(self.fc1(x))))


def test_float32_model_trains_under_x64(x64):
    data = vtune.datasets.synthetic(num_examples=64, num_features=16, num_classes=4, seed=0)
    task = vtune.from_nnx(Float32Net, data, batch_size=8)
    space = {"learning_rate": vtune.loguniform(1e-3, 1e-1), "clip_norm": vtune.fixed(1.0),
             "weight_decay": vtune.fixed(1e-4), "l2": vtune.fixed(1e-4),
             "dropout": vtune.fixed(0.1), "schedule": vtune.fixed("step"),
             "warmup": vtune.fixed(0.2)}
    result = vtune.population_search(task, space, population_size=2, generations=2,
                                     steps_per_generation=3, verbose=False)
    leaves = jax.tree.leaves(result.best.params)
    assert leaves and all(leaf.dtype == np.float32 for leaf in leaves)
    assert all(math.isfinite(r["val_loss"]) for r in result.history)


# --- divergence beyond non-finite -------------------------------------------

def train_population(task, configs, generations=2, steps=10):
    from vtune.program import build
    space = vtune.Space({"learning_rate": vtune.loguniform(1e-4, 1e4),
                         "init_scale": vtune.loguniform(1e-2, 1e2)})
    program, table, *_ = build(task, space, steps=steps)
    n = len(configs["learning_rate"])
    hp = table.encode(table.complete({k: np.asarray(v) for k, v in configs.items()}, n))
    pop = program.init(np.uint32(0), np.arange(n, dtype=np.int32), hp)
    for _ in range(generations):
        pop, metrics = program.train(pop, task.device_data(), np.uint32(0), np.int32(100))
    return jax.device_get(metrics)


def test_a_blown_up_finite_loss_counts_as_diverged(tiny_task):
    # Adam at 1e3 and 1e2 blow the train loss up to ~1e4..1e6, finite; a poor init
    # (init_scale 10, loss ~100 at init, improving) is bad but not diverged.
    configs = {"learning_rate": [1e-3, 1e-2, 1e3, 3e-2, 1e2, 1e-2],
               "init_scale": [1.0, 1.0, 1.0, 1.0, 1.0, 10.0]}
    metrics = train_population(tiny_task, configs)
    assert np.isfinite(metrics["train_loss"][2]) and metrics["train_loss"][2] > 1e3
    assert metrics["diverged"].tolist() == [False, False, True, False, True, False]
