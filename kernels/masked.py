"""The masked dense layer: width as data, one trial's layer allocated at its maximum.

A trial whose layer has ``out_width`` active units, fed by ``in_width`` active
inputs, holds weights ``w`` allocated at the maximum ``[I, O]`` and biases
``b [O]``. Units at index >= the width are masked::

    masked_dense(x, w, b, in_width, out_width) = x @ (w * mask) + b * out_mask
    in_mask = arange(I) < in_width,  out_mask = arange(O) < out_width,
    mask = in_mask[:, None] & out_mask[None, :]

The widths may be traced arrays (one value per trial under ``vmap``), so a
population mixing widths is one compiled program.

**Gradients to masked weights are exactly zero.** The weights enter the output
only through ``w * mask``, so ``d out / d w[i, j] = mask[i, j] * (...)``: a masked
entry's gradient is ``0 * (...)``, an exact zero whatever the inputs, the
upstream gradient or the value stored in ``w`` (as long as they are finite).
The same holds for ``b * out_mask``. So when masked entries are zero at init,
an optimizer whose update of a parameter with zero gradient and zero state is
zero (SGD with momentum, Adam, AdamW, RMSprop, decoupled weight decay, an L2
term ``l2/2 * w**2``) leaves them exactly zero forever, and the active block
computes -- forward and backward -- what :func:`reference` computes on the
sliced layer ``w[:in_width, :out_width]``, ``b[:out_width]``: the extra terms of
the padded matmul are exact zeros (``x * 0``), so only summation order differs.
Masked outputs are ``0 + 0 = 0``; a layer that applies an activation ``f`` with
``f(0) != 0`` must mask its activations again (``vtune.nn.MaskedMLP`` does).

:func:`population` is the population-batched layer (``vmap`` over a leading
trial axis); its backward pass is the one JAX derives, which keeps the zeros.

Example:
    >>> import jax.numpy as jnp
    >>> from vtune.kernels import masked
    >>> x, w, b = jnp.ones((2, 4)), jnp.ones((4, 3)), jnp.ones(3)
    >>> masked.masked_dense(x, w, b, 2, 1).tolist()
    [[3.0, 0.0, 0.0], [3.0, 0.0, 0.0]]
    >>> masked.reference(x[:, :2], w[:2, :1], b[:1]).tolist()
    [[3.0], [3.0]]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def unit_mask(size: int, width) -> jax.Array:
    """``arange(size) < width`` as a bool vector (``width`` may be a traced int or float)."""
    return jnp.arange(size) < jnp.asarray(width)


def masked_dense(x: jax.Array, w: jax.Array, b: jax.Array | None, in_width, out_width
                 ) -> jax.Array:
    """One trial's dense layer with units at index >= ``in_width`` / ``out_width`` masked.

    Args:
      x: inputs ``[..., I]``.
      w: weights ``[I, O]``, allocated at the maximum widths.
      b: biases ``[O]``, or ``None``.
      in_width, out_width: the active widths (ints or traced scalars, int or
        float holding an integer; compared exactly with ``arange``).

    Returns:
      ``x @ (w * mask) + b * out_mask``, shape ``[..., O]``; entries at index
      >= ``out_width`` are exactly zero.
    """
    i, o = w.shape
    in_mask, out_mask = unit_mask(i, in_width), unit_mask(o, out_width)
    mask = (in_mask[:, None] & out_mask[None, :]).astype(w.dtype)
    y = x @ (w * mask)
    if b is not None:
        y = y + b * out_mask.astype(b.dtype)
    return y


def reference(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    """The plain layer ``x @ w + b`` of an already-sliced (unpadded) trial, no masks."""
    y = x @ w
    return y if b is None else y + b


def population(x: jax.Array, w: jax.Array, b: jax.Array | None, in_width, out_width
               ) -> jax.Array:
    """:func:`masked_dense` for ``P`` trials: ``x [P, B, I]``, ``w [P, I, O]``, ``b [P, O]``,
    widths ``[P]``; returns ``[P, B, O]``."""
    if b is None:
        return jax.vmap(lambda x, w, i, o: masked_dense(x, w, None, i, o))(
            x, w, in_width, out_width)
    return jax.vmap(masked_dense)(x, w, b, in_width, out_width)
