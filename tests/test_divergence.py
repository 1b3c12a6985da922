"""A diverging trial is contained: NaN in one slot never touches another."""

import jax
import numpy as np

import vtune
from vtune.program import build

SPACE = vtune.Space({"learning_rate": vtune.loguniform(1e-4, 1e4)})


def train(task, lrs, generations=2):
    program, table, *_ = build(task, SPACE, steps=10)
    hp = table.encode(table.complete({"learning_rate": np.asarray(lrs)}, len(lrs)))
    ids = np.arange(len(lrs), dtype=np.int32)
    pop = program.init(np.uint32(0), ids, hp)
    for _ in range(generations):
        pop, metrics = program.train(pop, task.device_data(), np.uint32(0), np.int32(100))
    return jax.device_get((pop.params, metrics))


def test_nan_in_one_trial_leaves_the_others_bit_identical(tiny_sgd_task):
    sane = [1e-2, 3e-2, 1e-1, 3e-3, 1e-2, 5e-2, 2e-2, 1e-3]
    with_bad = list(sane)
    with_bad[3] = 1e3
    params, metrics = train(tiny_sgd_task, with_bad)
    ref_params, ref_metrics = train(tiny_sgd_task, sane)

    assert metrics["diverged"].tolist() == [i == 3 for i in range(8)]
    assert np.isnan(metrics["val_loss"][3])
    assert not ref_metrics["diverged"].any()
    others = np.arange(8) != 3
    for leaf, ref in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
        assert not np.isfinite(leaf[3]).all()
        np.testing.assert_array_equal(leaf[others], ref[others])
    for name in ("val_loss", "val_accuracy", "train_loss"):
        np.testing.assert_array_equal(metrics[name][others], ref_metrics[name][others])
