"""Reading a checkpointed search without training: :func:`load`."""

from __future__ import annotations

import logging
import pathlib

import jax
import orbax.checkpoint as ocp

from vtune.checkpoint.manager import abstract, read_spec, restore_latest
from vtune.report.codec import decode
from vtune.report.result import SearchResult, Trial
from vtune.space import Space
from vtune.trial import hparams as hparams_lib


def load(directory, task=None):
    """The result of the search checkpointed in ``directory``, without training.

    Args:
      directory: a ``checkpoint_dir`` of :func:`vtune.population_search`.
      task: the search's task, to restore the kept params (the best's and
        ``top_trials``') into their exact pytree type (e.g. an ``nnx.State``);
        without it they come back as the nested dicts of arrays orbax stores.

    Returns:
      A :class:`vtune.SearchResult`: of the finished search, or of the
      generations done so far if it was interrupted.

    Example:
        >>> task = vtune.tasks.mlp_classifier(vtune.datasets.synthetic(), hidden_sizes=(8,))
        >>> space = {"learning_rate": vtune.loguniform(1e-3, 1e-1)}
        >>> import tempfile; d = tempfile.mkdtemp()
        >>> done = vtune.population_search(task, space, population_size=4, generations=2,
        ...     steps_per_generation=5, checkpoint_dir=d, verbose=False)
        >>> vtune.load(d, task).best.trial_id == done.best.trial_id
        True
    """
    directory = pathlib.Path(directory).expanduser().resolve()
    spec = read_spec(directory)
    abstract_best = None
    if task is not None:
        if task.fingerprint() != spec["task_fingerprint"]:
            raise ValueError(f"task {task.name!r} is not the task of the search in "
                             f"{str(directory)!r} ({spec['task']!r})")
        space = Space.from_json(spec["space"])
        hp = hparams_lib.Recorder(lambda name: hparams_lib.value_dtype(name, space))
        key = jax.eval_shape(lambda: jax.random.key(0))
        abstract_best = abstract(jax.eval_shape(lambda k: task.init(k, hp)[0], key))
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # orbax warns that a read-only manager will not save
    try:
        manager = ocp.CheckpointManager(
            directory, options=ocp.CheckpointManagerOptions(read_only=True),
            item_handlers={"population": ocp.StandardCheckpointHandler(),
                           "best": ocp.StandardCheckpointHandler(),
                           "top": ocp.StandardCheckpointHandler(),
                           "search": ocp.JsonCheckpointHandler()})
    finally:
        absl.setLevel(level)
    try:
        restored = restore_latest(manager, directory, None, abstract_best, repair=False)
    finally:
        manager.close()
    if restored is None:
        raise ValueError(f"{str(directory)!r} holds no complete checkpoint yet")
    _, best_params, search, top_params = restored
    best = decode(search["best"])
    if best is not None:
        best = Trial(params=jax.device_get(best_params), **best)
    top = tuple(Trial(params=p, **e)
                for e, p in zip(decode(search.get("top", [])), jax.device_get(top_params)))
    if "top" not in search and best is not None:  # written before vtune kept the top trials
        top = (best,)
    elif top and best is not None and top[0].trial_id == best.trial_id:
        best = top[0]  # one object, as the search returned it
    return SearchResult(best=best, history=decode(search["history"]),
                        objective=spec["objective"], mode=spec["mode"],
                        tuned=tuple(spec["space"]), space=Space.from_json(spec["space"]),
                        metrics=tuple(spec.get("metrics", ())), top_trials=top)
