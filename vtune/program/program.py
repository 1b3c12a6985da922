"""The compiled generation program: ``jit(vmap(scan(train_step)))`` plus evaluation.

One :class:`Program` holds three jitted functions, each compiled once per
population shape: ``init`` (fresh trials), ``train`` (one generation of
``steps`` steps for every trial, then evaluation) and ``refill`` (apply the
strategy's decisions: gather parents along the population axis, initialise
fresh slots, set hyperparameters). Hyperparameters are arguments, never
constants, so new values do not recompile.

Randomness belongs to the trial: ``fold_in(key(seed), trial_id)`` gives the
trial key, from which its init (stream 0), minibatch order (stream 1) and
dropout masks (stream 2) derive; :meth:`Program.indices` documents the draw.

Opt-in knobs (:data:`vtune.trial.hparams.OPT_IN`) change the program only in
searches that tune them: ``batch_size`` weights the rows of the batch the loss
receives, ``class_balance`` replaces the uniform draw by a categorical one, and
plateau decay adds ``Population.plateau``, updated after each evaluation from
the objective the program was built for. A space naming ``optimizer`` makes
``opt_state`` a tuple, one state per family (see :meth:`Program.train_step`).

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

from vtune import nn
from vtune.population import sharding
from vtune.population.population import Population, take, where
from vtune.trial import hparams as hparams_lib
from vtune.trial import optimizers
from vtune.trial.schedule import lr_factor
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
      objective, sign: the metric plateau decay watches and ``+1`` to minimise
        it, ``-1`` to maximise; needed (and used) only when the table tunes
        ``plateau_factor`` / ``plateau_patience``.
      caps: ``{width name: cap}``: trace the task inside
        :func:`vtune.nn.allocation`, so its masked layers are allocated at most
        that wide (one bucket of :mod:`vtune.program.buckets`, which trains
        trials of width <= cap on the leading block of the full allocation).
        The divergence reference is then the full allocation's init, narrowed,
        so a trial computes the same metrics in its bucket as in the full program.

    The jitted entry points take the search's ``seed`` (a uint32 scalar) and
    build its key inside, so every process of a multi-host run passes the
    same plain number. ``train`` and ``refill`` donate the population.

    Attributes:
      traces: how often each function was traced; a retrace means a recompile.
    """

    def __init__(self, task: Task, table: hparams_lib.HParamTable, steps: int,
                 mesh: Mesh | None = None, chunk_size: int | None = None,
                 objective: str | None = None, sign: float | None = None,
                 caps: Mapping[str, int] | None = None):
        self.task, self.table, self.steps, self.chunk_size = task, table, steps, chunk_size
        self.caps = dict(caps or {})
        self.weighted = table.tunes("batch_size")
        self.balanced = table.tunes("class_balance")
        self.plateau = table.tunes("plateau_factor")
        if self.plateau and (objective is None or sign not in (1, -1)):
            raise ValueError(f"plateau decay needs the objective and its sign (+1 or -1); "
                             f"got objective={objective!r}, sign={sign!r}")
        self.objective, self.sign = (objective, float(sign)) if self.plateau else (None, None)
        self.num_classes = task.data.num_classes if self.balanced else None
        self.mesh = sharding.make_mesh() if mesh is None else mesh
        self.families = table.families
        # (constructor, hyperparameter names) of each family; one factory is family 0.
        self._txs = (tuple((optimizers.make_optimizer(f.factory), f.names)
                           for f in self.families) or
                     ((optimizers.make_optimizer(optimizers.single_optimizer(task.optimizer)),
                       table.optimizer),))
        self.traces = collections.Counter()
        split = sharding.population(self.mesh)
        self.init = jax.jit(self._init, out_shardings=split)
        self.train = jax.jit(self._train, donate_argnums=0, out_shardings=split)
        self.refill = jax.jit(self._refill, donate_argnums=0, out_shardings=split)
        # A traced slot index: fetching any slot's params is one compile.
        self.take = jax.jit(take, out_shardings=sharding.replicated(self.mesh))

    # --- one trial, unbatched ------------------------------------------------

    def _tx(self, hp, params=None, family=0):
        """The trial's optimizer (of family number ``family`` when the space
        names ``optimizer``). With ``params``, its hyperparameters take their dtype
        (a float32 model under ``jax_enable_x64`` gets float32 ``clip_norm``, rates...),
        and the optimizer state keeps it: ``train_step`` casts to that state's dtypes."""
        dtype = _float_dtype(params)
        make, names = self._txs[family]
        return make(**{n: hp[n] if dtype is None else hp[n].astype(dtype) for n in names})

    @_compact_rng
    def init_trial(self, seed_key, trial_id, hp):
        """``(params, state, opt_state)`` of a fresh trial (a tuple of every
        family's state when the space names ``optimizer``)."""
        key = jax.random.fold_in(trial_key(seed_key, trial_id), _INIT)
        params, state = self.task.init(key, hp)
        if self.families:
            return params, state, tuple(self._tx(hp, params, k).init(params)
                                        for k in range(len(self.families)))
        return params, state, self._tx(hp, params).init(params)

    def indices(self, data, key, step, fraction, balance=None):
        """Training-set rows of minibatch ``step`` of the trial whose data key is ``key``.

        ``key`` is ``fold_in(fold_in(key(seed), trial_id), 1)``; step ``s``
        draws from ``k = fold_in(key, s)`` (with ``jax.threefry_partitionable``
        off, as in all of vtune's programs). Only the first ``used =
        clip(floor(fraction * n), B, n)`` rows are drawn from (``B =
        Task.batch_size``): the split is already a seeded shuffle, so that is
        a seeded subsample, the same for every trial. ``B`` rows, with
        replacement (a per-step permutation, a sort over the whole training
        set, cost 45% of the throughput of the digits MLP at P=64 on CPU):

        * ``balance is None`` (the space does not tune ``class_balance``):
          ``randint(k, (B,), 0, used)``, uniform;
        * else row ``i < used`` has weight ``c_i ** -balance``, ``c_i`` the
          number of rows ``< used`` of its class; with ``cdf`` the cumulative
          sum of the weights, the rows are ``searchsorted(cdf, uniform(k, (B,))
          * cdf[-1], side="right")`` (clipped to ``used - 1``).
        """
        x, y = data["train"]
        n, b = x.shape[0], self.task.batch_size
        used = jnp.clip(jnp.floor(fraction * n).astype(jnp.int32), b, n)
        k = jax.random.fold_in(key, step)
        if balance is None:
            return jax.random.randint(k, (b,), 0, used)
        inside = jnp.arange(n) < used
        counts = jnp.zeros(self.num_classes, balance.dtype).at[y].add(inside.astype(balance.dtype))
        weight = jnp.where(inside, jnp.exp(-balance * jnp.log(jnp.maximum(counts[y], 1))), 0)
        cdf = jnp.cumsum(weight)
        u = jax.random.uniform(k, (b,), cdf.dtype) * cdf[-1]
        return jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, used - 1)

    def minibatch(self, data, key, step, fraction, balance=None, size=None):
        """Minibatch ``step`` of the trial: ``(x, y)`` at the rows of :meth:`indices`.

        With ``size`` (the trial's ``batch_size``), ``(x, y, w)``: ``w`` is
        ``1/size`` on the first ``size`` rows and 0 on the rest.
        """
        if data is None:
            return None
        x, y = data["train"]
        idx = self.indices(data, key, step, fraction, balance)
        if size is None:
            return x[idx], y[idx]
        rows = jnp.arange(idx.shape[0], dtype=size.dtype)
        return x[idx], y[idx], jnp.where(rows < size, 1 / size, 0).astype(size.dtype)

    def train_step(self, trial, data, seed_key, horizon):
        """One optimizer step of one trial.

        ``trial = (params, state, opt_state, hp, id, step)``, plus the trial's
        plateau state when the program has plateau decay. With optimizer
        families, ``opt_state`` holds one state per family and the update is
        :meth:`family_update`'s.
        """
        params, state, opt_state, hp, tid, step, *plateau = trial
        key = trial_key(seed_key, tid)
        batch = self.minibatch(data, jax.random.fold_in(key, _DATA), step, hp["train_fraction"],
                               hp["class_balance"] if self.balanced else None,
                               hp["batch_size"] if self.weighted else None)
        step_key = jax.random.fold_in(jax.random.fold_in(key, _STEP), step)

        def objective(p):
            loss, new_state = self.task.loss(p, state, batch, step_key, hp)
            sq = sum(jnp.sum(w * w) for w in jax.tree.leaves(p) if w.ndim >= 2)
            return loss + (0.5 * hp["l2"] * sq).astype(jnp.result_type(loss)), new_state

        grads, state = jax.grad(objective, has_aux=True)(params)
        values = {n: hp[n] for n in self.table.optimizer}
        values["learning_rate"] = values["learning_rate"] * lr_factor(hp, step, horizon)
        if plateau:
            values["learning_rate"] = values["learning_rate"] * plateau[0]["scale"]
        if self.families:
            updates, opt_state = self.family_update(grads, opt_state, params, values, hp)
        else:
            values = {n: v.astype(opt_state.hyperparams[n].dtype) for n, v in values.items()}
            opt_state = opt_state._replace(hyperparams=values)
            updates, opt_state = self._tx(hp, params).update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, state, opt_state, hp, tid, step + 1, *plateau)

    def family_update(self, grads, opt_state, params, values, hp):
        """The update of the trial's own family (``hp["optimizer"]``, a code).

        Every family's update is computed from its own state (under vmap a
        branch per trial would run them all anyway); the trial takes its
        family's update and new state, and the other families' states stay
        as they were, untouched since the trial's init.
        """
        code = hp[optimizers.FAMILY]
        updates, states = None, []
        for k, family in enumerate(self.families):
            old = opt_state[k]
            current = old._replace(hyperparams={n: values[n].astype(old.hyperparams[n].dtype)
                                                for n in family.names})
            upd, new = self._tx(hp, params, k).update(grads, current, params)
            mine = code == k
            states.append(jax.tree.map(lambda a, b: jnp.where(mine, a, b), new, old))
            updates = upd if updates is None else jax.tree.map(
                lambda a, b: jnp.where(mine, a, b), upd, updates)
        return updates, tuple(states)

    def plateau_update(self, plateau, metrics, hp):
        """One evaluation of the plateau rule (see :mod:`vtune.trial.hparams`).

        The signed objective (NaN when the trial diverged, which never
        improves) either beats ``best`` (then ``since = 0``) or adds one to
        ``since``; at ``since >= plateau_patience`` the scale is multiplied by
        ``plateau_factor`` and ``since`` reset.
        """
        best = plateau["best"]
        score = (self.sign * metrics[self.objective]).astype(best.dtype)
        score = jnp.where(metrics["diverged"], jnp.nan, score)
        better = score < best
        since = jnp.where(better, 0, plateau["since"] + 1)
        drop = since >= hp["plateau_patience"]
        factor = hp["plateau_factor"].astype(plateau["scale"].dtype)
        return {"best": jnp.where(better, score, best),
                "since": jnp.where(drop, 0, since).astype(plateau["since"].dtype),
                "scale": jnp.where(drop, plateau["scale"] * factor, plateau["scale"])}

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
            params0, state0 = self.reference_init(jax.random.fold_in(key, _INIT), hp)
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
                if self.weighted:  # the loss then takes (x, y, w): every row of a chunk counts
                    chunks = (*chunks, jnp.full((k, b), 1.0 / b, hp["batch_size"].dtype))
                ref, now = jax.lax.map(both, chunks).mean(0)
            usable = jnp.isfinite(ref) & (ref > 0)
            diverged |= usable & ~(now <= BLOWN_UP * ref)
        metrics["diverged"] = diverged
        return metrics

    def reference_init(self, key, hp):
        """``task.init`` at the full allocation, narrowed to this program's (its
        leading block; the task's own init when the program has no caps)."""
        if not self.caps:
            return self.task.init(key, hp)
        shapes = jax.eval_shape(self.task.init, key, hp)
        with nn.allocation({}):
            full = self.task.init(key, hp)
        return jax.tree.map(lambda x, s: x[tuple(slice(0, d) for d in s.shape)], full, shapes)

    @_compact_rng
    def train_trial(self, trial, data, seed_key, horizon):
        """``steps`` steps of one trial, then its metrics (the unbatched program)."""
        trial = jax.lax.fori_loop(
            0, self.steps, lambda _, t: self.train_step(t, data, seed_key, horizon), trial)
        params, state, _, hp, tid, _, *plateau = trial
        metrics = self.evaluate_trial(params, state, data, hp, seed_key, tid)
        if plateau:
            trial = (*trial[:6], self.plateau_update(plateau[0], metrics, hp))
        return trial, metrics

    # --- the population ------------------------------------------------------

    def _init(self, seed, trial_id, hp) -> Population:
        self.traces["init"] += 1
        return self._fresh(jax.random.key(seed), trial_id, hp)

    def _fresh(self, seed_key, trial_id, hp) -> Population:
        with nn.allocation(self.caps):
            params, state, opt_state = jax.vmap(self.init_trial, (None, 0, 0))(
                seed_key, trial_id, hp)
        plateau = None
        if self.plateau:
            dtype = hparams_lib.float_dtype()
            plateau = {"best": jnp.full(trial_id.shape, jnp.inf, dtype),
                       "since": jnp.zeros(trial_id.shape, jnp.int32),
                       "scale": jnp.ones(trial_id.shape, dtype)}
        return Population(params, state, opt_state, dict(hp), trial_id,
                          jnp.zeros_like(trial_id), plateau)

    def _train(self, pop: Population, data, seed, horizon):
        return self.generation(pop, data, seed, horizon)

    def generation(self, pop: Population, data, seed, horizon):
        """One generation of every trial of ``pop`` (what :attr:`train` compiles; a
        bucketed search calls it inside its own steps). Counts a ``train`` trace."""
        self.traces["train"] += 1
        seed_key = jax.random.key(seed)
        trial = (pop.params, pop.state, pop.opt_state, pop.hparams, pop.trial_id, pop.step)
        if self.plateau:
            trial += (pop.plateau,)
        one = lambda t: self.train_trial(t, data, seed_key, horizon)
        with nn.allocation(self.caps):
            if self.chunk_size is None:
                trial, metrics = jax.vmap(one)(trial)
            else:
                trial, metrics = jax.lax.map(one, trial, batch_size=self.chunk_size)
        return Population(*trial), metrics

    def _refill(self, pop: Population, parent, fresh, hp: Mapping, trial_id, seed):
        """Slot ``i`` becomes a copy of slot ``parent[i]``, or a fresh trial where ``fresh[i]``.

        A copy takes everything of its parent but the hyperparameters and id
        (params, optimizer and plateau state, step); a fresh trial starts anew.
        """
        self.traces["refill"] += 1
        kept = jax.tree.map(lambda x: x[parent], pop)
        new = self._fresh(jax.random.key(seed), trial_id, hp)
        chosen = where(fresh, new, kept)
        return Population(chosen.params, chosen.state, chosen.opt_state, dict(hp), trial_id,
                          chosen.step, chosen.plateau)


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
                mesh: Mesh | None = None, chunk_size: int | None = None,
                objective: str | None = None, sign: float | None = None,
                caps: Mapping[str, int] | None = None) -> Program:
    """A cached :class:`Program`: searches that share the task, the hyperparameter
    names and dtypes, the steps per generation, the mesh and the caps (and, with
    plateau decay, the objective and its sign) reuse its compiled functions."""
    mesh = sharding.make_mesh() if mesh is None else mesh
    if not table.tunes("plateau_factor"):
        objective, sign = None, None  # the program does not read them
    key = (task, steps, mesh, chunk_size, table.optimizer,
           tuple((f.name, f.factory) for f in table.families),
           tuple((n, str(table.dtype(n))) for n in table.names), objective,
           None if sign is None else float(sign), tuple(sorted((caps or {}).items())))
    if key not in _CACHE:
        _CACHE[key] = Program(task, table, steps, mesh, chunk_size, objective, sign, caps)
        if len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]
