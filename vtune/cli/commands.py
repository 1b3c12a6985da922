"""The ``vtune`` command: run searches described in a TOML file and report on finished ones.

Examples:
    $ vtune                                   # the default search on the bundled digits
    $ vtune --population 64 --generations 12 --seed 1
    $ vtune run --example > search.toml       # a commented config to start from
    $ vtune run search.toml                   # train; write plots, CSV, JSON and a fit diagnosis
    $ vtune report runs/digits/checkpoints    # the same from a checkpoint directory, no training

From Python, :func:`main` takes the command line as a list and returns the exit status:

    >>> main(["run", "no-such-config.toml"])
    2
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

from vtune.checkpoint import SPEC_FILE, load
from vtune.cli.config import (EXAMPLE_CONFIG, ConfigError, default_space, default_task,
                              load_config)
from vtune.population.devices import cpu_devices
from vtune.report.result import SearchResult
from vtune.search import population_search

# --- commands ---------------------------------------------------------------------------

def _default_search(args) -> int:
    devices = cpu_devices(args.population)
    start = time.perf_counter()
    result = population_search(
        default_task(), default_space(), population_size=args.population,
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
    search = dict(config["search"])
    if args.overwrite:
        search["overwrite"] = True
    result = population_search(config["task"], config["space"], verbose=not args.quiet,
                               **search)
    elapsed = time.perf_counter() - start
    if result.space is None:
        result = dataclasses.replace(result, space=config["space"])
    print(f"{len(result.history)} trial-generations in {elapsed:.1f} s")
    return _show(result, out_dir, config["thresholds"], args.top, plots=not args.no_plots)


def _report(args) -> int:
    directory = pathlib.Path(args.dir)
    if (directory / SPEC_FILE).exists():
        result = load(directory)
        default_out = directory.with_name(directory.name + "-report")
    elif (directory / "result.json").exists():
        result = SearchResult.from_json(directory / "result.json")
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
                                (learning rate, weight decay, dropout, init, width 16-128,
                                depth 1-3, batch size 32-128)
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
  strategy = "bohb"                      # or "successive_halving", "pbt", ...
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
    run.add_argument("--overwrite", action="store_true",
                     help="start afresh in the config's checkpoint_dir, deleting what it holds")
    run.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
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
    except KeyboardInterrupt as e:
        print(f"vtune: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"vtune: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
