"""Metrics a task reports on its train-eval and validation splits.

:func:`vtune.from_nnx` reports ``loss`` and the built-ins of
:data:`BUILTIN_METRICS` (accuracy for a classifier; MAE and R² for a
regression), plus the user's ``metrics={name: fn(predictions, targets)}``,
each as ``train_<name>`` and ``val_<name>``. :func:`check_metrics` refuses an
ambiguous mapping; :func:`evaluate_metric` checks, in the abstract trace, that
a metric gives a real scalar.

Example:
    >>> import jax.numpy as jnp
    >>> float(accuracy(jnp.array([[2.0, 1.0], [0.0, 3.0]]), jnp.array([0, 0])))
    0.5
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp


def accuracy(logits, labels):
    """Share of examples whose largest logit is the label's."""
    return jnp.mean(jnp.argmax(logits, -1) == labels)


def mean_absolute_error(pred, targets):
    """Mean of ``|pred - targets|`` over every element."""
    return jnp.mean(jnp.abs(pred - targets))


def r2_score(pred, targets):
    """The coefficient of determination R² = 1 - SS_res / SS_tot, per output, averaged.

    Computed per output column (over the examples, axis 0) and averaged over
    the outputs, as scikit-learn's ``r2_score`` does by default; an output
    whose targets are constant scores 1.0 if predicted exactly, else 0.0.

    Example:
        >>> float(r2_score(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 2.0, 4.0])))
        0.7857...
    """
    pred = jnp.reshape(pred, (pred.shape[0], -1))
    targets = jnp.reshape(targets, (targets.shape[0], -1))
    ss_res = jnp.sum((targets - pred) ** 2, axis=0)
    ss_tot = jnp.sum((targets - jnp.mean(targets, axis=0)) ** 2, axis=0)
    safe = jnp.where(ss_tot > 0, ss_tot, 1.0)
    score = jnp.where(ss_tot > 0, 1.0 - ss_res / safe, jnp.where(ss_res == 0, 1.0, 0.0))
    return jnp.mean(score)


#: The metrics :func:`from_nnx` reports on each split, by kind of task:
#: ``{name: fn(predictions, targets)}``, besides ``loss``.
BUILTIN_METRICS = {True: {"accuracy": accuracy},
                   False: {"mae": mean_absolute_error, "r2": r2_score}}
#: The evaluated splits and the prefix of their metric names.
SPLITS = (("train_eval", "train"), ("val", "val"))


def check_metrics(metrics, classification: bool) -> dict[str, Callable]:
    """``from_nnx``'s ``metrics=`` as a dict, refusing what would be ambiguous."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"from_nnx: metrics must be a mapping name -> fn(predictions, targets), "
                        f"e.g. {{'f1': f1}}, got {type(metrics).__name__}")
    taken = {"loss", *BUILTIN_METRICS[bool(classification)]}
    out = {}
    for name, fn in metrics.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"from_nnx: metric names must be identifiers such as 'f1', "
                             f"got {name!r}")
        for _, prefix in SPLITS:
            if name.startswith(prefix + "_"):
                raise ValueError(f"from_nnx: metric {name!r}: give the name without a split "
                                 f"prefix ({name[len(prefix) + 1:]!r}); vtune reports it as "
                                 f"train_<name> and val_<name>")
        if name in taken:
            raise ValueError(f"from_nnx: metric {name!r} is built in "
                             f"({', '.join(sorted(taken))} are reported already); "
                             f"choose another name")
        if not callable(fn):
            raise TypeError(f"from_nnx: metric {name!r} must be a function "
                            f"fn(predictions, targets) -> scalar, got {type(fn).__name__}")
        out[name] = fn
    return out


def evaluate_metric(name: str, fn: Callable, pred, targets):
    """One user metric on one split, checked: a float scalar (shapes are static)."""
    try:
        value = fn(pred, targets)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
            jax.errors.TracerBoolConversionError) as e:
        raise TypeError(f"from_nnx: metric {name!r} used its arguments as Python or numpy "
                        f"values, but it runs inside the compiled program on traced arrays: "
                        f"write it with jax.numpy ({type(e).__name__})") from None
    try:
        value = jnp.asarray(value)
    except TypeError:
        raise TypeError(f"from_nnx: metric {name!r} must return a scalar array, got "
                        f"{type(value).__name__}") from None
    if value.shape != ():
        raise ValueError(f"from_nnx: metric {name!r} must return a scalar, got shape "
                         f"{value.shape} (for predictions {tuple(pred.shape)} and targets "
                         f"{tuple(targets.shape)}); reduce it, e.g. with jnp.mean")
    if not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)
            or value.dtype == jnp.bool_):
        raise TypeError(f"from_nnx: metric {name!r} must return a real number, got dtype "
                        f"{value.dtype}")
    return value.astype(jnp.result_type(float))
