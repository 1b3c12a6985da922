"""Throughput and memory against population size, and against the number of devices.

For each device count (``--devices``; CPU devices are simulated with
``JAX_NUM_CPU_DEVICES``, so each count runs in its own child process) and each
population size P (``--populations``): trial-steps per second of one generation
of the digits MLP 64-128-128-10 (batch 128, adamw) with the population sharded
over the devices (median of ``--repeats``), the bytes the compiled generation
program needs per device (XLA ``memory_analysis``) and per trial, and the
largest P that fits in 80% of device memory (``vtune.memory.max_population``).
On a CPU, "devices" split the same cores: 2 simulated devices on a 2-core
machine measure whether XLA:CPU leaves a core idle.

Run from the repository root::

    PYTHONPATH=. python benchmarks/scaling.py
    PYTHONPATH=. python benchmarks/scaling.py --devices 1 --populations 16 64 --repeats 2  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time


def child(populations: list[int], steps: int, repeats: int) -> list[dict]:
    """Measures every population size on the devices this process sees."""
    import jax
    import numpy as np

    import vtune
    from vtune.program import build

    task = vtune.tasks.mlp_classifier(hidden_sizes=(128, 128), dropout=False)
    space = vtune.Space({"learning_rate": vtune.loguniform(1e-4, 1e-1)})
    mesh = vtune.sharding.make_mesh()
    program, table, *_ = build(task, space, steps, mesh)
    data = vtune.sharding.place(task.host_data(), vtune.sharding.replicated(mesh))
    fits = vtune.memory.max_population(task, space, steps_per_generation=steps)
    rows = []
    for size in populations:
        if size > fits * jax.device_count():
            print(f"devices={jax.device_count()} P={size}: skipped, more than the "
                  f"{fits} trials per device that fit", file=sys.stderr, flush=True)
            continue
        hp = table.encode(table.complete(space.sample(size, 0), size))
        split = vtune.sharding.population(mesh)
        pop = program.init(np.uint32(0), *vtune.sharding.place(
            (np.arange(size, dtype=np.int32), hp), split))
        t = time.perf_counter()
        compiled = program.train.lower(pop, data, np.uint32(0), np.int32(10**6)).compile()
        compile_s = time.perf_counter() - t
        stats = compiled.memory_analysis()
        per_device = (stats.argument_size_in_bytes + stats.output_size_in_bytes
                      - stats.alias_size_in_bytes + stats.temp_size_in_bytes)
        pop, m = program.train(pop, data, np.uint32(0), np.int32(10**6))  # warm up
        jax.block_until_ready(m)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            pop, m = program.train(pop, data, np.uint32(0), np.int32(10**6))
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t)
        median = statistics.median(times)
        rows.append({"devices": jax.device_count(), "population": size, "steps": steps,
                     "trial_steps_per_s": size * steps / median, "median_s": median,
                     "times_s": times, "compile_s": compile_s,
                     "program_bytes_per_device": int(per_device),
                     "bytes_per_trial": per_device * jax.device_count() / size})
        print(f"devices={jax.device_count()} P={size}: {rows[-1]['trial_steps_per_s']:,.0f} "
              f"trial-steps/s, {per_device / 2**20:.1f} MiB per device", file=sys.stderr,
              flush=True)
    for r in rows:
        r["max_population_one_device"] = int(fits)
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--populations", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/results/scaling-<backend>.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.populations, args.steps, args.repeats)))
        return {}

    from common import environment, write_result

    out_path = args.out or f"benchmarks/results/scaling-{environment()['backend']}.json"

    rows = []
    for n in args.devices:
        env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(n)}
        cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--repeats",
               str(args.repeats), "--populations", *map(str, args.populations)]
        out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows += json.loads(out.strip().splitlines()[-1])
    base = {r["population"]: r["trial_steps_per_s"] for r in rows if r["devices"] == 1}
    for r in rows:
        if r["population"] in base:
            r["speedup_vs_one_device"] = r["trial_steps_per_s"] / base[r["population"]]
    result = {**environment(),
              "command": shlex.join(["python", "benchmarks/scaling.py",
                                    *(sys.argv[1:] if argv is None else argv)]),
              "task": "mlp_classifier(64-128-128-10,relu,dropout=False)", "rows": rows}
    print(f"\n{'devices':>7} {'P':>6} {'trial-steps/s':>14} {'MiB/device':>11} {'KiB/trial':>10}"
          f" {'vs 1 device':>11}")
    for r in rows:
        print(f"{r['devices']:>7} {r['population']:>6} {r['trial_steps_per_s']:>14,.0f} "
              f"{r['program_bytes_per_device'] / 2**20:>11.1f} {r['bytes_per_trial'] / 2**10:>10.1f}"
              f" {r.get('speedup_vs_one_device', float('nan')):>11.2f}")
    write_result(out_path, result)
    return result


if __name__ == "__main__":
    main()
