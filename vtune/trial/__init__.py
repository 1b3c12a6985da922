"""What one trial trains, and how each hyperparameter reaches the computation.

* :mod:`vtune.trial.task`: :class:`Task` (three pure functions plus data) and
  :func:`from_nnx`, the adapter for Flax NNX modules;
* :mod:`vtune.trial.hparams`: the roles of hyperparameters (optimizer,
  schedule, loss, data, model), their defaults and legal ranges, optimizer
  construction, and the resolved :class:`HParamTable` of a search.
"""

from vtune.trial import hparams
from vtune.trial.hparams import HParamTable, sgdw
from vtune.trial.task import Task, from_nnx

__all__ = ["HParamTable", "Task", "from_nnx", "hparams", "sgdw"]
