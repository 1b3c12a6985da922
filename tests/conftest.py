"""Shared fixtures: tiny tasks (few compiles, small shapes) and a compile counter."""

import atexit
import collections
import logging
import os
import re
import shutil
import tempfile

# Neither this process nor its subprocesses write to the user's vtune cache. Subprocesses
# inherit the variable; this process may have imported vtune already (pytest resolves
# vtune.checks.VtuneWarning from pyproject's filterwarnings).
os.environ["VTUNE_COMPILATION_CACHE"] = "0"
# Test workers share an accelerator: none may take most of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import optax
import pytest

import vtune

# Many tests build equal programs from fresh Task objects (a new jit cache each time): a
# persistent cache for this run answers the repeats. Compile counts are unaffected: JAX
# logs "Finished XLA compilation" for a cache hit as for a compile (see `compiles`).
_XLA_CACHE = tempfile.mkdtemp(prefix="vtune-tests-xla-")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
# Subprocesses (scale-out, kill-and-resume, the CLI) share it; vtune leaves a cache the
# user configured alone, so they write nothing of their own either.
os.environ.update(JAX_COMPILATION_CACHE_DIR=_XLA_CACHE,
                  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.1")


@pytest.fixture(scope="session")
def tiny_data():
    return vtune.datasets.synthetic(num_examples=256, num_features=16, num_classes=4, seed=0)


@pytest.fixture(scope="session")
def tiny_task(tiny_data):
    """A 16-16-4 MLP with dropout, batch 32: compiles in about a second."""
    return vtune.tasks.mlp_classifier(tiny_data, hidden_sizes=(16,), batch_size=32)


@pytest.fixture(scope="session")
def tiny_sgd_task(tiny_data):
    return vtune.tasks.mlp_classifier(tiny_data, hidden_sizes=(16,), batch_size=32,
                                      optimizer=optax.sgd)


class _CompileLog(logging.Handler):
    """Counts XLA compilations by function name, from ``jax.log_compiles`` records."""

    pattern = re.compile(r"Finished XLA compilation of (?:jit\()?([\w<>.]+)")

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.counts = collections.Counter()

    def emit(self, record):
        m = self.pattern.search(record.getMessage())
        if m:
            self.counts[m.group(1)] += 1


@pytest.fixture
def compiles():
    """A Counter of XLA compilations during the test, keyed by function name."""
    handler = _CompileLog()
    logger = logging.getLogger("jax._src.dispatch")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    with jax.log_compiles(True):
        yield handler.counts
    logger.removeHandler(handler)
    logger.setLevel(old)
