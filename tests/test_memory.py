"""Memory-aware population sizes and chunked training."""

import jax
import numpy as np
import pytest

import vtune
from vtune import memory
from vtune.program import build

SPACE = {"learning_rate": vtune.loguniform(1e-3, 1e-1), "dropout": vtune.uniform(0.0, 0.5)}


def test_memory_is_linear_in_the_population_and_max_population_fits(tiny_task):
    sizes = {p: memory.program_bytes(tiny_task, SPACE, p, steps_per_generation=3)
             for p in (1, 2, 8)}
    per_trial = sizes[2] - sizes[1]
    assert per_trial > 0
    assert sizes[8] == pytest.approx(sizes[1] + 7 * per_trial, rel=0.05)
    budget = sizes[1] + 9 * per_trial + per_trial // 2
    fits = memory.max_population(tiny_task, SPACE, steps_per_generation=3, budget_bytes=budget)
    assert fits == 10
    assert memory.program_bytes(tiny_task, SPACE, fits, steps_per_generation=3) <= budget * 1.05


def test_chunked_training_computes_what_vmapped_training_computes(tiny_task):
    space = vtune.Space(SPACE)
    hp_host = space.sample(8, 0)
    outs = []
    for chunk in (None, 3):
        program, table, *_ = build(tiny_task, space, 4, chunk_size=chunk)
        hp = table.encode(table.complete(hp_host, 8))
        pop = program.init(np.uint32(0), np.arange(8, dtype=np.int32), hp)
        pop, metrics = program.train(pop, tiny_task.device_data(), np.uint32(0), np.int32(8))
        outs.append(jax.device_get((pop.params, metrics["val_loss"])))
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_search_chooses_chunks_when_the_population_does_not_fit(tiny_task, monkeypatch):
    monkeypatch.setattr(memory, "device_budget", lambda device=None, fraction=0.8:
                        memory.program_bytes(tiny_task, SPACE, 3, steps_per_generation=5))
    result = vtune.population_search(tiny_task, SPACE, population_size=8, generations=2,
                                     steps_per_generation=5, chunk_size="auto", verbose=False)
    chunks = {p.chunk_size for p in vtune.program.cached_programs()
              if p.steps == 5 and p.chunk_size}
    assert chunks == {3}
    assert len(result.history) == 16
