"""The population dense-layer formulations compute what one trial computes alone."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vtune.kernels import dense

P, B, I, O = 3, 5, 4, 6


@pytest.fixture(scope="module")
def arrays():
    k = jax.random.split(jax.random.key(0), 4)
    return (jax.random.normal(k[0], (P, B, I)), jax.random.normal(k[1], (P, I, O)),
            jax.random.normal(k[2], (P, O)), jax.random.normal(k[3], (P, B, O)))


def loss_of(fn, x, w, b, t):
    return jnp.sum((fn(x, w, b) - t) ** 2)


def alone(x, w, b):
    """Trial p's layer computed on its own, a NumPy loop."""
    x = np.broadcast_to(x, (P, B, I)) if x.ndim == 2 else x
    return np.stack([np.asarray(x[p]) @ np.asarray(w[p]) + np.asarray(b[p]) for p in range(P)])


@pytest.mark.parametrize("name", sorted(dense.PER_TRIAL))
def test_per_trial_formulations_match_reference(arrays, name):
    x, w, b, t = arrays
    fn = dense.PER_TRIAL[name]
    np.testing.assert_allclose(fn(x, w, b), alone(x, w, b), rtol=1e-5, atol=1e-5)
    got = jax.grad(loss_of, (1, 2, 3))(fn, x, w, b, t)
    want = jax.grad(loss_of, (1, 2, 3))(dense.reference, x, w, b, t)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_shared_input_is_one_minibatch_for_every_trial(arrays):
    x, w, b, t = arrays
    shared = x[0]
    np.testing.assert_allclose(dense.shared_input(shared, w, b), alone(shared, w, b),
                               rtol=1e-5, atol=1e-5)
    grad = lambda fn: jax.grad(loss_of, (1, 2, 3))(fn, shared, w, b, t)
    for g, r in zip(grad(dense.shared_input), grad(dense.reference)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
    # The same as giving every trial its own copy of the minibatch.
    np.testing.assert_allclose(dense.shared_input(shared, w, b),
                               dense.batched(jnp.broadcast_to(shared, x.shape), w, b),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[B, I\]"):
        dense.shared_input(x, w, b)


def test_kernels_folder_is_vtune_kernels():
    import vtune.kernels
    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    assert os.path.realpath(vtune.kernels.dense.__file__) == os.path.join(root, "kernels", "dense.py")


def test_masked_dense_is_the_sliced_layer_forward_and_backward():
    from vtune.kernels import masked

    k = jax.random.split(jax.random.key(1), 4)
    x, w, b = (jax.random.normal(k[0], (5, 8)), jax.random.normal(k[1], (8, 6)),
               jax.random.normal(k[2], (6,)))
    i, o = 3, 4
    xm = x * (jnp.arange(8) < i)  # masked inputs are zero, as a masked layer below gives
    out = masked.masked_dense(xm, w, b, jnp.float32(i), jnp.float32(o))
    np.testing.assert_allclose(out[:, :o], masked.reference(x[:, :i], w[:i, :o], b[:o]),
                               rtol=1e-6)
    assert not np.any(out[:, o:])
    t = jax.random.normal(k[3], (5, 6))
    gw, gb = jax.grad(lambda w, b: jnp.sum((masked.masked_dense(x, w, b, i, o) - t) ** 2),
                      (0, 1))(w, b)
    assert not np.any(gw[i:]) and not np.any(gw[:, o:]) and not np.any(gb[o:])
    rw, rb = jax.grad(lambda w, b: jnp.sum((masked.reference(x[:, :i], w, b) - t[:, :o]) ** 2),
                      (0, 1))(w[:i, :o], b[:o])
    np.testing.assert_allclose(gw[:i, :o], rw, rtol=1e-5)
    np.testing.assert_allclose(gb[:o], rb, rtol=1e-5)
    # The population layer: per-trial widths under vmap.
    pop = masked.population(jnp.stack([x, x]), jnp.stack([w, w]), jnp.stack([b, b]),
                            jnp.array([8, i]), jnp.array([6, o]))
    np.testing.assert_allclose(pop[0], x @ w + b, rtol=1e-5)
    np.testing.assert_allclose(pop[1], masked.masked_dense(x, w, b, i, o), rtol=1e-6)


def test_vtune_layers_call_the_masked_kernel(monkeypatch):
    from flax import nnx

    from vtune import nn
    from vtune.kernels import masked

    calls = []
    real = masked.masked_dense
    monkeypatch.setattr(masked, "masked_dense", lambda *a: calls.append(1) or real(*a))
    mlp = nn.MaskedMLP(3, 4, 2, 2, hp={"width": 3.0, "depth": 2.0}, rngs=nnx.Rngs(0))
    mlp(jnp.ones((1, 3)))
    assert len(calls) == 3
