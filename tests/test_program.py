"""Pieces of the compiled program: minibatch sampling and the data subsample."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vtune
from vtune.program import build


@pytest.fixture(scope="module")
def indexed():
    """A task whose training inputs are their own row index."""
    n = 100
    x = np.arange(n, dtype=np.float32)[:, None]
    data = vtune.datasets.Dataset(x, np.arange(n, dtype=np.int32) % 2, x[:10],
                                  np.arange(10, dtype=np.int32) % 2)
    task = vtune.tasks.mlp_classifier(data, hidden_sizes=(4,), batch_size=10)
    program, *_ = build(task, vtune.Space({"train_fraction": vtune.uniform(0.1, 1.0)}), 1)
    return program, task.device_data()


def rows(program, data, steps, fraction, key=0):
    out = [program.minibatch(data, jax.random.key(key), jnp.int32(s), jnp.float32(fraction))[0]
           for s in steps]
    return np.concatenate(out)[:, 0].astype(int)


def test_minibatches_depend_on_the_trial_key_and_step_and_cover_the_data(indexed):
    program, data = indexed
    first = rows(program, data, range(10), 1.0)
    assert first.tolist() == rows(program, data, range(10), 1.0).tolist()  # deterministic
    assert first.tolist() != rows(program, data, range(10), 1.0, key=1).tolist()
    assert first.tolist() != rows(program, data, range(10, 20), 1.0).tolist()
    assert set(rows(program, data, range(100), 1.0)) == set(range(100))


def test_train_fraction_samples_only_the_leading_subset(indexed):
    program, data = indexed
    subset = rows(program, data, range(30), 0.3)
    assert set(subset) == set(range(30))
    # At least one batch's worth of examples, whatever the fraction.
    assert set(rows(program, data, range(30), 0.01)) == set(range(10))
