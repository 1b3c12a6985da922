"""The history schema: the one place that knows what a history row holds.

A search's history is one row (a dict) per generation and slot: the
bookkeeping columns of :data:`ID_COLUMNS`, then every hyperparameter, then
every metric of the task. The driver records the task's metric names with the
result, so which columns are metrics is never guessed from their names; only
histories written before vtune recorded them fall back to
:func:`infer_metrics`.

Example:
    >>> rows = [{"generation": 0, "trial_id": 0, "parent_id": -1, "status": "alive",
    ...          "learning_rate": 0.1, "val_f1": 0.5},
    ...         {"generation": 1, "trial_id": 0, "parent_id": -1, "status": "alive",
    ...          "learning_rate": 0.1, "val_f1": 0.7}]
    >>> hparam_names(rows, metrics=("val_f1",))
    ['learning_rate']
    >>> best_row(rows, "val_f1", "max")["generation"]
    1
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

#: Columns every history row has, in order, before its hyperparameters and metrics.
#: ``examples_seen`` and ``wall_time`` may be absent from histories of older versions.
ID_COLUMNS = ("generation", "slot", "trial_id", "parent_id", "step", "examples_seen",
              "wall_time", "status")
#: Values of ``status``: still training, dropped by the strategy after this
#: evaluation, or diverged (non-finite, or blown up) and dropped.
STATUSES = ("alive", "pruned", "diverged")
#: Values of the derived ``origin`` column: sampled from the space, or cloned
#: from a parent (``parent_id >= 0``: its weights and step were copied).
ORIGINS = ("fresh", "cloned")
#: Columns derived from the history by readers (rows(), lineage()).
DERIVED = ("origin", "cloned_at", "changes")
#: Every column that is neither a hyperparameter nor a metric.
BOOKKEEPING = ID_COLUMNS + DERIVED
#: The per-trial flag the program reports beside the task's metrics.
DIVERGED = "diverged"
#: Name endings taken for metrics in histories that do not record their metrics.
METRIC_SUFFIXES = ("loss", "accuracy", "error")
#: Values of ``mode``.
MODES = ("min", "max")


def keys(rows: Iterable[dict]) -> list[str]:
    """Every key of ``rows``, in order of first appearance."""
    out: dict[str, None] = {}
    for r in rows:
        out.update(dict.fromkeys(r))
    return list(out)


def infer_metrics(history: Sequence[dict], objective: str | None = None) -> tuple[str, ...]:
    """Metric names of a history that does not record them: the objective and
    the columns ending in loss, accuracy or error."""
    return tuple(k for k in keys(history) if k not in BOOKKEEPING and k != DIVERGED and
                 (k == objective or k.endswith(METRIC_SUFFIXES)))


def hparam_names(history: Sequence[dict], metrics: Sequence[str] | None = None) -> list[str]:
    """The hyperparameter columns: every key but bookkeeping and ``metrics``
    (default :func:`infer_metrics`)."""
    metrics = set(infer_metrics(history) if metrics is None else metrics)
    return [k for k in keys(history) if k not in BOOKKEEPING and k not in metrics
            and k != DIVERGED]


def varies(history: Sequence[dict], name: str) -> bool:
    """Whether column ``name`` takes more than one value in ``history`` (NaN is one value)."""
    return len({hashable(r.get(name)) for r in history}) > 1


def shown_hparams(history: Sequence[dict], metrics: Sequence[str] | None = None,
                  tuned: Sequence[str] = ()) -> list[str]:
    """The hyperparameters views show: the searched ones (``tuned``, in their
    order) that the history holds, then every other that varies. Defaults a
    search never changed (``b2``, ``eps``, ...) are left out.

    Example:
        >>> rows = [{"trial_id": i, "lr": lr, "b2": 0.999, "val_loss": 1.0}
        ...         for i, lr in enumerate((0.1, 0.2))]
        >>> shown_hparams(rows, ("val_loss",)), shown_hparams(rows, ("val_loss",), ("b2",))
        (['lr'], ['b2', 'lr'])
    """
    present = hparam_names(history, metrics)
    names = [n for n in tuned if n in present]
    return names + [n for n in present if n not in names and varies(history, n)]


def origin(row: dict) -> str:
    """``"cloned"`` for a row whose trial was cloned from a parent, else ``"fresh"``."""
    return "cloned" if int(row["parent_id"]) >= 0 else "fresh"


def is_number(v) -> bool:
    """A real number (bools are not)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def finite(v) -> bool:
    """A finite real number."""
    return is_number(v) and math.isfinite(v)


def hashable(v):
    """``v`` made comparable for counting distinct values (NaN equals NaN)."""
    return repr(v) if isinstance(v, float) and math.isnan(v) else v


def fmt(v) -> str:
    """A cell of a table: 4 significant digits for floats, ``-`` for missing."""
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def by_trial(history: Iterable[dict]) -> dict[int, list[dict]]:
    """History rows grouped by ``trial_id`` (ascending), each list in generation order."""
    out: dict[int, list[dict]] = {}
    for r in history:
        out.setdefault(int(r["trial_id"]), []).append(r)
    for rows in out.values():
        rows.sort(key=lambda r: r["generation"])
    return dict(sorted(out.items()))


#: Name parts of metrics that are maximised, and of those minimised.
MAXIMISED = ("accuracy", "acc", "f1", "auc", "r2", "precision", "recall", "score")
MINIMISED = ("loss", "error", "err", "mae", "mse", "rmse", "nll", "perplexity")


def infer_mode(objective: str) -> str:
    """The mode of a metric vtune knows by name: losses and errors "min"; accuracy,
    F1, AUC, R² and the like "max". Any other name needs an explicit mode.

    Example:
        >>> infer_mode("val_f1"), infer_mode("val_loss"), infer_mode("val_r2")
        ('max', 'min', 'max')
    """
    parts = set(objective.lower().replace("-", "_").split("_"))
    up, down = parts & set(MAXIMISED), parts & set(MINIMISED)
    if bool(up) != bool(down):
        return "max" if up else "min"
    raise ValueError(f"mode is required for objective {objective!r}: vtune knows whether to "
                     f"minimise losses and errors or maximise accuracy, F1, AUC and R², but "
                     f"not this name; pass mode='min' or mode='max'")


def check_mode(mode) -> str:
    """``mode`` if it is "min" or "max", else a ValueError naming it."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    return mode


def sign(mode: str) -> float:
    """+1 for "min", -1 for "max": ``sign * value`` is lower-is-better."""
    return 1.0 if check_mode(mode) == "min" else -1.0


def usable(row: dict, objective: str) -> bool:
    """Whether a row can be ranked: not diverged, with a finite objective."""
    return row.get("status") != "diverged" and finite(row.get(objective))


def rank_key(row: dict, objective: str, mode: str) -> tuple[float, float]:
    """Sort key of a usable row, best first: the objective, ties broken by the
    validation loss (a saturated accuracy of 1.0 ranks by how sure it is), then
    order (sorts are stable: earlier first)."""
    tie = row.get("val_loss") if objective != "val_loss" else None
    return sign(mode) * row[objective], tie if finite(tie) else math.inf


def best_row(rows: Iterable[dict], objective: str, mode: str) -> dict | None:
    """The best usable row by :func:`rank_key` (still tied: the first), or None."""
    ranked = [r for r in rows if usable(r, objective)]
    return min(ranked, key=lambda r: rank_key(r, objective, mode)) if ranked else None
