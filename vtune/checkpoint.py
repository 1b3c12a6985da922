"""Checkpoint and resume a search with orbax: a killed search finishes as if nothing happened.

A checkpoint directory holds ``vtune_spec.json`` (what search this is: space,
task fingerprint, population size, objective, ...) and one orbax step per
saved generation with three items:

* ``population``: the whole population pytree (params, optimizer state,
  hyperparameters, trial ids, steps), restored against an abstract target;
* ``best``: the best trial's params so far;
* ``search``: the host state as JSON (strategy state, history, lineage
  arrays, generation). JSON and tensorstore only; no pickle anywhere.

Saves are asynchronous and atomic (orbax commits a finished temporary
directory), at most ``max_to_keep`` are kept. An unreadable latest step is
moved aside and the previous complete one is used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import shutil
import time
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from vtune.space import Space

SPEC_FILE = "vtune_spec.json"
FORMAT = 1


# --- JSON encoding of host state -------------------------------------------------

def encode(obj: Any) -> Any:
    """Host state to JSON-able data; :func:`decode` inverts it exactly."""
    if isinstance(obj, Space):
        return {"__space__": obj.to_json()}
    if isinstance(obj, np.ndarray):
        kind = "object" if obj.dtype == object else obj.dtype.str
        return {"__array__": [encode(v) for v in obj.tolist()], "dtype": kind,
                "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {"__scalar__": obj.item(), "dtype": obj.dtype.str}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__fields__": {f.name: encode(getattr(obj, f.name))
                               for f in dataclasses.fields(obj)}}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"cannot checkpoint a dict with non-string keys: {list(obj)[:3]}")
        return {k: encode(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__}: {obj!r}")


def decode(data: Any, template: Any = None) -> Any:
    """Inverse of :func:`encode`. Dataclasses are rebuilt by replacing the
    fields of ``template`` (an instance of the same type), never by importing
    a stored class name."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "__space__" in data:
        return Space.from_json(data["__space__"])
    if "__array__" in data:
        values = decode(data["__array__"])
        if data["dtype"] == "object":
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out.reshape(data["shape"])
        return np.array(values, dtype=np.dtype(data["dtype"])).reshape(data["shape"])
    if "__scalar__" in data:
        return np.dtype(data["dtype"]).type(data["__scalar__"])
    if "__tuple__" in data:
        return tuple(decode(v) for v in data["__tuple__"])
    if "__fields__" in data:
        if template is None or not dataclasses.is_dataclass(template):
            raise ValueError("a checkpointed dataclass needs a template to restore into")
        fields = {f.name: getattr(template, f.name) for f in dataclasses.fields(template)}
        return dataclasses.replace(template, **{
            k: decode(v, fields.get(k)) for k, v in data["__fields__"].items()})
    return {k: decode(v) for k, v in data.items()}


def _dumps(obj) -> str:
    return json.dumps(obj, indent=1, allow_nan=True)


# --- the run spec -------------------------------------------------------------------

def check_spec(directory: pathlib.Path, spec: dict, overwrite: bool) -> bool:
    """Checks ``directory`` against this search before anything is written.

    Returns True when the directory belongs to this search (resume), False
    for a fresh start. Raises ValueError naming what differs, or when the
    directory holds something else and ``overwrite`` is not set.
    """
    spec_path = directory / SPEC_FILE
    if overwrite or not directory.exists() or not any(directory.iterdir()):
        return False
    if not spec_path.exists():
        raise ValueError(f"checkpoint_dir {str(directory)!r} is not empty and holds no vtune "
                         "search; choose another directory or pass overwrite=True")
    saved = json.loads(spec_path.read_text())
    differ = [f"{k}: checkpoint has {saved.get(k)!r}, this call has {spec[k]!r}"
              for k in spec if k != "vtune_version" and saved.get(k) != spec[k]]
    if differ:
        raise ValueError(f"checkpoint_dir {str(directory)!r} belongs to another search; "
                         + "; ".join(differ) + ". Use another directory, or overwrite=True "
                         "to start afresh.")
    return True


class Checkpointer:
    """Saves and restores one search's generations in ``directory``.

    Args:
      directory: where checkpoints live (created if needed).
      spec: JSON-able description of the search (see :func:`check_spec`).
      overwrite: start afresh, deleting what the directory holds.
      max_to_keep: how many generations to keep.
    """

    def __init__(self, directory, spec: dict, *, overwrite: bool = False, max_to_keep: int = 3):
        self.directory = pathlib.Path(directory).expanduser().resolve()
        self.resuming = check_spec(self.directory, spec, overwrite)
        if jax.process_index() == 0:  # one writer; orbax coordinates the rest across hosts
            if overwrite and self.directory.exists():
                _clear(self.directory)
            self.directory.mkdir(parents=True, exist_ok=True)
            if not self.resuming:
                tmp = self.directory / (SPEC_FILE + ".tmp")
                tmp.write_text(_dumps(spec))
                os.replace(tmp, self.directory / SPEC_FILE)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("vtune checkpoint spec")
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=True))

    def save(self, generation: int, population, best_params, search: dict) -> None:
        """Starts an asynchronous save of generation ``generation``."""
        self.manager.wait_until_finished()
        items = {"population": ocp.args.StandardSave(population),
                 "search": ocp.args.JsonSave(encode(search))}
        if best_params is not None:
            items["best"] = ocp.args.StandardSave(best_params)
        self.manager.save(generation, args=ocp.args.Composite(**items))

    def restore(self, abstract_population, abstract_best):
        """The latest readable checkpoint as ``(population, best_params, search)``, or None."""
        return restore_latest(self.manager, self.directory, abstract_population, abstract_best)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def restore_latest(manager, directory, abstract_population, abstract_best, repair=True):
    """Restores the newest complete step.

    Unreadable newer steps are skipped, and with ``repair`` moved aside (so the
    resumed search can save those generations again). Returns None when the
    directory has no checkpoint; raises RuntimeError when it had some but none
    is readable.
    """
    moved = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            search = manager.restore(step, args=ocp.args.Composite(
                search=ocp.args.JsonRestore()))["search"]
            items = {}
            if abstract_population is not None:
                items["population"] = ocp.args.StandardRestore(abstract_population)
            if search.get("best") is not None:
                target = abstract_best
                if target is None:  # no task: shapes and dtypes as saved, on one device
                    target = abstract(manager.item_metadata(step)["best"].tree)
                items["best"] = ocp.args.StandardRestore(target)
            out = manager.restore(step, args=ocp.args.Composite(**items)) if items else {}
        except Exception as e:  # orbax raises many types for a damaged step
            moved.append(str(step))
            if repair:
                aside = directory / f"{step}.unreadable-{int(time.time())}"
                os.replace(directory / str(step), aside)
                manager.reload()
                moved[-1] = aside.name
            warnings.warn(f"checkpoint step {step} in {str(directory)!r} is unreadable "
                          f"({type(e).__name__}: {e}); "
                          f"{'moved it to ' + moved[-1] + ' and ' if repair else ''}"
                          "trying the previous one", RuntimeWarning, stacklevel=3)
            continue
        return out.get("population"), out.get("best"), search
    if moved:
        raise RuntimeError(f"no readable checkpoint is left in {str(directory)!r}; "
                           f"unreadable: {moved}")
    return None


def _clear(directory: pathlib.Path) -> None:
    for p in directory.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def abstract(tree, sharding=None):
    """``ShapeDtypeStruct``s of ``tree`` placed on ``sharding`` (default: first device)."""
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def load(directory, task=None):
    """The result of the search checkpointed in ``directory``, without training.

    Args:
      directory: a ``checkpoint_dir`` of :func:`vtune.population_search`.
      task: the search's task, to restore the best params into their exact
        pytree type (e.g. an ``nnx.State``); without it they come back as the
        nested dicts of arrays orbax stores.

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
    from vtune import hparams as hparams_lib
    from vtune.results import SearchResult, Trial

    directory = pathlib.Path(directory).expanduser().resolve()
    spec_path = directory / SPEC_FILE
    if not spec_path.exists():
        raise ValueError(f"{str(directory)!r} holds no vtune search (no {SPEC_FILE})")
    spec = json.loads(spec_path.read_text())
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
                           "search": ocp.JsonCheckpointHandler()})
    finally:
        absl.setLevel(level)
    try:
        restored = restore_latest(manager, directory, None, abstract_best, repair=False)
    finally:
        manager.close()
    if restored is None:
        raise ValueError(f"{str(directory)!r} holds no complete checkpoint yet")
    _, best_params, search = restored
    best = decode(search["best"])
    if best is not None:
        best = Trial(params=jax.device_get(best_params), **best)
    return SearchResult(best=best, history=decode(search["history"]),
                        objective=spec["objective"], mode=spec["mode"],
                        tuned=tuple(spec["space"]), space=Space.from_json(spec["space"]))
