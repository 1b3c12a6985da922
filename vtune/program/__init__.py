"""The compiled generation program, the abstract trace that builds it, and its memory.

* :mod:`vtune.program.program`: :class:`Program`, ``jit(vmap(scan(train_step)))``
  plus evaluation and refill, cached across searches;
* :mod:`vtune.program.build`: abstract tracing of a task and :func:`build`;
* :mod:`vtune.program.memory`: how many trials fit on a device;
* :mod:`vtune.program.cache`: the persistent compilation cache, on by default.
"""

from vtune.program import cache, memory
from vtune.program.build import Built, Traced, build, trace
from vtune.program.program import Program, cached_programs, clear_cache, get_program

__all__ = ["Built", "Program", "Traced", "build", "cache", "cached_programs", "clear_cache",
           "get_program", "memory", "trace"]
