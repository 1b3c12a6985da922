"""Flax NNX layers whose hyperparameters are traced arrays.

Inside a population every hyperparameter is an array with one value per trial,
so a layer may not branch on it in Python. ``flax.nnx.Dropout`` checks
``rate == 0`` in Python and fails on a traced rate; the layers here take array
hyperparameters and stay one compiled program for every value.

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import vtune
    >>> class Net(nnx.Module):
    ...     def __init__(self, hp, rngs):
    ...         init = vtune.nn.kernel_init(hp["init"], hp["init_scale"])
    ...         self.fc = nnx.Linear(4, 8, kernel_init=init, rngs=rngs)
    ...         self.drop = vtune.nn.Dropout(hp["dropout"], rngs=rngs)
    ...     def __call__(self, x):
    ...         return self.drop(nnx.relu(self.fc(x)))
    >>> hp = {"init": jnp.int32(vtune.nn.INIT_SCHEMES.index("he_normal")),
    ...       "init_scale": jnp.float32(1.0), "dropout": jnp.float32(0.5)}
    >>> Net(hp, nnx.Rngs(0))(jnp.ones((2, 4))).shape
    (2, 8)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

#: Weight-init schemes, in the order of their integer code.
INIT_SCHEMES = (
    "zeros",
    "normal",
    "xavier_uniform",
    "xavier_normal",
    "he_normal",
    "he_uniform",
    "lecun_normal",
)

#: Activations selectable by the ``activation`` hyperparameter, in code order.
ACTIVATIONS = ("relu", "tanh", "gelu", "silu", "elu")

#: Standard deviation of the ``normal`` scheme at ``init_scale == 1``.
NORMAL_STDDEV = 0.01

_I = jax.nn.initializers
_INITIALIZERS = (
    _I.zeros,
    _I.normal(NORMAL_STDDEV),
    _I.glorot_uniform(),
    _I.glorot_normal(),
    _I.he_normal(),
    _I.he_uniform(),
    _I.lecun_normal(),
)
_ACTIVATION_FNS = (jax.nn.relu, jnp.tanh, jax.nn.gelu, jax.nn.silu, jax.nn.elu)


class HParam(nnx.Variable):
    """A hyperparameter held by a layer (e.g. a dropout rate).

    vtune overwrites it with the trial's current value before every forward
    pass, so the population's hyperparameters stay the single source of truth
    (a PBT perturbation reaches the layer without re-initialising it). The
    ``hp_name`` metadata names the hyperparameter it mirrors.
    """


def kernel_init(scheme, scale=1.0):
    """An initializer that picks the scheme per trial.

    Args:
      scheme: int array, an index into :data:`INIT_SCHEMES` (as vtune passes
        ``hp["init"]``).
      scale: float array multiplying the initial weights (``hp["init_scale"]``).

    Returns:
      ``init(key, shape, dtype)`` usable as ``kernel_init`` of ``nnx.Linear``.
      Unbatched it evaluates one scheme; under ``vmap`` every scheme runs and
      one is selected per trial, which is cheap at init time.
    """

    def init(key, shape, dtype=jnp.float32):
        branches = [lambda k, f=f: f(k, shape, dtype) for f in _INITIALIZERS]
        return jax.lax.switch(scheme, branches, key) * jnp.asarray(scale, dtype)

    return init


def activation(code, x):
    """Applies the activation ``ACTIVATIONS[code]`` to ``x`` (code may be traced)."""
    return jax.lax.switch(code, _ACTIVATION_FNS, x)


class Dropout(nnx.Module):
    """Inverted dropout whose rate is an array (one value per trial).

    Args:
      rate: drop probability in [0, 1), typically ``hp["dropout"]``.
      rngs: the module's ``nnx.Rngs``; the ``dropout`` stream is used.
      hp_name: which hyperparameter this rate mirrors.

    ``model.eval()`` turns it off, ``model.train()`` back on, as in Flax.
    """

    def __init__(self, rate, *, rngs: nnx.Rngs, hp_name: str = "dropout"):
        self.rate = HParam(jnp.asarray(rate), hp_name=hp_name)
        self.rngs = rngs.dropout.fork()
        self.deterministic = False

    def __call__(self, x):
        if self.deterministic:
            return x
        keep = 1.0 - self.rate[...].astype(x.dtype)
        mask = jax.random.bernoulli(self.rngs(), keep, x.shape)
        return jnp.where(mask, x / keep, jnp.zeros_like(x))
