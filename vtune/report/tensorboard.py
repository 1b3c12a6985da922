"""A per-generation callback that writes a search to TensorBoard event files.

``tensorboard(logdir)`` returns a callback for ``population_search(...,
callbacks=[...])``. After every generation it writes, through tensorboardX's
``SummaryWriter`` (the ``tensorboard`` extra: ``pip install 'vtune[tensorboard]'``):

* ``search/best_<objective>``, ``search/alive``, ``search/diverged`` and
  ``search/pruned_so_far`` against the generation;
* each metric of each trial as ``<metric>/trial_<id>``, against the trial's own
  training step, so a clone's curve continues its parent's steps.

Then ``tensorboard --logdir <logdir>`` shows the search live. Nothing here is
imported by ``import vtune``.

Example:
    >>> import pathlib, tempfile
    >>> logdir = tempfile.mkdtemp()
    >>> task = vtune.tasks.mlp_classifier(vtune.datasets.synthetic(), hidden_sizes=(8,))
    >>> writer = vtune.report.tensorboard.tensorboard(logdir)
    >>> _ = vtune.population_search(task, {"learning_rate": vtune.loguniform(1e-3, 1e-1)},
    ...     population_size=4, generations=2, steps_per_generation=5, verbose=False,
    ...     callbacks=[writer])
    >>> writer.close()
    >>> any(p.name.startswith("events.out.tfevents") for p in pathlib.Path(logdir).iterdir())
    True
"""

from __future__ import annotations

from vtune.report.callbacks import Callback, Generation
from vtune.report.schema import finite


class _Writer:
    """The callback: a ``SummaryWriter`` and the counts it keeps across generations."""

    def __init__(self, logdir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise ImportError("vtune.report.tensorboard needs tensorboardX, from the "
                              "'tensorboard' extra: pip install 'vtune[tensorboard]'") from e
        self.writer = SummaryWriter(str(logdir))
        self.pruned = 0

    def __call__(self, g: Generation) -> None:
        w = self.writer
        self.pruned += sum(r["status"] == "pruned" for r in g.rows)
        if g.best is not None and finite(g.best.metrics.get(g.objective)):
            w.add_scalar(f"search/best_{g.objective}", g.best.metrics[g.objective], g.generation)
        w.add_scalar("search/alive", sum(r["status"] == "alive" for r in g.rows), g.generation)
        w.add_scalar("search/diverged", sum(r["status"] == "diverged" for r in g.rows),
                     g.generation)
        w.add_scalar("search/pruned_so_far", self.pruned, g.generation)
        metrics = g.metrics or tuple(k for k in g.rows[0] if k.startswith(("train_", "val_")))
        for r in g.rows:
            for m in metrics:
                if finite(r.get(m)):
                    w.add_scalar(f"{m}/trial_{r['trial_id']}", r[m], r["step"])
        w.flush()

    def close(self) -> None:
        """Flushes and closes the event file (call it when the search is done)."""
        self.writer.close()


def tensorboard(logdir) -> Callback:
    """A callback writing every generation of a search to TensorBoard under ``logdir``.

    Args:
      logdir: the directory of the event files (created if needed).

    Returns:
      The callback; its ``close()`` closes the event file.

    Raises:
      ImportError: tensorboardX is not installed (the ``tensorboard`` extra).
    """
    return _Writer(logdir)
