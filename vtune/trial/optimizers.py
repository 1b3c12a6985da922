"""Optimizers: vtune's SGDW, the families a space may choose among, and optax
factories made injectable so every numeric argument is a per-trial array.

A trial's optimizer is ``clip_by_global_norm(clip_norm)`` followed by the
factory, under ``optax.inject_hyperparams`` (:func:`make_optimizer`): its
numeric arguments live in the optimizer state and are overwritten from the
population every step, so new values never recompile. When the space names
``optimizer`` (:data:`FAMILY`), each trial picks one of several families
(:func:`optimizer_families`); :mod:`vtune.trial.hparams` says how the rest of a
search reads them.

Example:
    >>> [n for n, _ in optimizer_families(optax.adamw, vtune.Space(
    ...     {"optimizer": vtune.choice(["sgdw", "rmsprop"])}))[0].hparams]
    ['clip_norm', 'learning_rate', 'momentum', 'weight_decay']
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Mapping, NamedTuple

import optax

from vtune.space import Choice, Fixed, Space

#: The hyperparameter that names a trial's optimizer family.
FAMILY = "optimizer"

#: Values of the optimizer hyperparameters a factory gives no default for
#: (``clip_norm`` is vtune's: no clipping).
DEFAULTS = {"learning_rate": 1e-3, "momentum": 0.0, "clip_norm": math.inf}


def sgdw(learning_rate, momentum=0.9, weight_decay=0.0, nesterov=False):
    """SGD with momentum and decoupled weight decay (SGDW, Loshchilov & Hutter).

    The momentum trace accumulates gradients only; the decay acts outside it,
    scaled by the step's learning rate (so by the schedule too, as in
    ``optax.adamw``)::

        m <- momentum * m + g
        d  = g + momentum * m  if nesterov else  m
        w <- w - lr_t * d - lr_t * weight_decay * w

    With ``momentum=0`` it equals SGD on the loss plus ``weight_decay/2 * |w|^2``.

    Example:
        >>> task = vtune.tasks.mlp_classifier(optimizer=vtune.sgdw)
    """
    return optax.chain(optax.trace(decay=momentum, nesterov=nesterov),
                       optax.add_decayed_weights(weight_decay),
                       optax.scale_by_learning_rate(learning_rate))


#: The optimizer families a space may name in ``optimizer`` when the task has one
#: factory (one of these); a task offers others as ``Task(optimizer={name: factory})``.
FAMILIES = {"adamw": optax.adamw, "adam": optax.adam, "sgdw": sgdw, "sgd": optax.sgd,
            "rmsprop": optax.rmsprop}


class Family(NamedTuple):
    """One optimizer family of a search.

    Attributes:
      name: its name, the value of the ``optimizer`` hyperparameter.
      factory: the optax factory.
      hparams: ``(name, default)`` of its hyperparameters (:func:`optimizer_hparams`), sorted.
    """

    name: str
    factory: Callable
    hparams: tuple[tuple[str, float], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.hparams)


def single_optimizer(optimizer: Callable | Mapping[str, Callable]) -> Callable:
    """The factory a search that does not name ``optimizer`` trains: the task's
    factory, or the first of its mapping."""
    return next(iter(optimizer.values())) if isinstance(optimizer, Mapping) else optimizer


def optimizer_families(optimizer: Callable | Mapping[str, Callable],
                       space: Space) -> tuple[Family, ...]:
    """The families a search trains, in the order of their codes; ``()`` when
    the space does not name ``optimizer``.

    Args:
      optimizer: the task's optimizer: one factory (then the names are looked
        up in :data:`FAMILIES`, and the factory must be one of them) or a
        mapping ``{name: factory}``.
      space: the search space.

    Raises:
      ValueError: naming the value, for a family name that is not offered, or
        a distribution of ``optimizer`` that is not a choice of names.

    Example:
        >>> space = vtune.Space({"optimizer": vtune.choice(["adamw", "sgdw"])})
        >>> [(f.name, f.names) for f in optimizer_families(optax.adamw, space)]
        [('adamw', ('b1', 'b2', 'clip_norm', 'eps', 'eps_root', 'learning_rate', 'weight_decay')),
         ('sgdw', ('clip_norm', 'learning_rate', 'momentum', 'weight_decay'))]
    """
    if FAMILY not in space:
        return ()
    dist = space[FAMILY]
    options = (tuple(dist.options) if isinstance(dist, Choice)
               else (dist.value,) if isinstance(dist, Fixed) else ())
    if not isinstance(dist, (Choice, Fixed)) or not all(isinstance(o, str) for o in options):
        raise ValueError(f"space[{FAMILY!r}]: {dist!r} does not name optimizer families; use "
                         f"e.g. vtune.choice([\"adamw\", \"sgdw\"])")
    if isinstance(optimizer, Mapping):
        offered = dict(optimizer)
    elif optimizer in FAMILIES.values():
        offered = FAMILIES
    else:
        raise ValueError(f"space[{FAMILY!r}]: the task has the one optimizer "
                         f"{getattr(optimizer, '__name__', optimizer)!r}, not one of vtune's "
                         f"families {list(FAMILIES)}; give the families to choose among as "
                         f"Task(optimizer={{name: factory, ...}})")
    bad = [o for o in options if o not in offered]
    if bad:
        raise ValueError(f"space[{FAMILY!r}]: {bad} is not among the optimizer families "
                         f"{list(offered)}")
    return tuple(Family(o, offered[o], tuple(sorted(optimizer_hparams(offered[o]).items())))
                 for o in options)


def optimizer_hparams(factory: Callable) -> dict[str, float]:
    """The numeric arguments of an optax factory, with their defaults.

    Arguments with a bool or non-numeric default (``nesterov``, ``mask``,
    ``mu_dtype``) stay static; ``learning_rate`` and ``momentum`` take
    :data:`DEFAULTS` when the factory gives none.
    """
    out = {}
    for name, p in inspect.signature(factory).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        d = p.default
        if isinstance(d, (int, float)) and not isinstance(d, bool):
            out[name] = float(d)
        elif name in DEFAULTS and (d is p.empty or d is None):
            out[name] = DEFAULTS[name]
        elif d is p.empty:
            raise TypeError(f"optimizer {getattr(factory, '__name__', factory)!r} requires "
                            f"argument {name!r}, which vtune cannot supply; bind it with "
                            "functools.partial")
    out["clip_norm"] = DEFAULTS["clip_norm"]
    return out


def make_optimizer(factory: Callable) -> Callable[..., optax.GradientTransformation]:
    """``factory`` behind global-norm clipping, every numeric argument injectable.

    The returned constructor takes ``clip_norm`` plus the factory's numeric
    arguments (all as arrays) and gives an ``optax.inject_hyperparams``
    transformation whose state holds them, so they can be set per step.
    """
    names = list(optimizer_hparams(factory))

    def chained(**kw):
        clip = kw.pop("clip_norm")
        return optax.chain(optax.clip_by_global_norm(clip), factory(**kw))

    # inject_hyperparams reads the signature to know which arguments are hyperparameters.
    chained.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names])
    return optax.inject_hyperparams(chained)
