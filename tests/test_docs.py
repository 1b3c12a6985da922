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


def readme_blocks():
    """The README's Python code blocks: the research-code example, the structure example."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 2
    return blocks


def test_readme_example_runs_and_loads_the_best_params():
    scope = {}
    exec(compile(readme_blocks()[0], "README.md", "exec"), scope)
    result, model = scope["result"], scope["model"]
    data = vtune.datasets.digits()
    acc = np.mean(np.argmax(model(data.x_val), -1) == data.y_val)
    assert acc == pytest.approx(result.best.metrics["val_accuracy"], abs=1e-6)
    assert acc > 0.9


def test_readme_structure_example_runs_one_program_over_the_mix():
    scope = {}
    exec(compile(readme_blocks()[1], "README.md", "exec"), scope)
    structure, one = scope["structure"], scope["one"]
    shapes = {(int(r["width"]), int(r["depth"])) for r in structure.history}
    assert len(shapes) > 1 and all(w in (16, 32, 64, 128) and 1 <= d <= 3 for w, d in shapes)
    assert structure.best.metrics["val_accuracy"] > 0.5
    # The layer computes its own width: the masked units' weights are zero, the rest not.
    kernel = np.asarray(one.hidden.kernel[...])
    assert kernel.shape == (64, 128) and not kernel[:, 24:].any() and kernel[:, :24].all()
    assert not np.asarray(one.out.kernel[...])[24:].any()
