"""keep_top: the params of the k best trials, kept on the way and across checkpoints."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vtune
from helpers.reference import mean_ce  # the 16-16-4 MLP of tiny_task
from vtune.checkpoint import manager as manager_lib
from vtune.search import driver

SPACE = {"learning_rate": vtune.loguniform(1e-3, 3e-1), "dropout": vtune.uniform(0.0, 0.5)}
# The shapes of test_search's and test_results' searches, so little compiles anew.
ARGS = dict(population_size=8, generations=4, steps_per_generation=10, seed=2, verbose=False)


def expected_top(history, objective, mode, k):
    """Written from the documented rule: each trial at its best usable evaluation, ranked by
    the objective, then the validation loss, then the earlier evaluation (generation, slot)."""
    s = 1.0 if mode == "min" else -1.0
    best = {}
    for r in history:
        if r["status"] == "diverged" or not math.isfinite(r[objective]):
            continue
        tie = r["val_loss"] if objective != "val_loss" else math.inf
        key = (s * r[objective], tie, r["generation"], r["slot"])
        if r["trial_id"] not in best or key < best[r["trial_id"]][0]:
            best[r["trial_id"]] = (key, r)
    ranked = sorted(best.values(), key=lambda kr: kr[0])[:k]
    return [(r["trial_id"], r["generation"]) for _, r in ranked]


def val_loss_of(params, data):
    return float(mean_ce(nnx.to_pure_dict(params), jnp.asarray(data.x_val),
                         jnp.asarray(data.y_val)))


def leaves(trials):
    return [[np.asarray(x) for x in jax.tree.leaves(t.params)] for t in trials]


def same_top(a, b):
    assert [(t.trial_id, t.generation) for t in a] == [(t.trial_id, t.generation) for t in b]
    for x, y in zip(leaves(a), leaves(b)):
        assert all(np.array_equal(u, v) for u, v in zip(x, y))


@pytest.fixture(scope="module")
def searched(tiny_task):
    return vtune.population_search(tiny_task, SPACE, keep_top=4, **ARGS)


@pytest.mark.parametrize("objective", ["val_loss", "val_accuracy"])
def test_the_k_best_trials_are_kept_each_with_its_own_params(tiny_task, tiny_data, searched,
                                                             objective):
    r = searched if objective == "val_loss" else vtune.population_search(
        tiny_task, SPACE, keep_top=4, objective=objective, **ARGS)
    mode = "min" if objective == "val_loss" else "max"
    assert [(t.trial_id, t.generation) for t in r.top_trials] == expected_top(
        r.history, objective, mode, 4)
    assert r.top_trials[0] is r.best
    assert [t.trial_id for t in r.top_trials] == [t["trial_id"] for t in r.top(4)]
    rows = {(row["trial_id"], row["generation"]): row for row in r.history}
    for t in r.top_trials:
        row = rows[t.trial_id, t.generation]
        assert t.metrics[objective] == row[objective] and t.step == row["step"]
        assert t.hparams["learning_rate"] == row["learning_rate"]
        # The params are that trial's at that evaluation: they give its recorded loss.
        assert val_loss_of(t.params, tiny_data) == pytest.approx(row["val_loss"], rel=1e-5)


def test_json_keeps_the_top_trials_without_their_params(searched):
    back = vtune.SearchResult.from_json(searched.to_json())
    assert [(t.trial_id, t.generation, t.step, t.hparams, t.metrics) for t in back.top_trials] \
        == [(t.trial_id, t.generation, t.step, t.hparams, t.metrics)
            for t in searched.top_trials]
    assert len(back.top_trials) == 4 and all(t.params is None for t in back.top_trials)


def test_keep_top_zero_keeps_only_the_best_and_one_keeps_it_once(tiny_task, searched):
    none = vtune.population_search(tiny_task, SPACE, keep_top=0, **ARGS)
    one = vtune.population_search(tiny_task, SPACE, keep_top=1, **ARGS)
    assert none.top_trials == () and len(one.top_trials) == 1 and one.top_trials[0] is one.best
    for r in (none, one):
        assert (r.best.trial_id, r.best.generation) == (searched.best.trial_id,
                                                         searched.best.generation)
        same_top([r.best], [searched.best])


@pytest.mark.parametrize("value, error, message", [
    (-1, ValueError, "keep_top must be >= 0, got -1"),
    (2.0, TypeError, "keep_top must be an int, got 2.0"),
    (True, TypeError, "keep_top must be an int, got True"),
    ("3", TypeError, "keep_top must be an int, got '3'"),
])
def test_keep_top_is_validated_before_anything_compiles(tiny_task, compiles, value, error,
                                                        message):
    with pytest.raises(error, match=message):
        vtune.population_search(tiny_task, SPACE, keep_top=value, **ARGS)
    assert not compiles


def interrupted_at(generation):
    def stop(g):
        if g.generation == generation:
            raise KeyboardInterrupt
    return stop


def test_an_interrupted_search_resumes_to_the_same_top_params(tiny_task, searched, tmp_path):
    d = tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):
        vtune.population_search(tiny_task, SPACE, keep_top=4, checkpoint_dir=d,
                                callbacks=[interrupted_at(2)], **ARGS)
    resumed = vtune.population_search(tiny_task, SPACE, keep_top=4, checkpoint_dir=d, **ARGS)
    same_top(resumed.top_trials, searched.top_trials)
    assert resumed.top_trials[0] is resumed.best
    same_top(vtune.load(d, tiny_task).top_trials, searched.top_trials)
    # keep_top is not part of the search's identity: fewer resumes as the same search, and
    # the top-2 are the first two of the top-4.
    again = vtune.population_search(tiny_task, SPACE, keep_top=2, checkpoint_dir=d, **ARGS)
    same_top(again.top_trials, searched.top_trials[:2])


def test_a_checkpoint_written_before_top_trials_were_kept_resumes(tiny_task, searched,
                                                                 tmp_path, monkeypatch):
    """Saved as vtune wrote it before keep_top: no ``top`` item, no ``top`` key."""
    save = manager_lib.Checkpointer.save

    def old_save(self, generation, population, best_params, search, top=()):
        search = {k: v for k, v in search.items() if k != "top"}
        return save(self, generation, population, best_params, search)

    d = tmp_path / "old"
    with monkeypatch.context() as m:
        m.setattr(manager_lib.Checkpointer, "save", old_save)
        with pytest.raises(KeyboardInterrupt):
            vtune.population_search(tiny_task, SPACE, keep_top=4, checkpoint_dir=d,
                                    callbacks=[interrupted_at(2)], **ARGS)
    step = d / "2"
    assert (step / "best").is_dir() and not (step / "top").exists()
    loaded = vtune.load(d, tiny_task)
    assert len(loaded.top_trials) == 1 and loaded.top_trials[0] is loaded.best
    resumed = vtune.population_search(tiny_task, SPACE, keep_top=4, checkpoint_dir=d, **ARGS)
    # The history and the best are the uninterrupted search's; the kept set restarted from
    # the best, so it holds the best first and then trials ranked as the rule says.
    assert [{k: v for k, v in r.items() if k != "wall_time"} for r in resumed.history] == \
        [{k: v for k, v in r.items() if k != "wall_time"} for r in searched.history]
    same_top([resumed.best], [searched.best])
    assert resumed.top_trials[0] is resumed.best and 1 <= len(resumed.top_trials) <= 4
    ids = [t.trial_id for t in resumed.top_trials]
    assert len(set(ids)) == len(ids)
    keys = [(t.metrics["val_loss"], t.generation) for t in resumed.top_trials]
    assert keys == sorted(keys)


def test_a_directory_of_vtune_0_1_loads_with_its_best_as_the_only_kept_trial():
    import pathlib

    r = vtune.load(pathlib.Path(__file__).parent / "data" / "checkpoint-v0.1")
    assert len(r.top_trials) == 1 and r.top_trials[0] is r.best and r.best.params is not None


# --- params are taken from the population only when the kept set changes ---------------

class FakeTable:
    def complete(self, configs, size):
        return {"learning_rate": np.asarray(configs["learning_rate"], np.float32)}

    def encode(self, values):
        return dict(values)


class FakeProgram:
    def __init__(self):
        self.taken = []

    def take(self, params, i):
        self.taken.append(int(i))
        return {"w": params["w"][int(i)]}


class FakePop:
    def __init__(self, g):
        self.params = {"w": np.arange(3, dtype=np.float32) + 10 * g}  # slot i holds 10g + i


def test_params_are_taken_only_for_trials_that_enter_the_kept_set():
    program = FakeProgram()
    host = driver._Host(generation=0, trial_id=np.array([0, 1, 2], np.int32),
                        parent_id=np.full(3, -1, np.int64), step=np.zeros(3, np.int64),
                        next_id=3, configs={"learning_rate": [0.1, 0.2, 0.3]}, strategy=None,
                        history=[], best=None, elapsed=0.0, examples=np.zeros(3, np.int64))
    kept = driver._Kept(keep_top=2)
    # (val_loss per slot, trial ids, slots whose params must be taken this generation)
    plan = [([0.5, 0.7, 0.9], [0, 1, 2], [0, 1]),   # first two kept
            ([0.6, 0.8, 0.95], [0, 1, 2], []),      # all worse: nothing changes, no take
            ([0.4, np.nan, 0.75], [0, 1, 2], [0]),  # trial 0 improves; 1 diverges (stays kept)
            ([0.45, 0.3, 0.2], [0, 3, 4], [2, 1])]  # newcomers 4 then 3 push out 0 and 1
    for g, (losses, ids, taken) in enumerate(plan):
        host = driver.dataclasses.replace(host, generation=g,
                                          trial_id=np.array(ids, np.int32))
        losses = np.array(losses, np.float32)
        m = {"val_loss": losses, "diverged": ~np.isfinite(losses)}
        before = len(program.taken)
        host, kept = driver._record(host, m, FakePop(g), program, FakeTable(), "val_loss",
                                    "min", 10, 4, 0.0, kept)
        assert program.taken[before:] == taken, g
    assert [(e["trial_id"], e["generation"]) for e in host.top] == [(4, 3), (3, 3)]
    assert [float(p["w"]) for p in kept.top] == [32.0, 31.0]  # slot 2 and 1 of generation 3
    assert host.best is host.top[0] and kept.best is kept.top[0]
