"""Figures of a search, saved as PNG (matplotlib, from the ``plots`` extra; no display needed).

Four figures, each a function of a :class:`vtune.SearchResult` that returns a
``matplotlib.figure.Figure`` (built without ``pyplot``, so nothing opens a
window or changes your backend):

* :func:`learning_curves`: train (dashed) and validation (solid) curves of
  every trial, one panel per metric pair; the best trial highlighted, pruned
  trials faded, divergence marked;
* :func:`objective_vs_hparams`: each trial's best objective against each
  hyperparameter that varied (log axes for log-scale dimensions, categorical
  ones as jittered strips), coloured by the steps the trial trained;
* :func:`optimization_history`: best-so-far against compute (trial-steps)
  and against wall time;
* :func:`lineage`: the winning trial's ancestry (clones, for PBT-style
  strategies) and the schedule of its hyperparameters, over the population's.

:func:`save_all` (what ``result.plot(out_dir)`` calls) writes all four.

Example:
    >>> rows = [{"generation": g, "slot": 0, "trial_id": 0, "parent_id": -1, "step": 10 * g,
    ...          "status": "alive", "learning_rate": 0.1, "train_loss": 1.0 / (g + 1),
    ...          "val_loss": 1.2 / (g + 1)} for g in range(1, 4)]
    >>> result = vtune.SearchResult(best=None, history=rows, objective="val_loss", mode="min")
    >>> learning_curves(result).axes[0].get_title()
    'loss: train (dashed, □) vs validation (solid, ●)'
"""

from __future__ import annotations

import collections
import math
import pathlib

import numpy as np

from vtune.report.axes import (ALIVE, BEST, DIVERGED, PRUNED, categories, figure, integer_ticks,
                               is_integer, is_log_scale, positions, status_handles, zoom)
from vtune.report.schema import best_row, by_trial, finite

#: The figures :func:`save_all` writes, as ``<name>.png``.
FIGURES = ("learning_curves", "objective_vs_hparams", "optimization_history", "lineage")

_MAX_PANELS = 12


def save_all(result, out_dir, *, dpi: int = 110) -> dict[str, pathlib.Path]:
    """Writes the figures of :data:`FIGURES` as ``out_dir/<name>.png``; returns their paths.

    ``lineage`` only when the best trial has ancestors (a trial sampled fresh
    and never cloned has constant hyperparameters: nothing to draw).
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    best = result.best.trial_id if result.best is not None else _best_id(result)
    cloned = best is not None and len(_segments(result, best)) > 1
    for name in FIGURES:
        if name == "lineage" and not cloned:
            continue
        fig = globals()[name](result)
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=dpi)
    return paths


# --- learning curves -------------------------------------------------------------------

def learning_curves(result):
    """Train vs validation curves of every trial against its training steps.

    One panel per metric reported for both splits (``train_loss``/``val_loss``,
    ``train_accuracy``/``val_accuracy``, ...). Losses use a log axis. A cloned
    trial's curve starts from its parent's last point; a trial evaluated once is
    two markers (train an open square, validation a filled disc), not a line.
    """
    pairs = _metric_pairs(result)
    fig = figure(6.2 * len(pairs), 4.6)
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    trials = by_trial(result.history)
    final_gen = max(r["generation"] for r in result.history)
    best = result.best.trial_id if result.best is not None else _best_id(result)
    keyed = {(r["trial_id"], r["generation"]): r for r in result.history}

    def style(tid, rows):
        if tid == best:
            return dict(color=BEST, lw=2.2, alpha=1.0, zorder=5)
        if any(r["status"] == "diverged" for r in rows):
            return dict(color=DIVERGED, lw=1.0, alpha=0.6, zorder=3)
        if rows[-1]["generation"] == final_gen and rows[-1]["status"] == "alive":
            return dict(color=ALIVE, lw=1.0, alpha=0.6, zorder=4)
        return dict(color=PRUNED, lw=0.8, alpha=0.22, zorder=2)

    order = sorted(trials, key=lambda t: style(t, trials[t])["zorder"])
    for ax, (label, train_key, val_key) in zip(axes, pairs):
        values = []
        for tid in order:
            rows = trials[tid]
            if tid == best:
                rows = _lineage_rows(result, tid)
            elif rows[0]["parent_id"] >= 0:
                parent = keyed.get((rows[0]["parent_id"], rows[0]["generation"] - 1))
                rows = ([parent] if parent is not None else []) + rows
            st = style(tid, trials[tid])
            steps = [r["step"] for r in rows]
            for key, ls in ((train_key, "--"), (val_key, "-")):
                if key is None:
                    continue
                ys = [r.get(key, math.nan) for r in rows]
                ys = [y if finite(y) else math.nan for y in ys]
                values += [y for y in ys if not math.isnan(y)]
                if len(rows) == 1:  # evaluated once: no line to draw, so a marker that says
                    # which split it is (train an open square, validation a filled disc)
                    ax.plot(steps, ys, ls="none", marker="s" if ls == "--" else "o",
                            ms=8 if tid == best else 5, mfc="none" if ls == "--" else st["color"],
                            mew=1.5, **st)
                else:
                    ax.plot(steps, ys, ls=ls, marker="o", ms=2.5 if tid != best else 4, **st)
            for r in trials[tid]:
                if r["status"] == "diverged":
                    ax.plot([r["step"]], [0.96], marker="x", color=DIVERGED, ms=7, mew=2,
                            transform=ax.get_xaxis_transform(), zorder=6, clip_on=False)
        if values and "loss" in label and min(values) > 0:
            ax.set_yscale("log")
        elif values:
            zoom(ax, trials, best, val_key, train_key)
        ax.set_xlabel("training steps of the trial")
        ax.set_ylabel(label)
        ax.set_title(f"{label}: train (dashed, \u25a1) vs validation (solid, \u25cf)")
        ax.grid(alpha=0.3)
    axes[0].legend(handles=status_handles(result, best), loc="best", fontsize=8)
    fig.suptitle(f"Learning curves of {len(trials)} trials", fontsize=13)
    return fig


# --- objective vs hyperparameters ------------------------------------------------------

def objective_vs_hparams(result):
    """Each trial's objective at one shared training length against each varied hyperparameter.

    Like is compared with like: every point is a trial at the step ``L`` where
    the most trials were evaluated (a search's first rung: every fresh trial
    gets there), so a trial that went on training does not look better than
    one pruned at ``L`` for that reason alone. Blue: trials that trained on
    after ``L``; grey: pruned there or never evaluated later. The best trial
    is starred at its value at ``L``. Log axes for log-scale dimensions,
    jittered strips for categorical ones, integer ticks for integer ones;
    diverged trials (no finite objective at ``L``) as crosses along the top.
    """
    names = list(result.varied)[:_MAX_PANELS] or list(result.shown_hparams)[:1]
    cols = max(1, min(4, math.ceil(math.sqrt(len(names)))))
    rows_n = max(1, math.ceil(len(names) / cols))
    fig = figure(4.6 * cols + 0.8, 3.7 * rows_n + 0.4)
    axes = fig.subplots(rows_n, cols, squeeze=False).ravel()
    obj = result.objective
    trials = by_trial(result.history)
    counts = collections.Counter(r["step"] for r in result.history)
    length = max(counts, key=lambda st: (counts[st], -st)) if counts else 0
    at = {tid: r for tid, rows in trials.items() for r in rows if r["step"] == length}
    ok, bad = [], []
    for tid, r in at.items():
        (ok if finite(r.get(obj)) and r["status"] != "diverged" else bad).append((tid, r))
    went_on = {tid for tid, rows in trials.items() if rows[-1]["step"] > length}
    best = result.best.trial_id if result.best is not None else _best_id(result)
    ys = np.array([r[obj] for _, r in ok], float)
    log_y = result.mode == "min" and len(ys) > 0 and ys.min() > 0 and ys.max() / ys.min() > 20
    rng = np.random.default_rng(0)
    for ax, name in zip(axes, names):
        cats = categories(result, name)
        xs = positions([r.get(name) for _, r in ok], cats, rng)
        on = np.array([tid in went_on for tid, _ in ok], bool)
        for mask, color, label in ((~on, PRUNED, f"pruned at step {length}"),
                                   (on, ALIVE, f"trained on after step {length}")):
            if mask.any():
                ax.scatter(xs[mask], ys[mask], s=22, color=color, alpha=0.8, edgecolors="none",
                           label=label)
        for i, (tid, _) in enumerate(ok):
            if tid == best:
                ax.scatter([xs[i]], [ys[i]], marker="*", s=260, color=BEST, edgecolors="black",
                           linewidths=0.8, zorder=5, label=f"best: trial {best}")
        if bad:
            bx = positions([r.get(name) for _, r in bad], cats, rng)
            ax.scatter(bx, np.full(len(bx), 0.97), marker="x", color=DIVERGED, s=30,
                       transform=ax.get_xaxis_transform(), clip_on=False, zorder=4,
                       label=f"diverged (no finite {obj})")
        if cats is not None:
            ax.set_xticks(range(len(cats)), [str(c) for c in cats],
                          rotation=30 if max(len(str(c)) for c in cats) > 6 else 0,
                          ha="right" if max(len(str(c)) for c in cats) > 6 else "center")
            ax.set_xlim(-0.6, len(cats) - 0.4)
        elif is_log_scale(result, name):
            ax.set_xscale("log")
        elif is_integer(result, name):
            integer_ticks(ax.xaxis)
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel(name + (" (log scale)" if cats is None and is_log_scale(result, name)
                              else ""))
        ax.set_ylabel(f"{obj} at step {length}")
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    if not names:  # nothing searched and nothing varied: say so rather than plot a default
        axes[0].set_visible(True)
        axes[0].set_axis_off()
        axes[0].text(0.5, 0.5, "no searched hyperparameter in this history", ha="center",
                     va="center", transform=axes[0].transAxes)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, labels, fontsize=8, loc="best")
    better = "lower" if result.mode == "min" else "higher"
    fig.suptitle(f"{obj} ({better} is better) of {len(at)} trials at step {length}, the "
                 "training length most trials reached, vs their hyperparameters", fontsize=12)
    return fig


# --- optimisation history --------------------------------------------------------------

def optimization_history(result):
    """Best-so-far objective against compute (cumulative trial-steps) and wall time."""
    fig = figure(12.4, 4.4)
    ax_c, ax_t = fig.subplots(1, 2)
    obj, sign = result.objective, (1.0 if result.mode == "min" else -1.0)
    gens = sorted({r["generation"] for r in result.history})
    compute = _compute_by_generation(result.history)
    cum = dict(zip(gens, np.cumsum([compute[g] for g in gens])))
    wall = {}
    for r in result.history:
        if finite(r.get("wall_time")):
            wall[r["generation"]] = max(wall.get(r["generation"], 0.0), r["wall_time"])
    best_so_far, run = [], math.inf
    for g in gens:
        vals = [sign * r[obj] for r in result.history if r["generation"] == g
                and r["status"] != "diverged" and finite(r.get(obj))]
        run = min([run] + vals)
        best_so_far.append(sign * run if run < math.inf else math.nan)
    all_vals = [r[obj] for r in result.history if finite(r.get(obj))]
    log_y = (result.mode == "min" and all_vals and min(all_vals) > 0
             and max(all_vals) / min(all_vals) > 20)
    for ax, xs_of, xlabel in ((ax_c, cum, "compute: cumulative trial-steps"),
                              (ax_t, wall, "wall time since the search started (s; the first "
                                           "generation includes compiling)")):
        if not xs_of:
            ax.text(0.5, 0.5, "no wall_time in this history", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        pts = [(xs_of[r["generation"]], r[obj]) for r in result.history
               if r["generation"] in xs_of and r["status"] != "diverged" and finite(r.get(obj))]
        if pts:
            ax.scatter(*zip(*pts), s=9, color=PRUNED, alpha=0.45, label="every evaluation")
        bx = [xs_of[g] for g in gens if g in xs_of]
        by = [b for g, b in zip(gens, best_so_far) if g in xs_of]
        ax.plot(bx, by, drawstyle="steps-post", color=BEST, lw=2.2, marker="o", ms=4,
                label="best so far")
        if by and finite(by[-1]):
            ax.annotate(f"{by[-1]:.4g}", (bx[-1], by[-1]), textcoords="offset points",
                        xytext=(-4, 8), ha="right", color=BEST, fontsize=9)
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(obj)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    try:
        from matplotlib.ticker import EngFormatter
        ax_c.xaxis.set_major_formatter(EngFormatter())
    except ImportError:  # pragma: no cover
        pass
    total = sum(compute.values())
    secs = f", {max(wall.values()):.1f} s" if wall else ""
    fig.suptitle(f"Optimization history: best {obj} so far ({len(gens)} generations, "
                 f"{total:,.0f} trial-steps{secs})", fontsize=12)
    return fig


# --- lineage ---------------------------------------------------------------------------

def lineage(result, trial_id: int | None = None):
    """The lineage of ``trial_id`` (default: the best trial) and its hyperparameter schedule.

    Top panel: the objective (and its train counterpart, dashed) along the
    chain of trials it was cloned from, one colour per trial, dotted lines at
    clone points. Below: each varying hyperparameter along the chain (thick)
    over every trial's value at every evaluation (grey dots).
    """
    if trial_id is None:
        trial_id = result.best.trial_id if result.best is not None else _best_id(result)
    if trial_id is None:
        fig = figure(6, 2)
        fig.text(0.5, 0.5, "no trial with a finite objective", ha="center")
        return fig
    segments = _segments(result, trial_id)
    chain = [tid for tid, _, _ in segments]
    names = list(result.varied)[:8]
    fig = figure(10, 3.2 + 1.7 * len(names))
    axes = fig.subplots(1 + len(names), 1, sharex=True, squeeze=False,
                        height_ratios=[2.2] + [1] * len(names))[:, 0]
    obj = result.objective
    train_key = "train_" + obj[4:] if obj.startswith("val_") else None
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
              "#bcbd22"]
    ax = axes[0]
    vals = []
    colors = colors[:len(segments)][::-1] if len(segments) <= len(colors) else colors
    for i, (tid, start, rows) in enumerate(segments):
        c = colors[i % len(colors)]
        lead = [start] if start is not None else []
        steps = [r["step"] for r in lead + rows]
        for key, ls, lab in ((obj, "-", f"trial {tid}"), (train_key, "--", None)):
            if key is None or not any(key in r for r in rows):
                continue
            ys = [r.get(key) if finite(r.get(key)) else math.nan for r in lead + rows]
            vals += [y for y in ys if not math.isnan(y)]
            ax.plot(steps, ys, ls=ls, color=c, marker="o", ms=3.5, lw=2, label=lab)
        top = best_row(rows, result.objective, result.mode)
        if top is not None:
            ax.scatter([top["step"]], [top[obj]], marker="*", s=220, color=c, zorder=5,
                       edgecolors="black", linewidths=0.8,
                       label=f"best {obj} of each trial" if i == len(segments) - 1 else None)
            ax.annotate(f"{top[obj]:.4g}", (top["step"], top[obj]), textcoords="offset points",
                        xytext=(0, -16), ha="center", fontsize=8, color=c)
        if start is not None:
            for a in axes:
                a.axvline(start["step"], color=c, ls=":", lw=1.2)
            ax.annotate(f"cloned from {start['trial_id']}", (start["step"], 1.0),
                        xycoords=ax.get_xaxis_transform(), xytext=(3, -12),
                        textcoords="offset points", fontsize=8, color=c)
    if vals and min(vals) > 0 and "loss" in obj:
        ax.set_yscale("log")
    ax.set_ylabel(obj + (f"\n({train_key} dashed)" if train_key else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    for ax, name in zip(axes[1:], names):
        cats = categories(result, name)
        pop = [(r["step"], r.get(name)) for r in result.history]
        ys = positions([v for _, v in pop], cats, None)
        ax.scatter([s for s, _ in pop], ys, s=6, color=PRUNED, alpha=0.35, zorder=1)
        for i, (tid, start, rows) in enumerate(segments):
            x0 = start["step"] if start is not None else 0
            xs = [x0] + [r["step"] for r in rows]
            hv = positions([rows[0].get(name)] + [r.get(name) for r in rows], cats, None)
            ax.plot(xs, hv, drawstyle="steps-pre", color=colors[i % len(colors)], lw=2.5,
                    zorder=3)
        if cats is not None:
            ax.set_yticks(range(len(cats)), [str(c) for c in cats], fontsize=8)
            ax.set_ylim(-0.6, len(cats) - 0.4)
        elif is_log_scale(result, name):
            ax.set_yscale("log")
        elif is_integer(result, name):
            integer_ticks(ax.yaxis)
        ax.set_ylabel(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("training steps along the lineage")
    if len(chain) == 1:
        title = (f"Lineage of trial {trial_id}: sampled fresh, never cloned, so its "
                 "hyperparameters were constant (grey: every trial's values)")
    else:
        title = (f"Lineage of trial {trial_id}: " + " -> ".join(map(str, chain))
                 + " (grey: every trial's values)")
    fig.suptitle(title, fontsize=11)
    return fig


# --- helpers ---------------------------------------------------------------------------

def _metric_pairs(result):
    names = result.metric_names
    pairs = []
    for v in sorted(names, key=lambda n: ("loss" not in n, n)):
        if v.startswith("val_") and "train_" + v[4:] in names:
            pairs.append((v[4:].replace("_", " "), "train_" + v[4:], v))
    if not pairs:
        pairs = [(result.objective, None, result.objective)]
    return pairs


def _best_id(result):
    top = result.top(1)
    return top[0]["trial_id"] if top else None


def _compute_by_generation(history) -> dict[int, float]:
    """Trial-steps trained in each generation (a clone resumes at its parent's step)."""
    keyed = {(r["trial_id"], r["generation"]): r for r in history}
    out: dict[int, float] = {}
    for r in history:
        g = r["generation"]
        prev = keyed.get((r["trial_id"], g - 1))
        if prev is None and r["parent_id"] >= 0:
            prev = keyed.get((r["parent_id"], g - 1))
        out[g] = out.get(g, 0.0) + r["step"] - (prev["step"] if prev is not None else 0)
    return out


def _segments(result, trial_id):
    """[(trial_id, parent row it was cloned from or None, its rows)] along the lineage."""
    out = []
    for r in result.lineage(trial_id):
        if out and out[-1][0] == r["trial_id"]:
            out[-1][2].append(r)
            continue
        start = out[-1][2][-1] if out and r["cloned_at"] >= 0 else None
        out.append((r["trial_id"], start, [r]))
    return out


def _lineage_rows(result, trial_id):
    return [r for _, _, rows in _segments(result, trial_id) for r in rows]
