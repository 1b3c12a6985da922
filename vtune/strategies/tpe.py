"""Tree-structured Parzen estimator proposals (Bergstra et al. 2011), in the unit cube.

A pure function of observations: split them into good and bad, fit a Parzen
density to each (Gaussian kernels with a Scott's-rule bandwidth on numeric
dimensions, smoothed frequencies on choices), draw candidates from the good
density and keep those with the highest ratio ``l(x) / g(x)``.
:func:`vtune.strategies.bohb` uses it to choose the configurations refilled
slots start from.

Observations can come from different fidelities (a trial pruned at the first
rung, another that trained to the third): ranked as Optuna's TPE ranks pruned
trials, by the fidelity reached (higher first), then by the score there. The
good set is the best ``min(ceil(gamma * n), max_good)`` of them (Optuna's
default split: 10%, at most 25).
"""

from __future__ import annotations

import numpy as np

from vtune.space import Choice, Space

MIN_BANDWIDTH = 0.02


def options(space: Space) -> np.ndarray:
    """``int[D]``: the option count of each choice dimension, 0 for numeric ones.

    Example:
        >>> vtune.strategies.tpe.options(vtune.Space({"lr": vtune.uniform(0, 1),
        ...                                           "act": vtune.choice(["relu", "tanh"])}))
        array([0, 2])
    """
    return np.array([len(space[k].options) if isinstance(space[k], Choice) else 0
                     for k in space.dims], dtype=np.int64)


def ready(scores: np.ndarray, dims: int) -> bool:
    """Whether there are enough finite observations to fit the model."""
    return int(np.isfinite(scores).sum()) >= max(8, dims + 2)


def propose(points: np.ndarray, scores: np.ndarray, n: int, generator: np.random.Generator,
            n_options: np.ndarray, levels: np.ndarray | None = None, gamma: float = 0.1,
            max_good: int = 25, candidates: int = 24) -> np.ndarray:
    """``n`` unit-cube points that maximise ``l(x) / g(x)``, each the best of ``candidates``.

    Args:
      points: ``[N, D]`` observed unit-cube points (rows with a NaN score are ignored).
      scores: ``[N]`` their scores, lower is better.
      n: points to propose.
      generator: the source of randomness.
      n_options: :func:`options` of the space (choices are sampled as categories).
      levels: ``[N]`` the fidelity each score was measured at (higher: trained
        longer); default: all the same.
      gamma: share of the observations that count as good...
      max_good: ...but at most this many.
      candidates: draws from ``l`` per proposed point.

    Example:
        >>> x = np.linspace(0, 1, 20)[:, None]
        >>> u = vtune.strategies.tpe.propose(x, (x[:, 0] - 0.3) ** 2, 4,
        ...                                  np.random.default_rng(0), np.array([0]))
        >>> bool(np.all(np.abs(u - 0.3) < 0.2))
        True
    """
    points, scores, levels = finite(points, scores, levels)
    n_dims = points.shape[1]
    order = np.lexsort((scores, -levels))
    n_good = max(1, min(int(np.ceil(gamma * len(order))), max_good))
    good, bad = points[order[:n_good]], points[order[n_good:]]
    cat = np.asarray(n_options) > 0

    # Candidates from l: a random good point, jittered by its kernel; choices by frequency.
    m = n * candidates
    bw_good = _bandwidth(good)
    x = good[generator.integers(len(good), size=m)]
    x = np.clip(x + generator.normal(0.0, 1.0, x.shape) * bw_good, 0.0, 1.0)
    for d in np.flatnonzero(cat):
        k = int(n_options[d])
        p = _frequencies(good[:, d], k)
        x[:, d] = (generator.choice(k, size=m, p=p) + 0.5) / k
    ratio = _log_density(x, good, cat, n_options) - _log_density(x, bad, cat, n_options)
    best = np.argmax(ratio.reshape(n, candidates), axis=1)
    return x.reshape(n, candidates, n_dims)[np.arange(n), best]


def finite(points: np.ndarray, scores: np.ndarray, levels: np.ndarray | None = None):
    """The observations with a finite score: ``(points, scores, levels)`` as arrays, the
    levels 0 when not given."""
    keep = np.isfinite(scores)
    levels = np.zeros(len(scores), np.int64) if levels is None else np.asarray(levels)
    return np.asarray(points, np.float64)[keep], np.asarray(scores)[keep], levels[keep]


def _bandwidth(x: np.ndarray) -> np.ndarray:
    n, d = x.shape
    std = x.std(axis=0) if n > 1 else np.full(d, 0.5)
    return np.maximum(std * n ** (-1.0 / (d + 4)), MIN_BANDWIDTH)


def _frequencies(column: np.ndarray, k: int) -> np.ndarray:
    idx = np.clip(np.floor(column * k).astype(int), 0, k - 1)
    counts = np.bincount(idx, minlength=k) + 1.0  # a uniform prior of one observation
    return counts / counts.sum()


def _log_density(x: np.ndarray, data: np.ndarray, cat: np.ndarray, n_options) -> np.ndarray:
    """log of a Parzen density fit to ``data``, at ``x`` (uniform if ``data`` is empty)."""
    if not len(data):
        return np.zeros(len(x))
    num = ~cat
    out = np.zeros(len(x))
    if num.any():
        bw = _bandwidth(data)[num]
        z = (x[:, None, num] - data[None, :, num]) / bw
        log_k = -0.5 * np.sum(z * z, axis=2) - np.sum(np.log(bw * np.sqrt(2 * np.pi)))
        top = log_k.max(axis=1, keepdims=True)
        out += (top + np.log(np.mean(np.exp(log_k - top), axis=1, keepdims=True)))[:, 0]
    for d in np.flatnonzero(cat):
        k = int(n_options[d])
        p = _frequencies(data[:, d], k)
        out += np.log(p[np.clip(np.floor(x[:, d] * k).astype(int), 0, k - 1)])
    return out
