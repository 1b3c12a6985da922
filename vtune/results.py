"""What a search returns: the best trial and the per-generation history."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial at one evaluation.

    Attributes:
      trial_id: the trial's id (its keys derive from it).
      hparams: hyperparameter values, as in the space (strings for choices).
      metrics: the task's metrics at this evaluation.
      generation: the generation it was evaluated at.
      step: training steps the trial had taken.
      params: its parameters as an unbatched pytree on the host (for NNX
        tasks an ``nnx.State`` to load with ``nnx.update(model, params)``).
      encoded_hparams: the values as the model receives them (numpy scalars,
        strings as int codes), to rebuild the model:
        ``model = Net(trial.encoded_hparams, nnx.Rngs(0))``.
    """

    trial_id: int
    hparams: dict[str, Any]
    metrics: dict[str, float]
    generation: int
    step: int
    params: Any = None
    encoded_hparams: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The outcome of :func:`vtune.population_search`.

    Attributes:
      best: the best non-diverged trial over the whole search.
      history: one row (a dict) per generation and slot: ``generation``,
        ``slot``, ``trial_id``, ``parent_id`` (-1 for a trial sampled fresh),
        ``step``, ``status`` (alive | pruned | diverged), every hyperparameter
        and every metric.
      objective: the metric optimised; mode: "min" or "max".
      tuned: the names of the searched hyperparameters (the space's).
    """

    best: Trial | None
    history: list[dict[str, Any]]
    objective: str
    mode: str
    tuned: tuple[str, ...] = ()

    def to_pandas(self):
        """The history as a ``pandas.DataFrame`` (needs the ``plots`` extra)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("to_pandas needs pandas: pip install 'vtune[plots]'") from e
        return pd.DataFrame(self.history)

    def summary(self) -> str:
        """A few readable lines: the best configuration and its metrics."""
        if self.best is None:
            return "no trial finished without diverging"
        b = self.best
        hp = ", ".join(f"{k}={_fmt(b.hparams[k])}" for k in (self.tuned or sorted(b.hparams)))
        m = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(b.metrics.items()) if k != "diverged")
        return (f"best trial {b.trial_id} (generation {b.generation}, step {b.step}): "
                f"{self.objective}={_fmt(b.metrics[self.objective])}\n  hparams: {hp}\n"
                f"  metrics: {m}")


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
