"""Throughput of one vtune generation against training the same trials one at a time.

What it measures, for each population size P (digits MLP 64-128-128-10, batch 128,
adamw, ``learning_rate ~ loguniform(1e-4, 1e-1)`` sampled per trial):

* ``vtune``: ``Program.train`` -- one generation (``--steps`` optimizer steps, then
  evaluation) of all P trials as one ``jit(vmap(scan))`` program, built exactly as
  ``population_search`` builds it;
* ``jax_sequential_scan``: the same P trials one after another, each through the
  jitted unbatched program ``jax.jit(Program.train_trial)`` (same steps, same
  evaluation), looped over in Python. For large P only the first
  ``--max-sequential`` trials are timed and the time is scaled to P
  (``trials_timed`` in the row says how many).

Compile time (``lower(...).compile()``) is reported separately from run time; run
time is the median of ``--repeats`` runs, each ended by ``jax.block_until_ready``.
The unit is trial-steps per second (P * steps / median seconds). The same run also
measures the machine's large-matmul FLOP/s (a jitted 2048x2048 float32 matmul) and,
for vtune, the achieved training FLOP/s (6 * batch * sum(in*out) of the dense layers
per trial-step; evaluation is not counted) as a fraction of it.

Run from the repository root::

    PYTHONPATH=. python benchmarks/throughput.py
    PYTHONPATH=. python benchmarks/throughput.py --populations 1 16 --steps 50 --repeats 2  # quick

Results go to ``benchmarks/results/throughput-cpu.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import vtune
from common import environment, write_result
from vtune.search import build

HIDDEN_SIZES = (128, 128)
BATCH_SIZE = 128
MATMUL_N = 2048


def seconds(fn) -> float:
    """Wall seconds of one call of ``fn``, which must block on its result."""
    return timed(fn)[0]


def timed(fn) -> tuple[float, float]:
    """Wall seconds of one call of ``fn`` (which must block on its result), and the
    CPU seconds this process spent per wall second meanwhile (about the core count
    when nothing else competes for the machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu / wall


def matmul_gflops(repeats: int, n: int = MATMUL_N) -> tuple[float, float]:
    """Median GFLOP/s of a jitted n x n float32 matmul, and its median CPU per wall second."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    jax.block_until_ready(mm(a, b))
    runs = [timed(lambda: jax.block_until_ready(mm(a, b))) for _ in range(repeats)]
    median = statistics.median(wall for wall, _ in runs)
    return 2 * n**3 / median / 1e9, statistics.median(cpu for _, cpu in runs)


def train_flops_per_step(task: vtune.Task) -> int:
    """Forward + backward FLOPs of one minibatch step: 6 * batch * sum(in * out)."""
    sizes = (int(np.prod(task.data.x_train.shape[1:])), *HIDDEN_SIZES, task.data.num_classes)
    return 6 * task.batch_size * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def bench_population(program, table, space, data, size, args, seed_key, horizon):
    """The two rows (vtune, jax_sequential_scan) for population size ``size``."""
    configs = space.sample(size, args.seed)
    hp = table.encode(table.complete(configs, size))
    pop = program.init(np.uint32(args.seed), np.arange(size, dtype=np.int32), hp)
    jax.block_until_ready(pop)

    # The timed trials, sliced from the initial population before train donates it.
    k = min(size, args.max_sequential)
    trials = [jax.block_until_ready(jax.tree.map(
        lambda x: x[i], (pop.params, pop.state, pop.opt_state, pop.hparams, pop.trial_id,
                         pop.step))) for i in range(k)]

    # Compile both programs (timed separately from running them).
    traces = program.traces["train"]
    train_trial = jax.jit(program.train_trial)
    vt_compile = seconds(lambda: program.train.lower(pop, data, np.uint32(args.seed), horizon).compile())
    seq_compile = seconds(lambda: train_trial.lower(trials[0], data, seed_key, horizon).compile())

    # Warm-up and check: same trials, same keys, so the first generation of both gives
    # the same losses up to float rounding (which high learning rates amplify).
    seq_val_loss = np.array([float(train_trial(t, data, seed_key, horizon)[1]["val_loss"])
                             for t in trials])
    pop, metrics = jax.block_until_ready(program.train(pop, data, np.uint32(args.seed), horizon))
    loss_diff = np.abs(np.asarray(metrics["val_loss"])[:k] - seq_val_loss)

    def run_vtune():
        nonlocal pop
        pop, metrics = program.train(pop, data, np.uint32(args.seed), horizon)  # donates pop
        jax.block_until_ready((pop, metrics))

    def run_sequential():
        for t in trials:
            jax.block_until_ready(train_trial(t, data, seed_key, horizon))

    # Interleaved, so a change in machine load hits both implementations alike.
    vt_runs, seq_runs = [], []
    for _ in range(args.repeats):
        vt_runs.append(timed(run_vtune))
        wall, cpu = timed(run_sequential)
        seq_runs.append((wall * size / k, cpu))
    assert program.traces["train"] == traces + 1, f"train retraced: {program.traces}"

    common = {"population": size, "steps": args.steps, "repeats": args.repeats}
    rows = []
    for impl, runs, compile_s, extra in (
            ("vtune", vt_runs, vt_compile, {}),
            ("jax_sequential_scan", seq_runs, seq_compile, {"trials_timed": k})):
        times = [wall for wall, _ in runs]
        median = statistics.median(times)
        rows.append({"impl": impl, **common,
                     "trial_steps_per_s": size * args.steps / median,
                     "compile_s": compile_s, "median_s": median, "times_s": times,
                     "cpu_per_wall": statistics.median(cpu for _, cpu in runs), **extra})
    rows[0]["val_loss_abs_diff_vs_sequential"] = {
        "median": float(np.median(loss_diff)), "max": float(np.max(loss_diff))}
    return rows


def print_table(result: dict) -> None:
    by = {(r["impl"], r["population"]): r for r in result["rows"]}
    print(f"\nbackend {result['backend']}, {result['machine']['processor']}, "
          f"{result['machine']['cpu_count']} CPUs; matmul {result['matmul_gflops']:.0f} GFLOP/s; "
          f"load average {result['load_average_start'][0]:.1f} at start, "
          f"{result['load_average_end'][0]:.1f} at end")
    header = (f"{'P':>5} {'vtune t-steps/s':>16} {'sequential t-steps/s':>21} {'ratio':>6} "
              f"{'compile vtune/seq s':>20} {'cpu/wall vtune/seq':>19} {'vtune GFLOP/s':>14} "
              f"{'% matmul':>9}")
    print(header)
    print("-" * len(header))
    for p in result["populations"]:
        v, s = by["vtune", p], by["jax_sequential_scan", p]
        note = f"  (sequential: {s['trials_timed']} of {p} trials timed)" \
            if s["trials_timed"] < p else ""
        print(f"{p:>5} {v['trial_steps_per_s']:>16,.0f} {s['trial_steps_per_s']:>21,.0f} "
              f"{v['trial_steps_per_s'] / s['trial_steps_per_s']:>6.2f} "
              f"{v['compile_s']:>9.2f}/{s['compile_s']:<10.2f} "
              f"{v['cpu_per_wall']:>9.2f}/{s['cpu_per_wall']:<9.2f} {v['achieved_gflops']:>14.1f} "
              f"{100 * v['fraction_of_matmul']:>8.1f}%{note}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--populations", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per generation")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--max-sequential", type=int, default=16,
                        help="time at most this many trials of the sequential baseline, scaled to P")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/throughput-cpu.json")
    args = parser.parse_args(argv)

    task = vtune.tasks.mlp_classifier(hidden_sizes=HIDDEN_SIZES, dropout=False,
                                      batch_size=BATCH_SIZE)
    space = vtune.Space.coerce({"learning_rate": vtune.loguniform(1e-4, 1e-1)})
    data = task.device_data()
    seed_key = jax.random.key(args.seed)
    horizon = np.int32(args.steps * (args.repeats + 1))  # a warm-up + the timed generations
    flops_per_step = train_flops_per_step(task)

    result = {**environment(),
              "command": shlex.join(["python", "benchmarks/throughput.py",
                                    *(sys.argv[1:] if argv is None else argv)]),
              "task": task.name, "batch_size": task.batch_size, "optimizer": "adamw",
              "space": space.to_json(), "populations": args.populations,
              "train_flops_per_trial_step": flops_per_step}
    result["load_average_start"] = os.getloadavg()
    result["matmul_gflops"], result["matmul_cpu_per_wall"] = matmul_gflops(max(args.repeats, 10))
    program, table, _ = build(task, space, args.steps)  # as population_search builds it
    rows = []
    for size in args.populations:
        rows += bench_population(program, table, space, data, size, args, seed_key, horizon)
        print(f"P={size}: " + ", ".join(f"{r['impl']} {r['trial_steps_per_s']:,.0f} trial-steps/s"
                                        for r in rows[-2:]), flush=True)
    for r in rows:
        if r["impl"] == "vtune":
            r["achieved_gflops"] = flops_per_step * r["trial_steps_per_s"] / 1e9
            r["fraction_of_matmul"] = r["achieved_gflops"] / result["matmul_gflops"]
    result["rows"] = rows
    result["load_average_end"] = os.getloadavg()

    print_table(result)
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
