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
from vtune.report.schema import by_trial

#: Finding kinds, in the order the rules are tried (the first that fires wins).
KINDS = ("diverging", "symmetric_init", "stalled", "overfitting", "underfitting", "healthy")

#: Human labels of the kinds.
LABELS = {"diverging": "diverging", "symmetric_init": "symmetric init", "stalled": "stalled",
          "overfitting": "over-fitting", "underfitting": "under-fitting", "healthy": "healthy"}

#: Init schemes that give every hidden unit the same start (vtune.nn.INIT_SCHEMES names).
SYMMETRIC_INITS = ("zeros",)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Every number the diagnosis rules compare against, with its reason.

    Attributes:
      fit_accuracy: train accuracy at or above which a classifier "fits" the
        training data. The seeds call train accuracy "high" or "very low"
        without a number; 0.9 is where a small MLP on a 10-class problem such
        as the bundled digits is clearly learning (chance is 0.1, a good trial
        reaches 1.0). Lower it for tasks whose best reachable accuracy is
        lower. Used by under-fitting (below it), over-fitting (at or above
        it, with a gap), stalled and symmetric init (not fitting).
      overfit_gap: train minus validation accuracy at or above which the gap
        is over-fitting. Healthy digits trials show gaps of 0.01–0.03; the
        seed's over-fitting picture (train high, validation clearly lower) is
        a gap of 0.1 or more.
      train_rise_ratio: a train loss that ends at this multiple of its own
        minimum has climbed back, not wobbled: diverging ("too high a learning
        rate makes the loss suddenly rise"). The train metrics are computed
        on the whole training set in eval mode, so healthy trials on digits
        wobble by less than ~1.2× between evaluations.
      val_rise_ratio: a validation loss that ends at this multiple of its
        minimum while the train loss kept falling is over-fitting ("compare
        the train and validation loss"). Higher than ``train_rise_ratio``
        because a small validation set is noisier: converged digits trials
        wobble by up to ~1.4×.
      min_rise: either climb must also exceed this fraction of the task's loss
        scale (see ``loss_scale_quantile``), so a loss wandering between
        1e-4 and 1e-3 near zero does not count.
      blowup_factor: a finite train loss this many times the task's loss scale
        has exploded even if seen once (an untrained classifier sits near
        the scale; a loss 10× above it is far worse than guessing).
      loss_scale_quantile: the task's loss scale is this quantile of every
        trial's first evaluated train loss: about the loss of the slower,
        barely trained trials (at chance on a wide search), and unmoved while
        fewer than a quarter of the trials blow up.
      stall_tolerance: a train loss whose range over the trial's evaluations
        is below this fraction of its largest value "never moved" ("too small
        a learning rate: the loss does not change for a long time"). Needs at
        least two evaluations.
      stall_loss_fraction: for tasks without accuracy metrics, a flat loss is
        only stalled while above this fraction of the loss scale (a flat loss
        near zero has converged).
      still_improving: a train loss that fell by more than this fraction at the
        last evaluation, with the validation loss within half of it of its
        best, is still improving: the suggestion says to train longer ("if
        the loss is still falling when training ends, the number of epochs is
        too small"; not when validation has turned).
      lr_far: a learning rate this many times above or below the best trial's
        is named as a likely cause in stalled and under-fitting findings (the
        seeds search the learning rate in decades: 0.001, 0.01, 0.1, 1).
    """

    fit_accuracy: float = 0.9
    overfit_gap: float = 0.1
    train_rise_ratio: float = 1.3
    val_rise_ratio: float = 1.5
    min_rise: float = 0.01
    blowup_factor: float = 10.0
    loss_scale_quantile: float = 0.75
    stall_tolerance: float = 0.05
    stall_loss_fraction: float = 0.5
    still_improving: float = 0.1
    lr_far: float = 10.0


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
        hp = ", ".join(f"{k}={schema.fmt(v)}" for k, v in self.hparams.items())
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
        that vary across the history).
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
        skip = {"generation", "slot", "trial_id", "parent_id", "step", "examples_seen",
                "wall_time", "status", objective}
        keys = [k for k in dict.fromkeys(k for r in history for k in r)
                if k not in skip and not k.startswith(("train_loss", "val_", "train_accuracy"))]
        tuned = [k for k in keys if len({repr(r.get(k)) for r in history}) > 1]
    ctx = _context(history, trials, thresholds or Thresholds(), objective, best_trial_id)
    findings = tuple(_diagnose_trial(trials[t], ctx, list(tuned)) for t in ranked)
    return Diagnosis(findings, objective, mode, best_trial_id,
                     _notes(findings, trials, best_trial_id))


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
    ctx = _context(history, trials, thresholds or Thresholds(), objective, best)
    out = {}
    for t, rows in trials.items():
        kinds = [kind for kind, rule in RULES if rule(rows, ctx) is not None]
        out[t] = kinds or ["healthy"]
    return out


def _ranked(trials, objective, mode, best_trial_id):
    """Trial ids best first (by their best finite objective) and the best trial's id."""
    sign = 1.0 if mode == "min" else -1.0

    def score(rows):  # best objective of a trial, sign-adjusted; inf when none is finite
        vals = [sign * r[objective] for r in rows
                if r["status"] != "diverged" and schema.finite(r.get(objective))]
        return min(vals) if vals else math.inf

    ranked = sorted(trials, key=lambda t: (score(trials[t]), t))
    if best_trial_id is None and score(trials[ranked[0]]) < math.inf:
        best_trial_id = ranked[0]
    if best_trial_id is not None and best_trial_id in trials:
        ranked.remove(best_trial_id)
        ranked.insert(0, best_trial_id)
    return ranked, best_trial_id


def _context(history, trials, th, objective, best_trial_id):
    train_key = "train_loss" if any("train_loss" in r for r in history) else objective
    firsts = [rows[0].get(train_key) for rows in trials.values()]
    scale = _quantile([v for v in firsts if schema.finite(v)], th.loss_scale_quantile)
    best_rows = trials.get(best_trial_id, [{}])
    parent = {t: int(rows[0]["parent_id"]) for t, rows in trials.items()}
    roots = {}
    for t in trials:  # where a trial's weights were initialised: its first ancestor
        r, seen = t, {t}
        while parent.get(r, -1) in trials and parent[r] not in seen:
            r = parent[r]
            seen.add(r)
        roots[t] = trials[r][0]
    return _Context(th, scale, train_key, best_rows[-1].get("learning_rate"), roots)


@dataclasses.dataclass(frozen=True)
class _Context:
    th: Thresholds
    scale: float  # the task's loss scale (nan when unknown)
    train_key: str
    best_lr: Any
    roots: dict  # trial id -> first row of the ancestor whose init its weights come from


def _diagnose_trial(rows: list[dict], ctx: _Context, tuned: list[str]) -> Finding:
    last = rows[-1]
    for _, rule in RULES + (("healthy", _healthy),):
        found = rule(rows, ctx)
        if found is not None:
            kind, evidence, suggestion, measures = found
            return Finding(trial_id=int(last["trial_id"]), kind=kind, evidence=evidence,
                           suggestion=suggestion, measures=measures, status=last["status"],
                           step=int(last["step"]), evaluations=len(rows),
                           hparams={k: last[k] for k in tuned if k in last})
    raise AssertionError("the healthy rule always fires")  # pragma: no cover


# --- the rules: each returns (kind, evidence, suggestion, measures) or None --------------

def _diverging(rows, ctx):
    th, key = ctx.th, ctx.train_key
    for r in rows:
        bad = [k for k in (key, "val_loss") if k in r and not schema.finite(r[k])]
        if r["status"] == "diverged" or bad:
            what = f"{_name(bad[0])} is {r[bad[0]]}" if bad else "its metrics became non-finite"
            return ("diverging", f"{what} at step {r['step']} (generation {r['generation']})",
                    _lower_lr(rows[-1]), {"step": float(r["step"])})
    losses = [r[key] for r in rows if schema.finite(r.get(key))]
    if losses and schema.finite(ctx.scale) and max(losses) >= th.blowup_factor * ctx.scale:
        return ("diverging", f"{_name(key)} reached {schema.fmt(max(losses))}, "
                f"{max(losses) / ctx.scale:.0f}× the task's untrained loss level "
                f"{schema.fmt(ctx.scale)}", _lower_lr(rows[-1]),
                {"max_loss": max(losses), "loss_scale": ctx.scale})
    rise = _rise(rows, key, ctx, th.train_rise_ratio)
    if rise is not None:
        lo, hi = rise
        return ("diverging", f"{_name(key)} climbed from {schema.fmt(lo[key])} (step {lo['step']}) "
                f"to {schema.fmt(hi[key])} (step {hi['step']}), {hi[key] / lo[key]:.1f}× its minimum",
                _lower_lr(rows[-1]), {"min_loss": lo[key], "last_loss": hi[key]})
    return None


def _symmetric_init(rows, ctx):
    last = rows[-1]
    root = ctx.roots.get(int(last["trial_id"]), rows[0])  # a clone's weights come from here
    zero = root.get("init") in SYMMETRIC_INITS
    zero_scale = schema.finite(root.get("init_scale")) and root["init_scale"] == 0
    if not (zero or zero_scale) or _fits(last, ctx):
        return None
    how = f"init={root['init']}" if zero else "init_scale=0"
    if root["trial_id"] != last["trial_id"]:
        how += f" (of trial {root['trial_id']}, whose weights it inherited)"
    return ("symmetric_init",
            f"{how}: every hidden unit starts identical and gets the same gradient, so the "
            f"units never differ; {_curve(rows, ctx)}",
            "use he_normal or he_uniform for ReLU networks, xavier_uniform for tanh "
            "(and remove it from the space)", _levels(last, ctx))


def _stalled(rows, ctx):
    th, key = ctx.th, ctx.train_key
    losses = [r[key] for r in rows if schema.finite(r.get(key))]
    if len(losses) < 2 or _fits(rows[-1], ctx):
        return None
    if "train_accuracy" not in rows[-1] and not (
            schema.finite(ctx.scale) and losses[-1] >= th.stall_loss_fraction * ctx.scale):
        return None
    spread = (max(losses) - min(losses)) / max(abs(max(losses)), 1e-12)
    if spread >= th.stall_tolerance:
        return None
    lr = rows[-1].get("learning_rate")
    if schema.finite(lr) and schema.finite(ctx.best_lr) and lr <= ctx.best_lr / th.lr_far:
        advice = f"raise learning_rate (now {schema.fmt(lr)}; the best trial used {schema.fmt(ctx.best_lr)})"
    elif schema.finite(lr) and schema.finite(ctx.best_lr) and lr >= ctx.best_lr * th.lr_far:
        advice = (f"lower learning_rate (now {schema.fmt(lr)}, {lr / ctx.best_lr:.0f}× the best "
                  f"trial's {schema.fmt(ctx.best_lr)}): too large a step can also freeze a ReLU "
                  "network at chance")
    else:
        advice = "try learning rates a decade up and down, and another init"
    return ("stalled", f"{_name(key)} stayed within {spread:.1%} over {len(losses)} "
            f"evaluations ({schema.fmt(losses[0])} -> {schema.fmt(losses[-1])}, steps {rows[0]['step']}–"
            f"{rows[-1]['step']}){_acc_tail(rows[-1])}",
            f"{advice}; if no setting makes the loss move, check the model and the data",
            {"relative_spread": spread, **_levels(rows[-1], ctx)})


def _overfitting(rows, ctx):
    th, last = ctx.th, rows[-1]
    ta, va = last.get("train_accuracy"), last.get("val_accuracy")
    if schema.finite(ta) and schema.finite(va) and ta >= th.fit_accuracy and ta - va >= th.overfit_gap:
        return ("overfitting", f"train accuracy {ta:.3f} vs validation {va:.3f} "
                f"(gap {ta - va:.3f}) at step {last['step']}", _regularise(rows, None),
                {"train_accuracy": ta, "val_accuracy": va, "gap": ta - va})
    rise = _rise(rows, "val_loss", ctx, th.val_rise_ratio)
    if rise is not None and ctx.train_key in last:
        lo, hi = rise
        if schema.finite(hi[ctx.train_key]) and hi[ctx.train_key] <= lo[ctx.train_key]:
            return ("overfitting",
                    f"validation loss climbed from {schema.fmt(lo['val_loss'])} (step {lo['step']}) to "
                    f"{schema.fmt(hi['val_loss'])} (step {hi['step']}, "
                    f"{hi['val_loss'] / lo['val_loss']:.1f}×) "
                    f"while train loss kept falling ({schema.fmt(lo[ctx.train_key])} -> "
                    f"{schema.fmt(hi[ctx.train_key])})", _regularise(rows, lo),
                    {"min_val_loss": lo["val_loss"], "last_val_loss": hi["val_loss"],
                     "train_loss_at_min": lo[ctx.train_key], "last_train_loss": hi[ctx.train_key]})
    return None


def _underfitting(rows, ctx):
    th, last = ctx.th, rows[-1]
    ta, va = last.get("train_accuracy"), last.get("val_accuracy")
    if not schema.finite(ta) or ta >= th.fit_accuracy:
        return None
    vtext = f", validation {va:.3f}" if schema.finite(va) else ""
    changes = ["more capacity (wider or deeper layers)"]
    if schema.finite(last.get("dropout")) and last["dropout"] > 0:
        changes.append(f"less dropout (now {schema.fmt(last['dropout'])})")
    for name in ("weight_decay", "l2"):
        if schema.finite(last.get(name)) and last[name] > 0:
            changes.append(f"less {name} (now {schema.fmt(last[name])} -> {schema.fmt(last[name] / 10)})")
    advice = ", ".join(changes)
    if _improving(rows, ctx):
        advice = "train longer (the loss was still falling) or " + advice
    elif len(rows) == 1:
        advice = f"train longer (judged on one evaluation, at step {last['step']}) or " + advice
    lr = last.get("learning_rate")
    if schema.finite(lr) and schema.finite(ctx.best_lr) and (lr >= ctx.best_lr * th.lr_far
                                                 or lr <= ctx.best_lr / th.lr_far):
        advice = (f"first fix learning_rate: {schema.fmt(lr)} is {_ratio(lr, ctx.best_lr)} the best "
                  f"trial's {schema.fmt(ctx.best_lr)}; then " + advice)
    return ("underfitting", f"train accuracy {ta:.3f} (below {th.fit_accuracy:g}){vtext} "
            f"after {last['step']} steps", advice,
            {"train_accuracy": ta, **({"val_accuracy": va} if schema.finite(va) else {})})


def _healthy(rows, ctx):
    last = rows[-1]
    advice = "train longer: the loss was still falling" if _improving(rows, ctx) else ""
    return ("healthy", _curve(rows, ctx), advice, _levels(last, ctx))


#: The rules in precedence order, as (kind, rule); "healthy" is what is left.
RULES = (("diverging", _diverging), ("symmetric_init", _symmetric_init), ("stalled", _stalled),
         ("overfitting", _overfitting), ("underfitting", _underfitting))


# --- helpers -------------------------------------------------------------------------

def _rise(rows, key, ctx, ratio):
    """(row at the minimum, last row) when ``key`` climbed back from its minimum, else None."""
    th = ctx.th
    seen = [r for r in rows if schema.finite(r.get(key))]
    if len(seen) < 2 or not schema.finite(ctx.scale):
        return None
    lo, hi = min(seen, key=lambda r: r[key]), seen[-1]
    if lo is hi or lo[key] <= 0:
        return None
    if hi[key] >= ratio * lo[key] and hi[key] - lo[key] >= th.min_rise * ctx.scale:
        return lo, hi
    return None


def _fits(row, ctx) -> bool:
    ta = row.get("train_accuracy")
    return schema.finite(ta) and ta >= ctx.th.fit_accuracy


def _improving(rows, ctx) -> bool:
    """Train loss fell by ``still_improving`` at the last evaluation, validation at its best."""
    seen = [r[ctx.train_key] for r in rows if schema.finite(r.get(ctx.train_key))]
    if len(seen) < 2 or seen[-1] >= (1 - ctx.th.still_improving) * seen[-2]:
        return False
    val = [r["val_loss"] for r in rows if schema.finite(r.get("val_loss"))]
    return not val or val[-1] <= min(val) * (1 + ctx.th.still_improving / 2)


def _levels(row, ctx) -> dict[str, float]:
    keys = (ctx.train_key, "val_loss", "train_accuracy", "val_accuracy")
    return {k: row[k] for k in dict.fromkeys(keys) if schema.finite(row.get(k))}


def _acc_tail(row) -> str:
    parts = [f"{n} accuracy {row[k]:.3f}" for n, k in (("train", "train_accuracy"),
                                                       ("validation", "val_accuracy"))
             if schema.finite(row.get(k))]
    return "; " + ", ".join(parts) if parts else ""


def _curve(rows, ctx) -> str:
    last, key = rows[-1], ctx.train_key
    parts = []
    ta, va = last.get("train_accuracy"), last.get("val_accuracy")
    if schema.finite(ta) and schema.finite(va):
        parts.append(f"train accuracy {ta:.3f}, validation {va:.3f} (gap {ta - va:.3f})")
    if schema.finite(rows[0].get(key)) and schema.finite(last.get(key)):
        span = (f"{schema.fmt(rows[0][key])} -> {schema.fmt(last[key])}" if len(rows) > 1
                else schema.fmt(last[key]))
        parts.append(f"{_name(key)} {span}")
    if schema.finite(last.get("val_loss")) and key != "val_loss":
        parts.append(f"validation loss {schema.fmt(last['val_loss'])}")
    text = "; ".join(parts) + f" at step {last['step']}"
    val = [r for r in rows if schema.finite(r.get("val_loss"))]
    low = min(val, key=lambda r: r["val_loss"]) if val else None
    if low is not None and low is not last:
        text += f" (lowest validation loss {schema.fmt(low['val_loss'])} at step {low['step']})"
    return text


def _lower_lr(row) -> str:
    lr = row.get("learning_rate")
    clip = row.get("clip_norm")
    lr_text = (f"lower learning_rate (now {schema.fmt(lr)} -> try {schema.fmt(lr / 10)})" if schema.finite(lr)
               else "lower the learning rate (÷10)")
    clip_text = ("clip gradients (clip_norm 5–15)" if not schema.finite(clip)
                 else f"clip gradients harder (clip_norm now {schema.fmt(clip)})")
    return f"{lr_text} or {clip_text}"


def _regularise(rows, best_val_row) -> str:
    last = rows[-1]
    changes = []
    if schema.finite(last.get("dropout")):
        changes.append(f"more dropout (now {schema.fmt(last['dropout'])}; try 0.3 / 0.5 / 0.7)")
    decays = [n for n in ("weight_decay", "l2") if schema.finite(last.get(n)) and last[n] > 0]
    changes += [f"more {n} (now {schema.fmt(last[n])} -> {schema.fmt(last[n] * 10)})" for n in decays]
    if not decays:
        changes.append("some weight decay or L2")
    changes.append("more training data")
    text = ", ".join(changes)
    if best_val_row is not None:
        text += f"; or stop at step {best_val_row['step']} where validation loss was lowest"
    return text


def _notes(findings, trials, best_trial_id) -> tuple[str, ...]:
    """Search-level remarks: where the learning rates of problem trials lie."""
    def lrs(kind):
        return [trials[f.trial_id][-1].get("learning_rate") for f in findings
                if f.kind == kind and schema.finite(trials[f.trial_id][-1].get("learning_rate"))]

    healthy = lrs("healthy") + lrs("overfitting")
    notes = []
    for kind in ("diverging", "stalled"):
        bad = lrs(kind)
        if not bad:
            continue
        note = (f"learning_rate of {LABELS[kind]} trials: {schema.fmt(min(bad))} … {schema.fmt(max(bad))}")
        if healthy:
            note += (f" (healthy or over-fitting trials: {schema.fmt(min(healthy))} … "
                     f"{schema.fmt(max(healthy))})")
        notes.append(note)
    if notes:
        notes.append("narrow the space toward the healthy range and search it again, "
                     "longer (coarse to fine)")
    return tuple(notes)


def _name(key: str) -> str:
    return key.replace("_", " ")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.0f}×" if a >= b else f"1/{b / a:.0f} of"


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (pos - lo) * (values[hi] - values[lo])
