"""Fit diagnosis: read every trial's train and validation curves the way the seed articles teach.

The project's seed articles (``DESIGN.md``, "Source material") tell people to
plot train and validation accuracy together after every pass over the data
and to read the pair:

* both low -> **under-fitting**: more capacity (layers, units), less dropout,
  less L2; and if the loss is still falling, train longer;
* train high, validation low -> **over-fitting**: more dropout or L2, more
  data, stop earlier; compare train and validation *loss*, not only accuracy;
* a loss that does not move for a long time -> **stalled**: the learning rate
  is off (too small: the loss barely changes) or the init is bad; if no
  setting makes it move, check the model and the data;
* a loss that is NaN, very large or that climbs -> **diverging**: the
  learning rate is too high; lower it (÷10) or clip gradients (norm 5–15);
* all-zero init -> **symmetric init**: every hidden unit of a layer starts
  identical and receives the same gradient, so they never become different;
  use He init for ReLU networks, Xavier for tanh;
* none of these -> **healthy**.

Each trial gets exactly one finding, the first rule that fires in the order of
:data:`KINDS` (a NaN explains a flat accuracy; a zero init explains a flat
loss). The numbers the rules compare against are the fields of
:class:`Thresholds`, each with its reason; pass your own to
:func:`diagnose` / :meth:`vtune.SearchResult.diagnose`.

Example:
    >>> rows = [{"generation": g, "slot": 0, "trial_id": 0, "parent_id": -1,
    ...          "step": 100 * (g + 1), "status": "alive", "learning_rate": 0.01,
    ...          "train_loss": tl, "val_loss": vl, "train_accuracy": ta, "val_accuracy": va}
    ...         for g, (tl, vl, ta, va) in enumerate([(0.6, 0.7, 0.90, 0.80),
    ...                                               (0.1, 0.9, 1.00, 0.78)])]
    >>> d = diagnose(rows, "val_loss", "min")
    >>> d.findings[0].kind
    'overfitting'
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

from vtune.report import schema
from vtune.report.schema import fmt
from vtune.report.fit_rules import (KINDS, LABELS, RULES, Context, Thresholds, context, healthy,
                                    notes)
from vtune.report.schema import by_trial

@dataclasses.dataclass(frozen=True)
class Finding:
    """What the curves of one trial show.

    Attributes:
      trial_id: the trial.
      kind: one of :data:`KINDS`.
      evidence: the observation, with the numbers it rests on.
      suggestion: the change to try (empty when there is nothing to change).
      measures: the numbers the rule used, by name.
      status: the trial's status at its last evaluation.
      step: training steps at its last evaluation.
      evaluations: how many times it was evaluated.
      hparams: its searched hyperparameters (all when the search's are unknown).
    """

    trial_id: int
    kind: str
    evidence: str
    suggestion: str
    measures: dict[str, float]
    status: str
    step: int
    evaluations: int
    hparams: dict[str, Any]

    def text(self) -> str:
        hp = ", ".join(f"{k}={fmt(v)}" for k, v in self.hparams.items())
        head = f"trial {self.trial_id} ({hp})" if hp else f"trial {self.trial_id}"
        line = f"{head}: {LABELS[self.kind]}: {self.evidence}"
        return line + (f"\n    -> {self.suggestion}" if self.suggestion else "")


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """Findings for every trial of a search, best trial first.

    ``str(diagnosis)`` is :meth:`text`; iterate for the :class:`Finding` s.
    """

    findings: tuple[Finding, ...]
    objective: str
    mode: str
    best_trial_id: int | None
    notes: tuple[str, ...] = ()

    def __iter__(self):
        return iter(self.findings)

    def __len__(self):
        return len(self.findings)

    def __str__(self):
        return self.text()

    def counts(self) -> dict[str, int]:
        """Trials per kind, every kind present (zeros included), in :data:`KINDS` order."""
        return {k: sum(f.kind == k for f in self.findings) for k in KINDS}

    def of_kind(self, kind: str) -> list[Finding]:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; kinds are {KINDS}")
        return [f for f in self.findings if f.kind == kind]

    def for_trial(self, trial_id: int) -> Finding:
        for f in self.findings:
            if f.trial_id == trial_id:
                return f
        raise KeyError(f"trial {trial_id} is not in the diagnosis")

    def to_dicts(self) -> list[dict[str, Any]]:
        """The findings as plain dicts (JSON-able), best trial first."""
        return [dataclasses.asdict(f) for f in self.findings]

    def text(self, examples: int = 3) -> str:
        """Readable text: counts per kind, the best trial, then up to ``examples`` per kind."""
        better = "lower" if self.mode == "min" else "higher"
        counts = self.counts()
        lines = [f"Fit diagnosis of {len(self.findings)} trials ({self.objective}, {better} "
                 "is better)",
                 "  " + " · ".join(f"{LABELS[k]} {n}" for k, n in counts.items())]
        if self.best_trial_id is not None:
            lines += ["", "Best " + self.for_trial(self.best_trial_id).text()]
        for kind in KINDS:
            found = [f for f in self.findings
                     if f.kind == kind and f.trial_id != self.best_trial_id]
            if not found:
                continue
            lines += ["", f"{LABELS[kind]} ({counts[kind]} trial{'s' * (counts[kind] != 1)})"]
            for f in found[:examples]:
                lines.append("  " + f.text().replace("\n", "\n  "))
            if len(found) > examples:
                rest = ", ".join(str(f.trial_id) for f in found[examples:examples + 12])
                more = ", ..." if len(found) > examples + 12 else ""
                lines.append(f"  ... and {len(found) - examples} more: trials {rest}{more}")
        if self.notes:
            lines += ["", "Across the search"] + [f"  {n}" for n in self.notes]
        return "\n".join(lines)


def diagnose(history: Iterable[dict], objective: str = "val_loss", mode: str = "min",
             thresholds: Thresholds | None = None, *, tuned: Iterable[str] | None = None,
             best_trial_id: int | None = None) -> Diagnosis:
    """Diagnoses every trial of a search history (rows as in :class:`vtune.SearchResult`).

    Args:
      history: rows with ``trial_id``, ``generation``, ``step``, ``status``,
        hyperparameters and metrics. The rules read ``train_loss`` (else the
        objective), ``val_loss``, ``train_accuracy`` and ``val_accuracy``
        when present, and the ``learning_rate``, ``dropout``,
        ``weight_decay``, ``l2``, ``init`` and ``init_scale`` hyperparameters
        when present.
      objective, mode: how trials rank ("min" or "max"); orders the findings.
      thresholds: the rule constants (default :class:`Thresholds`).
      tuned: hyperparameter names to show with each finding (default: those
        that vary across the history, :func:`vtune.report.schema.shown_hparams`;
        :meth:`vtune.SearchResult.diagnose` passes the searched ones).
      best_trial_id: the trial to put first (default: the best by objective).

    Returns:
      A :class:`Diagnosis` with one :class:`Finding` per trial.
    """
    history = list(history)
    trials = by_trial(history)
    if not trials:
        return Diagnosis((), objective, mode, None)
    ranked, best_trial_id = _ranked(trials, objective, mode, best_trial_id)
    if tuned is None:
        metrics = set(schema.infer_metrics(history, objective))
        tuned = schema.shown_hparams(history, metrics)
    ctx = context(history, trials, thresholds or Thresholds(), objective, best_trial_id)
    findings = tuple(_diagnose_trial(trials[t], ctx, list(tuned)) for t in ranked)
    return Diagnosis(findings, objective, mode, best_trial_id,
                     notes(findings, trials, best_trial_id))


def fired(history: Iterable[dict], objective: str = "val_loss", mode: str = "min",
          thresholds: Thresholds | None = None) -> dict[int, list[str]]:
    """Every rule that fires for each trial, before precedence keeps the first.

    :func:`diagnose` reports one kind per trial; this shows what else the
    curves matched (a zero-init trial is also flat and under-fit, for
    instance), to debug a diagnosis or tune :class:`Thresholds`.

    Returns:
      ``{trial_id: [kinds in KINDS order]}``; ``"healthy"`` only when no
      other rule fires.
    """
    history = list(history)
    trials = by_trial(history)
    if not trials:
        return {}
    _, best = _ranked(trials, objective, mode, None)
    ctx = context(history, trials, thresholds or Thresholds(), objective, best)
    out = {}
    for t, rows in trials.items():
        kinds = [kind for kind, rule in RULES if rule(rows, ctx) is not None]
        out[t] = kinds or ["healthy"]
    return out


def _ranked(trials, objective, mode, best_trial_id):
    """Trial ids best first (by their best finite objective) and the best trial's id."""
    def score(rows):  # best objective of a trial, sign-adjusted; inf when none is finite
        top = schema.best_row(rows, objective, mode)
        return math.inf if top is None else schema.sign(mode) * top[objective]

    ranked = sorted(trials, key=lambda t: (score(trials[t]), t))
    if best_trial_id is None and score(trials[ranked[0]]) < math.inf:
        best_trial_id = ranked[0]
    if best_trial_id is not None and best_trial_id in trials:
        ranked.remove(best_trial_id)
        ranked.insert(0, best_trial_id)
    return ranked, best_trial_id


def _diagnose_trial(rows: list[dict], ctx: Context, tuned: list[str]) -> Finding:
    last = rows[-1]
    for _, rule in RULES + (("healthy", healthy),):
        found = rule(rows, ctx)
        if found is not None:
            kind, evidence, suggestion, measures = found
            return Finding(trial_id=int(last["trial_id"]), kind=kind, evidence=evidence,
                           suggestion=suggestion, measures=measures, status=last["status"],
                           step=int(last["step"]), evaluations=len(rows),
                           hparams={k: last[k] for k in tuned if k in last})
    raise AssertionError("the healthy rule always fires")  # pragma: no cover


# --- the rules: each returns (kind, evidence, suggestion, measures) or None --------------
