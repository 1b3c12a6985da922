"""Built-in tasks."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vtune import datasets, nn
from vtune.trial.hparams import float_dtype
from vtune.trial.task import Task, from_nnx


class _WithDefaults(Mapping):
    """``hp`` where the names it lacks read as the given defaults (a plain dict of a
    model loaded outside vtune need not name the structure)."""

    def __init__(self, hp, defaults):
        self._hp, self._defaults = hp, defaults

    def __getitem__(self, name):
        try:
            return self._hp[name]
        except KeyError:
            if name in self._defaults:
                return self._defaults[name]
            raise

    def __iter__(self):
        return iter(self._hp)

    def __len__(self):
        return len(self._hp)


def structure_names(hidden_sizes: Sequence[int]) -> dict[str, int]:
    """The structural hyperparameters of an MLP with ``hidden_sizes``, with their defaults.

    Equal sizes: ``width`` (the size) and ``depth``; unequal sizes: one
    ``width_k`` per hidden layer (k from 1) and ``depth``. Either way the
    hidden layers are allocated at ``max(hidden_sizes)`` and the stack at
    ``len(hidden_sizes)``, and the defaults compute the network ``hidden_sizes``
    names.
    """
    if len(set(hidden_sizes)) == 1:
        widths = {"width": hidden_sizes[0]}
    else:
        widths = {f"width_{k}": h for k, h in enumerate(hidden_sizes, start=1)}
    return {**widths, "depth": len(hidden_sizes)}


class MLP(nnx.Module):
    """A multilayer perceptron whose init, dropout, activation, width and depth are
    hyperparameters.

    Reads ``hp["init"]`` and ``hp["init_scale"]`` (every layer), ``hp["dropout"]``
    (after each hidden layer, when ``dropout``), ``hp["activation"]`` (when
    ``activation`` is None), and the structure of :func:`structure_names`
    (``width`` and ``depth``; ``width_k`` when the hidden sizes differ), which
    default to ``sizes``. It is a :class:`vtune.nn.MaskedMLP` allocated at the
    largest hidden size and the number of hidden layers.
    """

    def __init__(self, hp, rngs, *, sizes: Sequence[int], activation: str | None,
                 dropout: bool, dtype, squeeze: bool = False):
        hidden = tuple(sizes[1:-1])
        defaults = structure_names(hidden)
        widths = [n for n in defaults if n != "depth"]
        hp = _WithDefaults(hp, defaults)
        act = (getattr(jax.nn, activation) if activation is not None else
               nn.HParam(jnp.asarray(hp["activation"]), hp_name="activation"))
        self.mlp = nn.MaskedMLP(
            sizes[0], max(hidden), len(hidden), sizes[-1], hp=hp,
            widths=widths[0] if len(widths) == 1 else widths, depth_name="depth",
            defaults={n: defaults[n] for n in widths}, init=hp["init"],
            init_scale=hp["init_scale"], activation=act,
            dropout=hp["dropout"] if dropout else None, param_dtype=dtype, rngs=rngs)
        self.squeeze = squeeze

    def __call__(self, x):
        out = self.mlp(x.reshape(x.shape[0], -1))
        return out[:, 0] if self.squeeze else out


def mlp_classifier(data: datasets.Dataset | None = None, *,
                   hidden_sizes: Sequence[int] = (128, 128), activation: str | None = "relu",
                   dropout: bool = True, batch_size: int = 128,
                   optimizer: Callable | Mapping[str, Callable] = optax.adamw,
                   dtype=None) -> Task:
    """A classifier MLP on ``data`` (default: the bundled digits).

    Its width and depth are hyperparameters (structure as data): the hidden
    layers are allocated at ``max(hidden_sizes)`` and the stack at
    ``len(hidden_sizes)``; a space may name ``width`` (from 1 up to that
    maximum) and ``depth`` (1 up to ``len(hidden_sizes)``), and each trial
    computes exactly the smaller network (masked units, skipped layers, see
    :class:`vtune.nn.MaskedMLP`). A space that names neither computes the
    network ``hidden_sizes`` describes. When the hidden sizes differ, the
    per-layer widths are ``width_1``, ``width_2``... (defaults: the sizes), all
    allocated at the largest, so unequal sizes pay for padding.

    Args:
      data: a :class:`vtune.datasets.Dataset` with integer labels.
      hidden_sizes: widths of the hidden layers (the allocation).
      activation: a ``jax.nn`` activation name used by every trial, or ``None``
        to tune it through the ``activation`` hyperparameter.
      dropout: put a :class:`vtune.nn.Dropout` after every hidden layer, its
        rate the ``dropout`` hyperparameter (default 0).
      batch_size: minibatch size.
      optimizer: an optax factory, its numeric arguments hyperparameters, or
        ``{name: factory}`` families for a space's ``optimizer`` choice (see
        :class:`vtune.Task`).
      dtype: parameter dtype (default float32, or float64 under ``jax_enable_x64``).

    Example:
        >>> task = vtune.tasks.mlp_classifier(hidden_sizes=(64,), dropout=False)
        >>> task.name
        'mlp_classifier(64-64-10,relu,dropout=False)'
        >>> task.defaults
        {'width': 64, 'depth': 1}
    """
    data = datasets.digits() if data is None else data
    return _mlp("mlp_classifier", data, hidden_sizes, activation, dropout, batch_size,
                optimizer, dtype, classification=True)


def mlp_regressor(data: datasets.Dataset, *, hidden_sizes: Sequence[int] = (128, 128),
                  activation: str | None = "relu", dropout: bool = True,
                  batch_size: int = 128,
                  optimizer: Callable | Mapping[str, Callable] = optax.adamw,
                  dtype=None) -> Task:
    """A regression MLP on ``data``: one output per example, mean squared error.

    The same network as :func:`mlp_classifier` (and the same hyperparameters,
    structure included) with a single linear output; its loss is the mean
    squared error and it reports ``val_mae`` and ``val_r2`` beside
    ``val_loss`` (see :func:`vtune.from_nnx` with ``classification=False``).

    Args:
      data: a :class:`vtune.datasets.Dataset` whose targets are floats of
        shape ``[n]``, such as :func:`vtune.datasets.friedman1`.
      hidden_sizes, activation, dropout, batch_size, optimizer, dtype: as in
        :func:`mlp_classifier`.

    Example:
        >>> task = vtune.tasks.mlp_regressor(vtune.datasets.friedman1(), hidden_sizes=(32,))
        >>> task.name
        'mlp_regressor(10-32-1,relu,dropout=True)'
    """
    if isinstance(data, datasets.Dataset) and (data.has_class_labels or data.y_train.ndim != 1):
        raise ValueError(f"mlp_regressor: targets must be floats of shape [n], got "
                         f"{data.y_train.dtype} {data.y_train.shape}")
    return _mlp("mlp_regressor", data, hidden_sizes, activation, dropout, batch_size,
                optimizer, dtype, classification=False)


def _mlp(kind, data, hidden_sizes, activation, dropout, batch_size, optimizer, dtype, *,
         classification):
    if not isinstance(data, datasets.Dataset):
        raise TypeError(f"{kind}: data must be a vtune.datasets.Dataset, got "
                        f"{type(data).__name__}")
    if classification:
        data.check_labels()
    if isinstance(hidden_sizes, (int, str)) or not isinstance(hidden_sizes, Sequence):
        raise TypeError(f"{kind}: hidden_sizes must be a sequence of ints such as "
                        f"(128, 128), got {hidden_sizes!r}")
    if activation is not None and not callable(getattr(jax.nn, str(activation), None)):
        raise ValueError(f"{kind}: unknown activation {activation!r}; use a jax.nn "
                         f"function name such as 'relu' or 'tanh', or None to tune it")
    if not hidden_sizes or any(not isinstance(h, int) or h < 1 for h in hidden_sizes):
        raise ValueError(f"{kind}: hidden_sizes must be positive ints, got {hidden_sizes!r}")
    n_in = 1
    for d in data.x_train.shape[1:]:
        n_in *= d
    sizes = (n_in, *hidden_sizes, data.num_classes if classification else 1)
    dtype = dtype or float_dtype()

    def model(hp, rngs):
        return MLP(hp, rngs, sizes=sizes, activation=activation, dropout=dropout, dtype=dtype,
                   squeeze=not classification)

    name = f"{kind}({'-'.join(map(str, sizes))},{activation},dropout={dropout})"
    extra = {} if classification else {"loss": _mean_squared_error, "classification": False}
    return from_nnx(model, data, batch_size=batch_size, optimizer=optimizer, name=name,
                    defaults=structure_names(tuple(hidden_sizes)), **extra)


def _mean_squared_error(pred, targets):
    return optax.squared_error(pred, targets).mean()
