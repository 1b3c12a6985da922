"""Optuna as the window onto a search: every vtune trial as one Optuna trial.

:func:`export` writes a finished :class:`vtune.SearchResult` into an Optuna
study (any storage Optuna accepts: ``"sqlite:///search.db"``, a
``optuna.storages.RDBStorage``, or in memory), so that Optuna's public tools
read it: ``optuna-dashboard sqlite:///search.db``,
``optuna.importance.get_param_importances``, ``optuna.visualization``. Only
Optuna's public API writes (``optuna.trial.create_trial`` and
``Study.add_trials``); vtune stores nothing of its own there. :func:`live` is
a per-generation callback that does the same while the search runs.

Each vtune trial (a ``trial_id``: one configuration, trained over one or more
evaluations) becomes one Optuna trial:

* ``params``: its values of the space's hyperparameters, under the
  distributions of :func:`distribution` (log-uniform ->
  ``FloatDistribution(log=True)``, integers -> ``IntDistribution``, choices
  and fixed values -> ``CategoricalDistribution``);
* ``intermediate_values``: the objective at every evaluation, keyed by the
  trial's training step (a clone's steps continue its parent's), finite
  values only;
* ``value``: its best objective over its evaluations, as
  :meth:`vtune.SearchResult.trials` reports it; the study's direction follows
  ``mode``;
* ``state``: ``COMPLETE`` for a trial alive at the end of the search,
  ``PRUNED`` for one the strategy dropped, ``FAIL`` (no value) for one that
  diverged. Optuna's ``best_trial`` looks at ``COMPLETE`` trials only, so it
  is vtune's best whenever that trial survived to the end (as it does under
  the built-in strategies unless it later diverged or was overtaken);
* ``user_attrs``: the lineage (``vtune_trial_id``, ``parent_id``, -1 for a
  trial sampled fresh, ``origin``, ``generation`` of its first and
  ``last_generation`` of its last evaluation), where its best was reached
  (``best_generation``, ``best_step``), its vtune ``status``, ``step`` and
  ``examples_seen``, and every metric at its best evaluation.

The study's value is named after the objective (``study.metric_names``), and
its ``user_attrs`` hold the objective, mode, metric names and the
hyperparameters the space left at their defaults. Optuna's ``create_trial``
stamps every trial's start and completion with the time it was written (the
timeline of a study exported after the search says nothing of its schedule;
``wall_time`` in the history does).

Optuna is an optional dependency (the ``optuna`` extra:
``pip install 'vtune[optuna]'``); ``import vtune`` never imports it.

Example:
    >>> task = vtune.tasks.mlp_classifier(vtune.datasets.synthetic(), hidden_sizes=(8,))
    >>> result = vtune.population_search(task, {"learning_rate": vtune.loguniform(1e-3, 1e-1)},
    ...     population_size=4, generations=2, steps_per_generation=5, verbose=False)
    >>> study = export(result)  # in memory; pass storage="sqlite:///search.db" to keep it
    >>> len(study.trials) == len(result.trials()), study.direction.name
    (True, 'MINIMIZE')
    >>> study.best_value == result.best.metrics["val_loss"]
    True
"""

from __future__ import annotations

import math
import pathlib
import warnings
from typing import Any

import jax

from vtune.checks import real_bool
from vtune.report.callbacks import Callback, Generation
from vtune.report.schema import (best_row, by_trial, check_mode, finite, hparam_names,
                                 infer_metrics)
from vtune.space import Choice, Fixed, IntUniform, LogUniform, Space, Uniform
from vtune.version import __version__

#: vtune's ``status`` of a trial's last evaluation -> the name of its Optuna ``TrialState``.
STATES = {"alive": "COMPLETE", "pruned": "PRUNED", "diverged": "FAIL"}


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise ImportError("vtune.report.optuna needs Optuna, from the 'optuna' extra: "
                          "pip install 'vtune[optuna]'") from e
    return optuna


def distribution(dist):
    """The Optuna distribution of one vtune distribution.

    Example:
        >>> distribution(vtune.loguniform(1e-4, 1e-1))
        FloatDistribution(high=0.1, log=True, low=0.0001, step=None)
        >>> distribution(vtune.choice(["relu", "tanh"]))
        CategoricalDistribution(choices=('relu', 'tanh'))
    """
    d = _optuna().distributions
    if isinstance(dist, (Uniform, LogUniform)):
        return d.FloatDistribution(dist.lo, dist.hi, log=isinstance(dist, LogUniform))
    if isinstance(dist, IntUniform):
        return d.IntDistribution(dist.lo, dist.hi, log=dist.log)
    if isinstance(dist, Choice):
        return d.CategoricalDistribution(dist.options)
    if isinstance(dist, Fixed):
        return d.CategoricalDistribution((dist.value,))
    raise TypeError(f"no Optuna distribution for {dist!r}")


def _inferred(values: list):
    """A distribution covering ``values``, for results that do not know their space."""
    d = _optuna().distributions
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return d.IntDistribution(min(values), max(values))
    if values and all(finite(v) for v in values) and min(values) < max(values):
        return d.FloatDistribution(min(values), max(values))
    return d.CategoricalDistribution(sorted(set(values), key=repr))


def distributions(result) -> dict[str, Any]:
    """``{name: Optuna distribution}`` of the searched hyperparameters of ``result``.

    From ``result.space``; a result without its space (read from an old JSON)
    gets distributions covering the values its history took.

    Example:
        >>> rows = [{"generation": 0, "slot": 0, "trial_id": 0, "parent_id": -1, "step": 1,
        ...          "status": "alive", "width": 4, "val_loss": 0.5}]
        >>> distributions(vtune.SearchResult(best=None, history=rows, objective="val_loss",
        ...                                  mode="min", tuned=("width",)))
        {'width': IntDistribution(high=4, log=False, low=4, step=1)}
    """
    return _distributions(result.space, result.tuned, result.history)


def _distributions(space: Space | None, tuned, history) -> dict[str, Any]:
    if space is not None:
        return {name: distribution(dist) for name, dist in space.items()}
    return {name: _inferred([r[name] for r in history if name in r]) for name in tuned}


def _defaults(history, metrics, space) -> dict[str, Any]:
    """The hyperparameters outside the space, at their first value (they never change)."""
    first = history[0] if history else {}
    names = () if space is None else space.names
    return {k: _attr(first[k]) for k in hparam_names(history, metrics)
            if k not in names and k in first}


def _attr(v):
    """A user attribute Optuna can store as JSON: non-finite floats become None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _trial(rows: list[dict], objective: str, mode: str, metrics, dists: dict):
    """One vtune trial's history rows as an ``optuna.trial.FrozenTrial``."""
    optuna = _optuna()
    first, last = rows[0], rows[-1]
    top = best_row(rows, objective, mode)  # as SearchResult.trials() picks it
    state = STATES[last["status"]] if top is not None else "FAIL"
    at = top if top is not None else last
    attrs = {"vtune_trial_id": int(first["trial_id"]), "parent_id": int(first["parent_id"]),
             "origin": "cloned" if int(first["parent_id"]) >= 0 else "fresh",
             "generation": int(first["generation"]), "last_generation": int(last["generation"]),
             "evaluations": len(rows), "status": last["status"], "step": int(last["step"]),
             "best_generation": None if top is None else int(top["generation"]),
             "best_step": None if top is None else int(top["step"])}
    if "examples_seen" in last:
        attrs["examples_seen"] = int(last["examples_seen"])
    attrs.update({m: _attr(at[m]) for m in metrics if m in at})
    # A hyperparameter a row leaves out (or holds None) is not the trial's: no param.
    params = {name: at[name] for name in dists if at.get(name) is not None}
    return optuna.trial.create_trial(
        state=getattr(optuna.trial.TrialState, state),
        value=None if state == "FAIL" else float(top[objective]),
        params=params,
        distributions={name: dists[name] for name in params},
        user_attrs=attrs,
        intermediate_values={int(r["step"]): float(r[objective]) for r in rows
                             if finite(r.get(objective))})


def _storage(storage):
    """A path becomes an SQLite URL; anything else is Optuna's to read."""
    if isinstance(storage, pathlib.Path):
        return f"sqlite:///{storage}"
    return storage


def _study(storage, study_name, objective, mode, overwrite):
    optuna = _optuna()
    storage = _storage(storage)
    if real_bool("overwrite", overwrite) and storage is not None and study_name is not None:
        try:
            optuna.delete_study(study_name=study_name, storage=storage)
        except KeyError:  # no such study yet
            pass
    try:
        return optuna.create_study(storage=storage, study_name=study_name,
                                   direction={"min": "minimize",
                                              "max": "maximize"}[check_mode(mode)])
    except optuna.exceptions.DuplicatedStudyError:
        raise ValueError(f"the storage already holds a study named {study_name!r}; pass another "
                         f"study_name, or overwrite=True to replace it") from None


def _describe(study, objective, mode, metrics, defaults) -> None:
    with warnings.catch_warnings():  # set_metric_names is experimental in Optuna 3.2 to 5
        warnings.simplefilter("ignore", _optuna().exceptions.ExperimentalWarning)
        study.set_metric_names([objective])  # plots and the dashboard name the value
    study.set_user_attr("vtune_version", __version__)
    study.set_user_attr("objective", objective)
    study.set_user_attr("mode", mode)
    study.set_user_attr("metrics", list(metrics))
    study.set_user_attr("defaults", defaults)


def export(result, storage=None, *, study_name: str | None = None, overwrite: bool = False):
    """Writes every trial of ``result`` as one trial of a new Optuna study.

    Args:
      result: a :class:`vtune.SearchResult`.
      storage: what ``optuna.create_study`` accepts: a database URL such as
        ``"sqlite:///search.db"``, an Optuna storage object, or None (in memory,
        the default); a ``pathlib.Path`` is taken for an SQLite file.
      study_name: the study's name (default: Optuna generates one).
      overwrite: replace a study of that name in ``storage``; without it a
        name already taken is refused (ValueError) and nothing is written.

    Returns:
      The ``optuna.Study`` (on processes other than 0 of a multi-host run,
      which write nothing: None).

    Example: see the module docstring.
    """
    if jax.process_index() != 0:
        return None
    metrics = result.metric_names
    dists = distributions(result)
    trials = [_trial(rows, result.objective, result.mode, metrics, dists)
              for rows in by_trial(result.history).values()]
    study = _study(storage, study_name, result.objective, result.mode, overwrite)
    defaults = {k: v for k, v in _defaults(result.history, metrics, None).items()
                if k not in dists}
    _describe(study, result.objective, result.mode, metrics, defaults)
    study.add_trials(trials)
    return study


def live(storage, *, study_name: str | None = None, overwrite: bool = False) -> Callback:
    """A callback (``population_search(..., callbacks=[live(...)])``) exporting as it runs.

    After every generation it adds to the study the trials that finished in it
    (pruned or diverged; at the last generation, all), each written as
    :func:`export` writes it, so an open ``optuna-dashboard`` shows the search
    grow. A trial appears once it has finished, and Optuna numbers trials in
    the order they were added: ``user_attrs["vtune_trial_id"]`` is vtune's id.
    The study is created at the first generation.

    The callback sees only the generations it is called for: a search resumed
    from a checkpoint needs a new ``study_name`` (or ``overwrite=True``), and
    its trials that span the interruption carry only their evaluations after
    it. For the complete record, :func:`export` the result at the end.

    Args:
      storage, study_name, overwrite: as in :func:`export`; a storage other
        than None is needed for anyone else to see the study. A name already
        taken in ``storage`` is refused here, before the search starts.

    Returns:
      The callback. Its attribute ``study`` is the ``optuna.Study`` once the
      first generation has been written (None before).

    Raises:
      ValueError: ``study_name`` is taken in ``storage`` and ``overwrite`` is False.

    Example:
        >>> task = vtune.tasks.mlp_classifier(vtune.datasets.synthetic(), hidden_sizes=(8,))
        >>> watch = live(None)
        >>> result = vtune.population_search(task, {"dropout": vtune.uniform(0.0, 0.5)},
        ...     population_size=4, generations=2, steps_per_generation=5, verbose=False,
        ...     callbacks=[watch])
        >>> len(watch.study.trials) == len(result.trials())
        True
    """
    if overwrite is not True and overwrite is not False:
        raise TypeError(f"overwrite must be a bool, got {overwrite!r}")
    if storage is not None and study_name is not None and not overwrite and \
            study_name in _optuna().get_all_study_names(storage=_storage(storage)):
        raise ValueError(f"the storage already holds a study named {study_name!r}; pass another "
                         f"study_name, or overwrite=True to replace it")
    history: list[dict] = []
    written: set[int] = set()

    def write(g: Generation) -> None:
        if jax.process_index() != 0:
            return
        history.extend(g.rows)
        metrics = g.metrics or infer_metrics(history, g.objective)
        if write.study is None:
            write.study = _study(storage, study_name, g.objective, g.mode, overwrite)
            _describe(write.study, g.objective, g.mode, metrics,
                      _defaults(history, metrics, g.space))
        last = g.generation == g.generations
        # The driver calls back after the strategy has decided, so a row's status is final:
        # an alive row goes on training in the next generation (unless this is the last).
        finished = [int(r["trial_id"]) for r in g.rows if last or r["status"] != "alive"]
        trials = by_trial([r for r in history if int(r["trial_id"]) in set(finished)])
        dists = _distributions(g.space, (), history)
        write.study.add_trials([_trial(rows, g.objective, g.mode, metrics, dists)
                                for tid, rows in trials.items() if tid not in written])
        written.update(trials)

    write.study = None
    return write


__all__ = ["STATES", "distribution", "distributions", "export", "live"]
