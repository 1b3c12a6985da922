"""Checkpoint overhead as a share of generation time.

The same search (digits MLP 64-128-128-10, adamw, P=256 by default) runs
without and with ``checkpoint_dir`` (a save after every generation, orbax,
asynchronous), alternating, in one process. Per-generation wall time comes from
the history's ``wall_time`` column; a warm-up search compiles the programs first.
Reported: the median generation time of each, the overhead share
``(with - without) / without``, and the checkpoint size on disk.

Run from the repository root::

    PYTHONPATH=. python benchmarks/checkpoint_overhead.py
    PYTHONPATH=. python benchmarks/checkpoint_overhead.py --population 32 --generations 3  # quick
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import shutil
import statistics
import sys
import tempfile

import numpy as np

import vtune
from common import environment, write_result


def generation_times(result) -> list[float]:
    ends = sorted({(r["generation"], r["wall_time"]) for r in result.history})
    return [b[1] - a[1] for a, b in zip(ends, ends[1:])]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", type=int, default=256)
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--steps", type=int, default=100, help="steps per generation")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each")
    parser.add_argument("--out", default="benchmarks/results/checkpoint-overhead-cpu.json")
    args = parser.parse_args(argv)

    task = vtune.tasks.mlp_classifier(hidden_sizes=(128, 128))
    space = {"learning_rate": vtune.loguniform(1e-4, 1e-1), "dropout": vtune.uniform(0.0, 0.5)}
    run = dict(population_size=args.population, generations=args.generations,
               steps_per_generation=args.steps, verbose=False)
    vtune.population_search(task, space, **dict(run, generations=2))  # compile, once
    times = {"without": [], "with": []}
    size_mb = None
    for _ in range(args.repeats):
        times["without"] += generation_times(vtune.population_search(task, space, **run))
        directory = pathlib.Path(tempfile.mkdtemp(prefix="vtune-ckpt-"))
        try:
            times["with"] += generation_times(vtune.population_search(
                task, space, checkpoint_dir=directory, **run))
            size_mb = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 2**20
        finally:
            shutil.rmtree(directory)
        print({k: round(statistics.median(v), 3) for k, v in times.items()}, flush=True)
    without, with_ = (statistics.median(times[k]) for k in ("without", "with"))
    result = {**environment(),
              "command": shlex.join(["python", "benchmarks/checkpoint_overhead.py",
                                    *(sys.argv[1:] if argv is None else argv)]),
              "task": task.name, "population": args.population,
              "steps_per_generation": args.steps, "generations": args.generations,
              "generation_s_without": without, "generation_s_with": with_,
              "overhead_share": (with_ - without) / without,
              "checkpoint_dir_mb_at_end": size_mb,
              "generation_s_samples": {k: [float(x) for x in v] for k, v in times.items()},
              "target_share": 0.05}
    print(f"P={args.population}: generation {without:.2f} s without checkpoints, {with_:.2f} s "
          f"with; overhead {100 * result['overhead_share']:.1f}% (target < 5%); "
          f"{size_mb:.0f} MiB on disk")
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
