"""What one trial trains: a Task of pure functions, and an adapter for Flax NNX.

A :class:`Task` is three pure functions of one trial plus its data; vtune
vmaps them over the population. Hyperparameters arrive as a mapping ``hp`` of
traced scalars (see :mod:`vtune.hparams`).

* ``init(key, hp) -> (params, state)``: trainable params and any other
  per-trial model state (batch statistics, ...; ``{}`` if none);
* ``loss(params, state, batch, key, hp) -> (loss, state)``: mean training loss
  of one minibatch ``batch = (x, y)`` (``None`` for a task without data);
* ``metrics(params, state, data, hp) -> {name: scalar}``: evaluation, where
  ``data = {"train": (x, y), "val": (x, y)}`` (``None`` without data).

Most users build one with :func:`from_nnx` or :mod:`vtune.tasks`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vtune import nn
from vtune.datasets import Dataset

#: Largest number of training examples evaluated for the train metrics.
TRAIN_EVAL_MAX = 4096


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """One trial's training problem. See the module docstring for the contract.

    Attributes:
      init: ``(key, hp) -> (params, state)``.
      loss: ``(params, state, batch, key, hp) -> (scalar loss, state)``.
      metrics: ``(params, state, data, hp) -> dict`` of scalars.
      data: the train/validation split, or ``None``.
      batch_size: minibatch size (ignored without data).
      optimizer: an optax factory such as ``optax.adamw`` (default) or
        ``optax.sgd``; its numeric arguments become hyperparameters.
      defaults: default values for hyperparameters the space leaves out,
        overriding :data:`vtune.hparams.DEFAULTS`.
      name: identifies the task in checkpoints and reports.
      hparam_specs: optional ``hparam_specs(hp) -> {name: spec}``, what the
        model declares per hyperparameter (``low`` / ``high``: the structure it
        allocates, e.g. a width's maximum; ``integer``; ``default``), as
        :func:`vtune.nn.hparam_specs` collects it. :func:`from_nnx` fills it
        from the module's :class:`vtune.nn.HParam` metadata. vtune evaluates
        it abstractly (:meth:`model_hparams`) and refuses a space that leaves
        the allocation, before compiling.
    """

    init: Callable
    loss: Callable
    metrics: Callable
    data: Dataset | None = None
    batch_size: int = 128
    optimizer: Callable = optax.adamw
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    name: str = "task"
    hparam_specs: Callable | None = None

    def __post_init__(self):
        for f in ("init", "loss", "metrics", "optimizer"):
            if not callable(getattr(self, f)):
                raise TypeError(f"Task.{f} must be callable, got {getattr(self, f)!r}")
        if self.data is not None and not isinstance(self.data, Dataset):
            raise TypeError(f"Task.data must be a vtune.datasets.Dataset or None, "
                            f"got {type(self.data).__name__}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) \
                or self.batch_size < 1:
            raise ValueError(f"Task.batch_size must be a positive int, got {self.batch_size!r}")
        if self.data is not None and self.batch_size > self.data.num_train:
            raise ValueError(f"Task.batch_size {self.batch_size} exceeds the "
                             f"{self.data.num_train} training examples")

    def model_hparams(self, dtype_of: Callable[[str], Any] | None = None) -> dict:
        """:attr:`hparam_specs` evaluated abstractly (no compile, no FLOPs).

        ``dtype_of(name)`` is the dtype each placeholder hyperparameter takes
        (as :func:`vtune.hparams.value_dtype` gives it for a space); default
        float32. Returns ``{}`` when the task declares nothing.
        """
        if self.hparam_specs is None:
            return {}
        dtype_of = dtype_of or (lambda name: jnp.float32)
        out = {}

        class _Placeholders(Mapping):
            def __getitem__(self, name):
                return jnp.zeros((), dtype_of(name))

            def __iter__(self):
                return iter(())

            def __len__(self):
                return 0

        def run():
            out.update(self.hparam_specs(_Placeholders()))

        jax.eval_shape(run)
        return out

    def host_data(self):
        """The arrays the compiled program receives, as host numpy arrays.

        ``train`` is sampled for minibatches, ``train_eval`` (at most
        :data:`TRAIN_EVAL_MAX` rows) and ``val`` are evaluated in full.
        """
        if self.data is None:
            return None
        d = self.data
        n = min(d.num_train, TRAIN_EVAL_MAX)
        return {"train": (d.x_train, d.y_train), "train_eval": (d.x_train[:n], d.y_train[:n]),
                "val": (d.x_val, d.y_val)}

    def device_data(self):
        """:meth:`host_data` on the default device."""
        return jax.tree.map(jnp.asarray, self.host_data())

    def fingerprint(self) -> str:
        """A short hash of what makes two tasks the same search problem."""
        parts = [self.name, str(self.batch_size), getattr(self.optimizer, "__name__", "?")]
        if self.data is not None:
            d = self.data
            parts += [d.name, str(d.x_train.shape), str(d.x_val.shape),
                      hashlib.sha256(d.x_train.tobytes()).hexdigest()[:16]]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def classification_loss(logits, labels):
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def from_nnx(model: Callable[[Mapping, nnx.Rngs], nnx.Module], data: Dataset, *,
             loss: Callable = classification_loss, classification: bool = True,
             batch_size: int = 128, optimizer: Callable = optax.adamw,
             defaults: Mapping[str, Any] | None = None, name: str | None = None) -> Task:
    """A Task from a Flax NNX module built from the trial's hyperparameters.

    Args:
      model: ``model(hp, rngs) -> nnx.Module``. ``hp`` maps names to traced
        scalars; read what you tune (``hp["dropout"]``, ``hp["init"]``...). Use
        :class:`vtune.nn.Dropout` for dropout and :func:`vtune.nn.kernel_init`
        for per-trial init schemes. Its ``__call__(x)`` returns predictions.
      data: the train/validation split.
      loss: ``loss(predictions, targets) -> scalar`` mean over the batch.
      classification: also report ``train_accuracy`` and ``val_accuracy``.
      batch_size, optimizer, defaults, name: as in :class:`Task`.

    Example:
        >>> class Net(nnx.Module):
        ...     def __init__(self, hp, rngs):
        ...         self.fc1 = nnx.Linear(64, 32, rngs=rngs)
        ...         self.drop = vtune.nn.Dropout(hp["dropout"], rngs=rngs)
        ...         self.fc2 = nnx.Linear(32, 10, rngs=rngs)
        ...     def __call__(self, x):
        ...         return self.fc2(self.drop(nnx.relu(self.fc1(x))))
        >>> task = vtune.from_nnx(Net, vtune.datasets.digits(), batch_size=64)
    """
    graph = {}

    def build(hp, key):
        m = model(hp, nnx.Rngs(params=jax.random.fold_in(key, 0),
                               dropout=jax.random.fold_in(key, 1)))
        if not isinstance(m, nnx.Module):
            raise TypeError(f"model(hp, rngs) must return an nnx.Module, got {type(m).__name__}")
        graph["def"], params, hps, rngs, state = nnx.split(m, nnx.Param, nn.HParam, nnx.RngState, ...)
        # Templates for merge(); their values are replaced, so keep no tracers.
        graph["hparams"], graph["rngs"] = (
            [(p, v.replace(np.zeros(()))) for p, v in nnx.to_flat_state(s)] for s in (hps, rngs))
        return params, state

    def merge(params, state, hp, key):
        hps = nnx.from_flat_state([(p, v.replace(jnp.asarray(hp[v.get_metadata()["hp_name"]])))
                                   for p, v in graph["hparams"]])
        rngs = nnx.from_flat_state([
            (p, v.replace(jax.random.fold_in(key, i) if isinstance(v, nnx.RngKey)
                          else jnp.zeros((), jnp.uint32))) for i, (p, v) in enumerate(graph["rngs"])])
        return nnx.merge(graph["def"], params, hps, rngs, state)

    def nnx_loss(params, state, batch, key, hp):
        m = merge(params, state, hp, key)
        x, y = batch
        value = loss(m(x), y)
        return value, nnx.split(m, nnx.Param, nn.HParam, nnx.RngState, ...)[4]

    def nnx_metrics(params, state, data, hp):
        m = merge(params, state, hp, jax.random.key(0))
        m.eval()
        out = {}
        for split, prefix in (("train_eval", "train"), ("val", "val")):
            x, y = data[split]
            pred = m(x)
            out[f"{prefix}_loss"] = loss(pred, y)
            if classification:
                out[f"{prefix}_accuracy"] = jnp.mean(jnp.argmax(pred, -1) == y)
        return out

    def specs(hp):
        # An abstract build: the metadata of the module's HParams, no arrays.
        return nn.hparam_specs(nnx.eval_shape(lambda: model(hp, nnx.Rngs(0))))

    return Task(init=lambda key, hp: build(hp, key), loss=nnx_loss, metrics=nnx_metrics,
                data=data, batch_size=batch_size, optimizer=optimizer,
                defaults=dict(defaults or {}), hparam_specs=specs,
                name=name or f"nnx:{getattr(model, '__qualname__', type(model).__name__)}")
