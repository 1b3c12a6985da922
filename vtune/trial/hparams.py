"""How each hyperparameter reaches the computation.

Every hyperparameter of a trial is an array in the population (one value per
trial), so new values never recompile. Four roles consume them:

* optimizer: the numeric arguments of the optimizer factory (``learning_rate``,
  ``b1``, ``weight_decay``, ``momentum``...) plus ``clip_norm``, through
  ``optax.inject_hyperparams`` and overwritten from the population every step;
  and ``optimizer``, the family (see below);
* schedule: ``schedule`` (constant | cosine | step), ``warmup`` and, for step
  decay, ``decay_rate`` and ``decay_every``, computed inside the step;
* data: ``train_fraction``, the share of the training set a trial samples
  from (coarse stages of a search train on a subsample), and two opt-in knobs
  (see below): ``batch_size`` and ``class_balance``;
* plateau: ``plateau_factor`` and ``plateau_patience`` (opt-in, see below);
* loss: ``l2`` (added to the loss as ``l2/2 * sum(w**2)`` over weight matrices);
* model: whatever the task's model reads from ``hp`` (``dropout``, ``init``,
  ``init_scale``, ``activation``, ``width`` / ``width_k`` / ``depth`` of a
  :class:`vtune.nn.MaskedMLP`, or names of the user's own).

Integers (widths, depths) travel as float arrays like every numeric value;
they hold exact integers (float32 is exact up to 2**24) and the layers compare
them exactly. A model declares the structure it was allocated for in its
:class:`vtune.nn.HParam` metadata; :func:`resolve` refuses a space that leaves it.

String values travel as int32 codes: the index in :data:`CATEGORIES` for the
names vtune knows, else the index in the space's ``choice`` options.

Opt-in knobs (:data:`OPT_IN`): they exist only in searches whose space names
them, so a search that does not tune them runs exactly the program it ran
before (same minibatches, same loss, same population pytree).

* ``batch_size`` (integers in ``[1, Task.batch_size]``, e.g.
  ``vtune.choice([32, 64, 128])``): every trial draws ``Task.batch_size``
  examples (the allocation ``B``); the first ``b`` carry weight ``1/b``, the
  rest 0, and the loss is the weighted sum, so loss and gradient are those of
  a batch of ``b``. The task's loss then receives ``batch = (x, y, w)``
  (:mod:`vtune.trial.task` states the contract). ``examples_seen`` in the
  history counts ``b`` per step.
* ``class_balance`` β in ``[0, 1]``, integer labels only: example ``i`` of the
  trial's training subset (the leading ``train_fraction``) is drawn, with
  replacement, with probability ∝ ``count(y_i)**-β``, the counts taken over
  that subset: 0 keeps the subset's class frequencies, 1 makes the classes
  equally likely.
* ``plateau_factor`` in ``(0, 1]`` (1 = off) and ``plateau_patience``
  (evaluations, an integer >= 1; defaults :data:`DEFAULTS`): each trial keeps,
  on device, its best objective so far, the evaluations since it improved and
  a learning-rate scale. At every evaluation (the end of a generation) a
  strictly better objective resets the counter; otherwise the counter grows,
  and when it reaches ``patience`` the scale is multiplied by the factor and
  the counter reset (the best is kept). The scale multiplies the learning rate
  next to the schedule. A clone inherits its parent's state; a fresh trial
  starts at scale 1.

None of them is init-only: a PBT clone may change all four.

The optimizer family (``optimizer``, e.g. ``vtune.choice(["adamw", "sgdw",
"rmsprop"])``) is a choice like any other, an int32 code per trial (the index
in the space's options). The names are those of :data:`FAMILIES`, or of the
task's own mapping ``Task(optimizer={name: factory, ...})``. Every trial holds
the states of all the families the space offers side by side, and each step
applies its own family's update and leaves the other states untouched (under
vmap every family's update is computed, then selected: cheap for small
models). The numeric arguments of every family are hyperparameters (the union
of their names is accepted by the space); a name a family does not take is
inert for its trials (:meth:`HParamTable.inert`, which reports use). A
shared name the space leaves out takes each family's own default (``momentum``
is 0.9 for ``sgdw``, 0 for ``rmsprop``). ``optimizer`` is init-only: a PBT
clone keeps its parent's family (and the optimizer state that goes with it).
A search whose space does not name ``optimizer`` has no such hyperparameter:
it trains the task's one factory (the first of a mapping) exactly as before.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vtune import nn
from vtune.space import Choice, Fixed, IntUniform, Space
from vtune.trial import optimizers
from vtune.trial.optimizers import (FAMILY, Family, optimizer_families, optimizer_hparams,
                                    single_optimizer)
from vtune.trial.schedule import SCHEDULES

#: Canonical options of the string-valued hyperparameters vtune consumes.
CATEGORIES = {"init": nn.INIT_SCHEMES, "activation": nn.ACTIVATIONS, "schedule": SCHEDULES}

#: Values used for a hyperparameter the space does not mention.
DEFAULTS = {
    **optimizers.DEFAULTS,
    "l2": 0.0,
    "train_fraction": 1.0,
    "schedule": "constant",
    "warmup": 0.0,
    "decay_rate": 0.1,
    "decay_every": 0.3,
    "dropout": 0.0,
    "init": "he_normal",
    "init_scale": 1.0,
    "activation": "relu",
    "class_balance": 0.0,
    "plateau_factor": 1.0,
    "plateau_patience": 3,
}

#: Legal ranges: (low, high, low_inclusive, high_inclusive).
BOUNDS = {
    "learning_rate": (0.0, math.inf, False, False),
    "weight_decay": (0.0, math.inf, True, False),
    "l2": (0.0, math.inf, True, False),
    "clip_norm": (0.0, math.inf, False, True),
    "momentum": (0.0, 1.0, True, False),
    "b1": (0.0, 1.0, True, False),
    "b2": (0.0, 1.0, True, False),
    "eps": (0.0, math.inf, False, False),
    "decay": (0.0, 1.0, True, False),
    "initial_scale": (0.0, math.inf, True, False),
    "warmup": (0.0, 1.0, True, True),
    "decay_rate": (0.0, 1.0, False, True),
    "decay_every": (0.0, 1.0, False, True),
    "dropout": (0.0, 1.0, True, False),
    "train_fraction": (0.0, 1.0, False, True),
    "init_scale": (0.0, math.inf, False, False),
    "batch_size": (1, math.inf, True, False),
    "class_balance": (0.0, 1.0, True, True),
    "plateau_factor": (0.0, 1.0, False, True),
    "plateau_patience": (1, math.inf, True, False),
}

#: Hyperparameters that must take integer values.
INTEGER = ("batch_size", "plateau_patience")

#: Hyperparameters that act only when a trial is initialised: a clone inherits
#: its parent's weights, so changing them on a clone would change nothing.
#: Structure is among them: a clone keeps its parent's width and depth (the
#: per-layer ``width_1`` ... ``width_32`` of :class:`vtune.nn.MaskedMLP` included).
#: The optimizer family is among them too: a clone keeps its parent's family.
INIT_ONLY = ("init", "init_scale", "width", "depth", *(f"width_{k}" for k in range(1, 33)),
             "optimizer")


SCHEDULE_NAMES = ("schedule", "warmup", "decay_rate", "decay_every")
LOSS_NAMES = ("l2",)
DATA_NAMES = ("train_fraction",)
PLATEAU_NAMES = ("plateau_factor", "plateau_patience")
#: Knobs present only when the space names one of their group; the group's
#: other names then take their defaults. ``batch_size`` defaults to the
#: task's allocation (it is never filled in alone).
OPT_IN = {"batch_size": ("batch_size",), "class_balance": ("class_balance",),
          "plateau_factor": PLATEAU_NAMES, "plateau_patience": PLATEAU_NAMES}


def float_dtype():
    """float64 when ``jax_enable_x64`` is on, else float32."""
    return jax.dtypes.canonicalize_dtype(np.float64)


class Recorder(Mapping):
    """An ``hp`` mapping that records which names a function reads.

    Every lookup succeeds with a scalar placeholder of the right dtype, so a
    task's functions can be traced (``jax.eval_shape``) before the names they
    consume are known.
    """

    def __init__(self, dtype_of: Callable[[str], Any]):
        self.read: set[str] = set()
        self._dtype_of = dtype_of

    def __getitem__(self, name):
        if not isinstance(name, str):
            raise TypeError(f"hyperparameter names are strings, got {name!r}")
        self.read.add(name)
        return jnp.zeros((), self._dtype_of(name))

    def __iter__(self):
        return iter(sorted(self.read))

    def __len__(self):
        return len(self.read)


def _is_string_valued(dist) -> bool:
    if isinstance(dist, Choice):
        return any(isinstance(o, str) for o in dist.options)
    return isinstance(dist, Fixed) and isinstance(dist.value, str)


def _check_bounds(name: str, dist) -> None:
    if name in CATEGORIES:
        opts = dist.options if isinstance(dist, Choice) else (getattr(dist, "value", None),)
        bad = [o for o in opts if o not in CATEGORIES[name]]
        if bad or not isinstance(dist, (Choice, Fixed)):
            raise ValueError(f"space[{name!r}]: {bad or dist} is not among the known values "
                             f"{list(CATEGORIES[name])}")
        return
    if name not in BOUNDS:
        return
    if name in INTEGER and not isinstance(dist, (Choice, Fixed, IntUniform)):
        raise ValueError(f"space[{name!r}]: {dist!r} takes non-integer values; {name} is an "
                         f"integer: use vtune.choice([...]) of ints or vtune.intuniform(...)")
    lo, hi, lo_in, hi_in = BOUNDS[name]
    if isinstance(dist, Choice):
        values = dist.options
    elif isinstance(dist, Fixed):
        values = (dist.value,)
    else:
        values = (dist.lo, dist.hi)
    for v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and \
            (v > lo or (lo_in and v == lo)) and (v < hi or (hi_in and v == hi))
        interval = f"{'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TypeError(f"space[{name!r}]: {v!r} is not a number; {name} takes numbers in "
                            f"{interval}")
        if not ok:
            raise ValueError(f"space[{name!r}]: {v!r} is outside the legal range {interval}")
        if name in INTEGER and not (isinstance(v, (int, np.integer)) or float(v).is_integer()):
            raise ValueError(f"space[{name!r}]: {v!r} is not an integer")


def _dist_values(dist):
    if isinstance(dist, Choice):
        return tuple(dist.options)
    if isinstance(dist, Fixed):
        return (dist.value,)
    return (dist.lo, dist.hi)


def check_model_spec(name: str, dist, spec: Mapping[str, Any], what: str = "space") -> None:
    """Checks ``dist`` against what the model was allocated for (:func:`vtune.nn.hparam_specs`).

    Raises:
      ValueError: naming the value, when it is not an integer where the model
        needs one, or lies outside the model's ``[low, high]``.
    """
    if spec.get("integer") and not isinstance(dist, (IntUniform, Choice, Fixed)):
        raise ValueError(f"{what}[{name!r}]: {dist} gives non-integer values; the model needs "
                         f"an integer (use vtune.intuniform or a choice of ints)")
    for v in _dist_values(dist):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"{what}[{name!r}]: {v!r} is not a number")
        if spec.get("integer") and v != int(v):
            raise ValueError(f"{what}[{name!r}]: {v!r} is not an integer")
        if "high" in spec and v > spec["high"]:
            raise ValueError(f"{what}[{name!r}]: {v!r} exceeds the allocated maximum "
                             f"{spec['high']!r} of this model")
        if "low" in spec and v < spec["low"]:
            raise ValueError(f"{what}[{name!r}]: {v!r} is below the allowed minimum "
                             f"{spec['low']!r} of this model")


def value_dtype(name: str, space: Space):
    """The dtype a hyperparameter travels as: int32 codes for strings, else float."""
    if name in CATEGORIES or (name in space and _is_string_valued(space[name])):
        return np.dtype(np.int32)
    return np.dtype(float_dtype())


@dataclasses.dataclass(frozen=True)
class HParamTable:
    """The resolved hyperparameters of one (task, space) pair.

    Attributes:
      space: the search space.
      defaults: host values of the hyperparameters the space does not set.
      optimizer: names consumed by the optimizer (of every family).
      families: the optimizer families the space chooses among, in the order
        of their codes (:func:`optimizer_families`); ``()`` for one factory.
      family_defaults: for an optimizer hyperparameter the space leaves out,
        its default in each family (in ``families`` order): a trial takes its
        own family's (a family without the name, the first family's).
    """

    space: Space
    defaults: Mapping[str, Any]
    optimizer: tuple[str, ...]
    families: tuple[Family, ...] = ()
    family_defaults: Mapping[str, tuple] = dataclasses.field(default_factory=dict)

    def inert(self) -> dict[str, tuple[str, ...]]:
        """``{family: the optimizer hyperparameters its trials ignore}`` (``{}`` for one factory).

        Example:
            >>> task = vtune.tasks.mlp_classifier(hidden_sizes=(8,))
            >>> space = vtune.Space({"optimizer": vtune.choice(["adamw", "sgdw"])})
            >>> vtune.program.build(task, space, steps=1).table.inert()["sgdw"]
            ('b1', 'b2', 'eps', 'eps_root')
        """
        return {f.name: tuple(n for n in self.optimizer if n not in f.names)
                for f in self.families}

    def tunes(self, name: str) -> bool:
        """Whether the opt-in knob ``name`` (:data:`OPT_IN`) is part of this search."""
        return name in self.names

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.space.names) | set(self.defaults)))

    def dtype(self, name: str):
        return value_dtype(name, self.space)

    def complete(self, configs: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """Host values of every hyperparameter for ``n`` trials (defaults filled in)."""
        out = {}
        for name in self.names:
            if name in configs:
                out[name] = np.asarray(configs[name])
            elif name in self.family_defaults:
                names = [f.name for f in self.families]
                codes = [names.index(v) for v in np.asarray(configs[FAMILY]).tolist()]
                out[name] = np.asarray(self.family_defaults[name])[codes]
            else:
                out[name] = np.full(n, self.defaults[name], dtype=object if isinstance(
                    self.defaults[name], str) else None)
        return out

    def encode(self, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host values (as from :meth:`complete`) to the typed arrays trials carry."""
        out = {}
        for name in self.names:
            v = np.asarray(values[name])
            if self.dtype(name) == np.int32 and v.dtype.kind in "OU":
                options = CATEGORIES.get(name) or _dist_values(self.space[name])
                v = np.array([options.index(x) for x in v.tolist()], dtype=np.int32)
            out[name] = v.astype(self.dtype(name))
        return out


def resolve(space: Space, model_reads: set[str], optimizer: Callable | Mapping[str, Callable],
            task_defaults: Mapping[str, Any],
            model_specs: Mapping[str, Mapping[str, Any]] | None = None) -> HParamTable:
    """Checks a space against what a task consumes and fills in defaults.

    Args:
      optimizer: the task's optimizer, one factory or ``{name: factory}``
        (see :func:`optimizer_families`).
      model_specs: what the model declares per hyperparameter
        (:meth:`vtune.Task.model_hparams`): ``low`` / ``high`` (the allocated
        range, e.g. a width's maximum), ``integer``, ``default`` (used when
        neither the space nor ``task_defaults`` sets the name).

    Raises:
      ValueError: a space name nothing consumes (the message lists the accepted
        names), a value outside its legal range or the model's allocation, or
        a name the model reads that has neither a space entry nor a default, an
        optimizer family that is not offered (:func:`optimizer_families`).
    """
    model_specs = model_specs or {}
    families = optimizer_families(optimizer, space)
    if families:
        opt = {}
        for f in families:
            for n, d in f.hparams:
                opt.setdefault(n, d)
    else:
        opt = optimizer_hparams(single_optimizer(optimizer))
    accepted = set(opt) | set(SCHEDULE_NAMES) | set(LOSS_NAMES) | set(DATA_NAMES) | set(model_reads)
    if families:
        accepted.add(FAMILY)
    unknown = [n for n in space.names if n not in accepted | set(OPT_IN)]
    if unknown:
        raise ValueError(f"hyperparameter(s) {unknown} are consumed by nothing in this task; "
                         f"it accepts {sorted(accepted | set(OPT_IN))}")
    for name in space.names:
        _check_bounds(name, space[name])
        if name in model_specs:
            check_model_spec(name, space[name], model_specs[name])
    # An opt-in group takes part when the space names one of its members.
    for name in space.names:
        accepted |= set(OPT_IN.get(name, ()))
    defaults, family_defaults = {}, {}
    for name in sorted(accepted - set(space.names)):
        if name in task_defaults:
            defaults[name] = task_defaults[name]
        elif "default" in model_specs.get(name, {}):
            defaults[name] = model_specs[name]["default"]
        elif name in opt:
            defaults[name] = opt[name]
            if families:
                family_defaults[name] = tuple(dict(f.hparams).get(name, opt[name])
                                              for f in families)
                for v in family_defaults[name]:
                    _check_bounds(name, Fixed(v))
        elif name in DEFAULTS:
            defaults[name] = DEFAULTS[name]
        else:
            raise ValueError(f"the task reads hp[{name!r}] but the space does not set it and it "
                             f"has no default; add it to the space, e.g. "
                             f"space[{name!r}] = vtune.fixed(...)")
        _check_bounds(name, Fixed(defaults[name]))
        if name in model_specs:
            check_model_spec(name, Fixed(defaults[name]), model_specs[name], "defaults")
    return HParamTable(space=space, defaults=defaults, optimizer=tuple(sorted(opt)),
                       families=families, family_defaults=family_defaults)
