"""The cost of structure as data: one masked program against one program per shape.

What it measures: trial-steps per second of a population of digits MLPs that mixes hidden
widths (``--widths``, default the seed advice's 16 / 32 / 128) and depths (``--depths``,
1 2 3), ``--per-shape`` trials of every (width, depth) pair, each trial with its own learning
rate (adamw, dropout 0.1, batch ``--batch-size`` drawn with replacement), trained for
``--steps`` optimizer steps and then evaluated. Three ways to train the same trials, side by
side in one run (``--impls``):

* ``masked`` (vtune's way): the whole mix as ONE ``jit(vmap(scan))`` program, built as
  ``population_search`` builds it from a space that names ``width`` and ``depth``: hidden
  layers allocated at the largest width, the stack at the largest depth, each trial masking
  the units and skipping the layers it does not have (``vtune.nn.MaskedMLP``);
* ``bucketed`` (vtune's way on CPU, :mod:`vtune.program.buckets`): the same population at
  the same allocation, trained by one program per width bucket (at most ``--max-buckets``,
  the widest kept), each trial computed at its bucket's width, depth still masked;
* ``per_shape``: one vtune program per distinct shape, each an unpadded
  ``mlp_classifier(hidden_sizes=(w,) * d)`` vmapped over that shape's trials (what bucketing
  trials by shape would run: no padding, one compile per shape);
* ``one_at_a_time``: every trial alone through the jitted unbatched program
  ``jax.jit(Program.train_trial)`` of its own unpadded shape (compiled once per shape, on
  device 0).

Compile time is reported apart (``compile_s``: the XLA compiles of that implementation,
``lower().compile()``, summed over its programs); the compiled executables are what is
timed. Run time is the median of ``--repeats`` runs, the implementations in turn within each
repeat so a change in machine load hits all alike, each ended by a blocking read. Every
implementation carries its trials on from run to run, so ``val_loss_median`` (the median
validation loss after the last run, ``(repeats + 1) * steps`` steps) is a sanity check: the
three train the same trials (the masked ones from other initial draws, as the allocation
differs), so the medians should be close.

The padding: ``flops`` gives the training FLOPs per trial-step (6 * batch * sum(in * out)
of the dense layers) the trials need (``useful``, their own shapes) and what the masked
program computes (``allocated``, every trial at the largest shape), ``useful_fraction`` their
ratio and ``waste_factor`` its inverse, for the measured mix and, for reference, for the mix
of every width 16..128 with depths 1..3. ``padding`` sets that against the measured time
ratio (masked over per-shape) and says whether padding wastes more than 2x. Every row also
has its useful GFLOP/s as a fraction of a large jitted matmul measured in the same run.

Run from the repository root (about 3 minutes on 2 CPU cores shared with other work at load
average 3-5; 7 minutes at load average 5 and more: 19 compiles dominate)::

    PYTHONPATH=. python benchmarks/structure.py
    PYTHONPATH=. python benchmarks/structure.py --widths 16 128 --depths 1 2 --per-shape 2 \
        --steps 10 --repeats 1 --out /tmp/structure.json   # quick

Results go to ``benchmarks/results/structure-<backend>.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import statistics
import sys
import time

# Compile times are part of the result: no persistent cache may answer for XLA.
os.environ.setdefault("VTUNE_COMPILATION_CACHE", "0")

import jax  # noqa: E402
import numpy as np  # noqa: E402

import vtune  # noqa: E402
from common import environment, matmul_gflops, timed, write_result  # noqa: E402
from vtune.population import sharding  # noqa: E402
from vtune.program import buckets, build  # noqa: E402

IMPLS = ("masked", "bucketed", "per_shape", "one_at_a_time")
#: Dropout rate of every trial (a fixed hyperparameter, so every program has the layer).
DROPOUT = 0.1
#: Padding that wastes more than this factor of the compute is worth bucketing.
WASTE_LIMIT = 2.0


def layer_flops(n_in: int, width: int, depth: int, n_out: int, batch: int) -> int:
    """Forward + backward FLOPs of one minibatch step of an MLP: 6 * batch * sum(in * out)."""
    return 6 * batch * (n_in * width + (depth - 1) * width * width + width * n_out)


def flops(shapes, n_in: int, n_out: int, batch: int, caps=()) -> dict:
    """Useful and allocated FLOPs per trial-step of a mix of (width, depth) shapes, one
    trial each (the masked program computes every trial at the largest shape; with the
    bucket ``caps``, also what the bucketed program computes: each trial at its bucket's
    width and the largest depth)."""
    useful = statistics.mean(layer_flops(n_in, w, d, n_out, batch) for w, d in shapes)
    deepest = max(d for _, d in shapes)
    allocated = layer_flops(n_in, max(w for w, _ in shapes), deepest, n_out, batch)
    out = {"useful_per_trial_step": useful, "allocated_per_trial_step": allocated,
           "useful_fraction": useful / allocated, "waste_factor": allocated / useful}
    if caps:
        bucketed = statistics.mean(layer_flops(n_in, min(c for c in caps if c >= w), deepest,
                                               n_out, batch) for w, _ in shapes)
        out.update(bucketed_per_trial_step=bucketed, bucketed_waste_factor=bucketed / useful)
    return out


class Bench:
    """The mix, its trials and the three implementations (each compiled once)."""

    def __init__(self, args):
        self.args = args
        self.data = (vtune.datasets.digits() if args.data == "digits" else
                     vtune.datasets.synthetic(num_examples=256, num_features=16, num_classes=4))
        self.shapes = list(itertools.product(args.widths, args.depths))
        # Every shape per_shape times; each trial its own learning rate.
        # In a seeded random order, as a search's slots are (the population is sharded in
        # contiguous blocks: sorted by shape, one device would hold all the narrow trials).
        order = np.random.default_rng(args.seed).permutation(len(self.shapes) * args.per_shape)
        self.shape_of = [self.shapes[i // args.per_shape] for i in order]
        self.size = len(self.shape_of)
        self.learning_rate = vtune.Space({"learning_rate": vtune.loguniform(1e-4, 1e-2)}) \
            .sample(self.size, args.seed)["learning_rate"]
        self.seed = np.uint32(args.seed)
        self.horizon = np.int32(args.steps * (args.repeats + 1))
        self.device0 = jax.devices()[0]

    def data_host(self):
        """The digits splits as a trial program reads them (the same for every shape)."""
        return self.task((max(self.args.widths),)).host_data()

    def task(self, hidden_sizes):
        return vtune.tasks.mlp_classifier(self.data, hidden_sizes=hidden_sizes,
                                          batch_size=self.args.batch_size)

    def program(self, task, space, size):
        """vtune's program over every device, or over device 0 if ``size`` does not divide."""
        devices = jax.devices() if size % jax.device_count() == 0 else [self.device0]
        mesh = sharding.make_mesh(devices)
        program, table, *_ = build(task, vtune.Space(space), self.args.steps, mesh)
        data = sharding.place(task.host_data(), sharding.replicated(mesh))
        return program, table, data, mesh

    def population(self, program, table, mesh, configs, trial_ids):
        hp = table.encode(table.complete(configs, len(trial_ids)))
        return jax.block_until_ready(program.init(self.seed, *sharding.place(
            (np.asarray(trial_ids, np.int32), hp), sharding.population(mesh))))

    def compiled_train(self, program, pop, data):
        """The XLA executable of one generation, and its compile seconds."""
        start = time.perf_counter()
        compiled = program.train.lower(pop, data, self.seed, self.horizon).compile()
        return compiled, time.perf_counter() - start

    def masked(self, bucketed=False):
        w_max, d_max = max(self.args.widths), max(self.args.depths)
        task = self.task((w_max,) * d_max)
        space = {"learning_rate": vtune.loguniform(1e-4, 1e-2),
                 "dropout": vtune.fixed(DROPOUT),
                 "width": vtune.choice(list(self.args.widths)),
                 "depth": vtune.choice(list(self.args.depths))}
        program, table, data, mesh = self.program(task, space, self.size)
        configs = {"learning_rate": self.learning_rate,
                   "dropout": np.full(self.size, DROPOUT),
                   "width": np.array([w for w, _ in self.shape_of]),
                   "depth": np.array([d for _, d in self.shape_of])}
        pop = self.population(program, table, mesh, configs, range(self.size))
        if bucketed:
            return self._bucketed(program, space, pop, data)
        compiled, compile_s = self.compiled_train(program, pop, data)
        state = {"pop": pop}

        def run():
            state["pop"], metrics = compiled(state["pop"], data, self.seed, self.horizon)
            state["val_loss"] = jax.block_until_ready(metrics["val_loss"])

        return run, compile_s, 1, state

    def caps(self):
        """The width buckets vtune makes of this mix (:func:`vtune.program.buckets.levels`)."""
        specs = {"width": {"high": max(self.args.widths), "width": True}}
        return buckets.levels(specs, vtune.Space({"width": vtune.choice(list(self.args.widths))}),
                              self.args.max_buckets)

    def bucketed(self):
        return self.masked(bucketed=True)

    def _bucketed(self, program, space, pop, data):
        specs = build(program.task, vtune.Space(space), self.args.steps, program.mesh).specs
        split = buckets.choose(True, program, specs, vtune.Space(space), self.size,
                               max_buckets=self.args.max_buckets)
        start = time.perf_counter()
        split.compiled(pop, split.metrics_buffer(pop, data), data, self.seed, self.horizon)
        compile_s = time.perf_counter() - start
        state = {"pop": pop}

        def run():
            state["pop"], metrics = split.train(state["pop"], data, self.seed, self.horizon)
            state["val_loss"] = jax.block_until_ready(metrics["val_loss"])

        return run, compile_s, len(split.caps), state

    def _per_shape_programs(self):
        """Per shape: (program, its initial population, data, trial ids), built once."""
        if not hasattr(self, "_shape_programs"):
            out = []
            for shape in self.shapes:
                ids = [i for i, s in enumerate(self.shape_of) if s == shape]
                task = self.task((shape[0],) * shape[1])
                space = {"learning_rate": vtune.loguniform(1e-4, 1e-2),
                         "dropout": vtune.fixed(DROPOUT)}
                program, table, data, mesh = self.program(task, space, len(ids))
                configs = {"learning_rate": self.learning_rate[ids],
                           "dropout": np.full(len(ids), DROPOUT)}
                pop = self.population(program, table, mesh, configs, ids)
                # Sliced now: the per-shape program donates its population.
                trials = [jax.device_put(jax.tree.map(lambda x: x[i], (
                    pop.params, pop.state, pop.opt_state, pop.hparams, pop.trial_id,
                    pop.step)), self.device0) for i in range(len(ids))]
                out.append((program, pop, data, ids, trials))
            self._shape_programs = out
        return self._shape_programs

    def per_shape(self):
        programs, compile_s = [], 0.0
        for program, pop, data, ids, _ in self._per_shape_programs():
            compiled, seconds = self.compiled_train(program, pop, data)
            programs.append([compiled, pop, data, ids])
            compile_s += seconds
        state = {"val_loss": np.zeros(self.size)}

        def run():
            out = []
            for p in programs:  # dispatched in turn, blocked on together
                p[1], metrics = p[0](p[1], p[2], self.seed, self.horizon)
                out.append((p[3], metrics["val_loss"]))
            for ids, loss in jax.block_until_ready(out):
                state["val_loss"][ids] = np.asarray(loss)

        return run, compile_s, len(programs), state

    def one_at_a_time(self):
        data = jax.device_put(self.data_host(), self.device0)
        seed_key = jax.device_put(jax.random.key(self.args.seed), self.device0)
        runs, compile_s = [], 0.0
        for program, _, _, ids, trials in self._per_shape_programs():
            start = time.perf_counter()
            compiled = jax.jit(program.train_trial).lower(trials[0], data, seed_key,
                                                          self.horizon).compile()
            compile_s += time.perf_counter() - start
            runs += [[compiled, t, i] for t, i in zip(trials, ids)]
        state = {"val_loss": np.zeros(self.size)}

        def run():  # each trial carries on from where its last run left it, as in the others
            for r in runs:
                r[1], metrics = r[0](r[1], data, seed_key, self.horizon)
                state["val_loss"][r[2]] = float(metrics["val_loss"])

        return run, compile_s, len(self.shapes), state


def padding(result: dict) -> dict:
    """The compute padding wastes, counted and measured, and the verdict."""
    rows = {r["impl"]: r for r in result["rows"]}
    mix = result["flops"]["mix"]
    out = {"flop_waste_factor": mix["waste_factor"], "useful_flop_fraction": mix["useful_fraction"],
           "limit": WASTE_LIMIT}
    if "masked" in rows and "per_shape" in rows:
        out["time_ratio_masked_over_per_shape"] = (rows["masked"]["median_s"]
                                                   / rows["per_shape"]["median_s"])
    if "bucketed" in rows and "per_shape" in rows:
        out["time_ratio_bucketed_over_per_shape"] = (rows["bucketed"]["median_s"]
                                                     / rows["per_shape"]["median_s"])
        out["bucketed_flop_waste_factor"] = mix["bucketed_waste_factor"]
    if "masked" in rows and "one_at_a_time" in rows:
        out["time_ratio_masked_over_one_at_a_time"] = (rows["masked"]["median_s"]
                                                       / rows["one_at_a_time"]["median_s"])
    measured = out.get("time_ratio_masked_over_per_shape")
    out["wastes_more_than_limit"] = {"flops": mix["waste_factor"] > WASTE_LIMIT,
                                     "time": None if measured is None else measured > WASTE_LIMIT}
    widths, depths = result["widths"], result["depths"]
    verdict = (f"Padding to width {max(widths)} x depth {max(depths)} computes "
               f"{mix['waste_factor']:.1f}x the FLOPs this mix needs "
               f"(useful {mix['useful_fraction']:.0%})")
    if measured is not None:
        verdict += (f"; measured, the masked program takes {measured:.2f}x the time of one "
                    f"program per shape")
    if "time_ratio_bucketed_over_per_shape" in out:
        verdict += (f"; bucketed by width ({len(result['buckets'])} buckets: depth still "
                    f"masked), {mix['bucketed_waste_factor']:.2f}x the FLOPs and "
                    f"{out['time_ratio_bucketed_over_per_shape']:.2f}x the time")
    over = [k for k, v in out["wastes_more_than_limit"].items() if v]
    verdict += (f". The masked program wastes MORE THAN {WASTE_LIMIT:g}x ({' and '.join(over)}): "
                f"bucketing pays here." if over else
                f". Within {WASTE_LIMIT:g}x: one masked program is fine for this mix.")
    out["verdict"] = verdict
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 128])
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--per-shape", type=int, default=4, help="trials of every shape")
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--max-buckets", type=int, default=buckets.MAX_BUCKETS,
                        help="width buckets of the bucketed implementation")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per generation")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data", choices=("digits", "synthetic"), default="digits",
                        help="synthetic: 256 examples, 16 features, 4 classes (smoke tests)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    parser.add_argument("--cpu-devices", type=int, default=os.cpu_count() or 1,
                        help="JAX CPU devices to split the cores into (default: one per core)")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="recorded in the result (e.g. machine load)")
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/results/structure-<backend>.json")
    args = parser.parse_args(argv)
    vtune.population.devices.split_cpu(args.cpu_devices)  # before anything starts JAX's backend
    start = time.perf_counter()

    bench = Bench(args)
    n_in, n_out = bench.data.x_train[0].size, bench.data.num_classes
    every = list(itertools.product(range(16, 129), (1, 2, 3)))
    result = {**environment(),
              "command": shlex.join(["python", "benchmarks/structure.py",
                                    *(sys.argv[1:] if argv is None else argv)]),
              "note": args.note, "data": args.data, "task": bench.task((max(args.widths),) * max(args.depths)).name,
              "widths": args.widths, "depths": args.depths, "per_shape": args.per_shape,
              "population": bench.size, "shapes": len(bench.shapes), "steps": args.steps,
              "batch_size": args.batch_size, "optimizer": "adamw", "dropout": DROPOUT,
              "cpu_devices": jax.device_count(), "impls": args.impls,
              "max_buckets": args.max_buckets, "buckets": bench.caps(),
              "flops": {"mix": flops(bench.shape_of, n_in, n_out, args.batch_size,
                                     bench.caps()),
                        "widths_16_to_128_depths_1_to_3": flops(every, n_in, n_out,
                                                                args.batch_size)}}
    result["load_average_start"] = os.getloadavg()
    result["matmul_gflops"], result["matmul_cpu_per_wall"] = matmul_gflops(
        max(args.repeats, 5), args.matmul_size)

    runners = {}
    for impl in (i for i in IMPLS if i in args.impls):
        runners[impl] = getattr(bench, impl)()
        print(f"{impl}: compiled {runners[impl][2]} program(s) in {runners[impl][1]:.1f} s",
              flush=True)
    for _, (run, *_rest) in runners.items():
        run()  # warm-up: first dispatch of each executable
    times = {impl: [] for impl in runners}
    for _ in range(args.repeats):
        for impl, (run, *_rest) in runners.items():
            times[impl].append(timed(run))
    useful = result["flops"]["mix"]["useful_per_trial_step"]
    rows = []
    for impl, (_, compile_s, programs, state) in runners.items():
        walls = [w for w, _ in times[impl]]
        median = statistics.median(walls)
        rate = bench.size * args.steps / median
        rows.append({"impl": impl, "programs": programs, "compile_s": compile_s,
                     "median_s": median, "times_s": walls, "trial_steps_per_s": rate,
                     "cpu_per_wall": statistics.median(c for _, c in times[impl]),
                     "useful_gflops": useful * rate / 1e9,
                     "useful_fraction_of_matmul": useful * rate / 1e9 / result["matmul_gflops"],
                     "val_loss_median": float(np.median(state["val_loss"]))})
    base = {r["impl"]: r["trial_steps_per_s"] for r in rows}
    for r in rows:
        if r["impl"] != "masked" and "masked" in base:
            r["masked_speedup"] = base["masked"] / r["trial_steps_per_s"]
    result["rows"] = rows
    result["load_average_end"] = os.getloadavg()
    result["padding"] = padding(result)
    result["wall_s"] = time.perf_counter() - start

    print(f"\n{bench.size} trials ({len(bench.shapes)} shapes x {args.per_shape}), "
          f"{args.steps} steps, {jax.device_count()} devices; matmul "
          f"{result['matmul_gflops']:.0f} GFLOP/s; load average "
          f"{result['load_average_start'][0]:.1f} -> {result['load_average_end'][0]:.1f}")
    print(f"{'impl':>14} {'programs':>8} {'compile s':>9} {'trial-steps/s':>13} "
          f"{'masked x':>8} {'useful %mm':>10}")
    for r in rows:
        print(f"{r['impl']:>14} {r['programs']:>8} {r['compile_s']:>9.1f} "
              f"{r['trial_steps_per_s']:>13,.0f} {r.get('masked_speedup', 1.0):>8.2f} "
              f"{100 * r['useful_fraction_of_matmul']:>9.1f}%")
    print(result["padding"]["verdict"])
    write_result(args.out or f"benchmarks/results/structure-{result['backend']}.json", result)
    return result


if __name__ == "__main__":
    main()
