"""What the figures share: colours, axis scales of a hyperparameter, matplotlib set-up.

``is_log_scale`` and ``categories`` say how a hyperparameter's axis is drawn:
from the space when the result has one, else inferred from its values.

Example:
    >>> rows = [{"lr": 1e-4}, {"lr": 1e-3}, {"lr": 3e-4}, {"lr": 1e-1}, {"lr": 2e-4}]
    >>> class Result:
    ...     space, history = None, rows
    >>> is_log_scale(Result, "lr"), categories(Result, "lr")
    (True, None)
"""

from __future__ import annotations

import math

import numpy as np

from vtune.report.schema import finite, is_number
from vtune.space import Choice, IntUniform

#: Colours of the best trial, alive, pruned and diverged trials.
BEST, ALIVE, PRUNED, DIVERGED = "#d62728", "#1f77b4", "#8c8c8c", "#ff7f0e"


def figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("vtune's plots need matplotlib, from the 'plots' extra: "
                          "pip install 'vtune[plots]'") from e
    return Figure(figsize=(width, height), layout="constrained")


def is_log_scale(result, name: str) -> bool:
    """Whether ``name`` is searched on a log scale: from the space, else from its values.

    Without a space, positive values spanning more than a factor 20 whose
    median sits in the lowest fifth of their range (as log-uniform samples
    do) count as log-scale.
    """
    if result.space is not None and name in result.space:
        return bool(result.space[name].is_log)
    values = [r.get(name) for r in result.history]
    nums = sorted(float(v) for v in values if is_number(v) and math.isfinite(v))
    if not nums or nums[0] <= 0 or nums[-1] / nums[0] < 20:
        return False
    median = nums[len(nums) // 2]
    return (median - nums[0]) / (nums[-1] - nums[0]) < 0.2


def is_integer(result, name: str) -> bool:
    """Whether ``name`` takes only integer values: an int range in the space, else its values.

    Example:
        >>> class Result:
        ...     space, history = None, [{"depth": 1}, {"depth": 3.0}, {"lr": 0.5}]
        >>> is_integer(Result, "depth"), is_integer(Result, "lr")
        (True, False)
    """
    if result.space is not None and name in result.space:
        return isinstance(result.space[name], IntUniform)
    nums = [r[name] for r in result.history if is_number(r.get(name))]
    return bool(nums) and all(finite(v) and float(v).is_integer() for v in nums)


def integer_ticks(axis) -> None:
    """Ticks of a matplotlib ``axis`` at integers only (never 1.5 for a depth)."""
    from matplotlib.ticker import MaxNLocator
    axis.set_major_locator(MaxNLocator(integer=True))


def categories(result, name: str) -> list | None:
    """The categories of ``name`` if it is categorical (a choice, non-numeric values), else None."""
    if result.space is not None and name in result.space:
        dist = result.space[name]
        if isinstance(dist, Choice):
            return list(dist.options)
    values = [r.get(name) for r in result.history]
    if all(is_number(v) for v in values):
        return None
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def zoom(ax, trials, best, *keys):
    """Limits a linear axis to the trials that trained for more than one evaluation.

    A short search prunes many trials after one evaluation, often near chance;
    showing them would squash the curves that matter. How many points fall
    below is written on the axis.
    """
    focus = [r.get(k) for t, rows in trials.items() if len(rows) > 1 or t == best
             for r in rows for k in keys if k is not None]
    focus = [v for v in focus if finite(v)]
    if not focus:
        return
    lo, hi = min(focus), max(focus)
    pad = max(0.08 * (hi - lo), 1e-3)
    bottom = lo - pad
    below = {t for t, rows in trials.items() for r in rows for k in keys
             if k is not None and finite(r.get(k)) and r[k] < bottom}
    if not below:
        return
    ax.set_ylim(bottom, hi + pad)
    ax.text(0.99, 0.02, f"zoomed to trials evaluated more than once; {len(below)} trial(s) "
            f"have points below {bottom:.3g}", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=8, color="#555555")


def status_handles(result, best):
    from matplotlib.lines import Line2D
    h = [Line2D([], [], color="black", ls="-", label="validation"),
         Line2D([], [], color="black", ls="--", label="train")]
    if best is not None:
        h.append(Line2D([], [], color=BEST, lw=2.2, label=f"best: trial {best} (and ancestors)"))
    h += [Line2D([], [], color=ALIVE, alpha=0.6, label="alive at the end"),
          Line2D([], [], color=PRUNED, alpha=0.4, label="pruned (faded)")]
    if any(r["status"] == "diverged" for r in result.history):
        h.append(Line2D([], [], color=DIVERGED, marker="x", ls="", mew=2,
                        label="diverged (× at the step)"))
    return h


def positions(values, cats, rng):
    """Numeric x (or y) of values: themselves, or category index (+ jitter when rng)."""
    if cats is None:
        return np.array([v if finite(v) else np.nan for v in values], float)
    index = {repr(c): i for i, c in enumerate(cats)}
    pos = np.array([index.get(repr(v), np.nan) for v in values], float)
    if rng is not None:
        pos = pos + rng.uniform(-0.22, 0.22, len(pos))
    return pos
