"""Checkpoint and resume: a killed search finishes as if nothing happened."""

import gc
import json
import math
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import vtune
from helpers.digest import tree_digest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPACE = {"learning_rate": vtune.loguniform(1e-3, 1e-1), "dropout": vtune.uniform(0.0, 0.5),
         "init": vtune.choice(["he_normal", "xavier_uniform"])}
ARGS = dict(population_size=6, generations=8, steps_per_generation=15, seed=11)

# The child process: the same search, checkpointed, its outcome written as JSON.
CHILD = """
import json, sys
import numpy as np, jax, vtune
data = vtune.datasets.synthetic(num_examples=256, num_features=16, num_classes=4, seed=0)
task = vtune.tasks.mlp_classifier(data, hidden_sizes=(16,), batch_size=32)
space = {"learning_rate": vtune.loguniform(1e-3, 1e-1), "dropout": vtune.uniform(0.0, 0.5),
         "init": vtune.choice(["he_normal", "xavier_uniform"])}
r = vtune.population_search(task, space, population_size=6, generations=8,
                            steps_per_generation=15, seed=11, checkpoint_dir=sys.argv[1],
                            verbose=False)
history = [{k: v for k, v in row.items() if k != "wall_time"} for row in r.history]
params = [np.asarray(x).tolist() for x in jax.tree.leaves(r.best.params)]
top = [[t.trial_id, t.generation, [np.asarray(x).tolist() for x in jax.tree.leaves(t.params)]]
       for t in r.top_trials]
json.dump({"history": history, "params": params, "top": top}, open(sys.argv[2], "w"))
"""


def outcome(result):
    """What must not change: the history, the best's params and the kept top trials'."""
    history = [{k: v for k, v in row.items() if k != "wall_time"} for row in result.history]
    return {"history": history,
            "params": [np.asarray(x).tolist() for x in jax.tree.leaves(result.best.params)],
            "top": [[t.trial_id, t.generation,
                     [np.asarray(x).tolist() for x in jax.tree.leaves(t.params)]]
                    for t in result.top_trials]}


@pytest.fixture(scope="module")
def reference(tiny_task):
    """The uninterrupted search, without checkpoints."""
    return vtune.population_search(tiny_task, SPACE, verbose=False, **ARGS)


@pytest.fixture(scope="module")
def finished(tiny_task, tmp_path_factory):
    directory = tmp_path_factory.mktemp("finished")
    result = vtune.population_search(tiny_task, SPACE, verbose=False, checkpoint_dir=directory,
                                     **ARGS)
    return directory, result


def test_checkpointed_search_equals_uninterrupted(reference, finished):
    assert outcome(finished[1]) == outcome(reference)
    assert len(reference.top_trials) == 3  # keep_top's default: every comparison covers them


def test_a_search_stopped_by_its_timeout_is_checkpointed_and_resumes(reference, tiny_task,
                                                                     tmp_path, capsys):
    # Any positive timeout has passed once a generation has trained: it stops after one.
    stopped = vtune.population_search(tiny_task, SPACE, checkpoint_dir=tmp_path, timeout=1e-9,
                                      **ARGS)
    assert {row["generation"] for row in stopped.history} == {0}
    assert "stopped at the timeout" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["1"]
    resumed = vtune.population_search(tiny_task, SPACE, verbose=False, checkpoint_dir=tmp_path,
                                      timeout=3600, **ARGS)
    assert outcome(resumed) == outcome(reference)


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, True, "10"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(tiny_task, bad):
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        vtune.population_search(tiny_task, SPACE, verbose=False, timeout=bad, **ARGS)


def test_killed_search_resumes_to_the_identical_result(reference, tmp_path):
    """SIGKILL at random moments (one of them as a save is being written), then resume."""
    directory, out = tmp_path / "ckpt", tmp_path / "out.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(0)
    kills = 0
    for attempt in range(4):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), str(out)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if attempt < 3:
            seen = set(p.name for p in directory.glob("*")) if directory.exists() else set()
            deadline = time.time() + 120
            while child.poll() is None and time.time() < deadline:
                names = set(p.name for p in directory.glob("*")) if directory.exists() else set()
                saving = any("tmp" in n for n in names - seen)
                new_step = any(n.isdigit() for n in names - seen)
                if (attempt == 0 and saving) or (attempt > 0 and new_step):
                    time.sleep(rng.uniform(0.0, 0.3) if attempt else 0.0)
                    child.send_signal(signal.SIGKILL)
                    kills += 1
                    break
                time.sleep(0.002)
        _, err = child.communicate(timeout=300)
        if child.returncode == 0:
            break
        assert child.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert kills >= 2, "the search finished before it could be killed"
    assert child.returncode == 0
    assert json.loads(out.read_text()) == json.loads(json.dumps(outcome(reference)))


def test_resuming_a_finished_search_returns_it_without_training(finished, tiny_task, compiles):
    directory, result = finished
    again = vtune.population_search(tiny_task, SPACE, verbose=False, checkpoint_dir=directory,
                                    **ARGS)
    assert outcome(again) == outcome(result)
    assert compiles["_train"] == 0


def test_load_returns_the_finished_result(finished, tiny_task):
    directory, result = finished
    loaded = vtune.load(directory, tiny_task)
    assert outcome(loaded) == outcome(result)
    assert type(loaded.best.params) is type(result.best.params)
    assert loaded.best.hparams == result.best.hparams and loaded.tuned == result.tuned
    raw = vtune.load(directory)  # without the task: arrays in nested dicts
    assert sorted(np.asarray(x).size for x in jax.tree.leaves(raw.best.params)) == \
        sorted(np.asarray(x).size for x in jax.tree.leaves(result.best.params))


# The truncated file makes orbax abandon its read coroutines: their "exception ignored" is
# the corruption this test causes on purpose.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(reference, tiny_task,
                                                                 tmp_path):
    directory = tmp_path / "ckpt"
    vtune.population_search(tiny_task, SPACE, verbose=False, checkpoint_dir=directory, **ARGS)
    latest = directory / str(ARGS["generations"])
    victim = max((p for p in (latest / "population").rglob("*") if p.is_file()),
                 key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    with pytest.warns(RuntimeWarning, match="unreadable"):
        resumed = vtune.population_search(tiny_task, SPACE, verbose=False,
                                          checkpoint_dir=directory, **ARGS)
    assert outcome(resumed) == outcome(reference)
    assert list(directory.glob(f"{ARGS['generations']}.unreadable-*"))
    gc.collect()  # the abandoned reads are reported here, under this test's filter


# The truncated file makes orbax abandon its read coroutines: their "exception ignored" is
# the corruption this test causes on purpose.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_readable_checkpoint_is_a_clear_error(tiny_task, tmp_path):
    directory = tmp_path / "ckpt"
    vtune.population_search(tiny_task, SPACE, verbose=False, checkpoint_dir=directory,
                            **dict(ARGS, generations=2))
    for step in (directory / "1", directory / "2"):
        for p in step.rglob("*"):
            if p.is_file() and "population" in p.parts:
                p.write_bytes(b"")
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="no readable"):
        vtune.population_search(tiny_task, SPACE, verbose=False, checkpoint_dir=directory,
                                **dict(ARGS, generations=2))
    gc.collect()  # the abandoned reads are reported here, under this test's filter


@pytest.mark.parametrize("change,match", [
    (dict(space={**SPACE, "dropout": vtune.uniform(0.0, 0.6)}), "space"),
    (dict(population_size=8), "population_size: checkpoint has 6, this call has 8"),
    (dict(objective="val_accuracy"), "objective"),
    (dict(task="other"), "task"),
    (dict(seed=12), "seed"),
])
def test_another_search_is_refused_and_the_directory_untouched(finished, tiny_task, tiny_data,
                                                               change, match):
    directory, _ = finished
    before = tree_digest(directory)
    kw = {**ARGS, "space": SPACE, "task": tiny_task, **change}
    if kw["task"] == "other":
        kw["task"] = vtune.tasks.mlp_classifier(tiny_data, hidden_sizes=(8,), batch_size=32)
    task, space = kw.pop("task"), kw.pop("space")
    with pytest.raises(ValueError, match=match):
        vtune.population_search(task, space, verbose=False, checkpoint_dir=directory, **kw)
    assert tree_digest(directory) == before


def test_non_empty_foreign_directory_needs_overwrite(tiny_task, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="overwrite=True"):
        vtune.population_search(tiny_task, SPACE, verbose=False, checkpoint_dir=tmp_path,
                                **dict(ARGS, generations=1))
    assert (tmp_path / "notes.txt").read_text() == "mine"
    vtune.population_search(tiny_task, SPACE, verbose=False, checkpoint_dir=tmp_path,
                            overwrite=True, **dict(ARGS, generations=1))
    assert not (tmp_path / "notes.txt").exists() and (tmp_path / "vtune_spec.json").exists()


def test_host_state_encoding_round_trips_exactly():
    from vtune.report.codec import decode, encode
    from vtune.strategies.base import SequenceState

    state = SequenceState(space=vtune.Space(SPACE), size=4, seed=3, drawn=7)
    data = {"a": np.array([0.1, np.nan, np.inf], np.float32), "s": np.array(["x", "y"], object),
            "t": (1, 2.5, "z"), "n": np.int32(5)}
    back = decode(json.loads(json.dumps(encode(data))))
    np.testing.assert_array_equal(back["a"], data["a"])
    assert back["a"].dtype == np.float32 and back["s"].tolist() == ["x", "y"]
    assert back["t"] == (1, 2.5, "z") and back["n"] == 5 and back["n"].dtype == np.int32
    template = SequenceState(space=vtune.Space({"x": vtune.uniform(0, 1)}), size=1, seed=0)
    restored = decode(json.loads(json.dumps(encode(state))), template)
    assert restored == state
    with pytest.raises(ValueError, match="template"):  # never a class imported by name
        decode(json.loads(json.dumps(encode(state))))
