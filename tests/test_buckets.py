"""Width buckets: one compiled program per bucket, the same search as one masked program.

What a trial computes in its bucket is checked against unpadded networks in
test_structure_nn (the equivalence test runs both ways); here: which buckets a space gets,
the allocation the layers take inside a bucket, and that a whole search (refills, PBT
clones, resume) is the masked search, compiled once per bucket.
"""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vtune
from vtune import nn
from vtune.program import Program, buckets, build

SPECS = {"width": {"low": 1, "high": 128, "integer": True, "width": True},
         "depth": {"low": 1, "high": 3, "integer": True}}


@pytest.mark.parametrize("dist,expected", [
    (vtune.choice([16, 32, 64, 128]), (16, 32, 64, 128)),   # a choice's widths are caps
    (vtune.choice([8, 16, 32, 64, 128]), (16, 32, 64, 128)),  # more: the smallest merge up
    (vtune.intuniform(1, 128), (16, 32, 64, 128)),           # a range: powers of two
    (vtune.intuniform(5, 100, log=True), (16, 32, 64, 100)),  # ... and its maximum
    (vtune.intuniform(3, 6), (4, 6)),
    (vtune.fixed(24), (24,)),
])
def test_levels(dist, expected):
    assert buckets.levels(SPECS, vtune.Space({"width": dist})) == expected


def test_levels_of_a_space_without_the_width_use_its_default():
    specs = {"width": {**SPECS["width"], "default": 64}, "depth": SPECS["depth"]}
    assert buckets.levels(specs, vtune.Space({"depth": vtune.intuniform(1, 3)})) == (64,)
    assert buckets.levels({"depth": SPECS["depth"]}, vtune.Space({"depth": vtune.fixed(2)})) == ()
    assert buckets.levels(SPECS, vtune.Space({"width": vtune.intuniform(1, 128)}),
                          max_buckets=2) == (64, 128)


def test_a_bucket_slot_is_the_smallest_cap_that_holds_its_widest_layer():
    split = object.__new__(buckets.Bucketed)  # bucket_of reads only the names and caps
    split.names, split.caps = ("width_1", "width_2"), (4, 8, 16)
    got = split.bucket_of({"width_1": np.array([1, 4, 5, 16, 2]),
                           "width_2": np.array([1, 1, 1, 1, 9])})
    assert got.tolist() == [0, 0, 1, 2, 2]  # the widest of the two layers


def test_layers_inside_an_allocation_take_its_caps_and_keep_their_bounds():
    hp = {"width": jnp.float32(3), "depth": jnp.float32(2)}
    with nn.allocation({"width": 4}):
        mlp = nn.MaskedMLP(5, 16, 2, 3, hp=hp, rngs=nnx.Rngs(0))
        with nn.allocation({}):  # the full allocation again, inside another
            wide = nn.MaskedLinear(5, 16, out_width="width", hp=hp, rngs=nnx.Rngs(0))
        fixed = nn.MaskedLinear(5, 16, rngs=nnx.Rngs(0))  # no width hyperparameter: no cap
    assert [layer.kernel.shape for layer in mlp.hidden] == [(5, 4), (4, 4)]
    assert mlp.out.kernel.shape == (4, 3)
    assert wide.kernel.shape == (5, 16) and fixed.kernel.shape == (5, 16)
    specs = nn.hparam_specs(mlp)
    assert specs["width"]["high"] == 16 and specs["width"]["width"] and "width" not in \
        specs["depth"]
    # The capped layer computes what the full one computes on its leading block.
    full = nn.MaskedMLP(5, 16, 2, 3, hp=hp, rngs=nnx.Rngs(0))
    for small, big in zip([*mlp.hidden, mlp.out], [*full.hidden, full.out]):
        big.kernel[...] = jnp.zeros_like(big.kernel[...]).at[
            :small.kernel.shape[0], :small.kernel.shape[1]].set(small.kernel[...])
    x = jax.random.normal(jax.random.key(1), (7, 5))
    np.testing.assert_allclose(mlp(x), full(x), rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def task(tiny_data):
    return vtune.tasks.mlp_classifier(tiny_data, hidden_sizes=(8, 8), dropout=False,
                                      batch_size=32)


# Every structural knob, the optimizer family among them.
SPACE = {"width": vtune.intuniform(1, 8), "depth": vtune.intuniform(1, 2),
         "learning_rate": vtune.loguniform(1e-3, 1e-1),
         "optimizer": vtune.choice(["adamw", "sgdw"]),
         "batch_size": vtune.choice([16, 32]), "class_balance": vtune.uniform(0.0, 1.0),
         "plateau_factor": vtune.uniform(0.2, 0.9), "plateau_patience": vtune.intuniform(1, 2)}


def test_one_masked_program_unless_bucketing_is_asked_for(task):
    built = build(task, vtune.Space(SPACE), 2)
    assert isinstance(buckets.choose(True, built.program, built.specs, vtune.Space(SPACE), 8),
                      buckets.Bucketed)
    assert buckets.choose(False, built.program, built.specs, vtune.Space(SPACE), 8) \
        is built.program
    assert vtune.search.SearchSpec.create(SPACE).bucketing is False
    # Only the full width: nothing to narrow, one program.
    only_full = vtune.Space({**SPACE, "width": vtune.choice([8])})
    built = build(task, only_full, 2)
    assert buckets.choose(True, built.program, built.specs, only_full, 8) is built.program
    assert isinstance(built.program, Program)
    with pytest.raises(TypeError, match="bucketing must be True or False"):
        vtune.population_search(task, SPACE, bucketing="yes", verbose=False)


def strip(result):
    return [{k: v for k, v in h.items() if k != "wall_time"} for h in result.history]


def test_a_bucketed_search_is_the_masked_search_compiled_once_per_bucket(task, compiles):
    """PBT (clones that keep their structure, redrawn learning rates) and fresh refills:
    histories and best params agree with one masked program (float32, a few steps); the
    buckets' steps compile once each and the masked train never."""
    kw = dict(population_size=8, generations=3, steps_per_generation=3, seed=5, verbose=False,
              strategy=vtune.strategies.pbt(quantile=0.25, resample_probability=0.5))
    masked = vtune.population_search(task, SPACE, bucketing=False, **kw)
    before = dict(compiles)
    split = vtune.population_search(task, SPACE, bucketing=True, **kw)
    again = vtune.population_search(task, SPACE, bucketing=True, **{**kw, "seed": 6})
    new = {k: v - before.get(k, 0) for k, v in compiles.items()}
    caps = buckets.levels(build(task, vtune.Space(SPACE), 3).specs, vtune.Space(SPACE))
    assert caps == (1, 2, 4, 8)
    assert new.get("bucket_step") == len(caps) and not new.get("_train"), new
    assert len(set(np.searchsorted(caps, [h["width"] for h in split.history]))) >= 2
    assert len(again.history) == len(split.history)
    a, b = strip(masked), strip(split)
    assert [(h["trial_id"], h["parent_id"], h["status"], h["width"]) for h in a] == \
        [(h["trial_id"], h["parent_id"], h["status"], h["width"]) for h in b]
    for x, y in zip(a, b):
        for k in ("train_loss", "val_loss", "val_accuracy"):
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-6), (k, x["trial_id"])
    assert any(h["parent_id"] >= 0 for h in b), "PBT cloned nobody"
    assert split.best.trial_id == masked.best.trial_id
    for p, q in zip(jax.tree.leaves(masked.best.params), jax.tree.leaves(split.best.params)):
        assert p.shape == q.shape  # the full allocation, as the masked program keeps it
        np.testing.assert_allclose(q, p, rtol=1e-4, atol=1e-6)


def test_a_bucketed_search_resumes_from_its_checkpoint(task, tmp_path):
    kw = dict(population_size=8, generations=3, steps_per_generation=3, seed=7, verbose=False,
              strategy="successive_halving", bucketing=True)
    reference = vtune.population_search(task, SPACE, **kw)
    vtune.population_search(task, SPACE, checkpoint_dir=tmp_path, **kw)
    shutil.rmtree(tmp_path / "3")  # as if killed before the last generation was saved
    resumed = vtune.population_search(task, SPACE, checkpoint_dir=tmp_path, **kw)
    assert strip(resumed) == strip(reference)
    for p, q in zip(jax.tree.leaves(reference.best.params), jax.tree.leaves(resumed.best.params)):
        np.testing.assert_array_equal(p, q)


def test_a_generation_trains_every_slot_once_in_full_runs_of_its_widest_bucket():
    """Two devices' blocks of 6 slots, runs of 2: each device sorted by bucket, a run in the
    widest bucket it (or the other device's run) holds."""
    split = object.__new__(buckets.Bucketed)
    split.mesh = type("Mesh", (), {"devices": np.empty(2)})()
    split.caps, split.capacity = (4, 8, 16), 4
    bucket = np.array([2, 0, 1, 0, 2, 1,   0, 0, 0, 2, 2, 2])
    calls = list(split.chunks(bucket))
    # Sorted: device 0 holds buckets 0 0 | 1 1 | 2 2, device 1 0 0 | 0 2 | 2 2.
    assert [b for b, _ in calls] == [0, 2, 2]
    seen = []
    for b, slots in calls:
        for d, local in enumerate(slots.reshape(2, 2)):
            held = bucket[d * 6 + local]
            assert held.max() <= b  # nobody trains narrower than its width
            seen += list(d * 6 + local)
    assert sorted(seen) == list(range(12))  # each slot exactly once
    # A block that does not fill its last run pads with an index past the block.
    split.capacity = 8
    calls = list(split.chunks(bucket))
    assert len(calls) == 2 and calls[-1][1].reshape(2, 4)[:, 2:].tolist() == [[6, 6], [6, 6]]
