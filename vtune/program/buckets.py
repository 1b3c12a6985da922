"""Bucketed training: one compiled program per width bucket, behind :class:`Program`'s API.

A population that mixes widths 16...128 in one masked program computes every
trial at width 128 (see ``benchmarks/structure.py``: 4x the useful FLOPs on
the seed mix). :class:`Bucketed` keeps the population at the full allocation
(so init, refill, clones, the best trial's params and checkpoints are those of
the masked program) and trains it bucket by bucket: each width bucket is a
:class:`Program` traced inside :func:`vtune.nn.allocation`, whose layers are
at most the bucket's cap wide. Its jitted step runs on every device's block of
the population (``shard_map``): it gathers a fixed number of that device's
slots (``capacity / devices``; a pad is an index out of range, computed on a
clamped copy and never written back), narrows their parameters and optimizer
state to the leading block the bucket allocates, trains them and writes them
back. A generation sorts each device's slots by bucket and trains them in
full runs, each in the widest bucket it holds (:meth:`Bucketed.chunks`). A masked unit is zero in the full
allocation and outside the block alike, so a trial trained in its bucket
computes what the masked program computes (the summation order aside) with
the same init, minibatches and divergence rule; only dropout masks differ,
drawn at the bucket's shape (same distribution).

Each bucket's step compiles once (slots are a traced index array), so a search
compiles ``len(levels)`` train programs, each smaller than the masked one, and
never again across generations, clones or new values. Depth stays masked (a
skipped layer is a select): buckets are by width only.

Example:
    >>> from vtune.space import Space, choice
    >>> levels({"width": {"high": 128, "width": True}}, Space({"width": choice([16, 32, 128])}))
    (16, 32, 128)
    >>> levels({"width": {"high": 128, "width": True}}, Space({"width": vtune.intuniform(1, 99)}))
    (16, 32, 64, 99)
"""

from __future__ import annotations

import collections
import functools
import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from vtune import nn
from vtune.population import sharding
from vtune.population.population import Population
from vtune.program.program import Program, get_program
from vtune.space import Choice, Fixed, IntUniform, Space

#: At most this many buckets (programs) per search; smaller levels merge upward.
MAX_BUCKETS = 4


def width_names(specs: Mapping[str, Mapping]) -> tuple[str, ...]:
    """The hyperparameters the model declares as layer widths (``width=True``)."""
    return tuple(sorted(n for n, s in specs.items() if s.get("width")))


def levels(specs: Mapping[str, Mapping], space: Space,
           max_buckets: int = MAX_BUCKETS) -> tuple[int, ...]:
    """The caps of the width buckets a space needs, ascending (``()`` for no width).

    A choice's widths are caps of their own; a range's are powers of two (and
    its maximum); a width the space leaves out is fixed at its default. Beyond
    ``max_buckets`` levels the smallest merge into the next (small widths cost
    little). The largest level is what the largest allowed width needs.
    """
    caps = set()
    for name in width_names(specs):
        high = int(specs[name]["high"])
        dist = space[name] if name in space else Fixed(specs[name].get("default", high))
        if isinstance(dist, Choice):
            values = [int(v) for v in dist.options]
        elif isinstance(dist, Fixed):
            values = [int(dist.value)]
        elif isinstance(dist, IntUniform):
            lo, hi = int(dist.lo), int(dist.hi)
            values = [min(2 ** k, hi) for k in range(math.ceil(math.log2(max(lo, 1))),
                                                      math.ceil(math.log2(hi)) + 1)]
        else:  # resolve() refuses non-integer widths before this is reached
            raise ValueError(f"space[{name!r}]: a width must be an integer distribution")
        caps |= {min(v, high) for v in values}
    ordered = sorted(caps)
    return tuple(ordered[-max_buckets:]) if ordered else ()


def _narrow(x, shape):
    """The leading block ``shape`` of each slot of ``x`` (``[C, *full] -> [C, *shape]``)."""
    return x[(slice(None),) + tuple(slice(0, d) for d in shape)]


class Bucketed:
    """A search's compiled functions with training split into width buckets.

    Args:
      full: the masked program at the full allocation (init, refill, take).
      names: the width hyperparameters (:func:`width_names`).
      caps: the bucket caps, ascending (:func:`levels`).
      capacity: slots trained per call of a bucket's step (a multiple of the
        mesh's devices); a generation makes ``ceil(population / capacity)`` calls.

    ``init``, ``refill`` and ``take`` are ``full``'s; ``train(pop, data, seed,
    horizon)`` returns what ``full.train`` returns.

    Attributes:
      programs: one :class:`Program` per cap (its ``traces["train"]`` counts
        that bucket's compiles).
    """

    def __init__(self, full: Program, names, caps, capacity: int):
        self.full, self.names, self.caps, self.capacity = full, tuple(names), tuple(caps), capacity
        self.mesh, self.steps, self.table, self.task = full.mesh, full.steps, full.table, full.task
        self.init, self.refill, self.take = full.init, full.refill, full.take
        # A bucket's program runs on each device's share of a call (inside shard_map).
        per_device = capacity // full.mesh.devices.size
        chunk = None if full.chunk_size is None else min(full.chunk_size, per_device)
        self.programs = tuple(
            get_program(full.task, full.table, full.steps, full.mesh, chunk, full.objective,
                        full.sign, {n: c for n in self.names}) for c in self.caps)
        split = sharding.population(self.mesh)
        self._steps = tuple(jax.jit(self._step(p), donate_argnums=(0, 1), out_shardings=split)
                            for p in self.programs)
        self._blocks: dict = {}
        self._compiled: dict = {}

    @property
    def traces(self) -> collections.Counter:
        """``full``'s init and refill traces, and the buckets' train traces summed."""
        out = collections.Counter({k: v for k, v in self.full.traces.items() if k != "train"})
        out["train"] = sum(p.traces["train"] for p in self.programs)
        return out

    def bucket_of(self, hparams: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each slot's bucket: the smallest cap at least its widest width."""
        widest = np.max([np.asarray(hparams[n]) for n in self.names], axis=0)
        return np.searchsorted(np.asarray(self.caps), widest, side="left")

    def _abstract(self, program: Program, pop: Population, data):
        """One trial's ``((params, state, opt_state), metrics)`` shapes in ``program``."""
        spec = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)
        key = (program, jax.tree.structure((pop, data)),
               tuple((x.shape[1:], x.dtype) for x in jax.tree.leaves(pop)),
               tuple((x.shape, x.dtype) for x in jax.tree.leaves(data)))
        if key not in self._blocks:
            one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), pop)

            def shapes(seed_key, one, data):
                with nn.allocation(program.caps):
                    block = program.init_trial(seed_key, one.trial_id, one.hparams)
                    trial = (*block, one.hparams, one.trial_id, one.step)
                    if one.plateau is not None:
                        trial += (one.plateau,)
                    _, metrics = program.train_trial(trial, data, seed_key, jnp.int32(1))
                return block, metrics

            seed_key = jax.eval_shape(lambda: jax.random.key(0))
            self._blocks[key] = jax.eval_shape(shapes, seed_key, one, jax.tree.map(spec, data))
        return self._blocks[key]

    def _step(self, program: Program):
        def local(pop: Population, metrics, slots, data, seed, horizon):
            # One device's block of the population; slots are local, ``len(block)`` pads.
            block, _ = self._abstract(program, pop, data)
            sub = jax.tree.map(lambda x: jnp.take(x, slots, axis=0, mode="clip"), pop)
            narrow = jax.tree.map(lambda x, s: _narrow(x, s.shape), (sub.params, sub.state,
                                                                    sub.opt_state), block)
            sub = Population(*narrow, sub.hparams, sub.trial_id, sub.step, sub.plateau)
            sub, m = program.generation(sub, data, seed, horizon)

            def put(x, y):  # a pad is out of range: dropped
                return x.at[(slots,) + tuple(slice(0, d) for d in y.shape[1:])].set(
                    y, mode="drop")

            return jax.tree.map(put, pop, sub), jax.tree.map(
                lambda b, v: b.at[slots].set(v, mode="drop"), metrics, m)

        split, whole = PartitionSpec(sharding.AXIS), PartitionSpec()

        def bucket_step(pop: Population, metrics, slots, data, seed, horizon):
            # check_vma off: a trial never mixes devices (every op is per trial).
            return jax.shard_map(local, mesh=self.mesh, check_vma=False,
                                 in_specs=(split, split, split, whole, whole, whole),
                                 out_specs=(split, split))(pop, metrics, slots, data, seed,
                                                           horizon)
        return bucket_step

    def chunks(self, bucket: np.ndarray):
        """``(bucket, slots)`` of every call of a generation.

        Each device sorts its block of the population by bucket and cuts it
        into runs of ``capacity / devices`` slots (indices into its block; the
        last run padded with the block's length, a slot nobody holds); call
        ``k`` trains every device's run ``k`` in the widest bucket among them.
        So every call is full, and only a run that straddles two buckets (or
        devices whose runs differ) computes some trials wider than they need.
        """
        n = self.mesh.devices.size
        block, per_call = len(bucket) // n, self.capacity // n
        calls = -(-block // per_call)
        runs = []
        for d in range(n):
            mine = bucket[d * block:(d + 1) * block]
            order = np.argsort(mine, kind="stable")
            runs.append(np.pad(order, (0, calls * per_call - block), constant_values=block)
                        .reshape(calls, per_call))
        for k in range(calls):
            slots = np.stack([r[k] for r in runs])
            held = [bucket[d * block + s[s < block]] for d, s in enumerate(slots)]
            yield int(max(h.max() for h in held if h.size)), slots.reshape(-1).astype(np.int32)

    def compiled(self, pop: Population, metrics, data, seed, horizon) -> tuple:
        """Every bucket's compiled step for these argument shapes (compiled the first time)."""
        sig = tuple((jax.tree.structure(a), tuple((getattr(x, "shape", ()), getattr(
            x, "dtype", type(x))) for x in jax.tree.leaves(a)))
                    for a in (pop, metrics, data, seed, horizon))
        if sig not in self._compiled:
            slots = np.zeros(self.capacity, np.int32)
            self._compiled[sig] = tuple(step.lower(pop, metrics, slots, data, seed, horizon)
                                        .compile() for step in self._steps)
        return self._compiled[sig]

    def metrics_buffer(self, pop: Population, data):
        """Zeros of every metric, one per slot (each bucket's step writes its slots)."""
        _, metrics = self._abstract(self.programs[-1], pop, data)
        return sharding.place({k: np.zeros((pop.size,), v.dtype) for k, v in metrics.items()},
                              sharding.population(self.mesh))

    def train(self, pop: Population, data, seed, horizon):
        """One generation of every slot, bucket by bucket (see the module docstring)."""
        bucket = self.bucket_of(jax.device_get({n: pop.hparams[n] for n in self.names}))
        out = self.metrics_buffer(pop, data)
        steps = self.compiled(pop, out, data, seed, horizon)
        for b, slots in self.chunks(bucket):
            pop, out = steps[b](pop, out, slots, data, seed, horizon)
        return pop, out


def capacity(population_size: int, buckets: int, devices: int) -> int:
    """Slots per call of a bucket's step: an even share of the population, rounded
    up to a multiple of the devices (a generation makes about ``buckets`` calls)."""
    share = -(-population_size // max(buckets, 1))
    return min(population_size, -(-share // devices) * devices)


def choose(bucketing: bool, full: Program, specs, space: Space,
           population_size: int, max_buckets: int | None = None) -> Program | Bucketed:
    """The program a search trains with: ``full``, or :class:`Bucketed` over it.

    ``True`` buckets when the space needs a bucket narrower than the
    allocation; ``False`` never. Only :mod:`vtune.nn`'s masked layers declare widths
    (and narrow inside :func:`vtune.nn.allocation`), so a model without them
    is never bucketed.
    """
    caps = levels(specs, space, MAX_BUCKETS if max_buckets is None else max_buckets)
    names = width_names(specs)
    widest = max((int(specs[n]["high"]) for n in names), default=0)
    if not bucketing or not caps or caps == (widest,):
        return full
    return get_bucketed(full, names, caps, capacity(population_size, len(caps),
                                                    full.mesh.devices.size))


@functools.lru_cache(maxsize=8)
def get_bucketed(full: Program, names: tuple, caps: tuple, capacity: int) -> Bucketed:
    """A cached :class:`Bucketed` (searches over the same program reuse its compiles)."""
    return Bucketed(full, names, caps, capacity)
