"""Built-in tasks."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import optax
from flax import nnx

from vtune import datasets, nn
from vtune.trial.hparams import float_dtype
from vtune.trial.task import Task, from_nnx


class MLP(nnx.Module):
    """A multilayer perceptron whose init, dropout and activation are hyperparameters.

    Reads ``hp["init"]`` and ``hp["init_scale"]`` (every layer), ``hp["dropout"]``
    (after each hidden layer, when ``dropout``) and ``hp["activation"]`` (when
    ``activation`` is None).
    """

    def __init__(self, hp, rngs, *, sizes: Sequence[int], activation: str | None,
                 dropout: bool, dtype):
        init = nn.kernel_init(hp["init"], hp["init_scale"])
        self.layers = nnx.List([nnx.Linear(a, b, kernel_init=init, param_dtype=dtype, rngs=rngs)
                                for a, b in zip(sizes[:-1], sizes[1:])])
        self.drops = nnx.List([nn.Dropout(hp["dropout"], rngs=rngs) for _ in sizes[1:-1]]
                              if dropout else [])
        self.activation = activation
        self.activation_code = (nn.HParam(hp["activation"], hp_name="activation")
                                if activation is None else None)
        self.dropout = dropout

    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                if self.activation is None:
                    x = nn.activation(self.activation_code[...], x)
                else:
                    x = getattr(jax.nn, self.activation)(x)
                if self.dropout:
                    x = self.drops[i](x)
        return x


def mlp_classifier(data: datasets.Dataset | None = None, *,
                   hidden_sizes: Sequence[int] = (128, 128), activation: str | None = "relu",
                   dropout: bool = True, batch_size: int = 128,
                   optimizer: Callable = optax.adamw, dtype=None) -> Task:
    """A classifier MLP on ``data`` (default: the bundled digits).

    Args:
      data: a :class:`vtune.datasets.Dataset` with integer labels.
      hidden_sizes: widths of the hidden layers.
      activation: a ``jax.nn`` activation name used by every trial, or ``None``
        to tune it through the ``activation`` hyperparameter.
      dropout: put a :class:`vtune.nn.Dropout` after every hidden layer, its
        rate the ``dropout`` hyperparameter (default 0).
      batch_size: minibatch size.
      optimizer: an optax factory; its numeric arguments become hyperparameters.
      dtype: parameter dtype (default float32, or float64 under ``jax_enable_x64``).

    Example:
        >>> task = vtune.tasks.mlp_classifier(hidden_sizes=(64,), dropout=False)
        >>> task.name
        'mlp_classifier(64-64-10,relu,dropout=False)'
    """
    data = datasets.digits() if data is None else data
    if not isinstance(data, datasets.Dataset):
        raise TypeError(f"mlp_classifier: data must be a vtune.datasets.Dataset, got "
                        f"{type(data).__name__}")
    data.check_labels()
    if isinstance(hidden_sizes, (int, str)) or not isinstance(hidden_sizes, Sequence):
        raise TypeError(f"mlp_classifier: hidden_sizes must be a sequence of ints such as "
                        f"(128, 128), got {hidden_sizes!r}")
    if activation is not None and not callable(getattr(jax.nn, str(activation), None)):
        raise ValueError(f"mlp_classifier: unknown activation {activation!r}; use a jax.nn "
                         f"function name such as 'relu' or 'tanh', or None to tune it")
    if not hidden_sizes or any(not isinstance(h, int) or h < 1 for h in hidden_sizes):
        raise ValueError(f"mlp_classifier: hidden_sizes must be positive ints, got {hidden_sizes!r}")
    n_in = 1
    for d in data.x_train.shape[1:]:
        n_in *= d
    sizes = (n_in, *hidden_sizes, data.num_classes)
    dtype = dtype or float_dtype()

    def model(hp, rngs):
        return MLP(hp, rngs, sizes=sizes, activation=activation, dropout=dropout, dtype=dtype)

    name = f"mlp_classifier({'-'.join(map(str, sizes))},{activation},dropout={dropout})"
    return from_nnx(model, data, batch_size=batch_size, optimizer=optimizer, name=name)
