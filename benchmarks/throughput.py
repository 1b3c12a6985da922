"""Throughput of one vtune generation against what users would run instead.

What it measures, for each population size P (``--populations``): trial-steps per second of
training P trials of the digits MLP 64-128-128-10 (dropout after each hidden layer, batch
128 drawn with replacement, adamw) for ``--steps`` optimizer steps and then evaluating them,
the hyperparameters (``learning_rate``, ``weight_decay``, ``dropout``, ``b1``) sampled per
trial from ``baselines.space()``. Implementations (``--impls``):

* ``vtune``: ``Program.train``, one generation of the whole population as one
  ``jit(vmap(scan))`` program, built as ``population_search`` builds it: the population is
  sharded over all ``--cpu-devices`` JAX devices when P divides by their number, else it
  runs on one device (the row's ``devices``);
* ``jax_sequential_scan``: the same P trials one after another, each through the jitted
  unbatched program ``jax.jit(Program.train_trial)`` (same steps, same evaluation);
* ``jax_python_loop``, ``torch_loop``: the usual Flax/Optax and PyTorch loops, one trial at
  a time, a Python loop of steps (``baselines.JaxLoop``, ``baselines.TorchLoop``; each trial
  includes its initialisation, as in a search);
* ``torch_func_vmap``: all P trials at once as a ``torch.func`` ensemble
  (``baselines.TorchFuncVmap``).

The one-trial-at-a-time implementations time only the first ``--max-sequential`` trials and
scale to P (``trials_timed`` in the row). The JAX single-trial baselines run on device 0;
torch uses ``--torch-threads`` threads (default: the core count). Compile time is reported
apart from run time (``compile_s``; ``compile_what`` says what was timed: an XLA compile, or
for the loops the first call, i.e. trace + compile + two steps for JAX, the warm-up for
torch). Run time is the median of ``--repeats`` runs, each ended by a blocking read of the
results; the implementations are run in turn within each repeat, so a change in machine load
hits all of them alike. Every row gives the achieved training FLOP/s (6 * batch *
sum(in*out) of the dense layers per trial-step; evaluation not counted) as a fraction of the
machine's large-matmul FLOP/s measured in the same run (a jitted 2048x2048 float32 matmul,
``matmul_gflops``; torch's own ``torch.matmul`` is ``torch_matmul_gflops``), and every
baseline row vtune's speed-up over it at the same P (``vtune_speedup``). ``targets`` checks
the issue's goals at P=64: vtune >= 3x jax_sequential_scan, >= 5x torch_loop, >= 1.5x
torch_func_vmap, >= 50% of the large-matmul FLOP/s. Without torch the torch rows say
``"skipped": "torch not installed"``.

As a correctness check, the vtune row's ``val_loss_abs_diff_vs_sequential`` compares the
first generation's validation losses of vtune and jax_sequential_scan (the same trials).

Run from the repository root (about 8 minutes on a quiet 2-core CPU)::

    PYTHONPATH=. python benchmarks/throughput.py
    PYTHONPATH=. python benchmarks/throughput.py --populations 1 16 --steps 20 --repeats 1 \
        --out /tmp/throughput.json  # quick

Results go to ``benchmarks/results/throughput-<backend>.json`` (e.g. ``throughput-cpu.json``;
``--out`` to change).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import statistics
import sys
import time
from typing import Callable

import jax
import numpy as np

import baselines
import vtune
import vtune.cli
from common import environment, matmul_gflops, timed, write_result
from vtune.population import sharding
from vtune.program import build

IMPLS = ("vtune", "jax_sequential_scan", "jax_python_loop", "torch_loop", "torch_func_vmap")
TORCH_IMPLS = ("torch_loop", "torch_func_vmap")
#: The issue's goals at P=TARGET_POPULATION: vtune's speed-up over each baseline, and the
#: share of the large-matmul FLOP/s vtune reaches.
TARGET_POPULATION = 64
TARGET_SPEEDUPS = {"jax_sequential_scan": 3.0, "torch_loop": 5.0, "torch_func_vmap": 1.5}
TARGET_FRACTION = 0.5


def train_flops_per_step(task: vtune.Task) -> int:
    """Forward + backward FLOPs of one minibatch step: 6 * batch * sum(in * out)."""
    sizes = baselines.layer_sizes(task.data, baselines.HIDDEN_SIZES)
    return 6 * task.batch_size * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


@dataclasses.dataclass
class Runner:
    """One implementation at one population size, compiled and warmed up.

    ``run`` trains ``trials`` trials for one generation and blocks on the result;
    ``val_loss`` holds the warm-up generation's validation losses of those trials;
    ``check`` (after the timed runs) asserts that nothing was recompiled.
    """

    run: Callable[[], None]
    trials: int
    compile_s: float
    compile_what: str
    val_loss: np.ndarray | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    check: Callable[[], None] = lambda: None


class Bench:
    """What every population size shares: the task, the programs, the baselines' objects.

    Each implementation is a method ``impl(size, shared) -> Runner``; ``shared`` carries what
    the implementations of one population size share (vtune's initial trials, which
    jax_sequential_scan trains).
    """

    def __init__(self, args):
        self.args = args
        self.task = baselines.vtune_task()
        self.space = vtune.Space.coerce(baselines.space())
        self.device0 = jax.devices()[0]
        self.horizon = np.int32(args.steps * (args.repeats + 1))  # warm-up + timed runs
        self._programs = {}
        self._once = {}  # P-independent objects, compiled (and timed) once

    def configs(self, size: int) -> dict:
        return self.space.sample(size, self.args.seed)

    def trial_hparams(self, size: int) -> list[dict]:
        """The first ``--max-sequential`` trials' hyperparameters, as plain dicts."""
        c = self.configs(size)
        return [{k: float(v[i]) for k, v in c.items()}
                for i in range(min(size, self.args.max_sequential))]

    def program(self, size: int):
        """vtune's program over every device, or over device 0 if P does not divide."""
        devices = jax.devices() if size % jax.device_count() == 0 else [self.device0]
        key = len(devices)
        if key not in self._programs:
            mesh = sharding.make_mesh(devices)
            program, table, *_ = build(self.task, self.space, self.args.steps, mesh)
            data = sharding.place(self.task.host_data(), sharding.replicated(mesh))
            self._programs[key] = program, table, data
        return self._programs[key]

    def once(self, name: str, make: Callable[[], tuple[object, float]]):
        """``make()`` -> (object, compile seconds), called the first time only."""
        if name not in self._once:
            self._once[name] = make()
        return self._once[name]

    # --- the implementations: each returns a compiled, warmed-up Runner ---------------------

    def vtune(self, size: int, shared: dict) -> Runner:
        program, table, data = self.program(size)
        seed = np.uint32(self.args.seed)
        hp = table.encode(table.complete(self.configs(size), size))
        split = sharding.population(program.mesh)
        pop = program.init(seed, *sharding.place((np.arange(size, dtype=np.int32), hp), split))
        jax.block_until_ready(pop)
        # The sequential baseline trains the same initial trials (sliced before train donates).
        k = min(size, self.args.max_sequential)
        shared["trials"] = [jax.device_put(jax.tree.map(lambda x: x[i], (
            pop.params, pop.state, pop.opt_state, pop.hparams, pop.trial_id, pop.step)),
            self.device0) for i in range(k)]
        traces = program.traces["train"]
        compile_s = timed(lambda: program.train.lower(pop, data, seed, self.horizon).compile())[0]
        state = {"pop": pop}
        state["pop"], metrics = jax.block_until_ready(
            program.train(state["pop"], data, seed, self.horizon))

        def run():
            state["pop"], m = program.train(state["pop"], data, seed, self.horizon)  # donates
            jax.block_until_ready((state["pop"], m))

        def check():
            assert program.traces["train"] == traces + 1, f"train retraced: {program.traces}"

        return Runner(run, size, compile_s, "XLA compile of Program.train (lower().compile())",
                      np.asarray(metrics["val_loss"]), {"devices": program.mesh.devices.size},
                      check)

    def jax_sequential_scan(self, size: int, shared: dict) -> Runner:
        program, _, _ = self.program(size)
        data = jax.device_put(self.task.host_data(), self.device0)
        seed_key = jax.device_put(jax.random.key(self.args.seed), self.device0)
        trials = shared["trials"]

        def make():
            fn = jax.jit(program.train_trial)
            start = time.perf_counter()
            compiled = fn.lower(trials[0], data, seed_key, self.horizon).compile()
            return compiled, time.perf_counter() - start

        compiled, compile_s = self.once("jax_sequential_scan", make)
        val_loss = np.array([float(compiled(t, data, seed_key, self.horizon)[1]["val_loss"])
                             for t in trials])

        def run():
            for t in trials:
                jax.block_until_ready(compiled(t, data, seed_key, self.horizon))

        return Runner(run, len(trials), compile_s,
                      "XLA compile of jit(Program.train_trial) (lower().compile()), once",
                      val_loss)

    def _loop(self, name: str, make_loop: Callable, size: int) -> Runner:
        hps = self.trial_hparams(size)

        def make():
            loop = make_loop()
            return loop, timed(lambda: loop.train(hps[0], self.args.seed, 2))[0]

        loop, compile_s = self.once(name, make)

        def run():
            for i, hp in enumerate(hps):
                loop.train(hp, self.args.seed + i, self.args.steps)

        return Runner(run, len(hps), compile_s, "first call (trace + compile + 2 steps), once"
                      if name.startswith("jax") else "first call (warm-up, 2 steps), once")

    def jax_python_loop(self, size: int, shared: dict) -> Runner:
        runner = self._loop("jax_python_loop",
                            lambda: baselines.JaxLoop(device=self.device0), size)
        loop = self._once["jax_python_loop"][0]
        traces = dict(loop.traces)

        def check():  # new hyperparameter values must not retrace
            assert dict(loop.traces) == traces, f"jax_python_loop retraced: {loop.traces}"

        return dataclasses.replace(runner, check=check)

    def torch_loop(self, size: int, shared: dict) -> Runner:
        return self._loop("torch_loop",
                          lambda: baselines.TorchLoop(threads=self.args.torch_threads), size)

    def torch_func_vmap(self, size: int, shared: dict) -> Runner:
        ens, _ = self.once("torch_func_vmap", lambda: (
            baselines.TorchFuncVmap(threads=self.args.torch_threads), 0.0))
        state = ens.init(self.configs(size), self.args.seed)
        compile_s = timed(lambda: ens.train(state, 1))[0]
        return Runner(lambda: ens.train(state, self.args.steps), size, compile_s,
                      "first call (warm-up, 1 step)")


def bench_population(bench: Bench, size: int, impls: list[str], skip: dict) -> list[dict]:
    """One row per implementation for population size ``size``."""
    args = bench.args
    shared: dict = {}
    runners = {}
    order = [i for i in IMPLS if i in impls]
    for impl in order:
        if impl not in skip:
            runners[impl] = getattr(bench, impl)(size, shared)
    runs = {impl: [] for impl in runners}
    for _ in range(args.repeats):  # in turn, so a change in machine load hits all alike
        for impl, r in runners.items():
            wall, cpu = timed(r.run)
            runs[impl].append((wall * size / r.trials, cpu))
    for r in runners.values():
        r.check()

    rows = []
    for impl in order:
        row = {"impl": impl, "population": size, "steps": args.steps}
        if impl in skip:
            rows.append({**row, "skipped": skip[impl]})
            continue
        r, times = runners[impl], [wall for wall, _ in runs[impl]]
        median = statistics.median(times)
        row.update(repeats=args.repeats, trial_steps_per_s=size * args.steps / median,
                   compile_s=r.compile_s, compile_what=r.compile_what, median_s=median,
                   times_s=times, cpu_per_wall=statistics.median(c for _, c in runs[impl]),
                   **r.extra)
        if r.trials < size:
            row["trials_timed"] = r.trials
        rows.append(row)
    if "vtune" in runners and "jax_sequential_scan" in runners:
        seq = runners["jax_sequential_scan"].val_loss
        diff = np.abs(runners["vtune"].val_loss[:len(seq)] - seq)
        rows[0]["val_loss_abs_diff_vs_sequential"] = {
            "median": float(np.median(diff)), "max": float(np.max(diff))}
    return rows


def add_ratios(result: dict) -> None:
    """FLOP/s fractions and vtune's speed-up in every row; the issue's targets."""
    flops = result["train_flops_per_trial_step"]
    rows = [r for r in result["rows"] if "skipped" not in r]
    for r in rows:
        r["achieved_gflops"] = flops * r["trial_steps_per_s"] / 1e9
        r["fraction_of_matmul"] = r["achieved_gflops"] / result["matmul_gflops"]
    vt = {r["population"]: r for r in rows if r["impl"] == "vtune"}
    for r in rows:
        if r["impl"] != "vtune" and r["population"] in vt:
            r["vtune_speedup"] = vt[r["population"]]["trial_steps_per_s"] / r["trial_steps_per_s"]

    at = {r["impl"]: r for r in result["rows"] if r["population"] == TARGET_POPULATION}
    targets = {}
    for impl, goal in TARGET_SPEEDUPS.items():
        r = at.get(impl)
        t = {"goal": f"vtune >= {goal}x {impl} at P={TARGET_POPULATION}"}
        if r is None or "vtune" not in at or "skipped" in at["vtune"]:
            t.update(met=None, note="not measured")
        elif "skipped" in r:
            t.update(met=None, note=r["skipped"])
        else:
            t.update(value=r["vtune_speedup"], met=r["vtune_speedup"] >= goal)
        targets[f"speedup_vs_{impl}"] = t
    t = {"goal": f"vtune >= {TARGET_FRACTION:.0%} of the large-matmul FLOP/s at "
                 f"P={TARGET_POPULATION}"}
    if "vtune" in at:
        t.update(value=at["vtune"]["fraction_of_matmul"],
                 met=at["vtune"]["fraction_of_matmul"] >= TARGET_FRACTION)
    else:
        t.update(met=None, note="not measured")
    targets["fraction_of_matmul"] = t
    result["targets"] = targets


def print_grid(result: dict, by: dict, impls, title: str, cell: Callable[[dict], str]) -> None:
    """One row per population size, one ``cell(row)`` per implementation."""
    print(f"\n{title}")
    header = f"{'P':>5} " + " ".join(f"{i:>22}" for i in impls)
    print(header)
    print("-" * len(header))
    for p in result["populations"]:
        print(f"{p:>5} " + " ".join(f"{'skipped':>22}" if "skipped" in by[impl, p]
                                    else cell(by[impl, p]) for impl in impls))


def print_table(result: dict) -> None:
    by = {(r["impl"], r["population"]): r for r in result["rows"]}
    impls = [i for i in IMPLS if i in result["impls"]]
    torch_mm = result.get("torch_matmul_gflops")
    print(f"\nbackend {result['backend']}, {result['machine']['processor']}, "
          f"{result['machine']['cpu_count']} CPUs, {result['cpu_devices']} JAX devices; "
          f"matmul {result['matmul_gflops']:.0f} GFLOP/s (jax)"
          + (f", {torch_mm:.0f} GFLOP/s (torch)" if torch_mm else "")
          + f"; load average {result['load_average_start'][0]:.1f} at start, "
            f"{result['load_average_end'][0]:.1f} at end")

    def cell(r):
        ratio = f" ({r['vtune_speedup']:.2f}x)" if "vtune_speedup" in r else ""
        return f"{r['trial_steps_per_s']:>13,.0f}{ratio:>9}"

    print_grid(result, by, impls, "trial-steps/s (vtune's speed-up over each baseline)", cell)
    print_grid(result, by, impls,
               "compile or warm-up s / % of the jax large-matmul FLOP/s / CPU per wall second",
               lambda r: f"{r['compile_s']:>8.2f} {100 * r['fraction_of_matmul']:>6.1f}% "
                         f"{r['cpu_per_wall']:>5.2f}")
    print("\ntargets:")
    for name, t in result["targets"].items():
        value = f"{t['value']:.2f}" if "value" in t else t.get("note", "")
        met = {True: "met", False: "NOT met", None: "—"}[t["met"]]
        print(f"  {t['goal']}: {value} ({met})")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--populations", type=int, nargs="+", default=[1, 16, 64, 256, 1024])
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per generation")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--max-sequential", type=int, default=16,
                        help="time at most this many trials of a one-at-a-time baseline, "
                             "scaled to P")
    parser.add_argument("--cpu-devices", type=int, default=os.cpu_count() or 1,
                        help="JAX CPU devices to split the cores into (default: one per core)")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/results/throughput-<backend>.json")
    args = parser.parse_args(argv)
    if "jax_sequential_scan" in args.impls and "vtune" not in args.impls:
        parser.error("jax_sequential_scan trains vtune's initial trials: add vtune to --impls")
    vtune.population.devices.split_cpu(args.cpu_devices)  # before anything starts JAX's backend
    devices = jax.device_count()

    bench = Bench(args)
    missing = baselines.torch_missing()
    skip = {i: missing for i in TORCH_IMPLS if missing and i in args.impls}
    result = {**environment(),
              "command": shlex.join(["python", "benchmarks/throughput.py",
                                    *(sys.argv[1:] if argv is None else argv)]),
              "task": bench.task.name, "batch_size": bench.task.batch_size,
              "optimizer": "adamw", "space": bench.space.to_json(),
              "populations": args.populations, "impls": args.impls, "cpu_devices": devices,
              "torch_threads": None if missing else args.torch_threads,
              "train_flops_per_trial_step": train_flops_per_step(bench.task)}
    result["load_average_start"] = os.getloadavg()
    repeats = max(args.repeats, 10)
    result["matmul_gflops"], result["matmul_cpu_per_wall"] = matmul_gflops(repeats,
                                                                           args.matmul_size)
    result["torch_matmul_gflops"] = None if missing else baselines.torch_matmul_gflops(
        repeats, args.matmul_size, args.torch_threads)
    rows = []
    for size in args.populations:
        rows += bench_population(bench, size, args.impls, skip)
        print(f"P={size}: " + ", ".join(
            f"{r['impl']} {r['trial_steps_per_s']:,.0f}" for r in rows
            if r["population"] == size and "skipped" not in r) + " trial-steps/s", flush=True)
    result["rows"] = rows
    result["load_average_end"] = os.getloadavg()
    add_ratios(result)

    print_table(result)
    write_result(args.out or f"benchmarks/results/throughput-{result['backend']}.json", result)
    return result


if __name__ == "__main__":
    main()
