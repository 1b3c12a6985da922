"""vtune: tune small models by training whole populations in one compiled program.

The package is layered in the order data moves through a search (see
``tests/test_layering.py``): ``space`` -> ``trial`` -> ``population`` ->
``program`` -> ``strategies`` -> ``report`` -> ``checkpoint`` -> ``search`` ->
``cli``. This module is the public face only.

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

from vtune import datasets, kernels, nn, population, program, strategies, tasks
from vtune.checkpoint import load
from vtune.population import sharding
from vtune.program import memory
from vtune.report import diagnose
from vtune.report.result import SearchResult, Trial
from vtune.search import population_search
from vtune.space import (Choice, Fixed, IntUniform, LogUniform, Space, Uniform, choice, fixed,
                         intuniform, loguniform, uniform)
from vtune.trial.optimizers import sgdw
from vtune.trial.task import Task, from_nnx
from vtune.version import __version__

program.cache.enable()  # JAX's persistent compilation cache, unless configured or turned off

__all__ = [
    "Choice", "Fixed", "IntUniform", "LogUniform", "SearchResult", "Space", "Task", "Trial",
    "Uniform", "__version__", "choice", "datasets", "diagnose", "fixed", "from_nnx", "kernels",
    "intuniform", "load", "loguniform", "memory", "nn", "population", "population_search",
    "program", "sgdw", "sharding", "strategies", "tasks", "uniform",
]
