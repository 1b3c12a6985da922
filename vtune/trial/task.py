"""What one trial trains: a Task of pure functions, and an adapter for Flax NNX.

A :class:`Task` is three pure functions of one trial plus its data; vtune
vmaps them over the population. Hyperparameters arrive as a mapping ``hp`` of
traced scalars (see :mod:`vtune.trial.hparams`).

* ``init(key, hp) -> (params, state)``: trainable params and any other
  per-trial model state (batch statistics, ...; ``{}`` if none);
* ``loss(params, state, batch, key, hp) -> (loss, state)``: mean training loss
  of one minibatch ``batch = (x, y)`` (``None`` for a task without data). When
  the space tunes ``batch_size``, ``batch = (x, y, w)`` instead: ``Task.batch_size``
  rows and a weight per row (``1/b`` on the first ``b``, 0 on the rest, summing
  to 1), and the loss must be the weighted sum of per-example losses,
  ``sum_i w_i * loss_i``, so that it and its gradient are those of the batch of
  ``b``. A loss that does not use ``w`` is refused before anything compiles.
  Layers that mix examples (batch statistics) see all ``Task.batch_size`` rows;
  only the loss is weighted.
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
import optax
from flax import nnx

from vtune import nn
from vtune.datasets import Dataset
from vtune.trial import metrics as metrics_lib

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
      batch_size: minibatch size (ignored without data); when the space tunes
        ``batch_size``, the allocation: the largest batch a trial may use.
      optimizer: an optax factory such as ``optax.adamw`` (default) or
        ``optax.sgd``; its numeric arguments become hyperparameters. Or a
        mapping ``{name: factory}`` of the optimizer families a space may
        choose among by name (``space["optimizer"] = vtune.choice([...])``;
        a space that does not name it trains the first). A single factory
        offers :data:`vtune.trial.optimizers.FAMILIES` instead.
      defaults: default values for hyperparameters the space leaves out,
        overriding :data:`vtune.trial.hparams.DEFAULTS`.
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
    optimizer: Callable | Mapping[str, Callable] = optax.adamw
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    name: str = "task"
    hparam_specs: Callable | None = None

    def __post_init__(self):
        for f in ("init", "loss", "metrics"):
            if not callable(getattr(self, f)):
                raise TypeError(f"Task.{f} must be callable, got {getattr(self, f)!r}")
        if isinstance(self.optimizer, Mapping):
            bad = {k: v for k, v in self.optimizer.items()
                   if not isinstance(k, str) or not k or not callable(v)}
            if bad or not self.optimizer:
                raise TypeError(f"Task.optimizer: a mapping of optimizer families must map "
                                f"names (str) to optax factories, got {bad or '{}'}")
        elif not callable(self.optimizer):
            raise TypeError(f"Task.optimizer must be callable (an optax factory) or a mapping "
                            f"{{name: factory}}, got {self.optimizer!r}")
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
        name = lambda f: getattr(f, "__name__", "?")
        parts = [self.name, str(self.batch_size),
                 ",".join(f"{k}={name(f)}" for k, f in self.optimizer.items())
                 if isinstance(self.optimizer, Mapping) else name(self.optimizer)]
        if self.data is not None:
            d = self.data
            parts += [d.name, str(d.x_train.shape), str(d.x_val.shape),
                      hashlib.sha256(d.x_train.tobytes()).hexdigest()[:16]]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def check_outputs(pred, targets, labels: Dataset | None) -> None:
    """Refuses predictions whose shape does not fit the targets (shapes are static).

    Classification (``labels`` given): predictions ``[n, C]`` for labels ``[n]``
    with every label below C. Regression: predictions and targets of one shape,
    so a loss never broadcasts ``[n, 1]`` against ``[n]`` into ``[n, n]``.
    """
    pshape, tshape = tuple(pred.shape), tuple(targets.shape)
    if labels is not None:
        if len(pshape) != len(tshape) + 1 or pshape[:-1] != tshape:
            raise ValueError(f"the model's outputs have shape {pshape} for labels of shape "
                             f"{tshape}; a classifier returns one logit per class, shape "
                             f"{tshape + ('num_classes',)}")
        labels.check_labels(num_outputs=pshape[-1])
    elif pshape != tshape:
        raise ValueError(f"the model's predictions have shape {pshape} but the targets "
                         f"{tshape}; make them match (e.g. targets[:, None] or the model's "
                         f"output squeezed) so the loss does not broadcast")


def classification_loss(logits, labels):
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def from_nnx(model: Callable[[Mapping, nnx.Rngs], nnx.Module], data: Dataset, *,
             loss: Callable = classification_loss, classification: bool = True,
             metrics: Mapping[str, Callable] | None = None, batch_size: int = 128,
             optimizer: Callable | Mapping[str, Callable] = optax.adamw,
             defaults: Mapping[str, Any] | None = None, name: str | None = None) -> Task:
    """A Task from a Flax NNX module built from the trial's hyperparameters.

    Args:
      model: ``model(hp, rngs) -> nnx.Module``. ``hp`` maps names to traced
        scalars; read what you tune (``hp["dropout"]``, ``hp["init"]``...). Use
        :class:`vtune.nn.Dropout` for dropout and :func:`vtune.nn.kernel_init`
        for per-trial init schemes. Its ``__call__(x)`` returns predictions.
      data: the train/validation split.
      loss: ``loss(predictions, targets) -> scalar`` mean over the batch of
        per-example terms. When the space tunes ``batch_size``, vtune calls it
        on each example alone (``loss(pred[i:i+1], y[i:i+1])``, vmapped) and
        takes the weighted sum, so it must be such a mean (cross-entropy, squared
        error... are).
      classification: the targets are class labels and the model returns
        logits: also report ``train_accuracy`` and ``val_accuracy``. With
        ``classification=False`` (regression) report the mean absolute error
        and R² instead: ``train_mae``, ``val_mae``, ``train_r2``, ``val_r2``
        (see :func:`vtune.trial.metrics.r2_score`).
      metrics: your own metrics, ``{name: fn(predictions, targets) -> scalar}``,
        each written with ``jax.numpy`` and evaluated like the built-in ones on
        the train-evaluation rows and on the validation split (the model in
        eval mode, the whole split at once), reported as ``train_<name>`` and
        ``val_<name>``; any of them can be the search's objective (e.g.
        ``objective="val_f1"``; ``mode`` is inferred for names vtune knows,
        see :func:`vtune.report.schema.infer_mode`, and required otherwise).
        ``predictions`` are the model's outputs (logits for a classifier),
        ``targets`` the split's labels or targets. A metric that does not
        return a scalar is refused by the abstract trace, before compiling.
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

        A metric of your own, here the macro-averaged recall, reported as
        ``train_recall`` and ``val_recall`` and usable as the objective:

        >>> def recall(logits, labels):
        ...     hit = jax.nn.one_hot(labels, 10) * jax.nn.one_hot(jnp.argmax(logits, -1), 10)
        ...     per_class = hit.sum(0) / jnp.maximum(jax.nn.one_hot(labels, 10).sum(0), 1)
        ...     return per_class.mean()
        >>> task = vtune.from_nnx(Net, vtune.datasets.digits(), batch_size=64,
        ...                       metrics={"recall": recall})
        >>> result = vtune.population_search(task, {"dropout": vtune.uniform(0.0, 0.5)},
        ...     population_size=4, generations=1, steps_per_generation=20,
        ...     objective="val_recall", verbose=False)
        >>> result.mode, sorted(result.best.metrics)
        ('max', ['diverged', 'train_accuracy', 'train_loss', 'train_recall', 'val_accuracy',
         'val_loss', 'val_recall'])
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"from_nnx: data must be a vtune.datasets.Dataset, got "
                        f"{type(data).__name__}")
    if classification:
        data.check_labels()
    extra = metrics_lib.check_metrics(metrics, classification)
    reported = {**metrics_lib.BUILTIN_METRICS[bool(classification)], **extra}
    if isinstance(model, nnx.Module) or not callable(model):
        raise TypeError(f"from_nnx: model must be the module class (or a function "
                        f"model(hp, rngs) -> nnx.Module), got {type(model).__name__} "
                        f"{'instance' if isinstance(model, nnx.Module) else ''}".rstrip())

    def build(hp, key):
        rngs = nnx.Rngs(params=jax.random.fold_in(key, 0), dropout=jax.random.fold_in(key, 1))
        try:
            m = model(hp, rngs)
        except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError,
                jax.errors.TracerIntegerConversionError) as e:
            raise TypeError(
                f"from_nnx: the model used a hyperparameter as a Python value, but every hp[...] "
                f"is a traced array (one value per trial). Use vtune.nn.Dropout, not "
                f"nnx.Dropout(hp[...]), which tests rate == 0 in Python; read width or depth "
                f"only through vtune.nn's masked layers, never as a shape; branch with "
                f"jax.lax.switch / jnp.where. ({type(e).__name__})") from None
        if not isinstance(m, nnx.Module):
            raise TypeError(f"model(hp, rngs) must return an nnx.Module, got {type(m).__name__}")
        for path, node in nnx.iter_graph(m):
            if not isinstance(node, nnx.Module):
                continue
            for attr, value in vars(node).items():
                if isinstance(value, jax.Array) and not isinstance(value, nnx.Variable):
                    where = ".".join(map(str, (*path, attr)))
                    hint = ("use vtune.nn.Dropout, not nnx.Dropout(hp[...])"
                            if isinstance(node, nnx.Dropout) else
                            "keep it in a vtune.nn.HParam(hp[name], hp_name=name) and read "
                            "it with [...] in __call__")
                    raise TypeError(f"from_nnx: {type(node).__name__} keeps an array at {where} "
                                    f"as a plain attribute; hp[...] values are traced arrays "
                                    f"that change every trial: {hint}")
        for path, v in nnx.to_flat_state(nnx.state(m, nn.HParam)):
            if "hp_name" not in v.get_metadata():
                raise TypeError(f"from_nnx: vtune.nn.HParam at {'.'.join(map(str, path))} has no "
                                f"hp_name; write vtune.nn.HParam(hp['x'], hp_name='x') so vtune "
                                f"can set it from the trial's value")
        return m

    def init(key, hp):
        _, params, _, _, state = nnx.split(build(hp, key), nnx.Param, nn.HParam, nnx.RngState, ...)
        return params, state

    def merge(params, state, hp, key):
        # The module's structure comes from an abstract build with this trial's hp
        # (no compute), so every function of the Task depends on its arguments alone.
        graph, _, hps, rngs, _ = nnx.split(nnx.eval_shape(lambda: build(hp, jax.random.key(0))),
                                           nnx.Param, nn.HParam, nnx.RngState, ...)
        hps = nnx.from_flat_state([(p, v.replace(jnp.asarray(hp[v.get_metadata()["hp_name"]])))
                                   for p, v in nnx.to_flat_state(hps)])
        rngs = nnx.from_flat_state([
            (p, v.replace(jax.random.fold_in(key, i) if isinstance(v, nnx.RngKey)
                          else jnp.zeros((), jnp.uint32)))
            for i, (p, v) in enumerate(nnx.to_flat_state(rngs))])
        return nnx.merge(graph, params, hps, rngs, state, copy=True)

    def predict(m, x, y):
        pred = m(x)
        check_outputs(pred, y, data if classification else None)
        return pred

    def nnx_loss(params, state, batch, key, hp):
        m = merge(params, state, hp, key)
        x, y, *weights = batch
        pred = predict(m, x, y)
        if weights:  # the space tunes batch_size: a weighted sum of per-example losses
            each = jax.vmap(lambda p, t: loss(p[None], t[None]))(pred, y)
            value = jnp.sum(weights[0] * each)
        else:
            value = loss(pred, y)
        return value, nnx.split(m, nnx.Param, nn.HParam, nnx.RngState, ...)[4]

    def nnx_metrics(params, state, data, hp):
        m = merge(params, state, hp, jax.random.key(0))
        m.eval()
        out = {}
        for split, prefix in metrics_lib.SPLITS:
            x, y = data[split]
            pred = predict(m, x, y)
            out[f"{prefix}_loss"] = loss(pred, y)
            for metric, fn in reported.items():
                out[f"{prefix}_{metric}"] = metrics_lib.evaluate_metric(metric, fn, pred, y)
        return out

    def specs(hp):
        # An abstract build: the metadata of the module's HParams, no arrays.
        return nn.hparam_specs(nnx.eval_shape(lambda: build(hp, jax.random.key(0))))

    return Task(init=init, loss=nnx_loss, metrics=nnx_metrics,
                data=data, batch_size=batch_size, optimizer=optimizer,
                defaults=dict(defaults or {}), hparam_specs=specs,
                name=name or f"nnx:{getattr(model, '__qualname__', type(model).__name__)}")
