"""Layers whose hyperparameters are arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vtune
from vtune import nn


def init_with(scheme, scale=1.0, shape=(256, 256)):
    f = nn.kernel_init(jnp.int32(nn.INIT_SCHEMES.index(scheme)), jnp.float32(scale))
    return np.asarray(f(jax.random.key(0), shape))


@pytest.mark.parametrize("scheme,std", [
    ("zeros", 0.0), ("normal", 0.01), ("xavier_uniform", np.sqrt(1 / 256)),
    ("xavier_normal", np.sqrt(1 / 256)), ("he_normal", np.sqrt(2 / 256)),
    ("he_uniform", np.sqrt(2 / 256)), ("lecun_normal", np.sqrt(1 / 256))])
def test_init_schemes_have_their_standard_deviation(scheme, std):
    w = init_with(scheme)
    assert w.std() == pytest.approx(std, rel=0.05, abs=1e-12)
    assert init_with(scheme, scale=3.0).std() == pytest.approx(3 * std, rel=0.05, abs=1e-12)


def test_init_scheme_is_chosen_per_trial_under_vmap():
    schemes = jnp.array([0, 4], jnp.int32)
    ws = jax.vmap(lambda s: nn.kernel_init(s, 1.0)(jax.random.key(0), (64, 64)))(schemes)
    assert float(jnp.abs(ws[0]).max()) == 0.0 and float(ws[1].std()) > 0.1


def test_dropout_takes_a_traced_rate_and_eval_turns_it_off():
    x = jnp.ones((1000,))

    def apply(rate):
        return nn.Dropout(rate, rngs=nnx.Rngs(0))(x)

    out = jax.jit(jax.vmap(apply))(jnp.array([0.0, 0.5]))
    np.testing.assert_array_equal(out[0], x)
    assert 0.4 < float(jnp.mean(out[1] == 0)) < 0.6
    assert set(np.unique(np.asarray(out[1]))) == {0.0, 2.0}
    drop = nn.Dropout(jnp.float32(0.5), rngs=nnx.Rngs(0))
    drop.eval()
    np.testing.assert_array_equal(drop(x), x)


def test_activation_by_code():
    x = jnp.array([-1.0, 2.0])
    for code, name in enumerate(nn.ACTIVATIONS):
        expected = jnp.tanh(x) if name == "tanh" else getattr(jax.nn, name)(x)
        np.testing.assert_allclose(nn.activation(jnp.int32(code), x), expected, rtol=1e-6)


def test_tuned_activation_reaches_the_mlp(tiny_data):
    task = vtune.tasks.mlp_classifier(tiny_data, hidden_sizes=(8,), activation=None,
                                      dropout=False, batch_size=32)
    result = vtune.population_search(
        task, {"activation": vtune.choice(["relu", "tanh"])}, population_size=4,
        generations=1, steps_per_generation=3, verbose=False)
    assert {h["activation"] for h in result.history} <= {"relu", "tanh"}
    with pytest.raises(ValueError, match="'activation'"):
        vtune.population_search(vtune.tasks.mlp_classifier(tiny_data, hidden_sizes=(8,)),
                                {"activation": vtune.choice(["relu", "tanh"])}, verbose=False)
