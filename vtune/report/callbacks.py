"""Per-generation callbacks: what ``population_search(..., callbacks=[...])`` calls.

After every generation (and its checkpoint), the driver calls each callback on the
host with a :class:`Generation`: the rows that generation added to the history
and the best trial so far. Use it for live logging, dashboards or early stops of
your own; :func:`jsonl` is a built-in that appends every row to a JSON-lines file.

Example:
    >>> seen = []
    >>> task = vtune.tasks.mlp_classifier(vtune.datasets.synthetic(), hidden_sizes=(8,))
    >>> _ = vtune.population_search(task, {"learning_rate": vtune.loguniform(1e-3, 1e-1)},
    ...     population_size=4, generations=2, steps_per_generation=5, verbose=False,
    ...     callbacks=[lambda g: seen.append((g.generation, len(g.rows)))])
    >>> seen
    [(1, 4), (2, 4)]
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable, NamedTuple

from vtune.report import codec


class Generation(NamedTuple):
    """What a callback receives after each generation.

    Attributes:
      generation: generations completed (1 after the first).
      generations: the search's total.
      rows: the history rows this generation added (one per slot; copies).
      best: the best trial so far (a :class:`vtune.Trial` without params), or None.
      objective, mode: what the search optimises.
      space: the searched :class:`vtune.Space` (None when not known).
      metrics: the task's metric names, as in :attr:`vtune.SearchResult.metrics`.
    """

    generation: int
    generations: int
    rows: list[dict[str, Any]]
    best: Any
    objective: str
    mode: str
    space: Any = None
    metrics: tuple[str, ...] = ()


Callback = Callable[[Generation], Any]


def jsonl(path) -> Callback:
    """A callback appending each history row to ``path`` as one JSON line (strict JSON).

    Rows carry ``generation``, ids, status, hyperparameters and metrics, as in
    :attr:`vtune.SearchResult.history`; non-finite floats are ``"NaN"`` etc.
    """
    path = pathlib.Path(path)

    def write(g: Generation) -> None:
        with path.open("a") as f:
            for row in g.rows:
                f.write(codec.dumps(row) + "\n")

    return write
