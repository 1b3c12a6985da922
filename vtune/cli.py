"""The ``vtune`` command: run searches described in a TOML file and report on finished ones.

Examples:
    $ vtune                                   # the default search on the bundled digits
    $ vtune --population 64 --generations 12 --seed 1
    $ vtune run --example > search.toml       # a commented config to start from
    $ vtune run search.toml                   # train; write plots, CSV, JSON and a fit diagnosis
    $ vtune report runs/digits/checkpoints    # the same from a checkpoint directory, no training
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import os
import pathlib
import sys
import time

import vtune

#: ``vtune run --example`` prints this; ``docs/digits.toml`` holds the same text.
EXAMPLE_CONFIG = '''\
# A vtune search. Run it with:  vtune run digits.toml
# This one is the default search of plain `vtune`.

# What each trial trains: a preset ("digits_mlp", "synthetic_mlp") or
# "package.module:function" returning a vtune.Task (modules next to this file import).
task = "digits_mlp"

# The outer loop: a name from vtune.strategies.REGISTRY ("truncation", "pbt",
# "successive_halving", "random", ...) or a table with settings:
#   strategy = {name = "pbt", quantile = 0.25}
strategy = "successive_halving"

population_size = 32        # trials trained at once, as one compiled program
generations = 8             # train -> evaluate -> prune/refill rounds
steps_per_generation = 150  # optimizer steps per trial per generation
objective = "val_loss"      # or "val_accuracy" (mode = "max" is then the default)
seed = 0

# Where results go (paths are relative to this file). out_dir gets history.csv,
# result.json, top.txt, diagnosis.txt/.json and PNG plots. With checkpoint_dir,
# an interrupted run resumes when you run the same command again, and
# `vtune report <checkpoint_dir>` redraws everything without training.
out_dir = "digits-results"
# checkpoint_dir = "digits-checkpoints"

# Keyword arguments of the task function (for the presets: vtune.tasks.mlp_classifier,
# plus optimizer = "adamw" | "adam" | "sgd" | "sgdw").
# [task_args]
# hidden_sizes = [128, 128]

# One line per hyperparameter: {loguniform = [lo, hi]}, {uniform = [lo, hi]},
# {intuniform = [lo, hi]} (add log = true for a log scale), {choice = [a, b, ...]}
# or {fixed = value}. Learning rate and L2 on a log scale, dropout linear.
[space]
learning_rate = {loguniform = [1e-4, 1.0]}
weight_decay = {loguniform = [1e-6, 1e-2]}
dropout = {uniform = [0.0, 0.7]}
init = {choice = ["he_normal", "he_uniform", "xavier_uniform", "xavier_normal", "lecun_normal"]}

# Optional: the fit diagnosis thresholds (see vtune.diagnose.Thresholds), e.g. for a
# task whose best reachable train accuracy is lower than digits':
# [diagnose]
# fit_accuracy = 0.8
'''

_KEYS = ("task", "task_args", "space", "strategy", "population_size", "generations",
         "steps_per_generation", "objective", "mode", "seed", "checkpoint_dir", "out_dir",
         "diagnose")
_DISTRIBUTIONS = ("loguniform", "uniform", "intuniform", "choice", "fixed")


class ConfigError(ValueError):
    """A config file that cannot describe a search; the message names the bad entry."""


def default_space() -> vtune.Space:
    """The default space, after the seed advice: learning rate and weight decay
    on a log scale, dropout on a linear scale, Xavier/He/LeCun init schemes."""
    return vtune.Space({
        "learning_rate": vtune.loguniform(1e-4, 1.0),
        "weight_decay": vtune.loguniform(1e-6, 1e-2),
        "dropout": vtune.uniform(0.0, 0.7),
        "init": vtune.choice(["he_normal", "he_uniform", "xavier_uniform", "xavier_normal",
                              "lecun_normal"]),
    })


# --- config files -----------------------------------------------------------------------

def _optimizer(name):
    import optax
    table = {"adamw": optax.adamw, "adam": optax.adam, "sgd": optax.sgd, "sgdw": vtune.sgdw}
    if name not in table:
        raise ConfigError(f"task_args.optimizer: unknown optimizer {name!r}; use one of "
                          f"{sorted(table)}")
    return table[name]


def _preset_digits_mlp(**kw):
    return vtune.tasks.mlp_classifier(**kw)


def _preset_synthetic_mlp(**kw):
    kw = {"hidden_sizes": (16,), "batch_size": 32, **kw}
    return vtune.tasks.mlp_classifier(vtune.datasets.synthetic(), **kw)


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
    unknown = [k for k in raw if k not in _KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; a config may hold {list(_KEYS)}")
    here = path.resolve().parent
    task = _task(raw.get("task", "digits_mlp"), raw.get("task_args", {}), here)
    if "space" not in raw:
        raise ConfigError(f"{path}: no [space] table; add one line per hyperparameter, e.g. "
                          "learning_rate = {loguniform = [1e-4, 1.0]}")
    space = _space(raw["space"])
    search = {k: raw[k] for k in ("population_size", "generations", "steps_per_generation",
                                  "objective", "mode", "seed") if k in raw}
    if "strategy" in raw:
        search["strategy"] = _strategy(raw["strategy"])
    if "checkpoint_dir" in raw:
        if "checkpoint_dir" not in inspect.signature(vtune.population_search).parameters:
            raise ConfigError("checkpoint_dir: this version of vtune cannot checkpoint searches")
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
    if not isinstance(task, vtune.Task):
        raise ConfigError(f"task {name!r} returned {type(task).__name__}, not a vtune.Task")
    return task


def _space(table) -> vtune.Space:
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
                dists[name] = vtune.fixed(arg)
            elif kind == "choice":
                if not isinstance(arg, list):
                    raise ConfigError(f"{where}: choice takes a list of options, got {arg!r}")
                dists[name] = vtune.choice(arg)
            else:
                if not isinstance(arg, list) or len(arg) != 2:
                    raise ConfigError(f"{where}: {kind} takes [lo, hi], got {arg!r}")
                extra_args = (spec.get("log", False),) if kind == "intuniform" else ()
                dists[name] = getattr(vtune, kind)(*arg, *extra_args)
        except (TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{where}: {e}") from None
    return vtune.Space(dists)


def _strategy(spec):
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
        name, kwargs = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    else:
        raise ConfigError(f"strategy must be a name or a table with a name, got {spec!r}")
    registry = vtune.strategies.REGISTRY
    if name not in registry:
        raise ConfigError(f"strategy {name!r} is unknown; use one of {sorted(registry)}")
    try:
        return registry[name](**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in kwargs.items()})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"strategy {name!r} with {kwargs}: {e}") from None


def _thresholds(table):
    from vtune.diagnose import Thresholds
    table = _table("diagnose", table)
    fields = {f.name for f in dataclasses.fields(Thresholds)}
    bad = [k for k in table if k not in fields]
    if bad:
        raise ConfigError(f"diagnose: unknown threshold(s) {bad}; known: {sorted(fields)}")
    return Thresholds(**table)


# --- commands ---------------------------------------------------------------------------

def split_cpu(n: int) -> int:
    """Splits the CPU into ``n`` JAX devices, if JAX's backend has not started yet.

    Returns the number of CPU devices JAX will use: ``n``, or 1 if the backend
    had started or ``JAX_NUM_CPU_DEVICES`` is set (which then wins).
    """
    import jax
    from jax._src import xla_bridge

    if "JAX_NUM_CPU_DEVICES" in os.environ or xla_bridge.backends_are_initialized():
        return 1
    jax.config.update("jax_num_cpu_devices", n)
    return n


def cpu_devices(population_size: int) -> int:
    """Splits the CPU into one JAX device per core, as far as the population divides.

    XLA:CPU keeps about one core busy per device; two devices on a 2-core
    machine train the digits population 1.5-1.8x faster
    (benchmarks/results/scaling-cpu.json). See :func:`split_cpu`.
    """
    return split_cpu(max(d for d in range(1, (os.cpu_count() or 1) + 1)
                         if population_size % d == 0))


def _default_search(args) -> int:
    devices = cpu_devices(args.population)
    start = time.perf_counter()
    result = vtune.population_search(
        vtune.tasks.mlp_classifier(), default_space(), population_size=args.population,
        generations=args.generations, steps_per_generation=args.steps,
        objective="val_loss", seed=args.seed, verbose=not args.quiet)
    elapsed = time.perf_counter() - start
    print(result.summary())
    if result.best is not None:
        where = f" on {devices} CPU devices" if devices > 1 else ""
        print(f"validation accuracy of the best trial: {result.best.metrics['val_accuracy']:.4f} "
              f"({len(result.history)} trial-generations in {elapsed:.1f} s{where})")
    return 0


def _run(args) -> int:
    if args.example:
        sys.stdout.write(EXAMPLE_CONFIG)
        return 0
    if args.config is None:
        raise ConfigError("run needs a CONFIG.toml (start from `vtune run --example`)")
    config = load_config(args.config)
    out_dir = pathlib.Path(args.out_dir) if args.out_dir else config["out_dir"]
    start = time.perf_counter()
    result = vtune.population_search(config["task"], config["space"], verbose=not args.quiet,
                                     **config["search"])
    elapsed = time.perf_counter() - start
    if result.space is None:
        result = dataclasses.replace(result, space=config["space"])
    print(f"{len(result.history)} trial-generations in {elapsed:.1f} s")
    return _show(result, out_dir, config["thresholds"], args.top, plots=True)


def _report(args) -> int:
    directory = pathlib.Path(args.dir)
    if (directory / "vtune_spec.json").exists():
        result = vtune.load(directory)
        default_out = directory.with_name(directory.name + "-report")
    elif (directory / "result.json").exists():
        result = vtune.SearchResult.from_json(directory / "result.json")
        default_out = directory
    elif not directory.is_dir():
        raise ConfigError(f"{str(directory)!r} is not a directory")
    else:
        raise ConfigError(f"{str(directory)!r} holds neither a vtune checkpoint "
                          "(vtune_spec.json) nor a vtune run's result.json")
    out_dir = pathlib.Path(args.out_dir) if args.out_dir else default_out
    return _show(result, out_dir, None, args.top, plots=not args.no_plots)


def _show(result, out_dir: pathlib.Path, thresholds, top: int, plots: bool) -> int:
    print(result.summary())
    print()
    print(result.table(top))
    print()
    print(result.diagnose(thresholds).text())
    try:
        paths = result.save(out_dir, plots=plots, k=top, thresholds=thresholds)
    except ImportError as e:  # no matplotlib: everything but the figures
        paths = result.save(out_dir, plots=False, k=top, thresholds=thresholds)
        print(f"\nplots skipped: {e}")
    print(f"\nwrote {len(paths)} files to {out_dir}: " + ", ".join(p.name for p in paths.values()))
    return 0


HELP = """\
Tune small models by training a whole population of trials as one compiled JAX program.

commands (each has --help):
  vtune                         the default search: an MLP on the bundled digits, 32 trials
  vtune run CONFIG.toml         a search described in a TOML file; writes plots, CSV, JSON
                                and a fit diagnosis (under-/over-fitting, stalled, diverging)
  vtune report DIR              tables, plots and diagnosis of a checkpoint directory (or a
                                run's output directory), without training

examples:
  vtune --population 64 --generations 12 --seed 1
  vtune run --example > search.toml && vtune run search.toml
  vtune report digits-checkpoints --out-dir digits-report

a config file, in short (`vtune run --example` prints a commented one):
  task = "digits_mlp"                    # or "package.module:function" -> vtune.Task
  strategy = "successive_halving"        # or "pbt", "truncation", ...
  population_size = 32
  generations = 8
  steps_per_generation = 150
  objective = "val_loss"
  out_dir = "digits-results"
  checkpoint_dir = "digits-checkpoints"  # optional: resumable, and `vtune report` reads it
  [space]
  learning_rate = {loguniform = [1e-4, 1.0]}
  dropout = {uniform = [0.0, 0.7]}
  init = {choice = ["he_normal", "xavier_uniform"]}
  weight_decay = {fixed = 1e-4}

exit status: 0 done, 2 bad command line or config (one line on stderr says which value).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtune", description=HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=int, default=32,
                        help="default search: trials trained at once (default 32)")
    parser.add_argument("--generations", type=int, default=8,
                        help="default search: prune/refill rounds (default 8)")
    parser.add_argument("--steps", type=int, default=150,
                        help="default search: steps per generation (default 150)")
    parser.add_argument("--seed", type=int, default=0, help="default search: seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", metavar="{run,report}")
    run = sub.add_parser(
        "run", help="run the search a TOML file describes",
        description="Run the search CONFIG.toml describes, print the best trials and the fit\n"
                    "diagnosis, and write them with plots to its out_dir.\n\n"
                    "An example config (this is what `vtune run --example` prints):\n\n"
                    + EXAMPLE_CONFIG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("config", nargs="?", metavar="CONFIG.toml")
    run.add_argument("--out-dir", help="write results here instead of the config's out_dir")
    run.add_argument("--top", type=int, default=10, help="rows of the top-k table (default 10)")
    run.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                     help="no progress bar")
    run.add_argument("--example", action="store_true", help="print an example config and exit")
    report = sub.add_parser(
        "report", help="tables, plots and diagnosis of a finished or interrupted search",
        description="Read a search from DIR without training: a checkpoint_dir\n"
                    "(vtune_spec.json) or a `vtune run` out_dir (result.json). Prints the best\n"
                    "trials and the fit diagnosis; writes CSV, JSON, text and plots to --out-dir\n"
                    "(default: DIR-report beside a checkpoint directory, DIR itself for an\n"
                    "out_dir).\n\nexample:\n  vtune report digits-checkpoints --top 5",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("dir", metavar="DIR")
    report.add_argument("--out-dir", help="where to write the report")
    report.add_argument("--top", type=int, default=10, help="rows of the top-k table (default 10)")
    report.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"run": _run, "report": _report}.get(args.command, _default_search)
    try:
        return command(args)
    except (ValueError, TypeError, OSError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"vtune: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
