"""What every benchmark records: the machine, backend, versions and date; JSON output."""

from __future__ import annotations

import datetime
import json
import os
import platform
from importlib import metadata

import jax

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
