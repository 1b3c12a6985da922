"""Lineage: following parent_id back to the root, with every hyperparameter change."""

import pytest

import vtune
from vtune.report.lineage import lineage
from vtune.report.schema import hparam_names


def row(g, slot, tid, parent, lr, loss, step=None):
    return {"generation": g, "slot": slot, "trial_id": tid, "parent_id": parent,
            "step": 10 * (g + 1) if step is None else step, "status": "alive",
            "learning_rate": lr, "val_loss": loss}


# Trial 0 and 1 start fresh; after generation 0, trial 2 clones 0 (slot 1);
# after generation 1, trial 3 clones 2 (slot 0), while trial 0 was still training.
HISTORY = [
    row(0, 0, 0, -1, 0.1, 0.9), row(0, 1, 1, -1, 0.5, 1.5),
    row(1, 0, 0, -1, 0.1, 0.8), row(1, 1, 2, 0, 0.12, 0.7),
    row(2, 0, 3, 2, 0.096, 0.6), row(2, 1, 2, 0, 0.12, 0.65),
]


def test_follows_the_parent_chain_oldest_first_with_changes():
    path = lineage(HISTORY, 3)
    assert [(r["generation"], r["trial_id"]) for r in path] == [(0, 0), (1, 2), (2, 3)]
    assert [r["cloned_at"] for r in path] == [-1, 0, 1]
    assert [r["changes"] for r in path] == [
        {}, {"learning_rate": (0.1, 0.12)}, {"learning_rate": (0.12, 0.096)}]
    assert [r["val_loss"] for r in path] == [0.9, 0.7, 0.6]  # the rows themselves, copied
    assert "changes" not in HISTORY[0]


def test_a_trial_that_was_never_cloned_is_its_own_lineage():
    path = lineage(HISTORY, 0)
    assert [(r["generation"], r["trial_id"], r["changes"]) for r in path] == [
        (0, 0, {}), (1, 0, {})]
    assert lineage(HISTORY, 2)[-1]["generation"] == 2  # rows after the child's clone stay


def test_default_names_skip_bookkeeping_and_metrics():
    assert hparam_names(HISTORY) == ["learning_rate"]
    assert lineage(HISTORY, 3, names=[])[-1]["changes"] == {}
    assert set(lineage(HISTORY, 3, names=["val_loss"])[-1]["changes"]) == {"val_loss"}


@pytest.mark.parametrize("history, trial, match", [
    (HISTORY, 7, "trial 7 is not in the history"),
    ([r for r in HISTORY if r["trial_id"] != 2], 3, "ancestor .parent of trial 3. 2"),
    ([row(0, 0, 0, 1, 0.1, 1.0), row(0, 1, 1, 0, 0.1, 1.0)], 0, "loops"),
])
def test_broken_histories_are_named(history, trial, match):
    with pytest.raises(ValueError, match=match):
        lineage(history, trial)


def test_a_search_records_the_data_share_a_carried_trial_moved_to(tiny_task):
    space = {"learning_rate": vtune.loguniform(1e-3, 1e-1), "dropout": vtune.uniform(0.0, 0.5),
             "init": vtune.choice(["he_normal", "xavier_uniform", "lecun_normal"]),
             "weight_decay": vtune.fixed(1e-4)}  # the conformance suite's names: no new compile
    strategy = vtune.strategies.coarse_to_fine(stage_generations=(1,), train_fractions=(0.5, 1.0))
    result = vtune.population_search(tiny_task, space, population_size=8, generations=3,
                                     steps_per_generation=4, strategy=strategy, verbose=False)
    carried = [r["trial_id"] for r in result.history if r["generation"] == 2 and r["step"] == 12]
    assert carried, "the top-k of the first stage continue"
    path = lineage(result.history, carried[0], names=list(result.best.hparams))
    assert [r["generation"] for r in path] == [0, 1, 2]
    assert [r["train_fraction"] for r in path] == [0.5, 1.0, 1.0]
    assert [r["changes"] for r in path] == [{}, {"train_fraction": (0.5, 1.0)}, {}]
