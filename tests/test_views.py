"""What users read: objectives that mean what they say, callbacks, and a CLI that tells the truth."""

import json
import math
import textwrap

import pytest

import vtune
import vtune.cli
from vtune.report import schema
from vtune.search import SearchSpec

SPACE = {"learning_rate": vtune.loguniform(1e-3, 1e-1)}
ARGS = dict(population_size=4, generations=2, steps_per_generation=3, verbose=False)


@pytest.mark.parametrize("objective, mode", [
    ("val_loss", "min"), ("train_error", "min"), ("val_mae", "min"), ("val_rmse", "min"),
    ("val_accuracy", "max"), ("val_f1", "max"), ("val_auc", "max"), ("val_r2", "max"),
])
def test_mode_is_inferred_for_the_metrics_vtune_knows(objective, mode):
    assert SearchSpec.create(vtune.Space(SPACE), objective=objective).mode == mode


def test_other_objectives_need_a_mode(tiny_task, compiles):
    with pytest.raises(ValueError, match="mode is required for objective 'val_custom'"):
        vtune.population_search(tiny_task, SPACE, objective="val_custom", **ARGS)
    assert SearchSpec.create(vtune.Space(SPACE), objective="val_custom", mode="max").mode == "max"
    assert sum(compiles.values()) == 0


def test_ties_on_the_objective_go_to_the_lower_validation_loss():
    rows = [{"trial_id": 0, "status": "alive", "val_accuracy": 1.0, "val_loss": 0.20},
            {"trial_id": 1, "status": "alive", "val_accuracy": 1.0, "val_loss": 0.01},
            {"trial_id": 2, "status": "alive", "val_accuracy": 0.9, "val_loss": 0.001}]
    assert schema.best_row(rows, "val_accuracy", "max")["trial_id"] == 1
    history = [dict(r, generation=0, slot=r["trial_id"], parent_id=-1, step=1) for r in rows]
    result = vtune.SearchResult(best=None, history=history, objective="val_accuracy",
                                mode="max", metrics=("val_accuracy", "val_loss"))
    assert [t["trial_id"] for t in result.top(3)] == [1, 0, 2]


def test_the_search_picks_the_same_best_as_its_table(tiny_task):
    r = vtune.population_search(tiny_task, SPACE, objective="val_accuracy", **ARGS)
    assert r.top(1)[0]["trial_id"] == r.best.trial_id


def test_callbacks_receive_every_generation(tiny_task, tmp_path):
    seen = []
    log = tmp_path / "log.jsonl"
    result = vtune.population_search(
        tiny_task, SPACE, **{**ARGS, "generations": 3},
        callbacks=[seen.append, vtune.report.callbacks.jsonl(log)])
    assert [g.generation for g in seen] == [1, 2, 3]
    assert all(len(g.rows) == 4 and g.generations == 3 for g in seen)
    assert seen[-1].best.trial_id == result.best.trial_id
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == len(result.history) == 12
    assert [row["trial_id"] for row in lines] == [row["trial_id"] for row in result.history]
    with pytest.raises(TypeError, match="callbacks must be a list of functions"):
        vtune.population_search(tiny_task, SPACE, callbacks=print, **ARGS)


TASK = '''
import vtune

def build():
    data = vtune.datasets.synthetic(num_examples=256, num_features=16, num_classes=4, seed=0)
    return vtune.tasks.mlp_classifier(data, hidden_sizes=(8,), batch_size=32)
'''


def test_the_cli_announces_resume_and_completion_and_can_overwrite(tmp_path, capsys):
    (tmp_path / "views_cli_task.py").write_text(TASK)
    config = tmp_path / "search.toml"
    config.write_text(textwrap.dedent('''
        task = "views_cli_task:build"
        population_size = 4
        generations = 2
        steps_per_generation = 3
        out_dir = "out"
        checkpoint_dir = "ckpt"
        [space]
        learning_rate = {loguniform = [1e-3, 1e-1]}
    '''))
    assert vtune.cli.main(["run", str(config), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.png"))
    assert "vtune: compiling the population program" in err and "resuming" not in err
    assert vtune.cli.main(["run", str(config), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "is finished (2 generations): nothing left to train" in err
    config.write_text(config.read_text().replace("generations = 2", "generations = 3"))
    assert vtune.cli.main(["run", str(config), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert vtune.cli.main(["run", str(config), "--overwrite", "--no-plots"]) == 0
    out, err = capsys.readouterr()
    assert "resuming" not in err and (tmp_path / "out" / "history.csv").read_text().count(
        "\n") == 1 + 4 * 3
    assert "wrote" in out and str(tmp_path / "out") in out


def test_an_interrupted_search_says_where_it_resumes(tiny_task, tmp_path, capsys):
    def stop(g):
        if g.generation == 1:
            raise KeyboardInterrupt

    args = {**ARGS, "generations": 3, "verbose": True, "checkpoint_dir": tmp_path / "c"}
    with pytest.raises(KeyboardInterrupt, match="generation 1 of 3 is checkpointed"):
        vtune.population_search(tiny_task, SPACE, callbacks=[stop], **args)
    done = vtune.population_search(tiny_task, SPACE, **args)
    assert "from generation 1 of 3" in capsys.readouterr().err
    assert max(r["generation"] for r in done.history) == 2


def test_a_best_that_holds_up_ranks_trials_at_their_last_evaluation():
    """A trial with one lucky evaluation leads by its best, not by where it ended."""
    curves = {0: [0.30, 0.05, 0.60], 1: [0.20, 0.08, 0.09], 2: [0.25, 0.12, math.nan]}
    rows = [{"generation": g, "slot": t, "trial_id": t, "parent_id": -1, "step": 100 * (g + 1),
             "status": "alive" if math.isfinite(v) else "diverged", "learning_rate": 0.1 * t,
             "val_loss": v, "val_accuracy": 0.9}
            for t, vals in curves.items() for g, v in enumerate(vals)]
    result = vtune.SearchResult(best=None, history=rows, objective="val_loss", mode="min",
                                tuned=("learning_rate",))
    best = result.top(3)
    assert [(t["trial_id"], t["val_loss"], t["best_step"]) for t in best] == [
        (0, 0.05, 200), (1, 0.08, 200), (2, 0.12, 200)]
    last = result.top(3, at="last")
    assert [t["trial_id"] for t in last] == [1, 0]  # trial 2 ended diverged
    assert (last[0]["val_loss"], last[0]["best_step"]) == (0.09, 300)
    assert result.trials(at="last")[0]["val_loss"] == 0.60
    with pytest.raises(ValueError, match="'best' or 'last'"):
        result.top(1, at="final")


def read_scalars(logdir):
    """{tag: [(step, value)]} of TensorBoard event files, read as TFRecords by hand."""
    import struct

    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(logdir.glob("events.out.tfevents*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4  # length, its crc, the record, its crc
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_the_tensorboard_callback_writes_every_generation_and_trial(tiny_task, tmp_path):
    pytest.importorskip("tensorboardX")
    writer = vtune.report.tensorboard.tensorboard(tmp_path / "tb")
    result = vtune.population_search(tiny_task, SPACE, callbacks=[writer], **ARGS)
    writer.close()
    scalars = read_scalars(tmp_path / "tb")
    generations = ARGS["generations"]
    best = scalars["search/best_val_loss"]
    assert [s for s, _ in best] == list(range(1, generations + 1))
    for g, value in best:  # the best so far, generation by generation
        rows = [r for r in result.history if r["generation"] < g and r["status"] != "diverged"]
        assert value == pytest.approx(min(r["val_loss"] for r in rows), rel=1e-6)
    assert [v for _, v in scalars["search/alive"]] == [
        sum(r["status"] == "alive" for r in result.history if r["generation"] == g)
        for g in range(generations)]
    for tid, rows in schema.by_trial(result.history).items():
        assert scalars[f"val_loss/trial_{tid}"] == [
            (r["step"], pytest.approx(r["val_loss"], rel=1e-6)) for r in rows]
