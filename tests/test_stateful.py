"""Stateful layers: batch statistics are per-trial model state, train mode in the step and
running averages in the metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vtune
from vtune.program import build


class Net(nnx.Module):
    def __init__(self, hp, rngs):
        self.fc = nnx.Linear(16, 16, rngs=rngs)
        self.bn = nnx.BatchNorm(16, momentum=0.5, rngs=rngs)
        self.out = nnx.Linear(16, 4, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.bn(self.fc(x))))


@pytest.fixture(scope="module")
def trained(tiny_data):
    task = vtune.from_nnx(Net, tiny_data, batch_size=32)
    space = vtune.Space({"learning_rate": vtune.loguniform(1e-3, 1e-1)})
    program, table, *_ = build(task, space, steps=5)
    hp = table.encode(table.complete(space.sample(4, seed=0), 4))
    ids = np.arange(4, dtype=np.int32)
    pop = program.init(np.uint32(0), ids, hp)
    before = jax.tree.map(np.asarray, pop.state)
    pop, metrics = program.train(pop, task.device_data(), np.uint32(0), np.int32(5))
    return task, program, before, pop, jax.tree.map(np.asarray, metrics)


def test_batch_statistics_are_updated_per_trial(trained):
    _, _, before, pop, metrics = trained
    mean = np.asarray(pop.state["bn"]["mean"][...])
    assert mean.shape == (4, 16)
    assert np.all(np.asarray(before["bn"]["mean"][...]) == 0)
    assert np.abs(mean).max() > 0                      # the step ran in train mode
    assert len({m.tobytes() for m in mean}) == 4         # each trial its own statistics
    assert np.all(np.isfinite(metrics["val_loss"])) and not metrics["diverged"].any()


def test_metrics_use_the_running_averages(trained):
    """Evaluation is in eval mode: the same val loss as an NNX model of trial 0 in eval mode."""
    task, program, _, pop, metrics = trained
    params = jax.tree.map(lambda x: x[0], pop.params)
    state = jax.tree.map(lambda x: x[0], pop.state)
    graph, _ = nnx.split(nnx.eval_shape(lambda: Net({}, nnx.Rngs(0))))
    model = nnx.merge(graph, params, state)
    model.eval()
    x, y = task.data.x_val, task.data.y_val
    logits = model(jnp.asarray(x))
    ref = float(jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(len(y)), y]))
    assert metrics["val_loss"][0] == pytest.approx(ref, rel=1e-5)
