"""Start-up of the default search: a cold process, then a warm compilation cache.

Each run is a fresh process of the README's default search (`vtune`'s digits MLP,
32 trials). Reported: the time from process start to the end of the first
generation (``--generations 1``) and to the end of the whole default search, with
an empty cache, with the cache written by the run before (warm), and with the
cache off. Medians of ``--repeats`` runs, each cold run on a new cache directory.

``bucketing``: the same default search called as ``population_search(default_task(),
default_space(), ...)`` (no reports written), with its widths trained in one program per
width bucket (``bucketing=True``) and in one masked program (``False``, the default),
cold and warm, to the end of the first generation and of the whole search.

``phases``: where a run's start-up goes, cold and warm: ``import_s`` (process start to
``import vtune`` done) and ``training_starts_s``, from the ``population_search`` call to
the moment the first generation's training starts, estimated as the end of generation 1
less a steady generation's time (generation 3's: generation 2 also loads the refill
program), with ``generation_s`` that time. The issue's goal: training starts within 1 s
on a warm cache.

    PYTHONPATH=. python benchmarks/startup.py
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import environment  # noqa: E402

CHILD = """
import time
import sys, vtune
from vtune.cli import main
sys.exit(main(["--quiet", "--generations", sys.argv[1]]))
"""


DIRECT = """
import sys
from vtune.population.devices import cpu_devices
cpu_devices(32)
import vtune
from vtune.cli.config import default_space, default_task
vtune.population_search(default_task(), default_space(), population_size=32,
                        generations=int(sys.argv[1]), steps_per_generation=150, verbose=False,
                        bucketing=sys.argv[2] == "True")
"""


PHASES = """
import time
start = time.perf_counter()
import json
from vtune.population.devices import cpu_devices
cpu_devices(32)
import vtune
from vtune.cli.config import default_space, default_task
imported = time.perf_counter()
task, space, ends = default_task(), default_space(), []
called = time.perf_counter()
vtune.population_search(task, space, population_size=32, generations=3,
                        steps_per_generation=150, verbose=False,
                        callbacks=[lambda report: ends.append(time.perf_counter())])
generation = ends[2] - ends[1]
print(json.dumps({"import_s": imported - start, "training_starts_s": ends[0] - generation - called,
                  "generation_s": generation}))
"""


def phases(env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", PHASES], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed_run(generations: int, env: dict, bucketing: bool | None = None) -> float:
    start = time.perf_counter()
    child = [CHILD, str(generations)] if bucketing is None else [DIRECT, str(generations),
                                                                 str(bucketing)]
    out = subprocess.run([sys.executable, "-c", *child], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items()
            if k not in ("VTUNE_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    rows = {}
    for generations, label in ((1, "first_generation_s"), (8, "default_search_s")):
        cold, warm, off = [], [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as d:
                env = {**base, "VTUNE_COMPILATION_CACHE": d}
                cold.append(timed_run(generations, env))
                warm.append(timed_run(generations, env))
            off.append(timed_run(generations, {**base, "VTUNE_COMPILATION_CACHE": "0"}))
        rows[label] = {"cold": statistics.median(cold), "warm": statistics.median(warm),
                       "cache_off": statistics.median(off), "cold_runs": cold,
                       "warm_runs": warm, "off_runs": off}
        print(f"{label}: cold {rows[label]['cold']:.2f} s, warm {rows[label]['warm']:.2f} s, "
              f"cache off {rows[label]['cache_off']:.2f} s")
    cold, warm = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            env = {**base, "VTUNE_COMPILATION_CACHE": d}
            cold.append(phases(env))
            warm.append(phases(env))
    rows["phases"] = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                      | {"runs": runs} for name, runs in (("cold", cold), ("warm", warm))}
    for name in ("cold", "warm"):
        p = rows["phases"][name]
        print(f"phases, {name}: import {p['import_s']:.2f} s, training starts "
              f"{p['training_starts_s']:.2f} s after the call, generation {p['generation_s']:.2f} s")
    rows["bucketing"] = {}
    for bucketing in (True, False):
        for generations, label in ((1, "first_generation_s"), (8, "default_search_s")):
            cold, warm = [], []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as d:
                    env = {**base, "VTUNE_COMPILATION_CACHE": d}
                    cold.append(timed_run(generations, env, bucketing))
                    warm.append(timed_run(generations, env, bucketing))
            row = {"cold": statistics.median(cold), "warm": statistics.median(warm),
                   "cold_runs": cold, "warm_runs": warm}
            rows["bucketing"].setdefault(str(bucketing), {})[label] = row
            print(f"bucketing={bucketing} {label}: cold {row['cold']:.2f} s, "
                  f"warm {row['warm']:.2f} s")
    result = {"benchmark": "startup", "environment": environment(), "repeats": args.repeats,
              "command": "PYTHONPATH=. python benchmarks/startup.py", **rows}
    backend = result["environment"].get("backend", "cpu")
    out = pathlib.Path(args.out or pathlib.Path(__file__).parent / "results" /
                       f"startup-{backend}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
