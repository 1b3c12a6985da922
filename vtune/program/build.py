"""From a (task, space) pair to its compiled-program holder, checked before any compile.

:func:`trace` runs the task's three functions abstractly (``jax.eval_shape``:
shapes and dtypes only, nothing compiled or computed) with a recording ``hp``
mapping, to learn which hyperparameters the task reads, which metrics it
reports, and the shapes of its parameters. :func:`build` then resolves the
space against what the task consumes, checks the opt-in data knobs against
the task (:func:`check_knobs`) and returns the cached
:class:`vtune.program.Program`.

Example:
    >>> task = vtune.tasks.mlp_classifier(vtune.datasets.synthetic(), hidden_sizes=(8,))
    >>> built = build(task, vtune.Space({"learning_rate": vtune.loguniform(1e-3, 1e-1)}), 10)
    >>> built.metrics
    ('train_accuracy', 'train_loss', 'val_accuracy', 'val_loss')
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from vtune.program.program import Program, get_program
from vtune.space import Choice, Fixed, Space
from vtune.trial import hparams as hparams_lib
from vtune.trial.task import Task


class Traced(NamedTuple):
    """What an abstract trace of a task tells.

    Attributes:
      reads: the hyperparameter names the task reads from ``hp``.
      metrics: its metric names, sorted.
      params: ``(path, shape, dtype)`` of every parameter leaf, as strings.
    """

    reads: frozenset
    metrics: tuple[str, ...]
    params: tuple[tuple[str, str, str], ...]


class Built(NamedTuple):
    """A task made ready for a search: its program, hyperparameter table and trace,
    and what its model declares per hyperparameter (:meth:`Task.model_hparams`)."""

    program: Program
    table: hparams_lib.HParamTable
    metrics: tuple[str, ...]
    traced: Traced
    specs: dict = {}


def _spec(a):
    return jax.ShapeDtypeStruct(a.shape, a.dtype)


def trace(task: Task, space: Space) -> Traced:
    """Traces the task once (no compile) to learn what it reads, reports and holds.

    Raises:
      ValueError: the task does not run on its data (the message names the task).
    """
    hp = hparams_lib.Recorder(lambda name: hparams_lib.value_dtype(name, space))
    key = jax.eval_shape(lambda: jax.random.key(0))
    data = None
    if task.data is not None:
        d = task.data
        data = {"train": (_spec(d.x_train), _spec(d.y_train)),
                "train_eval": (_spec(d.x_train), _spec(d.y_train)),
                "val": (_spec(d.x_val), _spec(d.y_val))}
    where = f"task {task.name!r}"
    weighted = "batch_size" in space and data is not None
    try:
        out = jax.eval_shape(lambda k: task.init(k, hp), key)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{where}: init(key, hp) must return (params, state) ({{}} for no "
                            f"state), got {type(out).__name__}")
        params, state = out
        batch = None if data is None else tuple(
            jax.ShapeDtypeStruct((task.batch_size,) + a.shape[1:], a.dtype) for a in data["train"])
        if weighted:
            _check_weighted_loss(task, hp, params, state, batch, key)
            batch = (*batch, jax.ShapeDtypeStruct((task.batch_size,), hparams_lib.float_dtype()))
        out = jax.eval_shape(lambda *a: task.loss(*a, hp), params, state, batch, key)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{where}: loss(params, state, batch, key, hp) must return "
                            f"(loss, state), got {type(out).__name__}")
        if getattr(out[0], "shape", None) != ():
            raise ValueError(f"{where}: loss must return the mean over the batch, a scalar; "
                             f"got shape {getattr(out[0], 'shape', out[0])}")
        metrics = jax.eval_shape(lambda *a: task.metrics(*a, hp), params, state, data)
        if not isinstance(metrics, dict):
            raise TypeError(f"{where}: metrics must return a dict name -> scalar, got "
                            f"{type(metrics).__name__}")
        vector = {k: v.shape for k, v in metrics.items() if getattr(v, "shape", None) != ()}
        if vector:
            raise ValueError(f"{where}: metrics must be scalars, got shapes {vector}")
    except (TypeError, ValueError) as e:
        if isinstance(e, _WeightsIgnored) or str(e).startswith(where):
            raise
        raise ValueError(f"{where} does not run on its data: {e}") from e
    leaves = jax.tree_util.tree_leaves_with_path(params)
    shapes = tuple((jax.tree_util.keystr(p), str(tuple(x.shape)), str(x.dtype)) for p, x in leaves)
    return Traced(frozenset(hp.read), tuple(sorted(metrics)), shapes)


class _WeightsIgnored(ValueError):
    pass


def _check_weighted_loss(task, hp, params, state, batch, key):
    """The loss accepts ``batch = (x, y, w)`` and its value depends on ``w``."""
    w = jax.ShapeDtypeStruct((task.batch_size,), hparams_lib.float_dtype())
    try:
        jaxpr = jax.make_jaxpr(lambda w, p, s, b, k: task.loss(p, s, (*b, w), k, hp)[0])(
            w, params, state, batch, key)
    except (TypeError, ValueError) as e:
        raise _WeightsIgnored(
            f"the space tunes batch_size, so task {task.name!r} is called with batch = (x, y, w) "
            f"(w: a weight per row, summing to 1; the loss must be sum_i w_i * loss_i), and its "
            f"loss failed on it: {e}") from e
    w_var = jaxpr.jaxpr.invars[0]
    uses = [v for eqn in jaxpr.jaxpr.eqns for v in eqn.invars] + list(jaxpr.jaxpr.outvars)
    if not any(v is w_var for v in uses):
        raise _WeightsIgnored(
            f"the space tunes batch_size, but the loss of task {task.name!r} ignores the weights "
            f"w of batch = (x, y, w): it must return sum_i w_i * loss_i so that a trial's loss is "
            f"that of its own batch size")


def _values(dist):
    if isinstance(dist, Choice):
        return list(dist.options)
    if isinstance(dist, Fixed):
        return [dist.value]
    return [dist.lo, dist.hi]


def check_knobs(task: Task, space: Space) -> None:
    """The opt-in data knobs against the task's data and allocation.

    Raises:
      ValueError (naming the value): ``batch_size`` above the task's
        allocation (``Task.batch_size``) or its training set, or a task without
        data; ``class_balance`` on data without integer class labels.
    """
    if "batch_size" in space:
        if task.data is None:
            raise ValueError("space['batch_size']: the task has no data to draw batches from")
        for v in _values(space["batch_size"]):
            if v > task.data.num_train:
                raise ValueError(f"space['batch_size']: {v!r} exceeds the "
                                 f"{task.data.num_train} training examples")
            if v > task.batch_size:
                raise ValueError(
                    f"space['batch_size']: {v!r} exceeds the task's allocated batch size "
                    f"{task.batch_size} (Task.batch_size: every trial draws that many rows and "
                    f"weights the first batch_size); build the task with batch_size={v!r}")
    if "class_balance" in space:
        y = None if task.data is None else task.data.y_train
        if y is None or not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
            what = "no data" if y is None else f"targets of dtype {y.dtype}, shape {y.shape}"
            raise ValueError(f"space['class_balance']: needs integer class labels "
                             f"(y_train of shape [n]), but task {task.name!r} has {what}")


def build(task: Task, space: Space, steps: int, mesh=None, chunk_size=None,
          objective: str | None = None, sign: float | None = None) -> Built:
    """Validates ``task`` against ``space`` and returns its compiled-program holder.

    ``mesh`` (default: all devices) is where the population will be sharded.
    ``objective`` and ``sign`` (+1 minimise, -1 maximise) are what plateau decay
    watches; a space that tunes it needs them (default: ``val_loss``, or the
    first metric, minimised). Nothing is compiled here: the program compiles
    on its first call.

    Raises:
      ValueError: a task that does not run on its data, a space it does not
        accept (:func:`vtune.trial.hparams.resolve`, :func:`check_knobs`), or
        an objective that is not one of its metrics.
    """
    traced = trace(task, space)
    # The structure the model allocates (e.g. a width's maximum) bounds the space.
    specs = task.model_hparams(lambda name: hparams_lib.value_dtype(name, space))
    table = hparams_lib.resolve(space, traced.reads, task.optimizer, task.defaults, specs)
    check_knobs(task, space)
    if objective is not None and objective not in traced.metrics:
        raise ValueError(f"objective {objective!r} is not a metric of this task; "
                         f"it reports {list(traced.metrics)}")
    if table.tunes("plateau_factor") and objective is None:
        objective = "val_loss" if "val_loss" in traced.metrics else traced.metrics[0]
        sign = 1.0 if sign is None else sign
    return Built(get_program(task, table, steps, mesh, chunk_size, objective,
                             1.0 if sign is None else sign), table, traced.metrics, traced, specs)
