"""Checkpoint and resume a search with orbax: a killed search finishes as if nothing happened.

A checkpoint directory holds ``vtune_spec.json`` (what search this is: space,
task fingerprint, population size, objective, ...) and one orbax step per
saved generation with these items:

* ``population``: the whole population pytree (params, optimizer state,
  hyperparameters, trial ids, steps), restored against an abstract target;
* ``best``: the best trial's params so far;
* ``top``: the params of the ``keep_top`` best trials so far, best first (a
  list of one-trial pytrees; absent when none is kept, and in checkpoints
  written before vtune kept them, which still restore);
* ``search``: the host state as JSON (strategy state, history, lineage
  arrays, generation). JSON and tensorstore only; no pickle anywhere.

Saves are asynchronous and atomic (orbax commits a finished temporary
directory), at most ``max_to_keep`` are kept. An unreadable latest step is
moved aside and the previous complete one is used.

Example:
    >>> spec = {"vtune_version": "0.2", "seed": 0, "strategy_settings": {"quantile": 0.25}}
    >>> differences(spec, {**spec, "strategy_settings": {"quantile": 0.5}})
    ['strategy_settings.quantile: checkpoint has 0.25, this call has 0.5']
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import threading
import time
import warnings

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from vtune.checks import VtuneWarning
from vtune.report.codec import dumps, encode, loads

SPEC_FILE = "vtune_spec.json"
FORMAT = 1


# --- the run spec -------------------------------------------------------------------

def differences(saved: dict, spec: dict, prefix: str = "") -> list[str]:
    """What differs between a saved spec and this call's, one phrase per field.

    Fields the saved spec lacks (it was written by an older vtune) are not
    compared, so old directories still resume; nested settings are named by
    their dotted path (``strategy_settings.quantile``).
    """
    out = []
    for k, v in spec.items():
        if k == "vtune_version" or k not in saved:
            continue
        if isinstance(v, dict) and isinstance(saved[k], dict) and k != "space":
            keys = list(v) + [x for x in saved[k] if x not in v]
            out += differences({x: saved[k].get(x) for x in keys},
                               {x: v.get(x) for x in keys}, f"{prefix}{k}.")
        elif saved[k] != v:
            out.append(f"{prefix}{k}: checkpoint has {saved[k]!r}, this call has {v!r}")
    return out


def check_spec(directory: pathlib.Path, spec: dict, overwrite: bool) -> bool:
    """Checks ``directory`` against this search before anything is written.

    Returns True when the directory belongs to this search (resume), False
    for a fresh start. Raises ValueError naming what differs, or when the
    directory holds something else and ``overwrite`` is not set.
    """
    spec_path = directory / SPEC_FILE
    # A lone spec .tmp is a first start killed before it wrote the spec: nothing to keep.
    if overwrite or not directory.exists() or \
            {p.name for p in directory.iterdir()} <= {SPEC_FILE + ".tmp"}:
        return False
    if not spec_path.exists():
        raise ValueError(f"checkpoint_dir {str(directory)!r} is not empty and holds no vtune "
                         "search; choose another directory or pass overwrite=True (vtune run --overwrite)")
    saved = read_spec(directory)
    differ = differences(saved, spec)
    if differ:
        raise ValueError(f"checkpoint_dir {str(directory)!r} belongs to another search; "
                         + "; ".join(differ) + ". Use another directory, or overwrite=True (vtune run "
                         "--overwrite) "
                         "to start afresh.")
    return True


def read_spec(directory: pathlib.Path) -> dict:
    """The saved spec of the search in ``directory``, or a ValueError that says why not."""
    spec_path = pathlib.Path(directory) / SPEC_FILE
    if not spec_path.exists():
        raise ValueError(f"{str(directory)!r} holds no vtune search (no {SPEC_FILE})")
    try:
        saved = loads(spec_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        saved = e
    if not isinstance(saved, dict):
        why = (f"{type(saved).__name__}: {saved}" if isinstance(saved, Exception)
               else "not a JSON object")
        raise ValueError(f"{str(spec_path)!r} is unreadable ({why}), so {str(directory)!r} is not "
                         "a complete vtune search; move it away, or pass overwrite=True to "
                         "start afresh")
    return saved


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
        # A spec of vtune 0.1 does not record the parameter tree, so a step that fails to
        # restore may be another model's, not damaged: never move such steps aside.
        self.repair = not self.resuming or "params" in read_spec(self.directory)
        if jax.process_index() == 0:  # one writer; orbax coordinates the rest across hosts
            if overwrite and self.directory.exists():
                _clear(self.directory)
            self.directory.mkdir(parents=True, exist_ok=True)
            if not self.resuming:
                tmp = self.directory / (SPEC_FILE + ".tmp")
                tmp.write_text(dumps(spec, indent=1))
                os.replace(tmp, self.directory / SPEC_FILE)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("vtune checkpoint spec")
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=True,
                # a *.orbax-checkpoint-tmp directory is a save that never committed
                cleanup_tmp_directories=True))

    def save(self, generation: int, population, best_params, search: dict,
             top=()) -> None:
        """Starts an asynchronous save of generation ``generation``.

        ``top`` is the list of the kept trials' params (the ``top`` item, left
        out when empty). Ctrl-C while the save is being set up is held until it
        has started, so an interrupted search can still finish it (:meth:`close`).
        """
        self.manager.wait_until_finished()
        items = {"population": ocp.args.StandardSave(population),
                 "search": ocp.args.JsonSave(encode(search))}
        if best_params is not None:
            items["best"] = ocp.args.StandardSave(best_params)
        if top:
            items["top"] = ocp.args.StandardSave(list(top))
        with _interrupts_held():
            self.manager.save(generation, args=ocp.args.Composite(**items))

    def restore(self, abstract_population, abstract_best):
        """The latest readable checkpoint as ``(population, best_params, search, top_params)``
        (``top_params`` a list, empty for a checkpoint without the ``top`` item), or None."""
        return restore_latest(self.manager, self.directory, abstract_population, abstract_best,
                              repair=self.repair)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


@contextlib.contextmanager
def _interrupts_held():
    """Holds SIGINT for the duration, then raises KeyboardInterrupt if one came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def restore_latest(manager, directory, abstract_population, abstract_best, repair=True):
    """Restores the newest complete step as ``(population, best, search, top)``.

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
            if search.get("top"):  # older checkpoints have neither the key nor the item
                if abstract_best is None:
                    target = abstract(manager.item_metadata(step)["top"].tree)
                else:
                    target = [abstract_best] * len(search["top"])
                items["top"] = ocp.args.StandardRestore(target)
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
                          "trying the previous one", VtuneWarning, stacklevel=3)
            continue
        return out.get("population"), out.get("best"), search, list(out.get("top") or [])
    if moved and not repair:
        raise RuntimeError(
            f"no readable checkpoint in {str(directory)!r}: it was written by vtune "
            f"{read_spec(directory).get('vtune_version', '?')}, whose spec does not record the "
            "parameter tree, and this task's parameters do not restore from it (the model "
            "changed; vtune.tasks.mlp_classifier's did when it gained a tunable width and "
            "depth). Nothing was moved or deleted; resume with the vtune that wrote it, or "
            f"start afresh in another checkpoint_dir or with overwrite=True. Unreadable: {moved}")
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
