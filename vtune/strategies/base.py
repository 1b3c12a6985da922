"""The strategy protocol: pure functions over a state, in the style of optax.

A strategy decides, from one objective value per slot, what each slot of the
population holds next. It never sees params: its decisions are small host
arrays that the driver applies on device (a gather along the population axis
and a select for fresh slots), so the population shape and the compiled
program never change.

* ``init(seed, space, population_size) -> state``
* ``ask(state) -> (state, configs)``: configs for every slot of the first generation;
* ``tell(state, scores, configs) -> (state, Decisions)``: ``scores`` are one
  float per slot, lower is better, NaN for a diverged trial (always worst and
  never a parent); ``configs`` are the slots' current hyperparameter values.

A state is a frozen dataclass of ints, floats, strs, bools, numpy arrays,
tuples of those and at most one :class:`vtune.Space`, so checkpoints can store
it without pickle; its array shapes and dtypes never change across ``tell``.
Randomness is derived statelessly from ``(seed, generation, salt)`` with
:func:`rng`, so the same seed gives the same decisions.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from vtune.checks import integer
from vtune.space import Choice, Space


class Decisions(NamedTuple):
    """What every slot holds next.

    Attributes:
      parent: ``int[P]``, the slot whose trial (params and optimizer state)
        slot ``i`` continues; ``i`` itself to keep its trial.
      fresh: ``bool[P]``, slot ``i`` starts a new trial from scratch.
      configs: ``{name: [P]}`` hyperparameter values of every slot afterwards.

    Slot ``i`` holds a new trial (a new trial id) when ``fresh[i]`` or
    ``parent[i] != i``; a clone records its parent in the lineage.
    """

    parent: np.ndarray
    fresh: np.ndarray
    configs: dict[str, np.ndarray]


    def check(self, size: int, where: str = "strategy") -> "Decisions":
        """These decisions as typed arrays, after checking them for ``size`` slots.

        Raises:
          RuntimeError: naming the check that failed (a strategy bug, never bad
            user input).
        """
        parent = np.asarray(self.parent)
        fresh = np.asarray(self.fresh)
        if parent.shape != (size,) or fresh.shape != (size,):
            raise RuntimeError(f"{where}: decisions must have one entry per slot ({size}); got "
                               f"parent {parent.shape}, fresh {fresh.shape}")
        if parent.dtype.kind not in "iu" or fresh.dtype != np.bool_:
            raise RuntimeError(f"{where}: parent must be ints and fresh bools, got "
                               f"{parent.dtype} and {fresh.dtype}")
        if np.any(parent < 0) or np.any(parent >= size):
            raise RuntimeError(f"{where}: parent slots must lie in [0, {size}), got "
                               f"{parent[(parent < 0) | (parent >= size)].tolist()}")
        if not isinstance(self.configs, dict):
            raise RuntimeError(f"{where}: configs must be a dict name -> [P] array")
        short = {k: np.shape(v) for k, v in self.configs.items() if np.shape(v) != (size,)}
        if short:
            raise RuntimeError(f"{where}: every config must hold one value per slot ({size}), "
                               f"got shapes {short}")
        return Decisions(parent.astype(np.int32), fresh, self.configs)


#: ``init(seed, space, population_size) -> state``.
Init = Callable[[int, Space, int], Any]
#: ``ask(state) -> (state, configs)``.
Ask = Callable[[Any], "tuple[Any, dict[str, np.ndarray]]"]
#: ``tell(state, scores, configs) -> (state, Decisions)``.
Tell = Callable[[Any, np.ndarray, "dict[str, np.ndarray]"], "tuple[Any, Decisions]"]


class Strategy(NamedTuple):
    """A population strategy: ``init``, ``ask`` and ``tell`` (see module docstring).

    Attributes:
      init, ask, tell: the three pure functions.
      name: the registry name (or a user's own).
      settings: the keyword settings it was made with (JSON values); they are
        part of a checkpoint's identity, so resuming under other settings is
        refused.
    """

    init: Init
    ask: Ask
    tell: Tell
    name: str
    settings: Mapping[str, Any] = MappingProxyType({})


def factory(fn: Callable[..., Strategy]) -> Callable[..., Strategy]:
    """Decorates a strategy factory so the Strategy it returns records its settings.

    The settings are the factory's arguments with their defaults filled in, so
    ``pbt()`` and ``pbt(quantile=0.25)`` are the same strategy.
    """
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def make(*args, **kwargs) -> Strategy:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        settings = {}
        for k, v in bound.arguments.items():
            if signature.parameters[k].kind is inspect.Parameter.VAR_KEYWORD:
                settings.update(v)
            else:
                settings[k] = v
        strategy = fn(*args, **kwargs)
        # A factory built on another (hyperband on successive_halving) keeps every setting.
        return strategy._replace(settings=MappingProxyType({**strategy.settings, **settings}))

    return make


def finite_scores(scores) -> np.ndarray:
    """``scores`` as float64 with every non-finite value (NaN, +-inf) set to NaN.

    Example:
        >>> vtune.strategies.base.finite_scores([0.5, float("inf"), -float("inf")])
        array([0.5, nan, nan])
    """
    s = np.asarray(scores, dtype=np.float64)
    return np.where(np.isfinite(s), s, np.nan)


def rank(scores: np.ndarray) -> np.ndarray:
    """Slots ordered best first; non-finite (diverged) last; ties by slot (stable).

    Example:
        >>> vtune.strategies.rank(np.array([0.3, np.nan, 0.1, -np.inf])).tolist()
        [2, 0, 1, 3]
    """
    s = finite_scores(scores)
    nan = np.isnan(s)
    return np.lexsort((np.arange(len(s)), np.where(nan, np.inf, s), nan))


def rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator derived from the seed and integer keys (generation, salt...).

    States hold no generator: every ``tell`` derives the one it needs, so a
    strategy is a pure function of its state.

    Example:
        >>> a = vtune.strategies.base.rng(0, 3, 1).random()
        >>> a == vtune.strategies.base.rng(0, 3, 1).random()
        True
    """
    return np.random.default_rng([int(seed), *(int(k) for k in keys)])


def keep_all(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(parent, fresh)`` that keep every slot's trial."""
    return np.arange(size, dtype=np.int32), np.zeros(size, dtype=bool)


def replace_rows(configs: dict, slots: np.ndarray, new: dict) -> dict:
    """``configs`` with rows ``slots`` replaced by the rows of ``new``.

    Names of ``configs`` that ``new`` lacks keep their old values; names only
    in ``new`` are not added.
    """
    slots = np.asarray(slots, dtype=np.intp)
    out = {}
    for name, values in configs.items():
        v = np.array(values, copy=True)
        if len(slots) and name in new:
            v[slots] = np.asarray(new[name])[: len(slots)]
        out[name] = v
    return out


def unit(space: Space, configs: dict) -> np.ndarray:
    """The unit-cube points ``[P, D]`` of configs (names outside the space ignored)."""
    return space.encode({k: configs[k] for k in space.names if k in configs})


def choice_dims(space: Space) -> np.ndarray:
    """``bool[D]``: which unit-cube columns are :class:`vtune.Choice` dimensions."""
    return np.array([isinstance(space[k], Choice) for k in space.dims], dtype=bool)


def near(space: Space, u: np.ndarray, generator: np.random.Generator, radius: float,
         switch: float) -> dict:
    """Configs near the unit-cube points ``u`` ``[n, D]``.

    Numeric dimensions move by Gaussian noise of standard deviation ``radius``
    in the unit cube (so log scale for log dimensions), clipped into it; a
    choice takes another option with probability ``switch``.
    """
    u = np.asarray(u, dtype=np.float64)
    cat = choice_dims(space)
    moved = Space.clip(u + generator.normal(0.0, radius, u.shape))
    resampled = np.where(generator.random(u.shape) < switch, generator.random(u.shape), u)
    return space.decode(np.where(cat, resampled, moved))


def check_fraction(where: str, name: str, value) -> float:
    """``value`` as a float in (0, 1), or a ValueError naming the setting."""
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) \
        and 0.0 < value < 1.0
    if not ok:
        raise ValueError(f"{where}: {name} must be a number in (0, 1), got {value!r}")
    return float(value)


def check_int(where: str, name: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a ValueError naming the setting."""
    try:
        return integer(f"{where}: {name}", value, minimum)
    except TypeError as e:  # a strategy setting is one value: always a ValueError
        raise ValueError(str(e)) from None


def check_method(where: str, method) -> str:
    """A sampling method of :meth:`vtune.Space.sample`, or a ValueError."""
    if method not in ("random", "sobol", "halton"):
        raise ValueError(f"{where}: unknown method {method!r}; use random, sobol or halton")
    return method


@dataclasses.dataclass(frozen=True)
class SequenceState:
    """State of a strategy that only draws from one sample sequence.

    Attributes:
      space: the search space.
      size: the population size.
      seed: seeds the sample sequence.
      drawn: points of the sequence used so far.
    """

    space: Space
    size: int
    seed: int
    drawn: int = 0


def draw(state, n: int, method: str):
    """The next ``n`` points of ``state``'s sample sequence, and the state past them.

    ``state`` is any strategy state with ``space``, ``seed`` and ``drawn``.
    """
    configs = state.space.sample(max(n, 1), state.seed, method=method, skip=state.drawn)
    return dataclasses.replace(state, drawn=state.drawn + n), configs


def refill_diverged(state, scores, configs, method):
    """Keeps every slot but the diverged ones, which start the next points."""
    parent, fresh = keep_all(state.size)
    dead = np.flatnonzero(np.isnan(finite_scores(scores)))
    fresh[dead] = True
    if not len(dead):
        return state, Decisions(parent, fresh, replace_rows(configs, dead, {}))
    state, new = draw(state, len(dead), method)
    return state, Decisions(parent, fresh, replace_rows(configs, dead, new))
