"""``population_search``: the driver loop.

Each generation: train every slot for ``steps_per_generation`` steps and
evaluate (one compiled program) -> fetch one float per metric per slot ->
the strategy decides on the host -> apply its decisions on device (gather
parents, initialise fresh slots) -> next generation. Params never leave the
device except the best trial's, fetched when it improves.
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from vtune import hparams as hparams_lib
from vtune import strategies as strategies_lib
from vtune.population import take
from vtune.program import get_program
from vtune.results import SearchResult, Trial
from vtune.space import Space
from vtune.task import Task


def _py(x):
    """A numpy scalar (or a str from an object array) as a plain Python value."""
    return x.item() if hasattr(x, "item") else x


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _abstract(task: Task, space: Space):
    """Traces the task once (no compile) to learn what it reads and reports.

    Returns the names of the hyperparameters it reads and its metric names.
    """
    dtype_of = lambda n: (np.int32 if n in hparams_lib.CATEGORIES or (
        n in space and hparams_lib._is_string_valued(space[n])) else hparams_lib.float_dtype())
    hp = hparams_lib.Recorder(dtype_of)
    key = jax.eval_shape(lambda: jax.random.key(0))
    data = None
    if task.data is not None:
        d = task.data
        spec = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)
        data = {"train": (spec(d.x_train), spec(d.y_train)),
                "train_eval": (spec(d.x_train), spec(d.y_train)),
                "val": (spec(d.x_val), spec(d.y_val))}
    try:
        params, state = jax.eval_shape(lambda k: task.init(k, hp), key)
        batch = None if data is None else tuple(
            jax.ShapeDtypeStruct((task.batch_size,) + a.shape[1:], a.dtype) for a in data["train"])
        jax.eval_shape(lambda *a: task.loss(*a, hp), params, state, batch, key)
        metrics = jax.eval_shape(lambda *a: task.metrics(*a, hp), params, state, data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"task {task.name!r} does not run on its data: {e}") from e
    return hp.read, sorted(metrics)


def build(task: Task, space: Space, steps: int):
    """Validates ``task`` against ``space`` and returns its compiled-program holder.

    Returns:
      ``(program, table, metric_names)``: the (cached) :class:`vtune.program.Program`,
      the resolved :class:`vtune.hparams.HParamTable` and the task's metrics.
    """
    model_reads, metric_names = _abstract(task, space)
    table = hparams_lib.resolve(space, model_reads, task.optimizer, task.defaults)
    return get_program(task, table, steps), table, metric_names


def population_search(
    task: Task,
    space: Space | Mapping[str, Any],
    *,
    population_size: int = 32,
    generations: int = 10,
    steps_per_generation: int = 100,
    objective: str = "val_loss",
    mode: str | None = None,
    seed: int = 0,
    strategy: str | strategies_lib.Strategy | None = None,
    verbose: bool = True,
) -> SearchResult:
    """Searches hyperparameters with a whole population trained as one program.

    Args:
      task: what each trial trains (e.g. :func:`vtune.tasks.mlp_classifier`).
      space: ``{name: distribution}`` (see :mod:`vtune.space`); names must be
        hyperparameters the task consumes, others keep their defaults.
      population_size: trials trained at once (the slots).
      generations: rounds of train -> evaluate -> prune/refill.
      steps_per_generation: optimizer steps per slot per generation.
      objective: the metric to optimise, e.g. "val_loss" or "val_accuracy".
      mode: "min" or "max"; default "max" for accuracies, else "min".
      seed: seeds the sampling, every trial's keys and the strategy.
      strategy: a registry name (see :data:`vtune.strategies.REGISTRY`) or a
        :class:`vtune.strategies.Strategy`; default truncation selection.
      verbose: show a progress bar.

    Returns:
      A :class:`SearchResult` with the best trial (its params included) and
      the history of every slot at every generation.

    Raises:
      ValueError, TypeError: bad arguments, named in the message, before
        anything is compiled.

    Example:
        >>> task = vtune.tasks.mlp_classifier(hidden_sizes=(32,))
        >>> space = {"learning_rate": vtune.loguniform(1e-4, 1e-1)}
        >>> result = vtune.population_search(task, space, population_size=8,
        ...     generations=2, steps_per_generation=20, verbose=False)
        >>> sorted(result.best.metrics)
        ['diverged', 'train_accuracy', 'train_loss', 'val_accuracy', 'val_loss']
    """
    if not isinstance(task, Task):
        raise TypeError(f"task must be a vtune.Task, got {type(task).__name__}")
    space = Space.coerce(space)
    size = _positive_int("population_size", population_size)
    generations = _positive_int("generations", generations)
    steps = _positive_int("steps_per_generation", steps_per_generation)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    strat = strategies_lib.get(strategy)
    program, table, metric_names = build(task, space, steps)
    if objective not in metric_names:
        raise ValueError(f"objective {objective!r} is not a metric of this task; "
                         f"it reports {metric_names}")
    if mode is None:
        mode = "max" if "accuracy" in objective else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")

    seed_key = jax.random.key(seed)
    data = task.device_data()
    horizon = np.int32(generations * steps)
    sign = 1.0 if mode == "min" else -1.0

    sstate = strat.init(int(seed), space, size)
    sstate, configs = strat.ask(sstate)
    values = table.complete(configs, size)
    trial_id = np.arange(size, dtype=np.int32)
    parent_id = np.full(size, -1, np.int64)
    step = np.zeros(size, np.int64)
    next_id = size
    encoded = table.encode(values)
    pop = program.init(seed_key, trial_id, encoded)

    history: list[dict[str, Any]] = []
    best: Trial | None = None
    bar = tqdm(range(generations), desc="vtune", unit="gen", disable=not verbose)
    for g in bar:
        pop, metrics = program.train(pop, data, seed_key, horizon)
        m = jax.device_get(metrics)
        step += steps
        diverged = np.asarray(m["diverged"]) | ~np.isfinite(m[objective])
        scores = np.where(diverged, np.nan, sign * np.asarray(m[objective], np.float64))
        rows = [{"generation": g, "slot": i, "trial_id": int(trial_id[i]),
                 "parent_id": int(parent_id[i]), "step": int(step[i]),
                 "status": "diverged" if diverged[i] else "alive",
                 **{k: _py(v[i]) for k, v in values.items()},
                 **{k: _py(v[i]) for k, v in m.items() if k != "diverged"}}
                for i in range(size)]
        history.extend(rows)
        if not np.all(np.isnan(scores)):
            i = int(np.nanargmin(scores))
            if best is None or scores[i] < sign * best.metrics[objective]:
                best = Trial(trial_id=int(trial_id[i]),
                             hparams={k: _py(v[i]) for k, v in values.items()},
                             metrics={k: _py(v[i]) for k, v in m.items()},
                             generation=g, step=int(step[i]),
                             params=jax.device_get(take(pop.params, np.int32(i))),
                             encoded_hparams={k: v[i] for k, v in encoded.items()})
        bar.set_postfix(best=None if best is None else round(best.metrics[objective], 4),
                        diverged=int(diverged.sum()))
        if g == generations - 1:
            break
        sstate, dec = strat.tell(sstate, scores, configs)
        parent = np.asarray(dec.parent, np.int32)
        fresh = np.asarray(dec.fresh, bool)
        if parent.shape != (size,) or fresh.shape != (size,) or \
                np.any(parent < 0) or np.any(parent >= size):
            raise RuntimeError(f"strategy {strat.name!r} returned invalid decisions")
        new = fresh | (parent != np.arange(size))
        for i in np.flatnonzero(new):
            if rows[i]["status"] == "alive":
                rows[i]["status"] = "pruned"
        parent_id = np.where(fresh, -1, np.where(new, trial_id[parent], parent_id))
        step = np.where(fresh, 0, step[parent])
        trial_id = trial_id.copy()
        trial_id[new] = np.arange(next_id, next_id + new.sum(), dtype=np.int32)
        next_id += int(new.sum())
        configs = dec.configs
        values = table.complete(configs, size)
        encoded = table.encode(values)
        pop = program.refill(pop, parent, fresh, encoded, trial_id, seed_key)
    bar.close()
    return SearchResult(best=best, history=history, objective=objective, mode=mode,
                        tuned=space.names)
