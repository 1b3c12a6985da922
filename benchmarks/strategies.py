"""Search quality of every registered strategy at equal compute, against random search.

Every strategy searches the same space for the digits MLP with the same
budget: ``--population`` slots x ``--generations`` generations x ``--steps``
optimizer steps per generation (the same trial-steps, so the same compute:
the program is identical, only the prune/refill decisions differ). The
objective is the validation loss (``population_search``'s default); the
script records, per strategy and seed, the best validation loss and the best
validation accuracy over the search (every evaluated row), and the
validation accuracy of the trial the search returns as best. Results are
reported as the median over ``--seeds`` seeds with the min, max and the
interquartile range, and the median ratio to random search run with the same
seed. The strategy with the lowest median best validation loss wins.

Run from the repository root::

    PYTHONPATH=. python benchmarks/strategies.py
    PYTHONPATH=. python benchmarks/strategies.py --population 8 --generations 3 --steps 20 \
        --seeds 2 --out /tmp/strategies.json  # a quick check

Results go to ``benchmarks/results/strategies-cpu.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time


import vtune
from common import environment, summarise

HIDDEN_SIZES = (128, 128)
BATCH_SIZE = 128


def space() -> dict:
    """The search space: wide, with a failing region (high learning rates, zero init)."""
    return {
        "learning_rate": vtune.loguniform(1e-4, 1.0),
        "weight_decay": vtune.loguniform(1e-6, 1e-1),
        "dropout": vtune.uniform(0.0, 0.7),
        "init": vtune.choice(["he_normal", "xavier_uniform", "lecun_normal", "zeros"]),
        "schedule": vtune.choice(["constant", "cosine"]),
    }


def run_one(task, name: str, seed: int, args) -> dict:
    """One search; its best validation loss and accuracy over every evaluated row."""
    start = time.perf_counter()
    result = vtune.population_search(
        task, space(), population_size=args.population, generations=args.generations,
        steps_per_generation=args.steps, seed=seed, strategy=name, verbose=False)
    wall = time.perf_counter() - start
    rows = [r for r in result.history if r["status"] != "diverged"]
    return {"strategy": name, "seed": seed,
            "best_val_loss": min(r["val_loss"] for r in rows),
            "best_val_accuracy": max(r["val_accuracy"] for r in rows),
            "returned_val_accuracy": result.best.metrics["val_accuracy"],
            "trials": len({r["trial_id"] for r in result.history}),
            "diverged_rows": sum(r["status"] == "diverged" for r in result.history),
            "wall_s": wall}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strategies", nargs="*", default=sorted(vtune.strategies.REGISTRY))
    parser.add_argument("--out", default="benchmarks/results/strategies-cpu.json")
    args = parser.parse_args(argv)
    if "random" not in args.strategies:
        args.strategies = ["random", *args.strategies]

    task = vtune.tasks.mlp_classifier(hidden_sizes=HIDDEN_SIZES, batch_size=BATCH_SIZE)
    start = time.perf_counter()
    vtune.population_search(task, space(), population_size=args.population, generations=1,
                            steps_per_generation=args.steps, verbose=False)  # compile once
    compile_s = time.perf_counter() - start
    runs = []
    for seed in range(args.seeds):  # seeds outermost, so load changes hit every strategy
        for name in args.strategies:
            runs.append(run_one(task, name, seed, args))
            r = runs[-1]
            print(f"seed {seed} {name:>20}: best val_loss {r['best_val_loss']:.4f}  "
                  f"val_accuracy {r['best_val_accuracy']:.4f}  ({r['trials']} trials, "
                  f"{r['wall_s']:.1f} s)", flush=True)

    random = {r["seed"]: r for r in runs if r["strategy"] == "random"}
    summary = {}
    for name in args.strategies:
        mine = sorted((r for r in runs if r["strategy"] == name), key=lambda r: r["seed"])
        summary[name] = {
            metric: summarise([r[metric] for r in mine])
            for metric in ("best_val_loss", "best_val_accuracy", "returned_val_accuracy")}
        summary[name]["val_loss_ratio_to_random"] = statistics.median(
            r["best_val_loss"] / random[r["seed"]]["best_val_loss"] for r in mine)
        summary[name]["wins_vs_random"] = None if name == "random" else sum(
            r["best_val_loss"] < random[r["seed"]]["best_val_loss"] for r in mine)
        summary[name]["trials_median"] = statistics.median(r["trials"] for r in mine)
    winner = min(summary, key=lambda n: summary[n]["best_val_loss"]["median"])
    result = {
        "benchmark": "strategies", **environment(),
        "command": "PYTHONPATH=. python " + shlex.join(["benchmarks/strategies.py", *sys.argv[1:]])
        if argv is None else shlex.join(["benchmarks/strategies.py", *argv]),
        "task": task.name, "space": vtune.Space(space()).to_json(),
        "objective": "val_loss", "population": args.population,
        "generations": args.generations, "steps_per_generation": args.steps,
        "trial_steps_per_search": args.population * args.generations * args.steps,
        "seeds": list(range(args.seeds)), "compile_s": compile_s,
        "winner": winner, "summary": summary, "runs": runs,
    }
    print_table(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    return result


def print_table(result: dict) -> None:
    print(f"\n{result['task']}, P={result['population']}, {result['generations']} x "
          f"{result['steps_per_generation']} steps, {len(result['seeds'])} seeds; "
          f"median [min, max]\n")
    print("| strategy | best val loss | best val accuracy | loss / random | beats random |")
    print("| --- | --- | --- | --- | --- |")
    order = sorted(result["summary"], key=lambda n: result["summary"][n]["best_val_loss"]["median"])
    for name in order:
        s = result["summary"][name]
        loss, acc = s["best_val_loss"], s["best_val_accuracy"]
        n = len(result["seeds"])
        wins = "—" if s["wins_vs_random"] is None else f"{s['wins_vs_random']}/{n}"
        print(f"| {name} | {loss['median']:.4f} [{loss['min']:.4f}, {loss['max']:.4f}] | "
              f"{acc['median']:.4f} [{acc['min']:.4f}, {acc['max']:.4f}] | "
              f"{s['val_loss_ratio_to_random']:.3f} | {wins} |")
    print(f"\nwinner (lowest median best val loss): {result['winner']}")


if __name__ == "__main__":
    main()
