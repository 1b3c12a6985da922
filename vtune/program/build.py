"""From a (task, space) pair to its compiled-program holder, checked before any compile.

:func:`trace` runs the task's three functions abstractly (``jax.eval_shape``:
shapes and dtypes only, nothing compiled or computed) with a recording ``hp``
mapping, to learn which hyperparameters the task reads, which metrics it
reports, and the shapes of its parameters. :func:`build` then resolves the
space against what the task consumes and returns the cached
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

from vtune.program.program import Program, get_program
from vtune.space import Space
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
    """A task made ready for a search: its program, hyperparameter table and trace."""

    program: Program
    table: hparams_lib.HParamTable
    metrics: tuple[str, ...]
    traced: Traced


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
    try:
        out = jax.eval_shape(lambda k: task.init(k, hp), key)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{where}: init(key, hp) must return (params, state) ({{}} for no "
                            f"state), got {type(out).__name__}")
        params, state = out
        batch = None if data is None else tuple(
            jax.ShapeDtypeStruct((task.batch_size,) + a.shape[1:], a.dtype) for a in data["train"])
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
        if str(e).startswith(where):
            raise
        raise ValueError(f"{where} does not run on its data: {e}") from e
    leaves = jax.tree_util.tree_leaves_with_path(params)
    shapes = tuple((jax.tree_util.keystr(p), str(tuple(x.shape)), str(x.dtype)) for p, x in leaves)
    return Traced(frozenset(hp.read), tuple(sorted(metrics)), shapes)


def build(task: Task, space: Space, steps: int, mesh=None, chunk_size=None) -> Built:
    """Validates ``task`` against ``space`` and returns its compiled-program holder.

    ``mesh`` (default: all devices) is where the population will be sharded.
    Nothing is compiled here: the program compiles on its first call.
    """
    traced = trace(task, space)
    table = hparams_lib.resolve(space, traced.reads, task.optimizer, task.defaults)
    return Built(get_program(task, table, steps, mesh, chunk_size), table, traced.metrics, traced)
