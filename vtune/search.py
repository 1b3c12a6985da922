"""``population_search``: the driver loop.

Each generation: train every slot for ``steps_per_generation`` steps and
evaluate (one compiled program) -> fetch one float per metric per slot ->
the strategy decides on the host -> apply its decisions on device (gather
parents, initialise fresh slots) -> next generation. Params never leave the
device except the best trial's, fetched when it improves.
"""

from __future__ import annotations

import dataclasses
import numbers
import time
from typing import Any, Mapping

import jax
import numpy as np
from tqdm.auto import tqdm

import vtune
from vtune import checkpoint as checkpoint_lib
from vtune import hparams as hparams_lib
from vtune import sharding
from vtune import strategies as strategies_lib
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
    hp = hparams_lib.Recorder(lambda name: hparams_lib.value_dtype(name, space))
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


def build(task: Task, space: Space, steps: int, mesh=None, chunk_size=None):
    """Validates ``task`` against ``space`` and returns its compiled-program holder.

    ``mesh`` (default: all devices) is where the population will be sharded.

    Returns:
      ``(program, table, metric_names)``: the (cached) :class:`vtune.program.Program`,
      the resolved :class:`vtune.hparams.HParamTable` and the task's metrics.
    """
    model_reads, metric_names = _abstract(task, space)
    # The structure the model allocates (e.g. a width's maximum) bounds the space.
    specs = task.model_hparams(lambda name: hparams_lib.value_dtype(name, space))
    table = hparams_lib.resolve(space, model_reads, task.optimizer, task.defaults, specs)
    return get_program(task, table, steps, mesh, chunk_size), table, metric_names


@dataclasses.dataclass(frozen=True)
class _Host:
    """Everything the driver keeps on the host; checkpointed as JSON.

    ``generation`` counts completed generations; arrays are per slot.
    """

    generation: int
    trial_id: np.ndarray
    parent_id: np.ndarray
    step: np.ndarray
    next_id: int
    configs: dict
    strategy: Any
    history: list
    best: dict | None
    elapsed: float


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
    checkpoint_dir: str | None = None,
    overwrite: bool = False,
    checkpoint_every: int = 1,
    max_to_keep: int = 3,
    devices=None,
    chunk_size: int | str | None = None,
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
        :class:`vtune.strategies.Strategy`; default
        :data:`vtune.strategies.DEFAULT`.
      checkpoint_dir: save the search here (orbax, asynchronously) and resume
        from it: calling again with the same directory and arguments continues
        from the last complete checkpoint and finishes with the same result as
        an uninterrupted run. A directory of another search is refused.
      overwrite: start afresh in ``checkpoint_dir``, deleting what it holds.
      checkpoint_every: save every this many generations (and after the last).
      max_to_keep: checkpoints kept in ``checkpoint_dir``.
      devices: the devices to shard the population over (default: every
        device of every process, ``jax.devices()``); ``population_size`` must
        be a multiple of their number. For many hosts, call
        ``jax.distributed.initialize()`` first and run the same call in every
        process.
      chunk_size: train this many trials of each device's share at a time,
        to fit a population larger than memory; "auto" picks the largest
        that fits (:func:`vtune.memory.max_population`, two small extra
        compiles); default: all at once.
      verbose: show a progress bar (on process 0 only).

    Returns:
      A :class:`SearchResult` with the best trial (its params included) and
      the history of every slot at every generation.

    Raises:
      ValueError, TypeError: bad arguments, named in the message, before
        anything is compiled or written.

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
    every = _positive_int("checkpoint_every", checkpoint_every)
    keep = _positive_int("max_to_keep", max_to_keep)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed)
    strat = strategies_lib.get(strategy)
    mesh = sharding.make_mesh(devices)
    sharding.check_divisible(size, mesh)
    if chunk_size == "auto":
        from vtune import memory

        fits = memory.max_population(task, space, steps_per_generation=steps,
                                     device=mesh.devices.flat[0])
        per_device = size // mesh.devices.size
        chunk_size = None if fits >= per_device else max(fits, 1)
    elif chunk_size is not None:
        chunk_size = _positive_int("chunk_size", chunk_size)
    program, table, metric_names = build(task, space, steps, mesh, chunk_size)
    if objective not in metric_names:
        raise ValueError(f"objective {objective!r} is not a metric of this task; "
                         f"it reports {metric_names}")
    if mode is None:
        mode = "max" if "accuracy" in objective else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    ckpt = None
    if checkpoint_dir is not None:
        spec = {"vtune_version": vtune.__version__, "format": checkpoint_lib.FORMAT,
                "space": space.to_json(), "task": task.name, "task_fingerprint":
                task.fingerprint(), "population_size": size, "generations": generations,
                "steps_per_generation": steps, "objective": objective, "mode": mode,
                "seed": seed, "strategy": strat.name}
        ckpt = checkpoint_lib.Checkpointer(checkpoint_dir, spec, overwrite=overwrite,
                                           max_to_keep=keep)

    data = sharding.place(task.host_data(), sharding.replicated(mesh))
    horizon = np.int32(generations * steps)
    sign = 1.0 if mode == "min" else -1.0
    host, pop, best_params = _start(program, table, strat, space, size, seed, ckpt)
    clock = time.perf_counter() - host.elapsed

    bar = tqdm(total=generations, initial=host.generation, desc="vtune", unit="gen",
               disable=not verbose or jax.process_index() != 0)
    for g in range(host.generation, generations):
        tick = time.perf_counter()
        pop, metrics = program.train(pop, data, np.uint32(seed), horizon)
        m = sharding.fetch(metrics)
        host, best_params = _record(host, m, pop, program, table, objective, sign, steps,
                                    task.batch_size, time.perf_counter() - clock, best_params)
        if g < generations - 1:
            host, pop = _advance(host, strat, program, pop, table, sign, objective, seed)
        host = dataclasses.replace(host, generation=g + 1,
                                   elapsed=time.perf_counter() - clock)
        if ckpt is not None and ((g + 1) % every == 0 or g + 1 == generations):
            ckpt.save(g + 1, pop, best_params, vars(host))
        rows = host.history[-size:]
        bar.set_postfix(best=None if host.best is None else
                        float(f"{host.best['metrics'][objective]:.4g}"),
                        alive=sum(r["status"] == "alive" for r in rows),
                        pruned=sum(r["status"] == "pruned" for r in rows),
                        diverged=sum(r["status"] == "diverged" for r in rows),
                        trial_steps_s=f"{size * steps / (time.perf_counter() - tick):,.0f}")
        bar.update()
    bar.close()
    if ckpt is not None:
        ckpt.close()
    return _result(host, best_params, objective, mode, space)


def _start(program, table, strat, space, size, seed, ckpt):
    """The first generation's host state and population, or the checkpointed ones."""
    sstate, configs = strat.ask(strat.init(seed, space, size))
    trial_id = np.arange(size, dtype=np.int32)
    split = sharding.population(program.mesh)
    encoded = table.encode(table.complete(configs, size))
    host = _Host(generation=0, trial_id=trial_id, parent_id=np.full(size, -1, np.int64),
                 step=np.zeros(size, np.int64), next_id=size, configs=configs,
                 strategy=sstate, history=[], best=None, elapsed=0.0)
    if ckpt is not None and ckpt.resuming:
        shapes = jax.eval_shape(program.init, np.uint32(seed), trial_id, encoded)
        best_shapes = jax.eval_shape(program.take, shapes.params, np.int32(0))
        restored = ckpt.restore(checkpoint_lib.abstract(shapes, split),
                                checkpoint_lib.abstract(best_shapes,
                                                        sharding.replicated(program.mesh)))
        if restored is not None:
            pop, best_params, saved = restored
            fields = {f.name: getattr(host, f.name) for f in dataclasses.fields(host)}
            return dataclasses.replace(host, **{
                k: checkpoint_lib.decode(v, fields[k]) for k, v in saved.items()}), pop, best_params
    return host, program.init(np.uint32(seed), *sharding.place((trial_id, encoded), split)), None


def _record(host: _Host, m, pop, program, table, objective, sign, steps, batch_size, wall,
            best_params):
    """Appends this generation's rows to the history and updates the best trial."""
    g, size = host.generation, len(host.trial_id)
    step = host.step + steps
    values = table.complete(host.configs, size)
    diverged = np.asarray(m["diverged"]) | ~np.isfinite(m[objective])
    rows = [{"generation": g, "slot": i, "trial_id": int(host.trial_id[i]),
             "parent_id": int(host.parent_id[i]), "step": int(step[i]),
             "examples_seen": int(step[i]) * batch_size, "wall_time": wall,
             "status": "diverged" if diverged[i] else "alive",
             **{k: _py(v[i]) for k, v in values.items()},
             **{k: _py(v[i]) for k, v in m.items() if k != "diverged"}}
            for i in range(size)]
    best = host.best
    scores = np.where(diverged, np.nan, sign * np.asarray(m[objective], np.float64))
    if not np.all(np.isnan(scores)):
        i = int(np.nanargmin(scores))
        if best is None or scores[i] < sign * best["metrics"][objective]:
            encoded = table.encode(values)
            best = {"trial_id": int(host.trial_id[i]),
                    "hparams": {k: _py(v[i]) for k, v in values.items()},
                    "metrics": {k: _py(v[i]) for k, v in m.items()},
                    "generation": g, "step": int(step[i]),
                    "encoded_hparams": {k: v[i] for k, v in encoded.items()}}
            best_params = program.take(pop.params, np.int32(i))
    return dataclasses.replace(host, step=step, history=host.history + rows, best=best), \
        best_params


def _advance(host: _Host, strat, program, pop, table, sign, objective, seed):
    """Asks the strategy what each slot holds next and applies it on device."""
    size = len(host.trial_id)
    rows = host.history[-size:]
    scores = np.array([np.nan if r["status"] == "diverged" else sign * r[objective]
                       for r in rows], np.float64)
    sstate, dec = strat.tell(host.strategy, scores, host.configs)
    parent = np.asarray(dec.parent, np.int32)
    fresh = np.asarray(dec.fresh, bool)
    if parent.shape != (size,) or fresh.shape != (size,) or \
            np.any(parent < 0) or np.any(parent >= size):
        raise RuntimeError(f"strategy {strat.name!r} returned invalid decisions")
    new = fresh | (parent != np.arange(size))
    for i in np.flatnonzero(new):
        if rows[i]["status"] == "alive":
            rows[i]["status"] = "pruned"
    trial_id = host.trial_id.copy()
    trial_id[new] = np.arange(host.next_id, host.next_id + new.sum(), dtype=np.int32)
    encoded = table.encode(table.complete(dec.configs, size))
    per_slot = sharding.place((parent, fresh, encoded, trial_id),
                              sharding.population(program.mesh))
    pop = program.refill(pop, *per_slot, np.uint32(seed))
    return dataclasses.replace(
        host, trial_id=trial_id, next_id=host.next_id + int(new.sum()), configs=dec.configs,
        strategy=sstate, step=np.where(fresh, 0, host.step[parent]),
        parent_id=np.where(fresh, -1, np.where(new, host.trial_id[parent], host.parent_id)),
    ), pop


def _result(host: _Host, best_params, objective, mode, space) -> SearchResult:
    best = None
    if host.best is not None:
        best = Trial(params=None if best_params is None else sharding.fetch(best_params),
                     **host.best)
    return SearchResult(best=best, history=host.history, objective=objective, mode=mode,
                        tuned=space.names, space=space)
