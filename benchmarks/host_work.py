"""How much of a generation the host keeps the device waiting: is overlapping it worth it?

Each generation the driver dispatches the train program, waits for its metrics, then works
on the host (history rows, the kept trials, the strategy's ``tell``, the refill's
dispatch, the checkpoint's hand-off, the progress bar) before it dispatches the next
generation, which needs the refill. This script times the wait for the metrics (the
device's share: training) and everything else between two dispatches (the host's share)
for the search-quality setting (the digits MLP of ``baselines.vtune_task``, its space,
``--population`` slots x ``--steps`` steps, the default strategy, sharded as the ``vtune``
command does), with and without a checkpoint directory, after a first generation that
compiles. The host's share bounds what overlapping could save.

    PYTHONPATH=. python benchmarks/host_work.py

Results go to ``benchmarks/results/host-work-<backend>.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time

import baselines
import vtune
import vtune.search.driver as driver
from common import environment, write_result


def timed_search(args, checkpoint_dir=None) -> dict:
    events = []  # ("dispatch", t) and ("fetch", t, seconds waited), in order
    fetch, choose = driver.sharding.fetch, driver.buckets.choose

    def timed_fetch(tree):
        start = time.perf_counter()
        out = fetch(tree)
        events.append(("fetch", start, time.perf_counter() - start))
        return out

    def timed_choose(*a, **k):  # the program the driver trains with, its train timed
        program = choose(*a, **k)
        train = program.train

        def timed_train(*a, **k):
            events.append(("dispatch", time.perf_counter(), 0.0))
            return train(*a, **k)

        program.train = timed_train
        return program

    driver.sharding.fetch, driver.buckets.choose = timed_fetch, timed_choose
    try:
        vtune.population_search(
            baselines.vtune_task(), baselines.space(), population_size=args.population,
            generations=args.generations, steps_per_generation=args.steps, seed=0,
            verbose=False, checkpoint_dir=checkpoint_dir)
    finally:
        driver.sharding.fetch, driver.buckets.choose = fetch, choose
    dispatches = [i for i, e in enumerate(events) if e[0] == "dispatch"]
    spans, device = [], []
    # Generation g spans dispatch g to dispatch g + 1; the first fetch after its dispatch is
    # the wait for its metrics. The first generation compiles and the last has no next.
    for a, b in zip(dispatches[1:-1], dispatches[2:]):
        spans.append(events[b][1] - events[a][1])
        device.append(next(e[2] for e in events[a:b] if e[0] == "fetch"))
    host = [s - d for s, d in zip(spans, device)]
    return {"generation_s": statistics.median(spans), "device_wait_s": statistics.median(device),
            "host_s": statistics.median(host),
            "host_share": statistics.median(h / s for h, s in zip(host, spans)),
            "generations_timed": len(spans)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--generations", type=int, default=12)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    vtune.population.devices.cpu_devices(args.population)
    rows = {"no_checkpoint": timed_search(args)}
    with tempfile.TemporaryDirectory() as d:
        rows["checkpoint_every_generation"] = timed_search(args, d)
    for name, r in rows.items():
        print(f"{name}: generation {r['generation_s']:.3f} s, device {r['device_wait_s']:.3f} s, "
              f"host {r['host_s']:.3f} s ({100 * r['host_share']:.1f}%)")
    result = {"benchmark": "host_work", **environment(),
              "command": shlex.join(["python", "benchmarks/host_work.py",
                                     *(sys.argv[1:] if argv is None else argv)]),
              "settings": {"population": args.population, "generations": args.generations,
                           "steps_per_generation": args.steps,
                           "strategy": vtune.strategies.DEFAULT,
                           "task": baselines.vtune_task().name},
              **rows}
    write_result(args.out or f"benchmarks/results/host-work-{result['backend']}.json", result)
    return result


if __name__ == "__main__":
    main()
