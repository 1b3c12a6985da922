"""The compiled generation program: ``jit(vmap(scan(train_step)))`` plus evaluation.

One :class:`Program` holds three jitted functions, each compiled once per
population shape: ``init`` (fresh trials), ``train`` (one generation of
``steps`` steps for every trial, then evaluation) and ``refill`` (apply the
strategy's decisions: gather parents along the population axis, initialise
fresh slots, set hyperparameters). Hyperparameters are arguments, never
constants, so new values do not recompile.

Randomness belongs to the trial: ``fold_in(key(seed), trial_id)`` gives the
trial key, from which its init, minibatch order and dropout masks derive.

The population axis is sharded over a 1-D device mesh (:mod:`vtune.sharding`);
every output of ``init``, ``train`` and ``refill`` keeps that layout, so
clones and refills are gathers across shards and never visit the host.

Example:
    >>> task = vtune.tasks.mlp_classifier(vtune.datasets.synthetic(), hidden_sizes=(8,))
    >>> program = vtune.program.build(task, vtune.Space({"learning_rate": vtune.fixed(0.01)}),
    ...                               steps=5).program
    >>> program.steps, program.traces["train"]     # nothing traced until the first call
    (5, 0)
"""

from __future__ import annotations

import collections
import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import optax

from jax.sharding import Mesh

from vtune.population import sharding
from vtune.population.population import Population, take, where
from vtune.trial import hparams as hparams_lib
from vtune.trial.task import Task

# Streams folded into a trial's key.
_INIT, _DATA, _STEP, _EVAL = 0, 1, 2, 3

#: A trial whose training loss exceeds this multiple of its loss at initialisation
#: is diverged, even while finite (see :meth:`Program.evaluate_trial`).
BLOWN_UP = 10.0


def _compact_rng(fn):
    """Traces ``fn`` with ``jax_threefry_partitionable`` off.

    A trial's random bits are drawn per trial (the population axis is the vmap
    axis), so they never need partitioning, and the non-partitionable threefry
    lowering compiles about 3x faster on XLA:CPU (init of a small MLP: 4.2 s ->
    1.4 s on 2 cores). The setting is local to vtune's programs.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.threefry_partitionable(False):
            return fn(*args, **kwargs)

    return wrapped


def _float_dtype(params):
    """The widest floating dtype among ``params``' leaves (``None`` when there is none)."""
    floats = [x.dtype for x in jax.tree.leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.result_type(*floats) if floats else None


def trial_key(seed_key: jax.Array, trial_id: jax.Array) -> jax.Array:
    return jax.random.fold_in(seed_key, trial_id)


class Program:
    """The compiled functions of one search.

    Args:
      task: what each trial trains.
      table: the resolved hyperparameters (:func:`vtune.trial.hparams.resolve`).
      steps: training steps per generation (the scan length).
      mesh: the devices the population is sharded over (default: all).
      chunk_size: train this many trials at a time (``lax.map`` over vmapped
        chunks) to bound activation memory; ``None`` trains all at once.

    The jitted entry points take the search's ``seed`` (a uint32 scalar) and
    build its key inside, so every process of a multi-host run passes the
    same plain number. ``train`` and ``refill`` donate the population.

    Attributes:
      traces: how often each function was traced; a retrace means a recompile.
    """

    def __init__(self, task: Task, table: hparams_lib.HParamTable, steps: int,
                 mesh: Mesh | None = None, chunk_size: int | None = None):
        self.task, self.table, self.steps, self.chunk_size = task, table, steps, chunk_size
        self.mesh = sharding.make_mesh() if mesh is None else mesh
        self._make_tx = hparams_lib.make_optimizer(task.optimizer)
        self.traces = collections.Counter()
        split = sharding.population(self.mesh)
        self.init = jax.jit(self._init, out_shardings=split)
        self.train = jax.jit(self._train, donate_argnums=0, out_shardings=split)
        self.refill = jax.jit(self._refill, donate_argnums=0, out_shardings=split)
        # A traced slot index: fetching any slot's params is one compile.
        self.take = jax.jit(take, out_shardings=sharding.replicated(self.mesh))

    # --- one trial, unbatched ------------------------------------------------

    def _tx(self, hp, params=None):
        """The trial's optimizer. With ``params``, its hyperparameters take their dtype
        (a float32 model under ``jax_enable_x64`` gets float32 ``clip_norm``, rates...),
        and the optimizer state keeps it: ``train_step`` casts to that state's dtypes."""
        dtype = _float_dtype(params)
        return self._make_tx(**{n: hp[n] if dtype is None else hp[n].astype(dtype)
                                for n in self.table.optimizer})

    @_compact_rng
    def init_trial(self, seed_key, trial_id, hp):
        """``(params, state, opt_state)`` of a fresh trial."""
        key = jax.random.fold_in(trial_key(seed_key, trial_id), _INIT)
        params, state = self.task.init(key, hp)
        return params, state, self._tx(hp, params).init(params)

    def minibatch(self, data, key, step, fraction):
        """Minibatch ``step`` of the trial, drawn uniformly with replacement.

        Only the first ``fraction`` of the training set is used (at least one
        batch's worth): the split is already a seeded shuffle, so that is a
        seeded subsample, the same for every trial. With replacement because a
        per-step permutation (a sort over the whole training set) cost 45% of
        the throughput of the digits MLP at P=64 on CPU.
        """
        if data is None:
            return None
        x, y = data["train"]
        n, b = x.shape[0], self.task.batch_size
        used = jnp.clip(jnp.floor(fraction * n).astype(jnp.int32), b, n)
        idx = jax.random.randint(jax.random.fold_in(key, step), (b,), 0, used)
        return x[idx], y[idx]

    def train_step(self, trial, data, seed_key, horizon):
        """One optimizer step of one trial. ``trial = (params, state, opt_state, hp, id, step)``."""
        params, state, opt_state, hp, tid, step = trial
        key = trial_key(seed_key, tid)
        batch = self.minibatch(data, jax.random.fold_in(key, _DATA), step, hp["train_fraction"])
        step_key = jax.random.fold_in(jax.random.fold_in(key, _STEP), step)

        def objective(p):
            loss, new_state = self.task.loss(p, state, batch, step_key, hp)
            sq = sum(jnp.sum(w * w) for w in jax.tree.leaves(p) if w.ndim >= 2)
            return loss + (0.5 * hp["l2"] * sq).astype(jnp.result_type(loss)), new_state

        grads, state = jax.grad(objective, has_aux=True)(params)
        values = {n: hp[n] for n in self.table.optimizer}
        values["learning_rate"] = values["learning_rate"] * hparams_lib.lr_factor(hp, step, horizon)
        values = {n: v.astype(opt_state.hyperparams[n].dtype) for n, v in values.items()}
        opt_state = opt_state._replace(hyperparams=values)
        updates, opt_state = self._tx(hp, params).update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, state, opt_state, hp, tid, step + 1

    def evaluate_trial(self, params, state, data, hp, seed_key=None, trial_id=None):
        """The task's metrics plus ``diverged``.

        A trial is diverged when any metric or parameter is non-finite, or, given
        its ``seed_key`` and ``trial_id``, when its loss has blown up: the task's
        ``loss`` on the ``train_eval`` split exceeds :data:`BLOWN_UP` (10) times
        the same loss of a fresh initialisation of the trial (``task.init`` from
        its key and hyperparameters, recomputed here, so no state is kept; same
        data, same dropout key; the split's first ``batch_size``-multiple rows). Measured on the test task (4-class MLP, 2 x 10
        steps): Adam at lr 1e1..1e3 ends at 300x..1e6x its initial loss while
        finite; sound trials stay below 2x, and a poor init (init_scale 10,
        loss ~100 at init) improves, so it is not flagged. The relative rule
        applies only when the reference loss is finite and positive (a loss
        that can be negative, a log-density, keeps only the non-finite rule).
        """
        metrics = dict(self.task.metrics(params, state, data, hp))
        finite = [jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves((metrics, params))]
        diverged = ~jnp.all(jnp.stack(finite))
        if seed_key is not None:
            key = trial_key(seed_key, trial_id)
            loss_key = jax.random.fold_in(key, _EVAL)
            params0, state0 = self.task.init(jax.random.fold_in(key, _INIT), hp)
            both = lambda batch: jnp.stack([
                self.task.loss(params0, state0, batch, loss_key, hp)[0],
                self.task.loss(params, state, batch, loss_key, hp)[0]])
            if data is None:
                ref, now = both(None)
            else:
                # In minibatch-sized chunks, so the check holds no more activations
                # than a training step (the whole split at once cost ~50% more memory).
                x, y = data["train_eval"]
                b = self.task.batch_size
                k = max(1, x.shape[0] // b)
                chunks = jax.tree.map(lambda a: a[:k * b].reshape(k, b, *a.shape[1:]), (x, y))
                ref, now = jax.lax.map(both, chunks).mean(0)
            usable = jnp.isfinite(ref) & (ref > 0)
            diverged |= usable & ~(now <= BLOWN_UP * ref)
        metrics["diverged"] = diverged
        return metrics

    @_compact_rng
    def train_trial(self, trial, data, seed_key, horizon):
        """``steps`` steps of one trial, then its metrics (the unbatched program)."""
        trial = jax.lax.fori_loop(
            0, self.steps, lambda _, t: self.train_step(t, data, seed_key, horizon), trial)
        params, state, _, hp, tid, _ = trial
        return trial, self.evaluate_trial(params, state, data, hp, seed_key, tid)

    # --- the population ------------------------------------------------------

    def _init(self, seed, trial_id, hp) -> Population:
        self.traces["init"] += 1
        return self._fresh(jax.random.key(seed), trial_id, hp)

    def _fresh(self, seed_key, trial_id, hp) -> Population:
        params, state, opt_state = jax.vmap(self.init_trial, (None, 0, 0))(seed_key, trial_id, hp)
        return Population(params, state, opt_state, dict(hp), trial_id,
                          jnp.zeros_like(trial_id))

    def _train(self, pop: Population, data, seed, horizon):
        self.traces["train"] += 1
        seed_key = jax.random.key(seed)
        trial = (pop.params, pop.state, pop.opt_state, pop.hparams, pop.trial_id, pop.step)
        one = lambda t: self.train_trial(t, data, seed_key, horizon)
        if self.chunk_size is None:
            trial, metrics = jax.vmap(one)(trial)
        else:
            trial, metrics = jax.lax.map(one, trial, batch_size=self.chunk_size)
        return Population(*trial), metrics

    def _refill(self, pop: Population, parent, fresh, hp: Mapping, trial_id, seed):
        """Slot ``i`` becomes a copy of slot ``parent[i]``, or a fresh trial where ``fresh[i]``."""
        self.traces["refill"] += 1
        kept = jax.tree.map(lambda x: x[parent], pop)
        new = self._fresh(jax.random.key(seed), trial_id, hp)
        chosen = where(fresh, new, kept)
        return Population(chosen.params, chosen.state, chosen.opt_state, dict(hp), trial_id,
                          chosen.step)


_CACHE: "collections.OrderedDict[tuple, Program]" = collections.OrderedDict()
#: Programs kept in the cache (least recently used dropped first).
CACHE_SIZE = 8


def cached_programs() -> tuple[Program, ...]:
    """The cached programs, least recently used first (e.g. to count their traces)."""
    return tuple(_CACHE.values())


def clear_cache() -> None:
    """Forgets every cached program (their compiled functions go with them)."""
    _CACHE.clear()


def get_program(task: Task, table: hparams_lib.HParamTable, steps: int,
                mesh: Mesh | None = None, chunk_size: int | None = None) -> Program:
    """A cached :class:`Program`: searches that share the task, the hyperparameter
    names and dtypes, the steps per generation and the mesh reuse its compiled
    functions."""
    mesh = sharding.make_mesh() if mesh is None else mesh
    key = (task, steps, mesh, chunk_size, table.optimizer,
           tuple((n, str(table.dtype(n))) for n in table.names))
    if key not in _CACHE:
        _CACHE[key] = Program(task, table, steps, mesh, chunk_size)
        if len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]
