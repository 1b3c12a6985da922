"""What every benchmark shares: the environment record, JSON output, timing, the
large-matmul FLOP/s reference and the summary of a sample over seeds."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np

import vtune


def environment() -> dict:
    device = jax.devices()[0]
    processor = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            processor = next(line.split(":", 1)[1].strip() for line in f
                             if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "backend": jax.default_backend(),
        "machine": {"platform": platform.platform(), "processor": processor,
                    "cpu_count": os.cpu_count(), "device": device.device_kind,
                    "device_count": jax.device_count()},
        "versions": {"python": platform.python_version(), "vtune": vtune.__version__,
                     **{p: metadata.version(p) for p in
                        ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
                         "scipy")}},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
    }


def write_result(path: str, result: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"\nwrote {path}")


def timed(fn) -> tuple[float, float]:
    """Wall seconds of one call of ``fn`` (which must block on its result), and the
    CPU seconds this process spent per wall second meanwhile (about the core count
    when nothing else competes for the machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu / wall


def matmul_gflops(repeats: int, n: int) -> tuple[float, float]:
    """Median GFLOP/s of a jitted n x n float32 matmul, and its median CPU per wall second."""
    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.standard_normal((n, n), np.float32)) for _ in range(2))
    mm = jax.jit(jnp.matmul)
    jax.block_until_ready(mm(a, b))
    runs = [timed(lambda: jax.block_until_ready(mm(a, b))) for _ in range(repeats)]
    median = statistics.median(wall for wall, _ in runs)
    return 2 * n**3 / median / 1e9, statistics.median(cpu for _, cpu in runs)


def summarise(values: list[float]) -> dict:
    """Median, min, max and interquartile range of ``values`` (one per seed), and the values."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 \
        else (values[0],) * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "iqr": q3 - q1, "values": values}
