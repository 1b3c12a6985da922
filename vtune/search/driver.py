"""``population_search``: the driver loop.

Each generation: train every slot for ``steps_per_generation`` steps and
evaluate (one compiled program) -> fetch one float per metric per slot ->
the strategy decides on the host -> apply its decisions on device (gather
parents, initialise fresh slots) -> next generation. Params never leave the
device except the kept trials' (the best and the ``keep_top`` best), taken
when that set changes.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from vtune import strategies as strategies_lib
from vtune.checkpoint import Checkpointer, abstract
from vtune.population import sharding
from vtune.program import buckets, build, memory
from vtune.report.callbacks import Callback, Generation
from vtune.report.codec import decode
from vtune.report.result import SearchResult, Trial
from vtune.report.schema import rank_key
from vtune.report.schema import sign as mode_sign
from vtune.search.spec import SearchSpec
from vtune.space import Space
from vtune.trial.task import Task


def _py(x):
    """A numpy scalar (or a str from an object array) as a plain Python value."""
    return x.item() if hasattr(x, "item") else x


@dataclasses.dataclass(frozen=True)
class _Host:
    """Everything the driver keeps on the host; checkpointed as JSON.

    ``generation`` counts completed generations; arrays are per slot.
    ``examples`` counts the training examples each slot's trial has seen: its
    own batch size per step (the task's where the space does not tune it),
    inherited by clones like ``step``.
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
    examples: np.ndarray | None = None
    top: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Kept:
    """The params the driver keeps on device: the best trial's, and the ``keep_top``
    best trials' in the order of ``_Host.top`` (the best's is the same array as
    ``top[0]``, so k trials' params in all)."""

    keep_top: int
    best: Any = None
    top: tuple = ()


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
    bucketing: bool = False,
    verbose: bool = True,
    callbacks: Sequence[Callback] = (),
    keep_top: int = 3,
    timeout: float | None = None,
) -> SearchResult:
    """Searches hyperparameters with a whole population trained as one program.

    Args:
      task: what each trial trains (e.g. :func:`vtune.tasks.mlp_classifier`).
      space: ``{name: distribution}`` (see :mod:`vtune.space`); names must be
        hyperparameters the task consumes, others keep their defaults.
        ``"optimizer": vtune.choice(["adamw", "sgdw", "rmsprop"])`` makes the
        optimizer family a per-trial choice (:mod:`vtune.trial.hparams`; the
        names of :data:`vtune.trial.optimizers.FAMILIES`, or of the task's
        ``optimizer={name: factory}``), still one program; every family's
        numeric arguments may then be searched, and
        :meth:`SearchResult.inert_for` tells which are inert for a trial.
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
      bucketing: train a space that mixes widths in one program per width
        bucket (:mod:`vtune.program.buckets`: each trial computed at its
        bucket's allocation, not the widest; at most 4 buckets, each compiled
        once) rather than in one masked program (the default). On CPU it
        trains the seed advice's mix 1.85x faster for 3 compiles instead of 1
        (``benchmarks/structure.py``), so it pays for long searches, not for
        the default digits search (``benchmarks/startup.py``). Either way the
        population, checkpoints and results are the same kind; with dropout,
        masks are drawn at the computed shape, so a trial's units drop
        differently under the two (same distribution).
      verbose: show a progress bar and say what happens (compiling, resuming,
        finished) on stderr, on process 0 only.
      callbacks: functions called on the host after every generation with a
        :class:`vtune.report.callbacks.Generation` (its new history rows and
        the best so far), e.g. :func:`vtune.report.callbacks.jsonl`.
      keep_top: keep the params of this many best trials (ranked as
        :meth:`SearchResult.top` ranks them, each at its best evaluation), as
        :attr:`SearchResult.top_trials`; 0 keeps only the best's. Each costs one
        trial's params of device memory, and they are taken from the
        population only when the kept set changes. Checkpointed; it changes
        nothing that is trained, so a search may resume with another value
        (params the earlier run did not keep cannot come back).
      timeout: stop after the first generation that ends this many seconds
        after the call began (compilation included), as Optuna's
        ``study.optimize(timeout=...)`` does; ``generations`` is then the most
        it trains, and what it plans for (schedules span ``generations x
        steps_per_generation``). The stopped search is checkpointed, and the
        same call resumes it. Default: no limit.

    Returns:
      A :class:`SearchResult` with the best trial and the ``keep_top`` best
      (their params included) and the history of every slot at every generation.

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
        >>> [t.trial_id for t in result.top_trials] == [t["trial_id"] for t in result.top(3)]
        True
    """
    if not isinstance(task, Task):
        raise TypeError(f"task must be a vtune.Task, got {type(task).__name__}")
    spec = SearchSpec.create(
        space, population_size=population_size, generations=generations,
        steps_per_generation=steps_per_generation, objective=objective, mode=mode, seed=seed,
        strategy=strategy, checkpoint_dir=checkpoint_dir, overwrite=overwrite,
        checkpoint_every=checkpoint_every, max_to_keep=max_to_keep, devices=devices,
        chunk_size=chunk_size, bucketing=bucketing, verbose=verbose, callbacks=callbacks,
        keep_top=keep_top, timeout=timeout)
    return run(task, spec)


def run(task: Task, spec: SearchSpec) -> SearchResult:
    """Runs the search ``spec`` describes on ``task`` (see :func:`population_search`)."""
    called = time.perf_counter()
    space, size, generations = spec.space, spec.population_size, spec.generations
    steps, seed, strat, objective = spec.steps_per_generation, spec.seed, spec.strategy, \
        spec.objective
    mesh = sharding.make_mesh(spec.devices)
    sharding.check_divisible(size, mesh)
    chunk_size = spec.chunk_size
    if chunk_size == "auto":
        fits = memory.max_population(task, space, steps_per_generation=steps,
                                     device=mesh.devices.flat[0])
        per_device = size // mesh.devices.size
        chunk_size = None if fits >= per_device else max(fits, 1)
    sign = mode_sign(spec.mode)
    built = build(task, space, steps, mesh, chunk_size, objective, sign)
    table, metric_names, traced = built.table, built.metrics, built.traced
    program = buckets.choose(spec.bucketing, built.program, built.specs, space, size)
    ckpt = None
    if spec.checkpoint_dir is not None:
        ckpt = Checkpointer(spec.checkpoint_dir, spec.identity(task, traced),
                            overwrite=spec.overwrite, max_to_keep=spec.max_to_keep)

    data = sharding.place(task.host_data(), sharding.replicated(mesh))
    horizon = np.int32(spec.horizon)
    host, pop, kept = _start(program, table, strat, space, size, seed, ckpt, task.batch_size,
                             spec.keep_top)
    clock = time.perf_counter() - host.elapsed
    if ckpt is not None and host.generation:
        _say(spec, f"resuming {str(spec.checkpoint_dir)!r} from generation {host.generation} "
                   f"of {generations}" if host.generation < generations else
                   f"the search in {str(spec.checkpoint_dir)!r} is finished ({generations} "
                   f"generations): nothing left to train")
    if host.generation < generations and not program.traces["train"]:
        _say(spec, "compiling the population program (once per process; later runs read it "
                   "from the compilation cache) ...")

    bar = tqdm(total=generations, initial=host.generation, desc="vtune", unit="gen",
               disable=not spec.verbose or jax.process_index() != 0)
    saved = host.generation
    try:
        for g in range(host.generation, generations):
            tick = time.perf_counter()
            pop, metrics = program.train(pop, data, np.uint32(seed), horizon)
            m = sharding.fetch(metrics)
            host, kept = _record(host, m, pop, program, table, objective, spec.mode, steps,
                                 task.batch_size, time.perf_counter() - clock, kept)
            if g < generations - 1:
                host, pop = _advance(host, strat, program, pop, table, sign, objective, seed)
            host = dataclasses.replace(host, generation=g + 1,
                                       elapsed=time.perf_counter() - clock)
            out_of_time = spec.timeout is not None and time.perf_counter() - called >= spec.timeout
            last = g + 1 == generations or out_of_time
            if ckpt is not None and ((g + 1) % spec.checkpoint_every == 0 or last):
                ckpt.save(g + 1, pop, kept.best, vars(host), top=kept.top)
                saved = g + 1
            rows = host.history[-size:]
            bar.set_postfix(best=None if host.best is None else
                            float(f"{host.best['metrics'][objective]:.4g}"),
                            alive=sum(r["status"] == "alive" for r in rows),
                            pruned=sum(r["status"] == "pruned" for r in rows),
                            diverged=sum(r["status"] == "diverged" for r in rows),
                            trial_steps_s=f"{size * steps / (time.perf_counter() - tick):,.0f}")
            bar.update()
            if spec.callbacks:
                _notify(spec, host, g + 1, rows, metric_names)
            if out_of_time and not g + 1 == generations:
                _say(spec, f"stopped at the timeout ({spec.timeout:g} s) after generation "
                           f"{g + 1} of {generations}"
                           + (": run the same call again to go on" if ckpt is not None else ""))
                break
    except KeyboardInterrupt:
        bar.close()
        if ckpt is None:
            raise
        ckpt.close()  # finishes the save in flight, so the directory stays complete
        raise KeyboardInterrupt(
            f"search interrupted; generation {saved} of {generations} is checkpointed in "
            f"{str(spec.checkpoint_dir)!r}: run the same call again to resume") from None
    bar.close()
    if ckpt is not None:
        ckpt.close()
    return _result(host, kept, objective, spec.mode, space, metric_names, table.inert())


def _say(spec: SearchSpec, message: str) -> None:
    """One line on stderr for the person watching (verbose, process 0 only)."""
    if spec.verbose and jax.process_index() == 0:
        tqdm.write(f"vtune: {message}", file=sys.stderr)


def _notify(spec: SearchSpec, host: _Host, generation: int, rows: list, metrics) -> None:
    best = None if host.best is None else Trial(**host.best)
    report = Generation(generation, spec.generations, [dict(r) for r in rows], best,
                        spec.objective, spec.mode, spec.space, tuple(metrics))
    for callback in spec.callbacks:
        callback(report)


def _start(program, table, strat, space, size, seed, ckpt, batch_size, keep_top):
    """The first generation's host state, population and kept params, or the checkpointed ones.

    A checkpoint written before vtune kept the top trials (or with
    ``keep_top=0``) has only the best's params: the kept set starts from the
    best alone. One that kept more than
    ``keep_top`` keeps its first ``keep_top``.
    """
    sstate, configs = strat.ask(strat.init(seed, space, size))
    trial_id = np.arange(size, dtype=np.int32)
    split = sharding.population(program.mesh)
    encoded = table.encode(table.complete(configs, size))
    host = _Host(generation=0, trial_id=trial_id, parent_id=np.full(size, -1, np.int64),
                 step=np.zeros(size, np.int64), next_id=size, configs=configs,
                 strategy=sstate, history=[], best=None, elapsed=0.0,
                 examples=np.zeros(size, np.int64))
    if ckpt is not None and ckpt.resuming:
        shapes = jax.eval_shape(program.init, np.uint32(seed), trial_id, encoded)
        best_shapes = jax.eval_shape(program.take, shapes.params, np.int32(0))
        restored = ckpt.restore(abstract(shapes, split),
                                abstract(best_shapes, sharding.replicated(program.mesh)))
        if restored is not None:
            pop, best_params, saved, top_params = restored
            fields = {f.name: getattr(host, f.name) for f in dataclasses.fields(host)}
            host = dataclasses.replace(host, **{k: decode(v, fields[k]) for k, v in saved.items()})
            if "examples" not in saved:  # written before examples were counted per trial
                host = dataclasses.replace(host, examples=np.asarray(host.step) * batch_size)
            top = list(host.top)
            if not top and host.best is not None:  # written before top-k, or with keep_top=0
                top, top_params = [host.best], [best_params]
            top, top_params = top[:keep_top], tuple(top_params[:keep_top])
            if top_params:  # one array for the best, as _record keeps it
                best_params = top_params[0]
            host = dataclasses.replace(host, top=top)
            return host, pop, _Kept(keep_top, best_params, top_params)
    return (host, program.init(np.uint32(seed), *sharding.place((trial_id, encoded), split)),
            _Kept(keep_top))


def _record(host: _Host, m, pop, program, table, objective, mode, steps, batch_size, wall,
            kept: _Kept):
    """Appends this generation's rows to the history and updates the kept trials.

    The best and the ``keep_top`` best are one ranking (the schema's
    :func:`rank_key`; ties go to the earlier evaluation, then the lower slot),
    each trial at most once, at its best evaluation so far. A slot's params are
    taken from the population only when it enters that set.
    """
    g, size = host.generation, len(host.trial_id)
    step = host.step + steps
    values = table.complete(host.configs, size)
    per_step = (np.asarray(values["batch_size"]).astype(np.int64) if "batch_size" in values
                else batch_size)
    examples = np.asarray(host.examples) + steps * per_step
    diverged = np.asarray(m["diverged"]) | ~np.isfinite(m[objective])
    rows = [{"generation": g, "slot": i, "trial_id": int(host.trial_id[i]),
             "parent_id": int(host.parent_id[i]), "step": int(step[i]),
             "examples_seen": int(examples[i]), "wall_time": wall,
             "status": "diverged" if diverged[i] else "alive",
             **{k: _py(v[i]) for k, v in values.items()},
             **{k: _py(v[i]) for k, v in m.items() if k != "diverged"}}
            for i in range(size)]
    # The kept entries come first: all are earlier, so a stable sort gives them the ties.
    held = host.top if kept.keep_top else [host.best] * (host.best is not None)
    held_params = kept.top if kept.keep_top else (kept.best,) * (host.best is not None)
    pool = [(rank_key(e["metrics"], objective, mode), e["trial_id"], j)
            for j, e in enumerate(held)]
    pool += [(rank_key(rows[i], objective, mode), int(host.trial_id[i]), -1 - i)
             for i in range(size) if not diverged[i] and np.isfinite(m[objective][i])]
    pool.sort(key=lambda c: c[0])
    chosen, seen = [], set()
    for _, tid, src in pool:
        if tid not in seen and len(chosen) < max(kept.keep_top, 1):
            seen.add(tid)
            chosen.append(src)
    if chosen != list(range(len(held))):  # the kept set changed: take the newcomers' params
        encoded = table.encode(values)
        entries, params = [], []
        for src in chosen:
            if src >= 0:
                entries.append(held[src])
                params.append(held_params[src])
                continue
            i = -1 - src
            entries.append({"trial_id": int(host.trial_id[i]),
                            "hparams": {k: _py(v[i]) for k, v in values.items()},
                            "metrics": {k: _py(v[i]) for k, v in m.items()},
                            "generation": g, "step": int(step[i]),
                            "encoded_hparams": {k: v[i] for k, v in encoded.items()}})
            params.append(program.take(pop.params, np.int32(i)))
        kept = dataclasses.replace(kept, best=params[0],
                                   top=tuple(params) if kept.keep_top else ())
        host = dataclasses.replace(host, best=entries[0],
                                   top=entries if kept.keep_top else [])
    return dataclasses.replace(host, step=step, examples=examples,
                               history=host.history + rows), kept


def _advance(host: _Host, strat, program, pop, table, sign, objective, seed):
    """Asks the strategy what each slot holds next and applies it on device."""
    size = len(host.trial_id)
    rows = host.history[-size:]
    scores = np.array([np.nan if r["status"] == "diverged" else sign * r[objective]
                       for r in rows], np.float64)
    sstate, dec = strat.tell(host.strategy, scores, host.configs)
    dec = strategies_lib.Decisions(*dec).check(size, f"strategy {strat.name!r}")
    parent, fresh = dec.parent, dec.fresh
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
        examples=np.where(fresh, 0, host.examples[parent]),
        parent_id=np.where(fresh, -1, np.where(new, host.trial_id[parent], host.parent_id)),
    ), pop


def _result(host: _Host, kept: _Kept, objective, mode, space, metrics,
            inert=None) -> SearchResult:
    best_params, top_params = sharding.fetch((kept.best, list(kept.top)))
    best = None
    if host.best is not None:
        best = Trial(params=best_params, **host.best)
    top = tuple(Trial(params=p, **e) for e, p in zip(host.top, top_params))
    if best is not None and top and (top[0].trial_id, top[0].generation) == (
            best.trial_id, best.generation):
        best = top[0]  # one object, so best.params is top_trials[0].params
    return SearchResult(best=best, history=host.history, objective=objective, mode=mode,
                        tuned=space.names, space=space, metrics=tuple(metrics),
                        inert=dict(inert or {}), top_trials=top)
