"""The examples people copy must run: README's research-code block and every docstring."""

import doctest
import importlib
import inspect
import pathlib
import pkgutil
import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import vtune

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Every module of the package, found by walking it (``python -m vtune`` aside).
MODULES = [vtune] + [importlib.import_module(m.name) for m in
                     pkgutil.walk_packages(vtune.__path__, "vtune.")
                     if m.name != "vtune.__main__"]


def _defines_public_api(module) -> bool:
    """A module that defines a public function or class (not only re-exports)."""
    return any((inspect.isfunction(v) or inspect.isclass(v)) and not k.startswith("_")
               and v.__module__ == module.__name__ for k, v in vars(module).items())


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    globs = {**vars(module), "vtune": vtune, "nnx": nnx, "np": np, "jnp": jnp}
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, globs=globs) if t.examples]
    for t in tests:
        runner.run(t)
    assert runner.failures == 0
    if _defines_public_api(module):
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
