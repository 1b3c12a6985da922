"""The examples people copy must run: README's research-code block and every docstring."""

import doctest
import importlib
import pathlib
import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vtune

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Modules by name: vtune.strategies.pbt and friends are also factory functions.
MODULES = [importlib.import_module(f"vtune{m}") for m in (
    "", ".nn", ".datasets", ".task", ".tasks", ".hparams", ".search", ".space", ".checkpoint",
    ".memory", ".lineage", ".strategies", *(f".strategies.{m}" for m in (
        "base", "coarse_to_fine", "grid", "pbt", "random_search", "successive_halving", "tpe",
        "truncation")))]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    globs = {**vars(module), "vtune": vtune, "nnx": nnx, "np": np, "jnp": jnp}
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, globs=globs) if t.examples]
    for t in tests:
        runner.run(t)
    assert runner.failures == 0
    assert tests, f"{module.__name__} has no runnable example"


def test_readme_example_runs_and_loads_the_best_params():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    scope = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    result, model = scope["result"], scope["model"]
    data = vtune.datasets.digits()
    acc = np.mean(np.argmax(model(data.x_val), -1) == data.y_val)
    assert acc == pytest.approx(result.best.metrics["val_accuracy"], abs=1e-6)
    assert acc > 0.9
