"""Search quality against Optuna: the best validation loss reached as a function of wall time.

The methods search the same space (``baselines.space()``: learning_rate, weight_decay,
dropout, b1) for the same MLP 64-128-128 (``baselines.vtune_task``: a classifier, or a
regressor with one linear output and the squared error), each with the same wall-clock
budget per search (``--budget`` seconds), on four tasks:

* ``digits``: the bundled digits split (1438 train / 359 validation images). It saturates:
  most reasonable settings reach ~97% validation accuracy, so it mostly measures how fast a
  method gets going;
* ``digits_small``: the same network, inputs and validation split, but only the first
  ``--small-train`` (default 150) training images. With ~15 examples per class the network
  overfits within a few hundred steps: the settings matter more and when to stop matters.
  32 random configurations trained 600 steps reached a best validation loss of 0.17 / 0.35
  / 1.15 (min / median / 75th percentile) against 0.045 / 0.10 / 0.19 on full digits;
* ``friedman1``: a regression, ``vtune.datasets.friedman1()`` (1000 examples, 10 inputs of
  which 5 matter, noise 1: the best possible squared error is about 1). 64 random
  configurations trained 1000 steps: best 1.57, median 3.1, 75th percentile 5.9; the
  learning rate decides most of it (below 3e-4 nothing gets under 5);
* ``teacher_student``: a regression onto a random tanh teacher,
  ``vtune.datasets.teacher_student()`` (4000 examples, 16 inputs, 32 teacher units), where
  good settings are rare: of 64 random configurations trained 1000 steps only 4 came within
  5% of the best (0.056); those had learning rates of 2e-3 to 8e-3 and little dropout.

Methods (``--methods``; default ``vtune``, ``optuna_jax`` and ``optuna_torch``):

* ``vtune``: ``population_search(..., strategy=None)`` (the default strategy, or
  ``--vtune-strategy``, e.g. ``bohb:model=optuna_tpe``), ``--population`` slots x
  ``--steps`` steps per generation with ``timeout=budget`` (so it stops after the generation
  that passes the budget, at most ``--generations``), the population sharded over
  ``--cpu-devices`` CPU devices as the ``vtune`` command does;
* ``vtune_random``: the same with ``strategy="random"`` (every slot trains one random
  configuration for the whole search);
* ``vtune_structure``: the default strategy over the same space plus the structure and
  optimizer knobs (:data:`STRUCTURE`: width 16-128, depth 1-3, batch size 32-128, the
  optimizer family), the MLP allocated at 3 x 128 and batch 128, in the same budget: does
  searching the structure pay at equal compute? (One masked program, vtune's default);
* ``vtune_structure_bucketed``: the same with ``bucketing=True`` (``vtune.program.buckets``);
* ``optuna_jax``: Optuna's TPE sampler + MedianPruner, every trial trained by
  ``baselines.JaxLoop`` (the usual jitted Flax/Optax step in a Python loop);
* ``optuna_torch``: the same with ``baselines.TorchLoop`` (plain PyTorch; classifiers only).

An Optuna trial trains at most ``--trial-steps`` steps (default 1000) and reports its
validation loss every ``--steps`` steps, so the pruner decides at the points where vtune
prunes; the objective is the last reported loss. Optuna runs
``study.optimize(timeout=budget)``; a trial still training at the budget is stopped there.
Evaluations after the budget are not counted for any method, and each run's ``wall_s`` says
how long it actually took.

Wall time includes compilation for every method, in two passes (``--caches``): ``cold``, each
search on a new, empty persistent compilation cache (JAX's, which vtune turns on by default
and which also serves the JAX loop), and ``warm``, each search on the cache the cold pass's
first seed of that task and method filled, as a second run on the same machine would find
it. Before every search ``jax.clear_caches()`` empties the in-memory caches and the JAX loop
is a new object (the process and the data stay warm; torch compiles nothing). vtune's curve
comes from its history: every row (trial x generation) carries its ``wall_time``, measured
from after the first compile; the whole call's start-up (tracing, the init compile) is added
back as the call's duration minus the last row's time, which also counts the final fetch of
the best parameters against vtune (``startup_s``).

Every evaluation of every trial counts (vtune: every row; Optuna: every report): a run's
curve is the best validation loss (and, separately, the best validation accuracy or R²) seen
so far against wall seconds. Per task the target is a validation loss within 5% of the best
any method reached in the whole run (``--target-tolerance``); per method the median over
seeds of the time to reach it (not reached = infinite) and how many seeds reached it. The
issue's goals, checked per task and cache state against each Optuna method: vtune's median
best loss at the budget no worse, and its median time-to-target at most 1/2 of Optuna's on a
CPU (1/5 on an accelerator; when Optuna never reached it the ratio is a lower bound, budget /
vtune's time). Best loss and score at the budget (and at a quarter and half of it) are
summarised by the median, min, max and interquartile range over ``--seeds`` seeds.

Run from the repository root (about 35 minutes on a quiet 2-core CPU: 4 tasks x 2 methods x
5 seeds x 2 passes x 25 s, plus start-up)::

    PYTHONPATH=. python benchmarks/search_quality.py
    PYTHONPATH=. python benchmarks/search_quality.py --budget 6 --seeds 1 --population 16 \
        --steps 50 --caches cold --out /tmp/sq.json  # quick

Results go to ``benchmarks/results/search-quality-<backend>.json`` (``--out``). Needs
``optuna`` (and torch for ``optuna_torch``): ``pip install -e '.[bench]'``; a missing one is
reported as skipped.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import math
import os
import shlex
import statistics
import sys
import tempfile
import time

import jax
from jax.experimental.compilation_cache import compilation_cache

import baselines
import vtune
import vtune.cli
from common import environment, summarise, write_result
from vtune.datasets import Dataset

METHODS = ("vtune", "vtune_random", "vtune_structure", "vtune_structure_bucketed", "optuna_jax",
           "optuna_torch")
#: What ``vtune_structure`` searches beyond ``baselines.space()``, and its allocation.
STRUCTURE = {"width": vtune.choice([16, 32, 64, 128]), "depth": vtune.intuniform(1, 3),
             "batch_size": vtune.choice([32, 64, 128]),
             "optimizer": vtune.choice(["adamw", "sgdw", "rmsprop"])}
STRUCTURE_ALLOCATION = {"hidden_sizes": (128, 128, 128), "batch_size": 128}
TASKS = ("digits", "digits_small", "friedman1", "teacher_student")
#: The two states of JAX's persistent compilation cache a search can start from (see
#: :func:`use_cache`).
CACHES = ("cold", "warm")
#: The methods run when ``--methods`` is not given (the issue's comparison).
DEFAULT_METHODS = ("vtune", "optuna_jax", "optuna_torch")


def dataset(name: str, small_train: int) -> Dataset:
    """The data of task ``name`` (see the module docstring)."""
    if name == "friedman1":
        return vtune.datasets.friedman1()
    if name == "teacher_student":
        return vtune.datasets.teacher_student()
    full = vtune.datasets.digits()
    if name == "digits":
        return full
    return Dataset(full.x_train[:small_train], full.y_train[:small_train], full.x_val,
                   full.y_val, name=f"{full.name}[:{small_train}]")


def score_metric(data: Dataset) -> str:
    """The metric a curve tracks beside the loss: accuracy, or R² for a regression."""
    return "accuracy" if data.has_class_labels else "r2"


def use_cache(directory: str) -> None:
    """Points JAX's persistent compilation cache at ``directory`` and empties the in-memory
    caches, so the next search compiles (cold: a new, empty directory) or loads from disk
    (warm: a directory an earlier search of the same task and method filled)."""
    jax.config.update("jax_compilation_cache_dir", directory)
    compilation_cache.reset_cache()
    jax.clear_caches()


class Curve:
    """Best validation loss and score (accuracy or R²) so far against wall seconds, cut at
    the budget."""

    def __init__(self, budget: float):
        self.budget = budget
        self.points: list[tuple[float, float, float]] = []  # (wall_s, best loss, best acc)
        self.evaluations = 0

    def add(self, wall: float, loss: float, accuracy: float) -> None:
        if wall > self.budget or not math.isfinite(loss):
            return
        self.evaluations += 1
        best_loss, best_acc = self.points[-1][1:] if self.points else (math.inf, 0.0)
        if loss < best_loss or accuracy > best_acc:
            if self.points and self.points[-1][0] == wall:  # a generation's rows: one point
                self.points.pop()
            self.points.append((wall, min(loss, best_loss), max(accuracy, best_acc)))

    def at(self, wall: float) -> tuple[float, float]:
        """Best (loss, accuracy) by ``wall`` seconds (inf, 0 before the first evaluation)."""
        best = (math.inf, 0.0)
        for t, loss, acc in self.points:
            if t <= wall:
                best = (loss, acc)
        return best

    def time_to(self, target: float) -> float:
        """First wall second with a loss <= target (inf if never)."""
        return next((t for t, loss, _ in self.points if loss <= target), math.inf)


def run_vtune(strategy: str | None, data: Dataset, seed: int, args,
              structure: bool = False, bucketing: bool = False) -> dict:
    task = baselines.vtune_task(data, **(STRUCTURE_ALLOCATION if structure else {}))
    space = {**baselines.space(), **(STRUCTURE if structure else {})}
    score = f"val_{score_metric(data)}"
    start = time.perf_counter()
    result = vtune.population_search(
        task, space, population_size=args.population,
        generations=args.generations, steps_per_generation=args.steps, seed=seed,
        strategy=strategy, verbose=False, bucketing=bucketing, timeout=args.budget)
    wall = time.perf_counter() - start
    startup = wall - result.history[-1]["wall_time"]  # see the module docstring
    curve = Curve(args.budget)
    for row in result.history:
        if row["status"] != "diverged":
            curve.add(startup + row["wall_time"], row["val_loss"], row[score])
    return {"curve": curve, "wall_s": wall, "startup_s": startup,
            "trials": len({r["trial_id"] for r in result.history})}


def optuna_params(trial, space: dict) -> dict:
    """Samples vtune's space through Optuna's API (same names, same ranges)."""
    out = {}
    for name, dist in space.items():
        if not isinstance(dist, (vtune.LogUniform, vtune.Uniform)):
            raise TypeError(f"{name}: only uniform and loguniform are mapped to Optuna")
        out[name] = trial.suggest_float(name, dist.lo, dist.hi,
                                        log=isinstance(dist, vtune.LogUniform))
    return out


def run_optuna(loop_name: str, data: Dataset, seed: int, args) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    loop = (baselines.JaxLoop(data) if loop_name == "jax"
            else baselines.TorchLoop(data, threads=args.torch_threads))
    curve = Curve(args.budget)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner())
    space = baselines.space()

    def objective(trial):
        over = False

        def report(step, loss, accuracy):
            nonlocal over
            now = time.perf_counter() - start
            curve.add(now, loss, accuracy)
            if now > args.budget:  # later evaluations would not count: stop here
                over = True
                return True
            if not math.isfinite(loss):  # diverged: stop, as a pruned trial
                return True
            trial.report(loss, step)
            return trial.should_prune()

        out = loop.train(optuna_params(trial, space), seed * 100_000 + trial.number,
                         args.trial_steps, eval_every=args.steps, report=report)
        if over:
            trial.study.stop()
        if out["pruned"]:
            raise optuna.TrialPruned()
        return out["val_loss"]

    study.optimize(objective, timeout=args.budget - (time.perf_counter() - start))
    states = [t.state.name.lower() for t in study.trials]
    return {"curve": curve, "wall_s": time.perf_counter() - start, "trials": len(states),
            "pruned_trials": states.count("pruned")}


def strategy(text: str | None):
    """``--vtune-strategy``: a registry name, optionally with settings, ``"bohb:eta=4,model=tpe"``."""
    if text is None or ":" not in text:
        return text
    name, settings = text.split(":", 1)
    kwargs = {}
    for item in settings.split(","):
        key, value = item.split("=", 1)
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return vtune.strategies.REGISTRY[name](**kwargs)


def run(method: str, data: Dataset, seed: int, args) -> dict:
    if method == "vtune":
        return run_vtune(strategy(args.vtune_strategy), data, seed, args)
    if method == "vtune_random":
        return run_vtune("random", data, seed, args)
    if method.startswith("vtune_structure"):
        return run_vtune(None, data, seed, args, structure=True,
                         bucketing=method.endswith("_bucketed"))
    return run_optuna(method.split("_", 1)[1], data, seed, args)


def missing(method: str, data: Dataset) -> str | None:
    """Why ``method`` cannot run here on ``data``, or None."""
    if method.startswith("optuna") and importlib.util.find_spec("optuna") is None:
        return "optuna not installed"
    if method == "optuna_torch":
        return (baselines.torch_missing() if data.has_class_labels
                else "the torch loop trains classifiers only")
    return None


def finite(tree):
    """``tree`` with every non-finite float as None (JSON has no infinity or NaN)."""
    if isinstance(tree, dict):
        return {k: finite(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [finite(v) for v in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree


def summarise_task(runs: list[dict], methods: list[str], args, metric: str) -> dict:
    """Target, then per cache state: time-to-target, best-at-budget and the targets' checks."""
    done = [r for r in runs if "skipped" not in r]
    best = min(r["curve"].at(args.budget)[0] for r in done)
    target = best * (1 + args.target_tolerance)
    out = {"best_val_loss_overall": best, "target_val_loss": target, "score_metric": metric,
           "caches": {}}
    for cache in args.caches:
        summary = {}
        for m in methods:
            mine = [r for r in done if r["method"] == m and r["cache"] == cache]
            if not mine:
                summary[m] = {"skipped": next(r["skipped"] for r in runs if r["method"] == m)}
                continue
            times = [r["curve"].time_to(target) for r in mine]
            # A seed that never reached the target counts as infinitely slow (None in JSON).
            s = {"time_to_target_s": {"median": statistics.median(times), "values": times},
                 "seeds_reaching_target": sum(math.isfinite(t) for t in times),
                 "trials_median": statistics.median(r["trials"] for r in mine),
                 "wall_s_median": statistics.median(r["wall_s"] for r in mine)}
            if m.startswith("vtune"):
                s["startup_s_median"] = statistics.median(r["startup_s"] for r in mine)
            for frac in (0.25, 0.5, 1.0):
                at = [r["curve"].at(frac * args.budget) for r in mine]
                key = "at_budget" if frac == 1.0 else f"at_{frac:g}_budget"
                s[f"best_val_loss_{key}"] = summarise([a[0] for a in at])
                s[f"best_val_{metric}_{key}"] = summarise([a[1] for a in at])
            summary[m] = s
        out["caches"][cache] = {"methods": summary,
                                "targets": targets(summary, args.budget, speedup(args))}
    return out


def speedup(args) -> float:
    """The issue's time-to-target goal: vtune in 1/2 of Optuna's time on a CPU, 1/5 on GPUs."""
    return 2.0 if jax.default_backend() == "cpu" else 5.0


def targets(methods: dict, budget: float, goal: float) -> dict:
    """Against each Optuna method: vtune's median best loss at the budget no worse, and its
    median time-to-target at most ``1 / goal`` of the Optuna method's."""
    out = {}
    mine = methods.get("vtune", {})
    vt = mine.get("time_to_target_s", {}).get("median", math.inf)
    for m, s in methods.items():
        if not m.startswith("optuna"):
            continue
        r = {"goal": f"vtune's median best val loss at the budget <= {m}'s, and it reaches "
                     f"the target in <= 1/{goal:g} of {m}'s time"}
        if "skipped" in s or "skipped" in mine or not mine:
            r.update(met=None, note=s.get("skipped") or "vtune did not run")
            out[m] = r
            continue
        v_loss = mine["best_val_loss_at_budget"]["median"]
        o_loss = s["best_val_loss_at_budget"]["median"]
        r.update(loss_vtune=v_loss, loss_optuna=o_loss, loss_met=v_loss <= o_loss)
        ot = s["time_to_target_s"]["median"]
        if not math.isfinite(vt):
            r.update(ratio=None, time_met=None if not math.isfinite(ot) else False,
                     note="vtune did not reach the target in the median seed")
        elif math.isfinite(ot):
            r.update(ratio=ot / vt, time_met=ot / vt >= goal)
        else:  # Optuna's median seed never reached it: its time exceeds the budget
            bound = budget / vt
            r.update(ratio=None, ratio_lower_bound=bound,
                     time_met=True if bound >= goal else None,
                     note=f"{m} did not reach the target within the budget in the median seed")
        r["met"] = r["loss_met"] and r["time_met"] if r["time_met"] is not None else (
            False if not r["loss_met"] else None)
        out[m] = r
    return out


def fmt_time(t: float) -> str:
    return f"{t:.1f}" if math.isfinite(t) else "—"


def print_tables(result: dict) -> None:
    settings = result["settings"]
    print(f"\nbudget {settings['budget_s']:g} s per search, {len(settings['seeds'])} seeds; "
          f"vtune P={settings['population']}, {settings['generations']} generations x "
          f"{settings['steps_per_generation']} steps; median [min, max] (IQR)")
    for task, t in result["tasks"].items():
        metric = t["score_metric"]
        print(f"\n{task}: target val loss {t['target_val_loss']:.4f} (best overall "
              f"{t['best_val_loss_overall']:.4f})")
        for cache, c in t["caches"].items():
            print(f"\n{cache} compilation cache\n")
            print(f"| method | time to target s (seeds) | best val loss at budget | "
                  f"best val {metric} at budget | at budget/2 | trials |")
            print("| --- | --- | --- | --- | --- | --- |")
            for m, s in c["methods"].items():
                if "skipped" in s:
                    print(f"| {m} | skipped: {s['skipped']} | | | | |")
                    continue
                loss, acc = s["best_val_loss_at_budget"], s[f"best_val_{metric}_at_budget"]
                half = s["best_val_loss_at_0.5_budget"]
                n = len(s["time_to_target_s"]["values"])
                print(f"| {m} | {fmt_time(s['time_to_target_s']['median'])} "
                      f"({s['seeds_reaching_target']}/{n}) | {loss['median']:.4f} "
                      f"[{loss['min']:.4f}, {loss['max']:.4f}] ({loss['iqr']:.4f}) | "
                      f"{acc['median']:.4f} [{acc['min']:.4f}, {acc['max']:.4f}] | "
                      f"{half['median']:.4f} | {s['trials_median']:g} |")
            for m, r in c["targets"].items():
                if r["met"] is None and "loss_met" not in r:
                    print(f"  against {m}: {r.get('note', '')}")
                    continue
                value = (f"{r['ratio']:.2f}" if r.get("ratio") is not None else
                         f"> {r['ratio_lower_bound']:.2f}" if "ratio_lower_bound" in r
                         else r.get("note", ""))
                met = {True: "met", False: "NOT met", None: "—"}
                print(f"  against {m}: loss {r['loss_vtune']:.4f} vs {r['loss_optuna']:.4f} "
                      f"({met[r['loss_met']]}); time {m} / vtune {value} "
                      f"({met[r['time_met']]})")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    parser.add_argument("--caches", nargs="+", default=list(CACHES), choices=CACHES,
                        help="cold: every search on an empty persistent compilation cache; "
                             "warm: on the cache the cold pass's first seed filled")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--vtune-strategy", default=None,
                        help="the strategy of the vtune method (default: vtune's default)")
    parser.add_argument("--budget", type=float, default=25.0,
                        help="wall seconds per search, compilation included")
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--generations", type=int, default=40,
                        help="the most generations vtune trains; it stops at the budget "
                             "(population_search's timeout) first")
    parser.add_argument("--trial-steps", type=int, default=1000,
                        help="the most steps an Optuna trial trains")
    parser.add_argument("--steps", type=int, default=100,
                        help="steps per generation (vtune) = between evaluations (Optuna)")
    parser.add_argument("--small-train", type=int, default=150,
                        help="training images of the digits_small task")
    parser.add_argument("--target-tolerance", type=float, default=0.05)
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="JAX CPU devices (default: one per core, as far as --population "
                             "divides, as the vtune command does)")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/results/search-quality-<backend>.json")
    args = parser.parse_args(argv)
    if args.cpu_devices is None:  # before anything starts JAX's backend
        vtune.population.devices.cpu_devices(args.population)
    else:
        vtune.population.devices.split_cpu(args.cpu_devices)
    devices = jax.device_count()

    runs = []
    caches = tempfile.TemporaryDirectory(prefix="vtune-search-quality-")
    # The warm pass needs the cold pass's caches: cold runs first, whatever the order given.
    args.caches = [c for c in CACHES if c in args.caches]
    for cache in args.caches:
        for task in args.tasks:
            data = dataset(task, args.small_train)
            for seed in range(args.seeds):  # seeds outermost: load changes hit every method
                for method in args.methods:
                    why = missing(method, data)
                    if why:
                        if seed == 0 and cache == args.caches[0]:
                            runs.append({"task": task, "method": method, "skipped": why})
                        continue
                    first = os.path.join(caches.name, task, method)
                    # cold: a new directory (the first seed's is kept for the warm pass)
                    use_cache(first if cache == "warm" or seed == 0 else
                              tempfile.mkdtemp(dir=caches.name))
                    r = {"task": task, "method": method, "seed": seed, "cache": cache,
                         **run(method, data, seed, args)}
                    runs.append(r)
                    loss, acc = r["curve"].at(args.budget)
                    print(f"{task} {cache} seed {seed} {method:>13}: best val_loss {loss:.4f} "
                          f"val_{score_metric(data)} {acc:.4f} ({r['trials']} trials, "
                          f"{r['curve'].evaluations} evaluations, {r['wall_s']:.1f} s)",
                          flush=True)
                    if method.startswith("vtune") and r["wall_s"] < 0.8 * args.budget:
                        print(f"  note: the vtune search ended after {r['wall_s']:.1f} s of a "
                              f"{args.budget:g} s budget: raise --generations", flush=True)
    caches.cleanup()

    tasks = {}
    for t in args.tasks:
        data = dataset(t, args.small_train)
        tasks[t] = summarise_task([r for r in runs if r["task"] == t], args.methods, args,
                                  score_metric(data))
        tasks[t]["data"] = {"name": data.name, "train": len(data.x_train),
                            "val": len(data.x_val)}
    for r in runs:
        if "curve" in r:
            r["curve"] = [list(p) for p in r.pop("curve").points]
    result = {
        "benchmark": "search_quality", **environment(),
        "command": shlex.join(["python", "benchmarks/search_quality.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "settings": {"budget_s": args.budget, "seeds": list(range(args.seeds)),
                     "methods": args.methods, "caches": args.caches,
                     "population": args.population,
                     "generations": args.generations, "steps_per_generation": args.steps,
                     "optuna_trial_steps": args.trial_steps,
                     "target_tolerance": args.target_tolerance,
                     "time_to_target_goal": speedup(args), "cpu_devices": devices,
                     "torch_threads": args.torch_threads, "task": baselines.vtune_task().name,
                     "space": vtune.Space(baselines.space()).to_json(),
                     "structure_space": vtune.Space(STRUCTURE).to_json(),
                     "structure_allocation": STRUCTURE_ALLOCATION,
                     "objective": "val_loss",
                     "curve_point": ["wall_s", "best_val_loss", "best_val_score"]},
        "tasks": tasks,
        "targets": {t: {c: v["targets"] for c, v in tasks[t]["caches"].items()}
                    for t in args.tasks},
        "runs": runs,
    }
    print_tables(result)
    result = finite(result)
    write_result(args.out or f"benchmarks/results/search-quality-{result['backend']}.json",
                 result)
    return result


if __name__ == "__main__":
    main()
