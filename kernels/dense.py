"""The population-batched dense layer and its backward pass, several ways.

One dense layer of P trials at once: inputs ``x`` of shape ``[P, B, I]`` (or
``[B, I]`` when every trial sees the same minibatch), weights ``w`` of shape
``[P, I, O]``, biases ``b`` of shape ``[P, O]``; the output is ``[P, B, O]``.
Every formulation here computes :func:`reference` (``vmap`` of one trial's
``x @ w + b``); they differ in the ``dot_general`` XLA is given, and so in the
kernels it picks and the transposes it inserts:

* ``batched``: a batched matmul with the population as the leading batch
  dimension, ``pbi,pio->pbo``. It is what ``vmap`` of ``x @ w`` lowers to.
* ``batch_minor``: the population as a middle dimension, ``bpi,pio->bpo``
  (activations stored batch-major, as a framework that stacks trials along
  the feature axis would).
* ``unrolled``: one plain matmul per trial, concatenated (P separate dots;
  compile time grows with P).
* ``shared_input``: every trial reads the same ``x [B, I]`` (a shared
  minibatch: common random numbers). The layer is then ONE wide matmul
  ``[B, I] x [I, P*O]``, and the weight gradient is one ``[P*O, B] x [B, I]``
  matmul. ``vmap`` lowers one trial's ``x @ w`` to exactly this when ``x``
  is not batched, so a training step that drew one minibatch for the whole
  population would get it for free in its first layer.

The backward pass of each is the one JAX derives from its forward pass, so a
formulation is compared forward and backward as a whole
(``benchmarks/dense_layer.py``, ``benchmarks/results/dense-layer-cpu.json``).
On the 2-core CPU, what ``vmap`` gives is the fastest per-trial formulation
(``batched`` ties it, ``batch_minor`` is 5-11% slower, ``unrolled`` 2-6x
slower), so vtune keeps it. ``shared_input`` is 4-8% faster for the layers
and 5-8% for a whole training step, but it changes what a search samples
(every trial the same data order) and only holds while no trial subsamples
the training set (``train_fraction``), so it is not vtune's default.

Example:
    >>> import jax.numpy as jnp
    >>> from vtune.kernels import dense
    >>> x, w, b = jnp.ones((4, 8, 3)), jnp.ones((4, 3, 2)), jnp.zeros((4, 2))
    >>> dense.batched(x, w, b).shape
    (4, 8, 2)
    >>> bool(jnp.allclose(dense.shared_input(x[0], w, b), dense.reference(x, w, b)))
    True
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def reference(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """``vmap`` of one trial's ``x @ w + b``; ``x`` is ``[P, B, I]`` or a shared ``[B, I]``."""
    in_axes = (0 if x.ndim == 3 else None, 0, 0)
    return jax.vmap(lambda x, w, b: x @ w + b, in_axes)(x, w, b)


def batched(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """Population as the leading batch dimension: ``pbi,pio->pbo``."""
    return jnp.einsum("pbi,pio->pbo", x, w) + b[:, None, :]


def batch_minor(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """Population as a middle dimension: ``bpi,pio->bpo``, moved back to ``[P, B, O]``."""
    y = jnp.einsum("bpi,pio->bpo", jnp.swapaxes(x, 0, 1), w) + b[None]
    return jnp.swapaxes(y, 0, 1)


def unrolled(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """One matmul per trial, stacked (a Python loop over the population)."""
    return jnp.stack([x[p] @ w[p] + b[p] for p in range(w.shape[0])])


def shared_input(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """Every trial reads the same ``x [B, I]``: one ``[B, I] x [I, P*O]`` matmul."""
    if x.ndim != 2:
        raise ValueError(f"shared_input takes one minibatch x of shape [B, I] for every "
                         f"trial, got shape {x.shape}")
    p, i, o = w.shape
    wide = jnp.transpose(w, (1, 0, 2)).reshape(i, p * o)
    return jnp.transpose((x @ wide).reshape(x.shape[0], p, o), (1, 0, 2)) + b[:, None, :]


#: Formulations that take per-trial inputs ``x [P, B, I]``.
PER_TRIAL: dict[str, Callable] = {"batched": batched, "batch_minor": batch_minor,
                                  "unrolled": unrolled}
#: Formulations that take one shared minibatch ``x [B, I]``.
SHARED: dict[str, Callable] = {"shared_input": shared_input}
