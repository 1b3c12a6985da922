"""Fit diagnosis: every rule fires on a curve made for it and on no other."""

import dataclasses
import json
import math

import pytest

from vtune import diagnose as dx

NAN = math.nan


def trial(train_loss, val_loss, train_acc=None, val_acc=None, *, trial_id=0, parent_id=-1,
          first_generation=0, status=None, steps=100, **hparams):
    """History rows of one trial, evaluated every ``steps`` steps."""
    hp = {"learning_rate": 0.01, "dropout": 0.1, "weight_decay": 1e-4, "init": "he_normal",
          **hparams}
    rows = []
    for i, (tl, vl) in enumerate(zip(train_loss, val_loss)):
        row = {"generation": first_generation + i, "slot": 0, "trial_id": trial_id,
               "parent_id": parent_id, "step": steps * (first_generation + i + 1),
               "status": "alive", **hp, "train_loss": tl, "val_loss": vl}
        if train_acc is not None:
            row["train_accuracy"], row["val_accuracy"] = train_acc[i], val_acc[i]
        if not (math.isfinite(tl) and math.isfinite(vl)):
            row["status"] = "diverged"
        rows.append(row)
    if status is not None:
        rows[-1]["status"] = status
    return rows


# One synthetic history per kind, each shaped after the seed articles' description.
CASES = {
    # NaN after the loss had been falling: "learning rate too high: loss is huge or nan".
    "diverging": trial([1.2, 0.6, NAN], [1.3, 0.7, NAN], [0.7, 0.85, NAN], [0.68, 0.83, NAN],
                       learning_rate=0.9),
    # All-zero init: identical units, the loss sits at chance (ln 10) and accuracy at 0.1.
    "symmetric_init": trial([2.3026, 2.3025, 2.3025], [2.3027, 2.3026, 2.3026],
                            [0.10, 0.10, 0.10], [0.10, 0.10, 0.10], init="zeros"),
    # A loss that does not move: "learning rate too small: the loss does not change".
    "stalled": trial([2.30, 2.29, 2.28, 2.27], [2.31, 2.30, 2.29, 2.28],
                     [0.20, 0.21, 0.22, 0.22], [0.19, 0.20, 0.21, 0.21], learning_rate=1e-5),
    # "Train accuracy high, validation accuracy low".
    "overfitting": trial([0.8, 0.3, 0.05, 0.01], [0.9, 0.6, 0.55, 0.6],
                         [0.75, 0.92, 0.99, 1.0], [0.70, 0.80, 0.83, 0.82], dropout=0.0),
    # "Train and validation accuracy both low", loss still moving.
    "underfitting": trial([1.6, 1.3, 1.15, 1.1], [1.65, 1.35, 1.2, 1.15],
                          [0.50, 0.60, 0.64, 0.65], [0.48, 0.58, 0.62, 0.63], dropout=0.7),
    # Both accuracies high, small gap, losses falling together.
    "healthy": trial([0.9, 0.3, 0.1, 0.095], [0.95, 0.35, 0.15, 0.12],
                     [0.80, 0.93, 0.97, 0.99], [0.79, 0.92, 0.96, 0.97]),
}


@pytest.mark.parametrize("kind", dx.KINDS)
def test_each_rule_reports_its_own_curve_and_nothing_else(kind):
    d = dx.diagnose(CASES[kind])
    assert len(d) == 1
    assert d.counts() == {k: int(k == kind) for k in dx.KINDS}
    f = d.findings[0]
    assert f.kind == kind and f.evidence
    assert bool(f.suggestion) == (kind != "healthy")


def test_no_rule_fires_on_another_rules_curve_except_by_documented_precedence():
    # `fired` shows every rule that matches, before precedence keeps the first. A zero
    # init leaves the loss flat and both accuracies low, and a flat loss leaves them low:
    # those curves also match the lower-precedence rules, and precedence names the cause.
    expected = {"diverging": ["diverging"],
                "symmetric_init": ["symmetric_init", "stalled", "underfitting"],
                "stalled": ["stalled", "underfitting"],
                "overfitting": ["overfitting"],
                "underfitting": ["underfitting"],
                "healthy": ["healthy"]}
    assert {k: dx.fired(rows)[0] for k, rows in CASES.items()} == expected
    assert [k for k, _ in dx.RULES] == list(dx.KINDS[:-1])


@pytest.mark.parametrize("kind, text", [
    ("diverging", "learning_rate (now 0.9 -> try 0.09)"),
    ("symmetric_init", "he_normal"),
    ("stalled", "learning rates a decade up and down"),
    ("overfitting", "more dropout"),
    ("underfitting", "less dropout (now 0.7)"),
])
def test_suggestions_follow_the_seed_advice(kind, text):
    assert text in dx.diagnose(CASES[kind]).findings[0].suggestion


def test_each_diverging_signature_is_caught():
    scale = [2.3, 2.2]  # other trials' first losses: the task's untrained loss level
    others = [r for i, tl in enumerate(scale)
              for r in trial([tl, tl * 0.9], [tl, tl], trial_id=10 + i)]
    climbing = trial([0.4, 0.3, 0.6], [0.5, 0.4, 0.7], [0.9, 0.93, 0.85], [0.9, 0.92, 0.84])
    blown_up = trial([400.0], [90.0], [0.2], [0.2], trial_id=1)
    flagged = trial([0.5, 0.4], [0.5, 0.4], [0.9, 0.92], [0.9, 0.9], trial_id=2,
                    status="diverged")
    d = dx.diagnose(climbing + blown_up + flagged + others)
    assert [d.for_trial(t).kind for t in (0, 1, 2)] == ["diverging"] * 3
    assert "climbed from 0.3" in d.for_trial(0).evidence
    assert "400" in d.for_trial(1).evidence


@pytest.mark.parametrize("change, kind", [
    # Just inside / outside each threshold: the boundary is where Thresholds says.
    ({"gap": 0.101}, "overfitting"), ({"gap": 0.099}, "healthy"),
    ({"train_acc": 0.899}, "underfitting"), ({"train_acc": 0.9}, "healthy"),
    ({"train_rise": 1.31}, "diverging"), ({"train_rise": 1.29}, "healthy"),
    ({"val_rise": 1.51}, "overfitting"), ({"val_rise": 1.49}, "healthy"),
])
def test_thresholds_sit_where_documented(change, kind):
    th = dx.Thresholds()
    assert (th.overfit_gap, th.fit_accuracy, th.train_rise_ratio, th.val_rise_ratio) == (
        0.1, 0.9, 1.3, 1.5)
    ta = change.get("train_acc", 0.99)
    va = ta - change.get("gap", 0.02)
    tl = [2.0, 1.0, 1.0 * change.get("train_rise", 1.0)]  # climbs clear the absolute floor
    vl = [2.0, 0.25, 0.2]
    if "val_rise" in change:  # validation loss up from its minimum, train loss falling
        tl, vl = [2.0, 0.2, 0.1], [2.0, 0.25, 0.25 * change["val_rise"]]
    rows = trial(tl, vl, [0.5, ta, ta], [0.5, va, va])
    assert dx.diagnose(rows).findings[0].kind == kind


def test_a_train_loss_wobbling_up_near_zero_is_not_diverging():
    """The absolute floor: a climb must give back a tenth of the untrained loss (2.3 here)."""
    others = [r for i in range(3) for r in trial([2.3, 2.0], [2.3, 2.1], [0.3, 0.4],
                                                    [0.3, 0.4], trial_id=10 + i)]
    tiny = trial([2.3, 7e-9, 0.13], [2.3, 0.05, 0.06], [0.3, 1.0, 0.97], [0.3, 0.98, 0.97])
    small = trial([2.3, 8e-5, 1.4e-3], [2.3, 0.04, 0.04], [0.3, 1.0, 1.0], [0.3, 0.98, 0.98],
                  trial_id=1)
    real = trial([2.3, 0.1, 0.45], [2.3, 0.12, 0.5], [0.3, 0.97, 0.9], [0.3, 0.96, 0.88],
                 trial_id=2)
    d = dx.diagnose(tiny + small + real + others)
    assert d.for_trial(0).kind != "diverging" and d.for_trial(1).kind != "diverging"
    assert d.for_trial(2).kind == "diverging" and "climbed from 0.1" in d.for_trial(2).evidence
    assert dx.Thresholds().diverge_min_rise == 0.1


@pytest.mark.parametrize("dropout, ladder", [(0.1, "try 0.3 / 0.5 / 0.7"),
                                             (0.387, "try 0.5 / 0.7"), (0.72, None)])
def test_dropout_advice_never_suggests_less_than_the_current_value(dropout, ladder):
    rows = [dict(r, dropout=dropout) for r in CASES["overfitting"]]
    suggestion = dx.diagnose(rows).findings[0].suggestion
    if ladder is None:
        assert "dropout" not in suggestion and "weight_decay" in suggestion
    else:
        assert f"more dropout (now {dropout}; {ladder})" in suggestion


def test_narrowing_is_advised_only_when_it_would_exclude_the_problem_trials():
    def search(bad_lr):
        healthy = [r for i, lr in enumerate((1e-3, 1e-2, 1e-1))
                   for r in [dict(row, trial_id=10 + i, learning_rate=lr)
                             for row in CASES["healthy"]]]
        bad = [dict(row, learning_rate=bad_lr) for row in CASES["diverging"]]
        return dx.diagnose(healthy + bad, "val_loss", "min").text()

    assert "narrow the space toward the healthy range" in search(0.9)
    inside = search(3e-2)
    assert "narrow the space" not in inside and "lie inside the healthy range" in inside


def test_train_longer_only_while_validation_still_improves():
    improving = trial([0.9, 0.3, 0.1, 0.05], [0.95, 0.35, 0.15, 0.12],
                      [0.80, 0.93, 0.97, 0.99], [0.79, 0.92, 0.96, 0.97])
    turned = trial([0.9, 0.3, 0.1, 0.05], [0.95, 0.35, 0.15, 0.2],
                   [0.80, 0.93, 0.97, 0.99], [0.79, 0.92, 0.96, 0.96])
    a, b = dx.diagnose(improving).findings[0], dx.diagnose(turned).findings[0]
    assert (a.kind, b.kind) == ("healthy", "healthy")
    assert a.suggestion.startswith("train longer") and b.suggestion == ""
    assert "lowest validation loss 0.15 at step 300" in b.evidence


def test_custom_thresholds_change_the_verdict():
    rows = CASES["underfitting"]
    assert dx.diagnose(rows, thresholds=dx.Thresholds(fit_accuracy=0.6)).findings[0].kind == \
        "healthy"


def test_a_clone_inherits_its_roots_init():
    root = trial([2.3026, 2.3026], [2.3026, 2.3026], [0.1, 0.1], [0.1, 0.1], init="zeros")
    # The clone's own init value is meaningless (its weights are copied): its root's counts.
    clone = trial([2.3026], [2.3026], [0.1], [0.1], trial_id=1, parent_id=0,
                  first_generation=2, init="he_normal")
    fitted_clone = trial([0.1], [0.2], [0.99], [0.97], trial_id=2, parent_id=0,
                         first_generation=2, init="zeros")
    d = dx.diagnose(root + clone + fitted_clone)
    assert d.for_trial(1).kind == "symmetric_init"
    assert "of trial 0, whose weights it inherited" in d.for_trial(1).evidence
    assert d.for_trial(2).kind == "healthy"


def test_tasks_without_accuracy_are_judged_on_losses():
    def no_acc(rows):
        return [{k: v for k, v in r.items() if "accuracy" not in k} for r in rows]

    over = no_acc(trial([1.0, 0.3, 0.1], [1.0, 0.4, 0.8]))
    flat = no_acc(trial([1.0, 1.0, 0.99], [1.0, 1.0, 1.0], trial_id=1))
    fine = no_acc(trial([1.0, 0.3, 0.1], [1.0, 0.35, 0.2], trial_id=2))
    d = dx.diagnose(over + flat + fine)
    assert [d.for_trial(t).kind for t in (0, 1, 2)] == ["overfitting", "stalled", "healthy"]


def test_a_whole_search_reads_best_first_with_counts_and_notes():
    history = [r for i, kind in enumerate(dx.KINDS)
               for r in [dict(row, trial_id=i, slot=i) for row in CASES[kind]]]
    d = dx.diagnose(history, "val_loss", "min")
    assert d.best_trial_id == dx.KINDS.index("healthy") and d.findings[0].kind == "healthy"
    assert d.counts() == {k: 1 for k in dx.KINDS}
    text = d.text()
    assert text.startswith("Fit diagnosis of 6 trials (val_loss, lower is better)")
    for label in dx.LABELS.values():
        assert label in text
    assert "learning_rate of diverging trials: 0.9" in text  # the search-level note
    assert str(d) == text
    assert [f["kind"] for f in json.loads(json.dumps(d.to_dicts()))] == [
        f.kind for f in d.findings]
    assert d.of_kind("stalled")[0].trial_id == dx.KINDS.index("stalled")
    with pytest.raises(KeyError):
        d.for_trial(99)
    with pytest.raises(ValueError, match="unknown kind"):
        d.of_kind("sad")


def test_thresholds_document_every_field():
    doc = dx.Thresholds.__doc__
    for field in dataclasses.fields(dx.Thresholds):
        assert f"{field.name}:" in doc, field.name
