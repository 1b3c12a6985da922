"""One command for an accelerator (GPU/TPU): throughput, search quality and scaling.

Runs, on whatever backend JAX picks (it refuses a CPU-only machine unless
``--allow-cpu``), the three benchmarks with accelerator-sized populations:

1. ``throughput.py`` at P in ``--populations`` (default 1, 1024, 4096, 16384),
   every implementation (the sequential ones timed on ``--max-sequential``
   trials and scaled);
2. ``search_quality.py`` with a population of ``--search-population``;
3. ``scaling.py`` on all local devices, P from 1024 up by 4x while it fits
   (``vtune.memory.max_population``).

Each writes its JSON to ``benchmarks/results/<name>-<backend>.json``; every
file records the device name (``machine.device``), backend, versions and
date. Device memory is allocated on demand
(``XLA_PYTHON_CLIENT_PREALLOCATE=false``) so the scaling children, which run
in their own processes, find the device free.

Run from the repository root on the accelerator machine::

    PYTHONPATH=. python benchmarks/accelerator.py
    PYTHONPATH=. python benchmarks/accelerator.py --quick --allow-cpu  # a smoke test anywhere
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402  (after the allocator setting)


def plan(args, backend: str) -> list[tuple[str, list[str]]]:
    """``(script, argv)`` of every run, in order."""
    out = lambda name: ["--out", os.path.join(args.results, f"{name}-{backend}.json")]
    if args.quick:
        return [("throughput", ["--populations", "1", "64", "--steps", "20", "--repeats", "2",
                                "--max-sequential", "2", *out("throughput")]),
                ("search_quality", ["--seeds", "1", "--budget", "5", "--population", "16",
                                    "--generations", "3", "--steps", "20", "--tasks", "digits",
                                    *out("search-quality")]),
                ("scaling", ["--devices", str(jax.local_device_count()), "--populations", "64",
                             "--steps", "20", "--repeats", "2", *out("scaling")])]
    scaling = [str(1024 * 4 ** i) for i in range(args.scaling_steps)]
    return [("throughput", ["--populations", *map(str, args.populations), "--steps", "100",
                            "--repeats", "5", "--max-sequential", str(args.max_sequential),
                            *out("throughput")]),
            ("search_quality", ["--population", str(args.search_population), *out("search-quality")]),
            ("scaling", ["--devices", str(jax.local_device_count()), "--populations", *scaling,
                         "--steps", "100", "--repeats", "5", *out("scaling")])]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--populations", type=int, nargs="+", default=[1, 1024, 4096, 16384])
    parser.add_argument("--max-sequential", type=int, default=8)
    parser.add_argument("--search-population", type=int, default=256)
    parser.add_argument("--scaling-steps", type=int, default=6,
                        help="scaling tries P = 1024 * 4**i for i below this (skips what won't fit)")
    parser.add_argument("--only", nargs="+", choices=["throughput", "search_quality", "scaling"])
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test")
    parser.add_argument("--allow-cpu", action="store_true")
    args = parser.parse_args(argv)
    backend = jax.default_backend()
    if backend == "cpu" and not args.allow_cpu:
        parser.error("no accelerator found (JAX's backend is cpu); the CPU benchmarks are the "
                     "individual scripts, or pass --allow-cpu")
    print(f"backend {backend}: {jax.devices()[0].device_kind} x {jax.device_count()}", flush=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    for script, script_argv in plan(args, backend):
        if args.only and script not in args.only:
            continue
        print(f"\n=== {script} {' '.join(script_argv)}", flush=True)
        __import__(script).main(script_argv)


if __name__ == "__main__":
    main()
