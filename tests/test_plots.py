"""Plots: every figure is written, non-empty, and draws what it claims."""

import collections
import dataclasses
import math
import struct
import sys

import numpy as np
import pytest

import vtune
from vtune.report.axes import is_log_scale
from vtune.report.result import SearchResult

pytest.importorskip("matplotlib")
from vtune.report import plots  # noqa: E402

SPACE = vtune.Space({"learning_rate": vtune.loguniform(1e-4, 1.0),
                     "dropout": vtune.uniform(0.0, 0.6),
                     "init": vtune.choice(["he_normal", "xavier_uniform", "zeros"])})


def pbt_history(slots=8, generations=5, steps=100, seed=0):
    """A PBT-like search: the worst quarter is replaced by perturbed clones of the best.

    Trials with learning_rate > 0.3 diverge; zero init (of a fresh trial) stays at chance.
    """
    rng = np.random.default_rng(seed)
    live = [dict(trial_id=i, parent_id=-1, step=0, age=0,
                 learning_rate=0.5 if i == 1 else float(10 ** rng.uniform(-4, 0)),
                 dropout=float(rng.uniform(0, 0.6)),
                 init=["he_normal", "xavier_uniform", "zeros"][i % 3]) for i in range(slots)]
    history, next_id = [], slots
    for g in range(generations):
        rows = []
        for s, t in enumerate(live):
            t["step"] += steps
            t["age"] += 1
            off = abs(math.log10(t["learning_rate"]) + 2.5)
            tl = 2.3 * math.exp(-t["step"] / (150 * (1 + off))) + 0.02
            vl = tl * 1.1 + 0.03 * g * (0.6 - t["dropout"])
            status = "alive"
            if t["init"] == "zeros" and t["parent_id"] < 0:
                tl, vl = 2.3026, 2.3027
            if t["learning_rate"] > 0.3:
                tl = vl = math.nan
                status = "diverged"
            acc = math.nan if math.isnan(tl) else max(0.1, 1 - tl / 2.56)
            rows.append({"generation": g, "slot": s, "trial_id": t["trial_id"],
                         "parent_id": t["parent_id"], "step": t["step"],
                         "examples_seen": 32 * t["step"], "wall_time": 2.0 + 0.7 * g,
                         "status": status, "learning_rate": t["learning_rate"],
                         "dropout": t["dropout"], "init": t["init"], "train_accuracy": acc,
                         "train_loss": tl, "val_accuracy": acc - 0.02, "val_loss": vl})
        history += rows
        if g == generations - 1:
            break
        score = [r["val_loss"] if math.isfinite(r["val_loss"]) else math.inf for r in rows]
        order = np.argsort(score, kind="stable")
        for loser, winner in zip(order[-slots // 4:], order[:slots // 4]):
            if rows[loser]["status"] == "alive":
                rows[loser]["status"] = "pruned"
            w = live[winner]
            live[loser] = dict(w, trial_id=next_id, parent_id=w["trial_id"], age=0,
                               learning_rate=w["learning_rate"] * [0.8, 1.2][next_id % 2])
            next_id += 1
        for s, r in enumerate(rows):  # diverged slots that were not replaced start afresh
            if r["status"] == "diverged" and live[s]["trial_id"] == r["trial_id"]:
                live[s] = dict(live[s], trial_id=next_id, parent_id=-1, step=0, age=0,
                               learning_rate=1e-3)
                next_id += 1
    return history


@pytest.fixture(scope="module")
def result():
    history = pbt_history()
    return SearchResult(best=None, history=history, objective="val_loss", mode="min",
                        tuned=tuple(SPACE), space=SPACE)


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_every_figure_is_written_as_a_non_empty_png(result, tmp_path):
    had_pyplot = "matplotlib.pyplot" in sys.modules
    paths = result.plot(tmp_path)
    assert list(paths) == list(plots.FIGURES)
    for name, path in paths.items():
        assert path == tmp_path / f"{name}.png" and path.stat().st_size > 10_000, name
        w, h = png_size(path)
        assert w >= 600 and h >= 300, (name, w, h)
    assert had_pyplot or "matplotlib.pyplot" not in sys.modules  # no GUI machinery


def test_the_history_has_what_the_figures_must_show(result):
    statuses = {r["status"] for r in result.history}
    assert statuses == {"alive", "pruned", "diverged"}
    assert any(r["parent_id"] >= 0 for r in result.history)
    assert any(r["init"] == "zeros" for r in result.history)


def test_learning_curves_pair_train_with_validation_and_highlight_the_best(result):
    fig = plots.learning_curves(result)
    loss, acc = fig.axes[:2]
    assert "loss" in loss.get_title() and "accuracy" in acc.get_title()
    assert loss.get_yscale() == "log" and acc.get_yscale() == "linear"
    best = result.top(1)[0]["trial_id"]
    thick = [ln for ln in loss.get_lines() if ln.get_color() == plots.BEST and ln.get_lw() > 2]
    assert {ln.get_linestyle() for ln in thick} == {"-", "--"}  # its train and val curves
    faded = [ln for ln in loss.get_lines() if ln.get_color() == plots.PRUNED]
    assert faded and all(ln.get_alpha() < 0.3 for ln in faded)
    crosses = [ln for ln in loss.get_lines() if ln.get_marker() == "x"]
    assert len(crosses) == sum(r["status"] == "diverged" for r in result.history)
    assert f"best: trial {best}" in [t.get_text() for t in loss.get_legend().get_texts()][2]


def test_objective_vs_hparams_uses_log_axes_and_strips(result):
    fig = plots.objective_vs_hparams(result)
    by_label = {ax.get_xlabel(): ax for ax in fig.axes if ax.get_xlabel()}
    assert by_label["learning_rate (log scale)"].get_xscale() == "log"
    assert by_label["dropout"].get_xscale() == "linear"
    ticks = [t.get_text() for t in by_label["init"].get_xticklabels()]
    assert ticks == ["he_normal", "xavier_uniform", "zeros"]
    # Like with like: every point is a trial at the training length most trials reached.
    steps = collections.Counter(r["step"] for r in result.history)
    length = max(steps, key=lambda st: (steps[st], -st))
    expected = sorted(r["val_loss"] for r in result.history
                      if r["step"] == length and r["status"] != "diverged"
                      and math.isfinite(r["val_loss"]))
    ax = by_label["learning_rate (log scale)"]
    assert ax.get_ylabel() == f"val_loss at step {length}"
    points = [c for c in ax.collections if not c.get_label().startswith(("best", "diverged"))]
    plotted = sorted(y for c in points for _, y in c.get_offsets())
    assert plotted == pytest.approx(expected)
    assert {c.get_label() for c in points} <= {f"pruned at step {length}",
                                               f"trained on after step {length}"}


def test_log_scale_and_categories_are_inferred_without_a_space(result):
    bare = dataclasses.replace(result, space=None)
    assert is_log_scale(bare, "learning_rate") and not is_log_scale(bare, "dropout")
    assert plots.categories(bare, "init") is not None
    assert plots.categories(bare, "dropout") is None


def test_optimization_history_is_best_so_far_over_compute_and_time(result):
    fig = plots.optimization_history(result)
    compute_ax, time_ax = fig.axes[:2]
    line = next(ln for ln in compute_ax.get_lines() if ln.get_label() == "best so far")
    ys = line.get_ydata()
    assert np.all(np.diff(ys) <= 0) and ys[-1] == result.top(1)[0]["val_loss"]
    # 8 slots x 100 steps per generation, whatever was cloned or refilled.
    np.testing.assert_allclose(line.get_xdata(), 800 * np.arange(1, 6))
    t_line = next(ln for ln in time_ax.get_lines() if ln.get_label() == "best so far")
    np.testing.assert_allclose(t_line.get_xdata(), 2.0 + 0.7 * np.arange(5))


def test_lineage_follows_the_winner_back_through_its_clones(result):
    best = result.top(1)[0]["trial_id"]
    chain = list(dict.fromkeys(r["trial_id"] for r in result.lineage(best)))
    assert len(chain) >= 2, "the synthetic winner should be a clone"
    fig = plots.lineage(result)
    assert " -> ".join(map(str, chain)) in fig._suptitle.get_text()
    assert len(fig.axes) == 1 + len(result.varied)
    lr_ax = fig.axes[1]
    assert lr_ax.get_ylabel() == "learning_rate" and lr_ax.get_yscale() == "log"
    fresh = plots.lineage(result, chain[0])
    assert "never cloned" in fresh._suptitle.get_text()


def test_integer_dimensions_get_integer_ticks_and_a_fresh_winner_no_lineage(tmp_path):
    space = vtune.Space({"depth": vtune.intuniform(1, 3),
                         "learning_rate": vtune.loguniform(1e-4, 1.0)})
    # One generation: every trial sampled fresh, so the winner has no ancestors.
    history = [dict(r, depth=1 + r["slot"] % 3) for r in pbt_history() if r["generation"] == 0]
    fresh = SearchResult(best=None, history=history, objective="val_loss", mode="min",
                         tuned=tuple(space), space=space)
    fig = plots.objective_vs_hparams(fresh)
    depth_ax = next(ax for ax in fig.axes if ax.get_xlabel() == "depth")
    ticks = [t for t in depth_ax.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    paths = fresh.save(tmp_path)
    assert "lineage" not in paths and not (tmp_path / "lineage.png").exists()
    winner = fresh.top(1)[0]["trial_id"]
    assert f"no lineage figure: trial {winner} was sampled fresh" in (
        tmp_path / "top.txt").read_text()


def test_the_readme_shows_committed_figures():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    figures = re.findall(r"!\[[^\]]*\]\((docs/[\w./-]+\.png)\)", (root / "README.md").read_text())
    assert figures
    for f in figures:
        w, h = png_size(root / f)
        assert w >= 600 and h >= 300, f


def test_a_trial_evaluated_once_is_drawn_as_markers_not_a_line():
    """The best trial was evaluated once (then the search ended): its train and validation
    points are an open square and a filled disc, without a line style; others keep lines."""
    rows = [{"generation": g, "slot": 0, "trial_id": 0, "parent_id": -1, "step": 10 * (g + 1),
             "wall_time": float(g), "status": "alive", "learning_rate": 0.01,
             "train_loss": 1.0 - 0.1 * g, "val_loss": 1.1 - 0.1 * g} for g in range(3)]
    rows.append({"generation": 2, "slot": 1, "trial_id": 1, "parent_id": -1, "step": 10,
                 "wall_time": 2.0, "status": "alive", "learning_rate": 0.1,
                 "train_loss": 0.2, "val_loss": 0.25})
    result = SearchResult(best=None, history=rows, objective="val_loss", mode="min",
                          tuned=("learning_rate",))
    ax = plots.learning_curves(result).axes[0]
    once = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 1 and ln.get_marker() != "x"]
    assert sorted(ln.get_marker() for ln in once) == ["o", "s"]
    assert all(ln.get_linestyle() == "None" and ln.get_color() == plots.BEST for ln in once)
    square = next(ln for ln in once if ln.get_marker() == "s")
    assert square.get_markerfacecolor() == "none" and list(square.get_ydata()) == [0.2]
    curves = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 3]
    assert {ln.get_linestyle() for ln in curves} == {"-", "--"}
