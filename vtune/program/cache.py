"""JAX's persistent compilation cache, on by default in a vtune-owned directory.

A search compiles its programs once per process; with the cache on, the next
process (a second ``vtune`` run, a resumed search, another seed) loads them
from disk instead of compiling again. vtune turns it on when ``vtune`` is
imported, unless:

* the user configured JAX's own cache (``jax_compilation_cache_dir`` or
  ``JAX_COMPILATION_CACHE_DIR``), which is then left as it is; or
* ``VTUNE_COMPILATION_CACHE=0`` (or ``off``/``false``) is set.

``VTUNE_COMPILATION_CACHE=/some/dir`` picks the directory; the default is
``$XDG_CACHE_HOME/vtune/jax`` (``~/.cache/vtune/jax``).

Example:
    >>> import os
    >>> cache_dir({"VTUNE_COMPILATION_CACHE": "off"}) is None
    True
    >>> cache_dir({"XDG_CACHE_HOME": "/tmp/c"})
    '/tmp/c/vtune/jax'
"""

from __future__ import annotations

import os
from typing import Mapping

import jax

#: Values of ``VTUNE_COMPILATION_CACHE`` that turn the cache off.
OFF = ("0", "off", "false", "no")


def cache_dir(environ: Mapping[str, str] = os.environ) -> str | None:
    """The directory vtune would cache compiled programs in, or None when turned off."""
    choice = environ.get("VTUNE_COMPILATION_CACHE", "").strip()
    if choice.lower() in OFF:
        return None
    if choice:
        return os.path.expanduser(choice)
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vtune", "jax")


def enable(environ: Mapping[str, str] = os.environ) -> str | None:
    """Turns the persistent cache on (see the module docstring); returns its directory.

    Returns the user's own directory when JAX's cache was already configured,
    and None when vtune's is turned off.
    """
    if jax.config.jax_compilation_cache_dir or environ.get("JAX_COMPILATION_CACHE_DIR"):
        return jax.config.jax_compilation_cache_dir or environ["JAX_COMPILATION_CACHE_DIR"]
    directory = cache_dir(environ)
    if directory is None:
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    # vtune's programs compile in 0.3-4 s: keep them all (JAX's default keeps >= 1 s only).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return directory
