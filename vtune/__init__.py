"""vtune: tune small models by training whole populations in one compiled program.

Example:
    >>> import vtune
    >>> task = vtune.tasks.mlp_classifier()           # an MLP on the bundled digits
    >>> space = {"learning_rate": vtune.loguniform(1e-4, 1.0),
    ...          "dropout": vtune.uniform(0.0, 0.7)}
    >>> result = vtune.population_search(task, space, population_size=16, generations=3,
    ...                                  steps_per_generation=50, verbose=False)
    >>> result.best.metrics["val_accuracy"] > 0.5
    True
"""

from vtune import datasets, memory, nn, sharding, strategies, tasks
from vtune.checkpoint import load
from vtune.hparams import sgdw
from vtune.results import SearchResult, Trial
from vtune.search import population_search
from vtune.space import (Choice, Fixed, IntUniform, LogUniform, Space, Uniform, choice, fixed,
                         intuniform, loguniform, uniform)
from vtune.task import Task, from_nnx

__version__ = "0.1.0"

__all__ = [
    "Choice", "Fixed", "IntUniform", "LogUniform", "SearchResult", "Space", "Task", "Trial",
    "Uniform", "choice", "datasets", "fixed", "from_nnx", "intuniform", "load", "loguniform", "memory", "nn", "sharding",
    "population_search", "sgdw", "strategies", "tasks", "uniform",
]
