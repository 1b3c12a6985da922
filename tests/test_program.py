"""Pieces of the compiled program: minibatch order and the data subsample."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vtune
from vtune.search import build


@pytest.fixture(scope="module")
def indexed():
    """A task whose training inputs are their own row index."""
    n = 100
    x = np.arange(n, dtype=np.float32)[:, None]
    data = vtune.datasets.Dataset(x, np.zeros(n, np.int32) + np.arange(n) % 2, x[:10],
                                  np.arange(10, dtype=np.int32) % 2)
    task = vtune.tasks.mlp_classifier(data, hidden_sizes=(4,), batch_size=10)
    program, _, _ = build(task, vtune.Space({"train_fraction": vtune.uniform(0.1, 1.0)}), 1)
    return program, task.device_data()


def rows(program, data, steps, fraction, key=0):
    out = [program._batch(data, jax.random.key(key), jnp.int32(s), jnp.float32(fraction))[0]
           for s in steps]
    return np.concatenate(out)[:, 0].astype(int)


def test_an_epoch_visits_every_example_once_in_a_trial_specific_order(indexed):
    program, data = indexed
    epoch = rows(program, data, range(10), 1.0)
    assert sorted(epoch) == list(range(100))
    assert epoch.tolist() != list(range(100))
    assert rows(program, data, range(10), 1.0, key=1).tolist() != epoch.tolist()
    assert rows(program, data, range(10, 20), 1.0).tolist() != epoch.tolist()  # next epoch


def test_train_fraction_samples_only_the_leading_subset(indexed):
    program, data = indexed
    epoch = rows(program, data, range(3), 0.3)  # 30 examples: 3 batches per epoch
    assert sorted(epoch) == list(range(30))
    assert set(rows(program, data, range(3, 9), 0.3)) == set(range(30))
    # At least one batch, whatever the fraction.
    assert sorted(rows(program, data, [0], 0.01)) == list(range(10))
