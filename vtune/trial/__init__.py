"""What one trial trains, and how each hyperparameter reaches the computation.

* :mod:`vtune.trial.task`: :class:`Task` (three pure functions plus data) and
  :func:`from_nnx`, the adapter for Flax NNX modules;
* :mod:`vtune.trial.hparams`: the roles of hyperparameters (optimizer,
  schedule, loss, data, model), their defaults and legal ranges, and the
  resolved :class:`HParamTable` of a search;
* :mod:`vtune.trial.optimizers`: :func:`sgdw`, the optimizer families, optax
  factories made injectable;
* :mod:`vtune.trial.schedule`: the learning-rate schedule inside the step;
* :mod:`vtune.trial.metrics`: what a task reports on each split (built-ins,
  user metrics and their checks).
"""

from vtune.trial import hparams, metrics, optimizers, schedule
from vtune.trial.hparams import HParamTable
from vtune.trial.optimizers import sgdw
from vtune.trial.task import Task, from_nnx

__all__ = ["HParamTable", "Task", "from_nnx", "hparams", "metrics", "optimizers", "schedule",
           "sgdw"]
