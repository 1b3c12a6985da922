"""Refills proposed by Optuna's samplers through its ask-and-tell interface (optional).

The same contract as :func:`vtune.strategies.tpe.propose`, with Optuna's
sampler as the model: every call builds an in-memory study from the
observations (so the strategy's state stays plain arrays, checkpointed as
JSON), then asks it for ``n`` points. Each observation is a trial of the unit
cube (numeric dimensions as floats in [0, 1], which the space's encoding
already made log or linear; choices as categories), pruned at step ``level``
with its score there, as Optuna's pruners leave trials: its TPE then ranks
the observations by the step reached and the score there. The asked trials
stay running, so ``constant_liar`` spreads a batch. Needs ``optuna``
(``pip install 'vtune[optuna]'``).

Example:
    >>> x = np.linspace(0, 1, 20)[:, None]
    >>> u = vtune.strategies.optuna_model.propose(x, (x[:, 0] - 0.3) ** 2, 4,
    ...                                           np.random.default_rng(0), np.array([0]))
    >>> u.shape
    (4, 1)
"""

from __future__ import annotations

import importlib.util

import numpy as np

from vtune.strategies import tpe

#: The samplers :func:`propose` can use, by name.
SAMPLERS = ("tpe", "gp", "cmaes")


def missing() -> str | None:
    """Why Optuna's samplers cannot be used here, or None."""
    if importlib.util.find_spec("optuna") is None:
        return "Optuna is not installed: pip install 'vtune[optuna]'"
    return None


def propose(points: np.ndarray, scores: np.ndarray, n: int, generator: np.random.Generator,
            n_options: np.ndarray, levels: np.ndarray | None = None,
            sampler: str = "tpe") -> np.ndarray:
    """``n`` unit-cube points from Optuna's ``sampler`` fit to the observations.

    Args:
      points: ``[N, D]`` observed unit-cube points (rows with a non-finite score
        are left out).
      scores: ``[N]`` their scores, lower is better.
      n: points to propose.
      generator: seeds the sampler.
      n_options: :func:`vtune.strategies.tpe.options` of the space.
      levels: ``[N]`` the fidelity each score was measured at (default 0).
      sampler: one of :data:`SAMPLERS`: TPE (multivariate, constant liar),
        a Gaussian process, or CMA-ES (the last two need Optuna's extras:
        torch and scipy, ``cmaes``).
    """
    import optuna

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown Optuna sampler {sampler!r}; use one of {SAMPLERS}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    points, scores, levels = tpe.finite(points, scores, levels)
    dists = {f"x{d}": (optuna.distributions.CategoricalDistribution(list(range(int(k))))
                       if k else optuna.distributions.FloatDistribution(0.0, 1.0))
             for d, k in enumerate(n_options)}
    seed = int(generator.integers(2 ** 31))
    make = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=0,
                                                      multivariate=True, constant_liar=True),
            "gp": lambda: optuna.samplers.GPSampler(seed=seed, n_startup_trials=0),
            "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=0)}
    study = optuna.create_study(sampler=make[sampler]())
    study.add_trials([optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, distributions=dists,
        params={name: _param(u, int(k)) for name, u, k in zip(dists, p, n_options)},
        intermediate_values={int(level): float(score)})
        for p, score, level in zip(points, scores, levels)])
    out = np.empty((n, len(dists)))
    for i in range(n):
        trial = study.ask(dists)
        for d, (name, k) in enumerate(zip(dists, n_options)):
            value = trial.params[name]
            out[i, d] = (value + 0.5) / k if k else value
    return out


def _param(u: float, k: int):
    """A unit-cube coordinate as Optuna's parameter: a category index for a choice."""
    return min(int(np.floor(u * k)), k - 1) if k else float(u)
