"""Search configs in TOML: what ``vtune run CONFIG.toml`` reads, checked entry by entry.

A config names a task (a preset or ``"package.module:function"``), a space (one
line per hyperparameter), the diagnosis thresholds, where results go, and any
field of a search (:data:`vtune.search.CONFIG_FIELDS`). ``vtune run --example``
prints a commented one (:data:`EXAMPLE_CONFIG`, the package file
``vtune/cli/example.toml``).

Example:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "search.toml"
    >>> _ = path.write_text(EXAMPLE_CONFIG)
    >>> config = load_config(path)
    >>> config["search"]["population_size"], config["space"].names[:2]
    (32, ('learning_rate', 'weight_decay'))
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import pathlib
import sys

from vtune import datasets, space as space_lib, strategies, tasks
from vtune.report.diagnose import Thresholds
from vtune.search import CONFIG_FIELDS
from vtune.space import Space
from vtune.trial.optimizers import sgdw
from vtune.trial.task import Task

#: ``vtune run --example`` prints this; ``docs/digits.toml`` holds the same text.
EXAMPLE_CONFIG = (importlib.resources.files("vtune.cli") / "example.toml").read_text()

#: The keys a config may hold: what the task is, the space, where results go, the
#: diagnosis thresholds, and every field of a search (:data:`vtune.search.CONFIG_FIELDS`).
KEYS = ("task", "task_args", "space", "out_dir", "diagnose") + CONFIG_FIELDS
_DISTRIBUTIONS = ("loguniform", "uniform", "intuniform", "choice", "fixed")


class ConfigError(ValueError):
    """A config file that cannot describe a search; the message names the bad entry."""


#: ``task_args`` of the default search's ``digits_mlp``: the allocation its space needs
#: (three hidden layers of 128 units, batches of 128 rows), see :func:`default_task`.
DEFAULT_TASK_ARGS = {"hidden_sizes": (128, 128, 128), "batch_size": 128}


def default_space() -> Space:
    """The default space, after the seed advice: learning rate and weight decay
    on a log scale, dropout on a linear scale, Xavier/He/LeCun init schemes, 16 to
    128 hidden units per layer, 1 to 3 hidden layers ("start with one layer; nodes
    per layer 16, 32, 128") and batch sizes that are powers of two around 128.

    Example:
        >>> default_space()["width"].options, default_space()["batch_size"].options
        ((16, 32, 64, 128), (32, 64, 128))
    """
    return Space({
        "learning_rate": space_lib.loguniform(1e-4, 1.0),
        "weight_decay": space_lib.loguniform(1e-6, 1e-2),
        "dropout": space_lib.uniform(0.0, 0.7),
        "init": space_lib.choice(["he_normal", "he_uniform", "xavier_uniform", "xavier_normal",
                                  "lecun_normal"]),
        "width": space_lib.choice([16, 32, 64, 128]),
        "depth": space_lib.intuniform(1, 3),
        "batch_size": space_lib.choice([32, 64, 128]),
    })


def default_task() -> Task:
    """The default search's task: the digits MLP allocated for :func:`default_space`'s
    largest width, depth and batch size (:data:`DEFAULT_TASK_ARGS`); every trial
    computes its own smaller network and batch."""
    return _preset_digits_mlp(**DEFAULT_TASK_ARGS)


# --- config files -----------------------------------------------------------------------

def _optimizer(name):
    import optax
    table = {"adamw": optax.adamw, "adam": optax.adam, "sgd": optax.sgd, "sgdw": sgdw}
    if name not in table:
        raise ConfigError(f"task_args.optimizer: unknown optimizer {name!r}; use one of "
                          f"{sorted(table)}")
    return table[name]


def _preset_digits_mlp(**kw):
    return tasks.mlp_classifier(**kw)


def _preset_synthetic_mlp(**kw):
    kw = {"hidden_sizes": (16,), "batch_size": 32, **kw}
    return tasks.mlp_classifier(datasets.synthetic(), **kw)


#: Task presets by name: a factory taking the config's ``task_args``.
PRESETS = {"digits_mlp": _preset_digits_mlp, "synthetic_mlp": _preset_synthetic_mlp}


def load_config(path) -> dict:
    """Reads and checks a TOML search config; returns the arguments of a run.

    Returns:
      ``{"task": Task, "space": Space, "search": {population_search kwargs},
      "out_dir": Path, "thresholds": Thresholds}``.

    Raises:
      ConfigError: the file is unreadable, not TOML, or names a bad value
        (the message says which entry).
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    path = pathlib.Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read config {str(path)!r}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; a config may hold {list(KEYS)}")
    here = path.resolve().parent
    task = _task(raw.get("task", "digits_mlp"), raw.get("task_args", {}), here)
    if "space" not in raw:
        raise ConfigError(f"{path}: no [space] table; add one line per hyperparameter, e.g. "
                          "learning_rate = {loguniform = [1e-4, 1.0]}")
    space = _space(raw["space"])
    search = {k: raw[k] for k in CONFIG_FIELDS if k in raw}
    if "strategy" in raw:
        search["strategy"] = _strategy(raw["strategy"])
    if "checkpoint_dir" in raw:
        search["checkpoint_dir"] = str(here / _string("checkpoint_dir", raw["checkpoint_dir"]))
    out_dir = here / _string("out_dir", raw.get("out_dir", f"{path.stem}-results"))
    return {"task": task, "space": space, "search": search, "out_dir": out_dir,
            "thresholds": _thresholds(raw.get("diagnose", {}))}


def _string(key, value) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _table(key, value) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table, got {value!r}")
    return value


def _task(name, args, here: pathlib.Path):
    name = _string("task", name)
    args = dict(_table("task_args", args))
    if isinstance(args.get("optimizer"), str):
        args["optimizer"] = _optimizer(args["optimizer"])
    for k, v in args.items():
        if isinstance(v, list):
            args[k] = tuple(v)
    if name in PRESETS:
        factory = PRESETS[name]
    elif ":" in name:
        module_name, _, attr = name.partition(":")
        added = [p for p in (str(here), str(pathlib.Path.cwd())) if p not in sys.path]
        sys.path[:0] = added
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigError(f"task {name!r}: cannot import {module_name!r}: {e}") from None
        except SyntaxError as e:
            raise ConfigError(f"task {name!r}: {e.filename}:{e.lineno}: syntax error: "
                              f"{e.msg}") from None
        finally:
            for p in added:
                sys.path.remove(p)
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ConfigError(f"task {name!r}: {module_name!r} has no function {attr!r}")
    else:
        raise ConfigError(f"task {name!r} is neither a preset {sorted(PRESETS)} nor "
                          "'package.module:function'")
    try:
        task = factory(**args)
    except TypeError as e:
        raise ConfigError(f"task {name!r} with task_args {args}: {e}") from None
    if not isinstance(task, Task):
        raise ConfigError(f"task {name!r} returned {type(task).__name__}, not a vtune.Task")
    return task


def _space(table) -> Space:
    table = _table("space", table)
    if not table:
        raise ConfigError("[space] is empty; add e.g. learning_rate = {loguniform = [1e-4, 1.0]}")
    dists = {}
    for name, spec in table.items():
        where = f"space.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} = {spec!r}: write a table such as {{fixed = {spec!r}}} "
                              "or {choice = [...]}")
        kinds = [k for k in spec if k in _DISTRIBUTIONS]
        extra = [k for k in spec if k not in _DISTRIBUTIONS and k != "log"]
        if len(kinds) != 1 or extra or ("log" in spec and kinds != ["intuniform"]):
            raise ConfigError(f"{where} = {spec!r}: give exactly one of {list(_DISTRIBUTIONS)} "
                              "(and log = true only with intuniform)")
        kind, arg = kinds[0], spec[kinds[0]]
        try:
            if kind == "fixed":
                dists[name] = space_lib.fixed(arg)
            elif kind == "choice":
                if not isinstance(arg, list):
                    raise ConfigError(f"{where}: choice takes a list of options, got {arg!r}")
                dists[name] = space_lib.choice(arg)
            else:
                if not isinstance(arg, list) or len(arg) != 2:
                    raise ConfigError(f"{where}: {kind} takes [lo, hi], got {arg!r}")
                extra_args = (spec.get("log", False),) if kind == "intuniform" else ()
                dists[name] = getattr(space_lib, kind)(*arg, *extra_args)
        except (TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{where}: {e}") from None
    return Space(dists)


def _strategy(spec):
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
        name, kwargs = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    else:
        raise ConfigError(f"strategy must be a name or a table with a name, got {spec!r}")
    registry = strategies.REGISTRY
    if name not in registry:
        raise ConfigError(f"strategy {name!r} is unknown; use one of {sorted(registry)}")
    try:
        return registry[name](**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in kwargs.items()})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"strategy {name!r} with {kwargs}: {e}") from None


def _thresholds(table):
    table = _table("diagnose", table)
    fields = {f.name for f in dataclasses.fields(Thresholds)}
    bad = [k for k in table if k not in fields]
    if bad:
        raise ConfigError(f"diagnose: unknown threshold(s) {bad}; known: {sorted(fields)}")
    return Thresholds(**table)
