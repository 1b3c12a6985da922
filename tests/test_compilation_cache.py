"""The persistent compilation cache: on by default, in vtune's directory, off on request."""

import os
import subprocess
import sys

import jax

import vtune

SEARCH = """
import sys, time, vtune, jax
data = vtune.datasets.synthetic(num_examples=128, num_features=8, num_classes=3, seed=0)
task = vtune.tasks.mlp_classifier(data, hidden_sizes=(8,), batch_size=16)
vtune.population_search(task, {"learning_rate": vtune.loguniform(1e-3, 1e-1)},
                        population_size=2, generations=2, steps_per_generation=3, verbose=False)
print(jax.config.jax_compilation_cache_dir)
"""


def run(env):
    out = subprocess.run([sys.executable, "-c", SEARCH], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def entries(directory):
    return sorted(f for _, _, files in os.walk(directory) for f in files)


def test_second_process_compiles_nothing_new(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("VTUNE_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), JAX_PLATFORMS="cpu")
    assert run(env) == str(tmp_path / "xdg" / "vtune" / "jax")
    first = entries(tmp_path / "xdg" / "vtune" / "jax")
    assert first  # the programs were written
    run(env)
    assert entries(tmp_path / "xdg" / "vtune" / "jax") == first  # all read back, none added


def test_turned_off_or_left_to_the_user(tmp_path):
    assert vtune.program.cache.cache_dir({"VTUNE_COMPILATION_CACHE": "0"}) is None
    tests_cache = jax.config.jax_compilation_cache_dir  # the test run's own (conftest)
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        assert vtune.program.cache.enable({"VTUNE_COMPILATION_CACHE": "off"}) is None
        assert jax.config.jax_compilation_cache_dir is None  # turned off: nothing set
        mine = str(tmp_path / "mine")
        assert vtune.program.cache.enable({"JAX_COMPILATION_CACHE_DIR": mine}) == mine
        assert jax.config.jax_compilation_cache_dir is None  # JAX reads its own variable itself
        configured = str(tmp_path / "configured")
        jax.config.update("jax_compilation_cache_dir", configured)
        assert vtune.program.cache.enable({}) == configured  # a configured cache is left alone
        assert jax.config.jax_compilation_cache_dir == configured
    finally:
        jax.config.update("jax_compilation_cache_dir", tests_cache)
