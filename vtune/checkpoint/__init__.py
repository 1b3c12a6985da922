"""Checkpoints of a search with orbax: resume a killed search, or read one without training.

* :mod:`vtune.checkpoint.manager`: the spec check and :class:`Checkpointer`
  (async, atomic saves; unreadable steps moved aside);
* :mod:`vtune.checkpoint.load`: :func:`load`.
"""

from vtune.checkpoint.load import load
from vtune.checkpoint.manager import FORMAT, SPEC_FILE, Checkpointer, abstract, read_spec

__all__ = ["FORMAT", "SPEC_FILE", "Checkpointer", "abstract", "load", "read_spec"]
