"""The fit-diagnosis rules: each reads one trial's curves and returns a finding or None.

:mod:`vtune.report.diagnose` applies them in order (the first that fires wins)
and words the result; the numbers they compare against are :class:`Thresholds`.

Example:
    >>> rows = [{"trial_id": 0, "parent_id": -1, "step": 100, "train_loss": 2.3, "val_loss": 2.3}]
    >>> ctx = context(rows, {0: rows}, Thresholds(), "val_loss", 0)
    >>> ctx.train_key
    'train_loss'
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from vtune.report.schema import finite, fmt

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
      min_rise: a validation climb (over-fitting) must also exceed this
        fraction of the task's loss scale (see ``loss_scale_quantile``), so a
        loss wandering between 1e-4 and 1e-3 near zero does not count.
      diverge_min_rise: a train climb must exceed this fraction of the loss
        scale to be diverging: the absolute floor. A train loss that wobbles
        up near zero (7e-9 to 0.13, or 8e-5 to 1.4e-3 at train accuracy 1.0,
        against an untrained loss near 2.3 on digits) is noise of small
        batches, not a learning rate that is too high; one that gives back a
        tenth of the untrained loss is.
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
    diverge_min_rise: float = 0.1
    blowup_factor: float = 10.0
    loss_scale_quantile: float = 0.75
    stall_tolerance: float = 0.05
    stall_loss_fraction: float = 0.5
    still_improving: float = 0.1
    lr_far: float = 10.0


def context(history, trials, th, objective, best_trial_id):
    """What the rules share about a search: its loss scale, train key, best learning rate."""
    train_key = "train_loss" if any("train_loss" in r for r in history) else objective
    firsts = [rows[0].get(train_key) for rows in trials.values()]
    scale = quantile([v for v in firsts if finite(v)], th.loss_scale_quantile)
    best_rows = trials.get(best_trial_id, [{}])
    parent = {t: int(rows[0]["parent_id"]) for t, rows in trials.items()}
    roots = {}
    for t in trials:  # where a trial's weights were initialised: its first ancestor
        r, seen = t, {t}
        while parent.get(r, -1) in trials and parent[r] not in seen:
            r = parent[r]
            seen.add(r)
        roots[t] = trials[r][0]
    return Context(th, scale, train_key, best_rows[-1].get("learning_rate"), roots)


@dataclasses.dataclass(frozen=True)
class Context:
    """The search-wide facts each rule reads (see :func:`context`)."""

    th: Thresholds
    scale: float  # the task's loss scale (nan when unknown)
    train_key: str
    best_lr: Any
    roots: dict  # trial id -> first row of the ancestor whose init its weights come from



def _diverging(rows, ctx):
    th, key = ctx.th, ctx.train_key
    for r in rows:
        bad = [k for k in (key, "val_loss") if k in r and not finite(r[k])]
        if r["status"] == "diverged" or bad:
            what = f"{_name(bad[0])} is {r[bad[0]]}" if bad else "its metrics became non-finite"
            return ("diverging", f"{what} at step {r['step']} (generation {r['generation']})",
                    _lower_lr(rows[-1]), {"step": float(r["step"])})
    losses = [r[key] for r in rows if finite(r.get(key))]
    if losses and finite(ctx.scale) and max(losses) >= th.blowup_factor * ctx.scale:
        return ("diverging", f"{_name(key)} reached {fmt(max(losses))}, "
                f"{max(losses) / ctx.scale:.0f}× the task's untrained loss level "
                f"{fmt(ctx.scale)}", _lower_lr(rows[-1]),
                {"max_loss": max(losses), "loss_scale": ctx.scale})
    rise = _rise(rows, key, ctx, th.train_rise_ratio, th.diverge_min_rise)
    if rise is not None:
        lo, hi = rise
        return ("diverging", f"{_name(key)} climbed from {fmt(lo[key])} (step {lo['step']}) "
                f"to {fmt(hi[key])} (step {hi['step']}), {hi[key] / lo[key]:.1f}× its minimum",
                _lower_lr(rows[-1]), {"min_loss": lo[key], "last_loss": hi[key]})
    return None


def _symmetric_init(rows, ctx):
    last = rows[-1]
    root = ctx.roots.get(int(last["trial_id"]), rows[0])  # a clone's weights come from here
    zero = root.get("init") in SYMMETRIC_INITS
    zero_scale = finite(root.get("init_scale")) and root["init_scale"] == 0
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
    losses = [r[key] for r in rows if finite(r.get(key))]
    if len(losses) < 2 or _fits(rows[-1], ctx):
        return None
    if "train_accuracy" not in rows[-1] and not (
            finite(ctx.scale) and losses[-1] >= th.stall_loss_fraction * ctx.scale):
        return None
    spread = (max(losses) - min(losses)) / max(abs(max(losses)), 1e-12)
    if spread >= th.stall_tolerance:
        return None
    lr = rows[-1].get("learning_rate")
    if finite(lr) and finite(ctx.best_lr) and lr <= ctx.best_lr / th.lr_far:
        advice = f"raise learning_rate (now {fmt(lr)}; the best trial used {fmt(ctx.best_lr)})"
    elif finite(lr) and finite(ctx.best_lr) and lr >= ctx.best_lr * th.lr_far:
        advice = (f"lower learning_rate (now {fmt(lr)}, {lr / ctx.best_lr:.0f}× the best "
                  f"trial's {fmt(ctx.best_lr)}): too large a step can also freeze a ReLU "
                  "network at chance")
    else:
        advice = "try learning rates a decade up and down, and another init"
    return ("stalled", f"{_name(key)} stayed within {spread:.1%} over {len(losses)} "
            f"evaluations ({fmt(losses[0])} -> {fmt(losses[-1])}, steps {rows[0]['step']}–"
            f"{rows[-1]['step']}){_acc_tail(rows[-1])}",
            f"{advice}; if no setting makes the loss move, check the model and the data",
            {"relative_spread": spread, **_levels(rows[-1], ctx)})


def _overfitting(rows, ctx):
    th, last = ctx.th, rows[-1]
    ta, va = last.get("train_accuracy"), last.get("val_accuracy")
    if finite(ta) and finite(va) and ta >= th.fit_accuracy and ta - va >= th.overfit_gap:
        return ("overfitting", f"train accuracy {ta:.3f} vs validation {va:.3f} "
                f"(gap {ta - va:.3f}) at step {last['step']}", _regularise(rows, None),
                {"train_accuracy": ta, "val_accuracy": va, "gap": ta - va})
    rise = _rise(rows, "val_loss", ctx, th.val_rise_ratio, th.min_rise)
    if rise is not None and ctx.train_key in last:
        lo, hi = rise
        if finite(hi[ctx.train_key]) and hi[ctx.train_key] <= lo[ctx.train_key]:
            return ("overfitting",
                    f"validation loss climbed from {fmt(lo['val_loss'])} (step {lo['step']}) to "
                    f"{fmt(hi['val_loss'])} (step {hi['step']}, "
                    f"{hi['val_loss'] / lo['val_loss']:.1f}×) "
                    f"while train loss kept falling ({fmt(lo[ctx.train_key])} -> "
                    f"{fmt(hi[ctx.train_key])})", _regularise(rows, lo),
                    {"min_val_loss": lo["val_loss"], "last_val_loss": hi["val_loss"],
                     "train_loss_at_min": lo[ctx.train_key], "last_train_loss": hi[ctx.train_key]})
    return None


def _underfitting(rows, ctx):
    th, last = ctx.th, rows[-1]
    ta, va = last.get("train_accuracy"), last.get("val_accuracy")
    if not finite(ta) or ta >= th.fit_accuracy:
        return None
    vtext = f", validation {va:.3f}" if finite(va) else ""
    changes = ["more capacity (wider or deeper layers)"]
    if finite(last.get("dropout")) and last["dropout"] > 0:
        changes.append(f"less dropout (now {fmt(last['dropout'])})")
    for name in ("weight_decay", "l2"):
        if finite(last.get(name)) and last[name] > 0:
            changes.append(f"less {name} (now {fmt(last[name])} -> {fmt(last[name] / 10)})")
    advice = ", ".join(changes)
    if _improving(rows, ctx):
        advice = "train longer (the loss was still falling) or " + advice
    elif len(rows) == 1:
        advice = f"train longer (judged on one evaluation, at step {last['step']}) or " + advice
    lr = last.get("learning_rate")
    if finite(lr) and finite(ctx.best_lr) and (lr >= ctx.best_lr * th.lr_far
                                                 or lr <= ctx.best_lr / th.lr_far):
        advice = (f"first fix learning_rate: {fmt(lr)} is {_ratio(lr, ctx.best_lr)} the best "
                  f"trial's {fmt(ctx.best_lr)}; then " + advice)
    return ("underfitting", f"train accuracy {ta:.3f} (below {th.fit_accuracy:g}){vtext} "
            f"after {last['step']} steps", advice,
            {"train_accuracy": ta, **({"val_accuracy": va} if finite(va) else {})})


def healthy(rows, ctx):
    last = rows[-1]
    advice = "train longer: the loss was still falling" if _improving(rows, ctx) else ""
    return ("healthy", _curve(rows, ctx), advice, _levels(last, ctx))


#: The rules in precedence order, as (kind, rule); "healthy" is what is left.
RULES = (("diverging", _diverging), ("symmetric_init", _symmetric_init), ("stalled", _stalled),
         ("overfitting", _overfitting), ("underfitting", _underfitting))


# --- helpers -------------------------------------------------------------------------

def _rise(rows, key, ctx, ratio, floor):
    """(row at the minimum, last row) when ``key`` climbed back from its minimum by ``ratio``
    times and by at least ``floor`` times the loss scale, else None."""
    seen = [r for r in rows if finite(r.get(key))]
    if len(seen) < 2 or not finite(ctx.scale):
        return None
    lo, hi = min(seen, key=lambda r: r[key]), seen[-1]
    if lo is hi or lo[key] <= 0:
        return None
    if hi[key] >= ratio * lo[key] and hi[key] - lo[key] >= floor * ctx.scale:
        return lo, hi
    return None


def _fits(row, ctx) -> bool:
    ta = row.get("train_accuracy")
    return finite(ta) and ta >= ctx.th.fit_accuracy


def _improving(rows, ctx) -> bool:
    """Train loss fell by ``still_improving`` at the last evaluation, validation at its best."""
    seen = [r[ctx.train_key] for r in rows if finite(r.get(ctx.train_key))]
    if len(seen) < 2 or seen[-1] >= (1 - ctx.th.still_improving) * seen[-2]:
        return False
    val = [r["val_loss"] for r in rows if finite(r.get("val_loss"))]
    return not val or val[-1] <= min(val) * (1 + ctx.th.still_improving / 2)


def _levels(row, ctx) -> dict[str, float]:
    keys = (ctx.train_key, "val_loss", "train_accuracy", "val_accuracy")
    return {k: row[k] for k in dict.fromkeys(keys) if finite(row.get(k))}


def _acc_tail(row) -> str:
    parts = [f"{n} accuracy {row[k]:.3f}" for n, k in (("train", "train_accuracy"),
                                                       ("validation", "val_accuracy"))
             if finite(row.get(k))]
    return "; " + ", ".join(parts) if parts else ""


def _curve(rows, ctx) -> str:
    last, key = rows[-1], ctx.train_key
    parts = []
    ta, va = last.get("train_accuracy"), last.get("val_accuracy")
    if finite(ta) and finite(va):
        parts.append(f"train accuracy {ta:.3f}, validation {va:.3f} (gap {ta - va:.3f})")
    if finite(rows[0].get(key)) and finite(last.get(key)):
        span = (f"{fmt(rows[0][key])} -> {fmt(last[key])}" if len(rows) > 1
                else fmt(last[key]))
        parts.append(f"{_name(key)} {span}")
    if finite(last.get("val_loss")) and key != "val_loss":
        parts.append(f"validation loss {fmt(last['val_loss'])}")
    text = "; ".join(parts) + f" at step {last['step']}"
    val = [r for r in rows if finite(r.get("val_loss"))]
    low = min(val, key=lambda r: r["val_loss"]) if val else None
    if low is not None and low is not last:
        text += f" (lowest validation loss {fmt(low['val_loss'])} at step {low['step']})"
    return text


def _lower_lr(row) -> str:
    lr = row.get("learning_rate")
    clip = row.get("clip_norm")
    lr_text = (f"lower learning_rate (now {fmt(lr)} -> try {fmt(lr / 10)})" if finite(lr)
               else "lower the learning rate (÷10)")
    clip_text = ("clip gradients (clip_norm 5–15)" if not finite(clip)
                 else f"clip gradients harder (clip_norm now {fmt(clip)})")
    return f"{lr_text} or {clip_text}"


def _regularise(rows, best_val_row) -> str:
    last = rows[-1]
    changes = []
    if finite(last.get("dropout")):
        higher = [d for d in (0.3, 0.5, 0.7) if d > last["dropout"] + 0.05]
        if higher:  # the seed's dropout ladder, above the current value only
            changes.append(f"more dropout (now {fmt(last['dropout'])}; try "
                           + " / ".join(map(str, higher)) + ")")
    decays = [n for n in ("weight_decay", "l2") if finite(last.get(n)) and last[n] > 0]
    changes += [f"more {n} (now {fmt(last[n])} -> {fmt(last[n] * 10)})" for n in decays]
    if not decays:
        changes.append("some weight decay or L2")
    changes.append("more training data")
    text = ", ".join(changes)
    if best_val_row is not None:
        text += f"; or stop at step {best_val_row['step']} where validation loss was lowest"
    return text


def notes(findings, trials, best_trial_id) -> tuple[str, ...]:
    """Search-level remarks: where the learning rates of problem trials lie."""
    def lrs(kind):
        return [trials[f.trial_id][-1].get("learning_rate") for f in findings
                if f.kind == kind and finite(trials[f.trial_id][-1].get("learning_rate"))]

    healthy = lrs("healthy") + lrs("overfitting")
    notes, outside = [], False
    for kind in ("diverging", "stalled"):
        bad = lrs(kind)
        if not bad:
            continue
        note = (f"learning_rate of {LABELS[kind]} trials: {fmt(min(bad))} … {fmt(max(bad))}")
        if healthy:
            note += (f" (healthy or over-fitting trials: {fmt(min(healthy))} … "
                     f"{fmt(max(healthy))})")
            outside |= any(not min(healthy) <= v <= max(healthy) for v in bad)
        notes.append(note)
    if outside:
        notes.append("narrow the space toward the healthy range and search it again, "
                     "longer (coarse to fine)")
    elif notes and healthy:
        notes.append("the problem trials' learning rates lie inside the healthy range: "
                     "narrowing it would not remove them; look at their other settings")
    return tuple(notes)


def _name(key: str) -> str:
    return key.replace("_", " ")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.0f}×" if a >= b else f"1/{b / a:.0f} of"


def quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (pos - lo) * (values[hi] - values[lo])
