"""The search specification: ``population_search``'s keywords, validated once.

A :class:`SearchSpec` is frozen and holds every argument of a search in its
checked form. It alone decides what makes two calls the same search
(:meth:`SearchSpec.identity`, the checkpoint's fingerprint), and the CLI's
config keys are its fields (:data:`CONFIG_FIELDS`). Everything is validated
here, before anything is compiled or written.

Example:
    >>> spec = SearchSpec.create(vtune.Space({"learning_rate": vtune.loguniform(1e-4, 1.0)}),
    ...                          population_size=8, generations=2, objective="val_accuracy")
    >>> spec.mode, spec.strategy.name
    ('max', 'bohb')
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from vtune import strategies as strategies_lib
from vtune.checkpoint import FORMAT
from vtune.checks import integer, positive_int, real_bool
from vtune.program.build import Traced
from vtune.report import codec, schema
from vtune.space import Space
from vtune.trial import optimizers
from vtune.trial.task import Task
from vtune.version import __version__

#: The fields of a search a config file may set (the CLI maps its keys onto them).
CONFIG_FIELDS = ("population_size", "generations", "steps_per_generation", "objective", "mode",
                 "seed", "strategy", "checkpoint_dir", "overwrite", "checkpoint_every",
                 "max_to_keep", "chunk_size", "bucketing", "keep_top", "timeout")


def _seed(value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not 0 <= value < 2 ** 32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {value!r}")
    return int(value)


def _directory(value) -> pathlib.Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or isinstance(value, bytes):
        raise TypeError(f"checkpoint_dir must be a path (str or os.PathLike) or None, got "
                        f"{value!r} ({type(value).__name__})")
    if str(value).strip() == "":
        raise ValueError("checkpoint_dir is an empty string (an unset variable?); pass a "
                         "directory, or None for no checkpoints")
    path = pathlib.Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"checkpoint_dir {str(value)!r} is a file, not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"checkpoint_dir {str(value)!r} lies under the file "
                                 f"{str(parent)!r}")
            break
    return path


def _devices(value) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, jax.Device):
        raise TypeError("devices must be a sequence of jax.Device (e.g. jax.devices()), "
                        f"got one device {value!r}; pass [{value!r}]")
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"devices must be a sequence of jax.Device, got {value!r}")
    bad = [d for d in value if not isinstance(d, jax.Device)]
    if bad:
        raise TypeError(f"devices must be jax.Device objects (e.g. jax.devices()), got {bad[0]!r}")
    if not value:
        raise ValueError("devices must name at least one device")
    return tuple(value)


def describe_callable(fn) -> str:
    """A stable description of a function: module and qualified name, and the
    bound arguments of a ``functools.partial``."""
    if isinstance(fn, functools.partial):
        args = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in sorted(fn.keywords.items())]
        return f"partial({describe_callable(fn.func)}, {', '.join(args)})"
    module = getattr(fn, "__module__", None) or type(fn).__module__
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}"


def data_hash(task: Task) -> str | None:
    """A hash of every array of the task's data (train and validation, inputs and targets)."""
    if task.data is None:
        return None
    h = hashlib.sha256()
    for a in (task.data.x_train, task.data.y_train, task.data.x_val, task.data.y_val):
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    """Every argument of one search, checked (see :func:`vtune.population_search`)."""

    space: Space
    population_size: int = 32
    generations: int = 10
    steps_per_generation: int = 100
    objective: str = "val_loss"
    mode: str = "min"
    seed: int = 0
    strategy: strategies_lib.Strategy = None
    checkpoint_dir: pathlib.Path | None = None
    overwrite: bool = False
    checkpoint_every: int = 1
    max_to_keep: int = 3
    devices: tuple | None = None
    chunk_size: int | str | None = None
    bucketing: bool = False
    verbose: bool = True
    callbacks: tuple = ()
    keep_top: int = 3
    timeout: float | None = None

    @classmethod
    def create(cls, space, *, population_size=32, generations=10, steps_per_generation=100,
               objective="val_loss", mode=None, seed=0, strategy=None, checkpoint_dir=None,
               overwrite=False, checkpoint_every=1, max_to_keep=3, devices=None,
               chunk_size=None, bucketing=False, verbose=True, callbacks=(),
               keep_top=3, timeout=None) -> "SearchSpec":
        """Validates every keyword; raises ValueError/TypeError naming the bad one.

        ``keep_top`` (how many trials' params the search keeps) and ``timeout``
        (when this call stops) change nothing that is trained, so they are no
        part of :meth:`identity`: a search may be resumed with other values.
        """
        steps = positive_int("steps_per_generation", steps_per_generation)
        gens = positive_int("generations", generations)
        if gens * steps >= 2 ** 31:
            raise ValueError(f"generations x steps_per_generation = {gens * steps} exceeds the "
                             f"int32 step counter (2**31 - 1)")
        if not isinstance(objective, str) or not objective:
            raise TypeError(f"objective must be a metric name (str), got {objective!r}")
        if chunk_size not in (None, "auto"):
            chunk_size = positive_int("chunk_size", chunk_size)
        if not isinstance(verbose, (bool, np.bool_)):
            raise TypeError(f"verbose must be True or False, got {verbose!r}")
        if timeout is not None and (isinstance(timeout, (bool, np.bool_)) or not isinstance(
                timeout, (int, float, np.integer, np.floating)) or not timeout > 0
                or not np.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive number of seconds or None, got "
                             f"{timeout!r}")
        if callable(callbacks) or not all(callable(c) for c in callbacks):
            raise TypeError(f"callbacks must be a list of functions callback(generation), got "
                            f"{callbacks!r}")
        return cls(space=Space.coerce(space),
                   population_size=positive_int("population_size", population_size),
                   generations=gens, steps_per_generation=steps, objective=objective,
                   mode=schema.check_mode(schema.infer_mode(objective) if mode is None else mode),
                   seed=_seed(seed), strategy=strategies_lib.get(strategy),
                   checkpoint_dir=_directory(checkpoint_dir),
                   overwrite=real_bool("overwrite", overwrite),
                   checkpoint_every=positive_int("checkpoint_every", checkpoint_every),
                   max_to_keep=positive_int("max_to_keep", max_to_keep),
                   devices=_devices(devices), chunk_size=chunk_size,
                   bucketing=real_bool("bucketing", bucketing),
                   verbose=bool(verbose),
                   callbacks=tuple(callbacks), keep_top=integer("keep_top", keep_top, 0),
                   timeout=None if timeout is None else float(timeout))

    @property
    def horizon(self) -> int:
        """Training steps of a trial that runs the whole search (schedules end here)."""
        return self.generations * self.steps_per_generation

    def identity(self, task: Task, traced: Traced) -> dict[str, Any]:
        """What makes two calls the same search, as JSON: the checkpoint's spec.

        The space, the task (name, data, parameter tree from the abstract
        trace, optimizer), the budget, objective, seed and the strategy with
        its settings. A checkpoint directory whose spec differs is refused.
        When the space names ``optimizer``, also the families it chooses
        among (``optimizer_families``: name -> factory); other searches'
        fingerprints do not hold that key.
        """
        params = hashlib.sha256(repr(traced.params).encode()).hexdigest()[:16]
        families = optimizers.optimizer_families(task.optimizer, self.space)
        extra = {"optimizer_families": {f.name: describe_callable(f.factory) for f in families}
                 } if families else {}
        optimizer = ({k: describe_callable(f) for k, f in task.optimizer.items()}
                     if isinstance(task.optimizer, Mapping) else describe_callable(task.optimizer))
        return codec.plain({
            "vtune_version": __version__, "format": FORMAT, "space": self.space.to_json(),
            "task": task.name, "task_fingerprint": task.fingerprint(),
            "population_size": self.population_size, "generations": self.generations,
            "steps_per_generation": self.steps_per_generation, "objective": self.objective,
            "mode": self.mode, "seed": self.seed, "strategy": self.strategy.name,
            "strategy_settings": {k: _jsonable(v) for k, v in self.strategy.settings.items()},
            "optimizer": optimizer,
            "data": data_hash(task), "params": params, "metrics": list(traced.metrics),
            **extra,
        })


def _jsonable(v):
    v = codec.plain(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)
