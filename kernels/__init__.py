"""Population-batched kernels, installed as ``vtune.kernels``.

vtune trains a population by ``vmap``-ping one trial's code, so XLA picks the
batched formulation of every layer. This package holds the alternatives and
their reference implementation, measured by ``benchmarks/dense_layer.py`` and
tested to compute the same thing (``tests/test_kernels.py``).

* :mod:`vtune.kernels.dense`: the population dense layer ``[P, B, I] x [P, I, O]``.
* :mod:`vtune.kernels.masked`: the masked dense layer (width as data) that
  :class:`vtune.nn.MaskedLinear` calls, beside its unmasked reference.
"""

from vtune.kernels import dense, masked

__all__ = ["dense", "masked"]
