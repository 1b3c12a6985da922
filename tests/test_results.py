"""SearchResult: history columns and dtypes, per-trial tables, CSV/JSON/pandas exports."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import vtune
from vtune.report.result import SearchResult, Trial
from vtune.report.schema import ORIGINS, STATUSES

NAN, INF = math.nan, math.inf
BATCH = 8
# (generation, slot, trial, parent, step, status, learning_rate, init, val_loss)
# Slots: trial 3 diverges at once; trial 2 is pruned and its slot takes trial 4, a clone
# of trial 0 (which keeps training); trial 1 is pruned later, refilled by trial 6.
PLAN = [
    (0, 0, 0, -1, 10, "alive", 0.01, "he_normal", 0.9),
    (0, 1, 1, -1, 10, "alive", 0.001, "xavier_uniform", 1.2),
    (0, 2, 2, -1, 10, "pruned", 0.3, "he_normal", 1.9),
    (0, 3, 3, -1, 10, "diverged", 5.0, "zeros", NAN),
    (1, 0, 0, -1, 20, "alive", 0.01, "he_normal", 0.5),
    (1, 1, 1, -1, 20, "pruned", 0.001, "xavier_uniform", 1.1),
    (1, 2, 4, 0, 20, "alive", 0.012, "he_normal", 0.45),
    (1, 3, 5, -1, 10, "alive", 0.02, "zeros", 2.3),
    (2, 0, 0, -1, 30, "alive", 0.01, "he_normal", 0.4),
    (2, 1, 6, -1, 10, "alive", 0.05, "xavier_uniform", 0.8),
    (2, 2, 4, 0, 30, "alive", 0.012, "he_normal", 0.3),
    (2, 3, 5, -1, 20, "alive", 0.02, "zeros", 2.3),
]


def make_history():
    rows = []
    for g, slot, tid, parent, step, status, lr, init, vl in PLAN:
        tl = vl * 0.8
        acc = NAN if math.isnan(vl) else max(0.1, 1.0 - vl / 2.5)
        rows.append({"generation": g, "slot": slot, "trial_id": tid, "parent_id": parent,
                     "step": step, "examples_seen": step * BATCH, "wall_time": 1.5 * (g + 1),
                     "status": status, "clip_norm": INF, "dropout": 0.1 * slot, "init": init,
                     "learning_rate": lr, "train_accuracy": acc, "train_loss": tl,
                     "val_accuracy": acc, "val_loss": vl})
    return rows


def make_result(history=None, **kw):
    history = make_history() if history is None else history
    row = min((r for r in history if not math.isnan(r["val_loss"])), key=lambda r: r["val_loss"])
    metrics = {k: row[k] for k in ("train_accuracy", "train_loss", "val_accuracy", "val_loss")}
    best = Trial(trial_id=row["trial_id"], hparams={k: row[k] for k in (
        "clip_norm", "dropout", "init", "learning_rate")}, metrics={**metrics, "diverged": False},
        generation=row["generation"], step=row["step"])
    return SearchResult(best=best, history=history, objective="val_loss", mode="min",
                        tuned=("learning_rate", "init", "dropout"), **kw)


def test_names_are_split_into_ids_hyperparameters_and_metrics():
    r = make_result()
    assert r.metric_names == ("train_accuracy", "train_loss", "val_accuracy", "val_loss")
    assert r.hparam_names == ("clip_norm", "dropout", "init", "learning_rate")
    assert r.varied == ("learning_rate", "init", "dropout")  # searched first; clip_norm fixed
    assert r.shown_hparams == ("learning_rate", "init", "dropout")


def test_to_pandas_columns_dtypes_and_rows():
    pd = pytest.importorskip("pandas")
    r = make_result()
    df = r.to_pandas(all_hparams=True)
    assert len(df) == len(PLAN)
    assert list(df.columns) == [
        "generation", "slot", "trial_id", "parent_id", "step", "examples_seen", "wall_time",
        "status", "origin", "clip_norm", "dropout", "init", "learning_rate",
        "train_accuracy", "train_loss", "val_accuracy", "val_loss"]
    # By default the fixed clip_norm (never searched, never changed) is left out.
    assert [c for c in r.to_pandas().columns] == [c for c in df.columns if c != "clip_norm"]
    for c in ("generation", "slot", "trial_id", "parent_id", "step", "examples_seen"):
        assert df[c].dtype == np.int64, c
    for c in ("wall_time", "clip_norm", "dropout", "learning_rate", "train_accuracy",
              "train_loss", "val_accuracy", "val_loss"):
        assert df[c].dtype == np.float64, c
    assert isinstance(df["status"].dtype, pd.CategoricalDtype)
    assert list(df["status"].cat.categories) == list(STATUSES)
    assert list(df["origin"].cat.categories) == list(ORIGINS)
    assert pd.api.types.is_string_dtype(df["init"]) or df["init"].dtype == object
    assert (df["examples_seen"] == df["step"] * BATCH).all()
    assert df["val_loss"].isna().sum() == 1  # the diverged row
    assert df.groupby("status", observed=False).size().to_dict() == {
        "alive": 9, "pruned": 2, "diverged": 1}
    assert (df["origin"] == "cloned").sum() == 2 and set(df[df.origin == "cloned"].trial_id) == {4}


def test_rows_add_origin_after_status_without_touching_the_history():
    r = make_result()
    rows = r.rows()
    assert list(rows[0])[7:9] == ["status", "origin"]
    assert [row["origin"] for row in rows if row["trial_id"] == 4] == ["cloned", "cloned"]
    assert "origin" not in r.history[0]


def test_trials_and_top_k():
    r = make_result()
    trials = {t["trial_id"]: t for t in r.trials()}
    assert sorted(trials) == [0, 1, 2, 3, 4, 5, 6]
    assert trials[4]["origin"] == "cloned" and trials[4]["parent_id"] == 0
    assert trials[0]["evaluations"] == 3 and trials[0]["examples_seen"] == 30 * BATCH
    assert trials[1]["status"] == "pruned" and trials[3]["best_generation"] is None
    top = r.top(3)
    assert [t["trial_id"] for t in top] == [4, 0, 6]
    assert top[0]["val_loss"] == 0.3 == r.best.metrics["val_loss"]
    assert 3 not in [t["trial_id"] for t in r.top(10)]  # never finite: not ranked
    maxed = SearchResult(best=None, history=r.history, objective="val_accuracy", mode="max")
    assert maxed.top(1)[0]["trial_id"] == 4


def test_table_has_a_header_and_k_ranked_rows():
    lines = make_result().table(2).splitlines()
    assert lines[0].split()[:7] == ["rank", "trial", "val_loss", "gen", "step", "status",
                                    "origin"]
    assert "learning_rate" in lines[0] and "clip_norm" not in lines[0]
    assert len(lines) == 3
    assert lines[1].split()[:4] == ["1", "4", "0.3", "2"] and "clone of 0" in lines[1]


def test_csv_round_trips_through_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    r = make_result()
    path = r.to_csv(tmp_path / "history.csv")
    back = pd.read_csv(path)
    df = r.to_pandas(all_hparams=True)  # the CSV is the record: every column
    assert list(back.columns) == list(df.columns) and len(back) == len(df)
    for c in ("val_loss", "learning_rate", "clip_norm", "wall_time"):
        np.testing.assert_array_equal(back[c].to_numpy(float), df[c].to_numpy(float))
    assert list(back["status"]) == [row["status"] for row in r.history]


def test_json_is_strict_and_round_trips(tmp_path):
    r = make_result(space=vtune.Space({"learning_rate": vtune.loguniform(1e-3, 10.0),
                                       "init": vtune.choice(["he_normal", "zeros",
                                                             "xavier_uniform"]),
                                       "dropout": vtune.uniform(0.0, 0.5)}))
    text = r.to_json(tmp_path / "result.json")

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    doc = json.loads(text, parse_constant=refuse)
    assert doc["history"][3]["val_loss"] == "NaN" and doc["history"][0]["clip_norm"] == "Infinity"
    back = SearchResult.from_json(tmp_path / "result.json")
    assert back.space == r.space and back.tuned == r.tuned and back.mode == "min"
    assert back.best.trial_id == 4 and back.best.params is None
    assert len(back.history) == len(r.history)
    for a, b in zip(back.history, r.history):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])), k
    assert SearchResult.from_json(text).history[0]["clip_norm"] == INF
    with pytest.raises(ValueError, match="not a vtune SearchResult"):
        SearchResult.from_json('{"history": []}')


def test_save_writes_every_export(tmp_path):
    paths = make_result().save(tmp_path / "out", plots=False, k=3)
    assert sorted(paths) == ["diagnosis", "diagnosis_json", "history", "result", "top"]
    for p in paths.values():
        assert p.stat().st_size > 0
    assert "Fit diagnosis of 7 trials" in (tmp_path / "out" / "diagnosis.txt").read_text()
    assert len(json.loads((tmp_path / "out" / "diagnosis.json").read_text())) == 7
    # The summary's three lines, a blank line, the table's header and k rows.
    assert (tmp_path / "out" / "top.txt").read_text().count("\n") == 3 + 1 + 1 + 3


def test_only_process_zero_writes(tmp_path, monkeypatch):
    import jax

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert make_result().save(tmp_path / "out", plots=True) == {}
    assert make_result().plot(tmp_path / "out") == {}
    assert not (tmp_path / "out").exists()


def test_lineage_follows_the_clone_to_its_parent():
    r = make_result()
    assert [(row["trial_id"], row["generation"]) for row in r.lineage()] == [
        (0, 0), (4, 1), (4, 2)]
    assert r.lineage()[1]["changes"] == {"learning_rate": (0.01, 0.012), "dropout": (0.0, 0.2)}


def test_importing_vtune_and_reading_results_needs_neither_matplotlib_nor_pandas():
    code = ("import sys, vtune\n"
            "from vtune.report.result import SearchResult\n"
            "r = SearchResult(None, [{'generation': 0, 'slot': 0, 'trial_id': 0, 'parent_id': -1,"
            " 'step': 1, 'status': 'alive', 'lr': 0.1, 'val_loss': 1.0}], 'val_loss', 'min')\n"
            "r.table(); r.diagnose().text(); r.to_json()\n"
            "assert not {'matplotlib', 'pandas'} & set(sys.modules), "
            "{'matplotlib', 'pandas'} & set(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_extras_name_the_plots_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    r = make_result()
    with pytest.raises(ImportError, match=r"pip install 'vtune\[plots\]'"):
        r.to_pandas()
    with pytest.raises(ImportError, match=r"pip install 'vtune\[plots\]'"):
        r.plot("unused")


def test_a_real_search_fills_every_column(tiny_task):
    pytest.importorskip("pandas")
    space = {"learning_rate": vtune.loguniform(1e-3, 1e-1), "dropout": vtune.uniform(0.0, 0.5)}
    # The shapes of test_search's searches, so the suite compiles nothing new.
    r = vtune.population_search(tiny_task, space, population_size=8, generations=3,
                                steps_per_generation=10, verbose=False, seed=2)
    df = r.to_pandas()
    assert len(df) == 8 * 3
    assert list(df.columns[:9]) == ["generation", "slot", "trial_id", "parent_id", "step",
                                    "examples_seen", "wall_time", "status", "origin"]
    assert (df["examples_seen"] == df["step"] * tiny_task.batch_size).all()
    assert df.groupby("generation")["wall_time"].max().is_monotonic_increasing
    assert set(r.metric_names) == {"train_accuracy", "train_loss", "val_accuracy", "val_loss"}
    assert r.varied[:2] == ("learning_rate", "dropout")
    # The task's optimizer defaults (b1, b2, eps, ...) are in the record, not in the views.
    assert set(r.hparam_names) - {"learning_rate", "dropout"}, r.hparam_names
    assert sorted(c for c in df.columns if c in r.hparam_names) == ["dropout", "learning_rate"]
    assert list(r.to_pandas(all_hparams=True).columns) == list(r.rows()[0])
    assert r.top(1)[0]["trial_id"] == r.best.trial_id
    assert len(r.diagnose()) == df["trial_id"].nunique()


@pytest.mark.parametrize("module", ["vtune.report.result", "vtune.report.diagnose"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module(module)
    tests = [t for t in doctest.DocTestFinder().find(mod) if t.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    assert tests and runner.failures == 0


def test_views_show_the_searched_hyperparameters_and_the_record_keeps_every_one(tmp_path):
    """b2 and eps are defaults nobody searched; init was searched but every trial drew the
    same choice: the views show learning_rate and init, the record keeps all four."""
    rows = [{"generation": g, "slot": t, "trial_id": t, "parent_id": -1, "step": 10 * (g + 1),
             "examples_seen": 80 * (g + 1), "wall_time": float(g), "status": "alive",
             "b2": 0.999, "eps": 1e-8, "init": "he_normal", "learning_rate": lr,
             "train_loss": loss * 0.9, "val_loss": loss}
            for g in range(2) for t, (lr, loss) in enumerate([(0.01, 0.5 - 0.1 * g),
                                                               (0.1, 0.7 - 0.1 * g)])]
    best = Trial(trial_id=0, hparams={k: rows[2][k] for k in ("b2", "eps", "init",
                                                               "learning_rate")},
                 metrics={"train_loss": 0.36, "val_loss": 0.4}, generation=1, step=20)
    r = SearchResult(best=best, history=rows, objective="val_loss", mode="min",
                     tuned=("learning_rate", "init"))
    searched, defaults = {"learning_rate", "init"}, {"b2", "eps"}
    assert set(r.hparam_names) == searched | defaults
    assert r.shown_hparams == ("learning_rate", "init") and r.varied == ("learning_rate",)
    for t in r.trials() + r.top(2):
        assert searched <= set(t) and not defaults & set(t)
    assert defaults <= set(r.trials(all_hparams=True)[0]) and \
        defaults <= set(r.top(1, all_hparams=True)[0])
    header = r.table().splitlines()[0].split()
    assert "learning_rate" in header and "init" in header and not defaults & set(header)
    assert "b2" not in r.summary()
    assert "hparams: learning_rate=0.01, init=he_normal\n" in r.summary()
    for finding in r.diagnose().findings:
        assert set(finding.hparams) == searched
    pd = pytest.importorskip("pandas")
    assert not defaults & set(r.to_pandas().columns)
    assert defaults <= set(pd.read_csv(r.to_csv(tmp_path / "h.csv")).columns)
    assert all(defaults <= set(row) for row in SearchResult.from_json(r.to_json()).history)
    # Without a record of what was searched (tuned=()), what varied is what is shown.
    bare = SearchResult(best=None, history=rows, objective="val_loss", mode="min")
    assert bare.shown_hparams == ("learning_rate",)


def test_the_figures_plot_against_searched_hyperparameters_only():
    pytest.importorskip("matplotlib")
    from vtune.report import plots

    rows = [{"generation": 0, "slot": t, "trial_id": t, "parent_id": -1, "step": 10,
             "status": "alive", "b2": 0.999, "learning_rate": lr, "val_loss": 1.0 - lr}
            for t, lr in enumerate((0.01, 0.1, 0.3))]
    r = SearchResult(best=None, history=rows, objective="val_loss", mode="min",
                     tuned=("learning_rate",))
    labels = [ax.get_xlabel() for ax in plots.objective_vs_hparams(r).axes if ax.get_visible()]
    assert len(labels) == 1 and labels[0].startswith("learning_rate")
    # Nothing searched and nothing varied: the figure says so instead of plotting b2.
    fixed = SearchResult(best=None, history=[dict(rows[0], learning_rate=0.1)],
                         objective="val_loss", mode="min")
    ax = next(a for a in plots.objective_vs_hparams(fixed).axes if a.get_visible())
    assert ax.get_xlabel() == "" and "no searched hyperparameter" in ax.texts[0].get_text()
