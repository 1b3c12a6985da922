"""A search exported to Optuna reads back through Optuna's public API as the same search."""

import collections
import math
import subprocess
import sys

import optax
import pytest

import vtune
from vtune.report import optuna as export_lib

optuna = pytest.importorskip("optuna")

# A learning rate up to 1e3 under plain SGD: some trials diverge, the strategy prunes others.
SPACE = {"learning_rate": vtune.loguniform(1e-3, 1e3), "width": vtune.intuniform(4, 16),
         "init": vtune.choice(["he_normal", "xavier_uniform"]),
         "dropout": vtune.uniform(0.0, 0.5)}
STATES = {"alive": "COMPLETE", "pruned": "PRUNED", "diverged": "FAIL"}


@pytest.fixture(scope="module")
def searched(tiny_data, tmp_path_factory):
    """One finished search, exported by the live callback while it ran."""
    task = vtune.tasks.mlp_classifier(tiny_data, hidden_sizes=(16,), batch_size=32,
                                      optimizer=optax.sgd)
    url = f"sqlite:///{tmp_path_factory.mktemp('optuna') / 'live.db'}"
    result = vtune.population_search(
        task, SPACE, population_size=8, generations=4, steps_per_generation=3,
        objective="val_accuracy", seed=0, verbose=False, strategy="pbt",
        callbacks=[export_lib.live(url, study_name="live")])
    return result, url


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_an_exported_search_reads_back_through_optuna(searched, tmp_path):
    result, _ = searched
    url = f"sqlite:///{tmp_path / 'search.db'}"
    result.to_optuna(url, study_name="digits")
    study = optuna.load_study(study_name="digits", storage=url)  # a fresh reader of the file

    summaries = {t["trial_id"]: t for t in result.trials()}
    assert len(study.trials) == len(summaries)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    counts = collections.Counter(t.state.name for t in study.trials)
    vtune_counts = collections.Counter(STATES[t["status"]] for t in summaries.values())
    assert counts == vtune_counts
    assert counts["PRUNED"] > 0 and counts["FAIL"] > 0 and counts["COMPLETE"] > 0

    assert study.best_value == result.best.metrics["val_accuracy"]
    # Accuracies tie; vtune breaks ties by validation loss, Optuna takes the first trial.
    tied = {t.user_attrs["vtune_trial_id"]: t for t in study.trials if t.value == study.best_value}
    assert study.best_trial.user_attrs["vtune_trial_id"] in tied
    assert tied[result.best.trial_id].params == {k: result.best.hparams[k] for k in SPACE}
    if len(tied) == 1:
        assert study.best_params == {k: result.best.hparams[k] for k in SPACE}

    dists = study.best_trial.distributions
    assert dists["learning_rate"] == optuna.distributions.FloatDistribution(1e-3, 1e3, log=True)
    assert dists["width"] == optuna.distributions.IntDistribution(4, 16)
    assert dists["init"] == optuna.distributions.CategoricalDistribution(
        ("he_normal", "xavier_uniform"))
    assert dists["dropout"] == optuna.distributions.FloatDistribution(0.0, 0.5)

    rows = vtune.report.schema.by_trial(result.history)
    for trial in study.trials:
        tid = trial.user_attrs["vtune_trial_id"]
        summary = summaries[tid]
        assert trial.params == {k: summary[k] for k in SPACE}
        assert trial.user_attrs["parent_id"] == summary["parent_id"]
        assert trial.user_attrs["generation"] == summary["first_generation"]
        assert trial.user_attrs["status"] == summary["status"]
        finite = {r["step"]: r["val_accuracy"] for r in rows[tid]
                  if math.isfinite(r["val_accuracy"])}
        assert trial.intermediate_values == finite
        if trial.state.name == "FAIL":
            assert trial.value is None
        else:
            assert trial.value == summary["val_accuracy"] == max(finite.values())
    assert any(t.user_attrs["origin"] == "cloned" for t in study.trials)
    assert study.user_attrs["objective"] == "val_accuracy" and study.user_attrs["mode"] == "max"
    assert study.metric_names == ["val_accuracy"]
    assert study.user_attrs["defaults"]["momentum"] == 0.0


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_optuna_importance_and_plots_run_on_it(searched):
    result, _ = searched
    study = result.to_optuna()
    importances = optuna.importance.get_param_importances(study)
    assert set(importances) == set(SPACE)
    assert sum(importances.values()) == pytest.approx(1.0)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ax = optuna.visualization.matplotlib.plot_intermediate_values(study)
    shown = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(ax.get_lines()) == len(shown) > 0
    plt.close("all")


def test_the_live_callback_writes_what_export_writes(searched):
    result, url = searched
    live = optuna.load_study(study_name="live", storage=url)
    exported = result.to_optuna()

    def view(study):
        return sorted((t.user_attrs["vtune_trial_id"], t.state.name, t.value, t.params,
                       t.intermediate_values) for t in study.trials)

    assert view(live) == view(exported)
    assert live.best_value == exported.best_value


def test_a_taken_study_name_is_refused_unless_overwritten(searched, tmp_path):
    result, _ = searched
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    export_lib.export(result, url, study_name="s")
    with pytest.raises(ValueError, match="already holds a study named 's'"):
        export_lib.export(result, url, study_name="s")
    study = export_lib.export(result, tmp_path / "twice.db", study_name="s", overwrite=True)
    assert len(optuna.get_all_study_summaries(url)) == 1
    assert len(study.trials) == len(result.trials())  # replaced, not appended
    with pytest.raises(ValueError, match="already holds a study named 's'"):
        export_lib.live(url, study_name="s")  # before any search starts


def test_a_hyperparameter_a_row_leaves_out_is_no_param():
    rows = [{"generation": 0, "slot": 0, "trial_id": 0, "parent_id": -1, "step": 1,
             "status": "alive", "momentum": None, "learning_rate": 0.1, "val_loss": 0.5}]
    space = vtune.Space({"learning_rate": vtune.loguniform(1e-3, 1.0),
                         "momentum": vtune.uniform(0.0, 0.9)})
    result = vtune.SearchResult(best=None, history=rows, objective="val_loss", mode="min",
                                tuned=space.names, space=space, metrics=("val_loss",))
    (trial,) = result.to_optuna().trials
    assert trial.params == {"learning_rate": 0.1} and trial.value == 0.5


def test_import_vtune_does_not_import_optuna():
    code = "import sys, vtune; vtune.report.optuna; sys.exit('optuna' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
