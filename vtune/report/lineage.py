"""Lineage: the path a trial actually took through a population search.

A PBT winner is rarely one configuration trained from scratch: it is a chain
of clones, each continuing its parent's params under perturbed
hyperparameters. :func:`lineage` follows ``parent_id`` from a trial back to
the trial sampled fresh at the root and returns, oldest first, the history
rows of that chain — the ancestor's rows up to the generation it was cloned
at, then the child's — each with the hyperparameter changes since the row
before, so the schedule the trial followed can be read or plotted directly.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

from vtune.report.schema import hparam_names

def lineage(history: Sequence[Mapping[str, Any]], trial_id: int,
            names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The rows of ``trial_id`` and its ancestors, oldest first.

    Args:
      history: the rows of :attr:`vtune.SearchResult.history` (each with
        ``generation``, ``trial_id``, ``parent_id`` and the hyperparameters).
      trial_id: the trial whose path to follow, e.g. ``result.best.trial_id``.
      names: the hyperparameter names to compare, e.g.
        ``result.hparam_names``; default :func:`vtune.report.schema.hparam_names`
        with the metrics inferred from their names (pass ``names`` for a
        history whose metrics do not end in loss/accuracy/error).

    Returns:
      One row (a copy) per generation of the chain: the root trial's rows up
      to the generation its child was cloned at, then the child's, and so on
      to ``trial_id``'s last row. Every row gains ``cloned_at``, the
      generation after which its trial was cloned from ``parent_id`` (-1 for
      a trial sampled fresh), and ``changes``, ``{name: (old, new)}`` for each
      hyperparameter that differs from the row before (empty for the first).

    Raises:
      ValueError: ``trial_id`` or one of its ancestors is not in the history.

    Example:
        >>> history = [
        ...     {"generation": 0, "slot": 0, "trial_id": 0, "parent_id": -1, "lr": 0.1},
        ...     {"generation": 0, "slot": 1, "trial_id": 1, "parent_id": -1, "lr": 0.5},
        ...     {"generation": 1, "slot": 0, "trial_id": 0, "parent_id": -1, "lr": 0.1},
        ...     {"generation": 1, "slot": 1, "trial_id": 2, "parent_id": 0, "lr": 0.12}]
        >>> [(r["trial_id"], r["cloned_at"], r["changes"]) for r in lineage(history, 2)]
        [(0, -1, {}), (2, 0, {'lr': (0.1, 0.12)})]
    """
    by_trial: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for row in history:
        by_trial[int(row["trial_id"])].append(row)
    names = hparam_names(history) if names is None else list(names)
    chain, t = [], int(trial_id)
    while True:
        if t not in by_trial:
            what = "trial" if not chain else f"ancestor (parent of trial {chain[-1]})"
            raise ValueError(f"lineage: {what} {t} is not in the history")
        if t in chain:
            raise ValueError(f"lineage: the parent chain of trial {trial_id} loops at {t}")
        chain.append(t)
        rows = sorted(by_trial[t], key=lambda r: r["generation"])
        parent = int(rows[0].get("parent_id", -1))
        if parent < 0:
            break
        t = parent
    chain.reverse()

    out: list[dict[str, Any]] = []
    for k, t in enumerate(chain):
        rows = sorted(by_trial[t], key=lambda r: r["generation"])
        start = rows[0]["generation"]
        cloned_at = start - 1 if int(rows[0].get("parent_id", -1)) >= 0 else -1
        if k + 1 < len(chain):
            child_start = min(r["generation"] for r in by_trial[chain[k + 1]])
            rows = [r for r in rows if r["generation"] < child_start]
        for r in rows:
            prev = out[-1] if out else None
            row = dict(r)
            row["cloned_at"] = cloned_at
            row["changes"] = {} if prev is None else {
                n: (prev[n], r[n]) for n in names
                if n in r and n in prev and not _same(prev[n], r[n])}
            out.append(row)
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
