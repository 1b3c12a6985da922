"""Scale-out: the population sharded over 8 devices, over 2 processes, and back."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

import vtune

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "helpers" / "sharded_search.py"


def run_child(tmp_path, name, devices, ckpt="-", extra_env=None, wait=True, returncode=0):
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_NUM_CPU_DEVICES": str(devices),
           "JAX_PLATFORMS": "cpu", **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, str(CHILD), str(out), str(ckpt)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not wait:
        return proc, out
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == returncode, log.decode()[-3000:]
    return json.loads(out.read_text()) if returncode == 0 else None


def assert_same_search(a, b, rel=1e-5):
    assert len(a["history"]) == len(b["history"])
    for ra, rb in zip(a["history"], b["history"]):
        for k, v in ra.items():
            if isinstance(v, float):
                assert v == pytest.approx(rb[k], rel=rel, abs=1e-6, nan_ok=True), k
            else:
                assert v == rb[k], k
    for x, y in zip(a["best_params"], b["best_params"]):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    assert a["top"] == b["top"] and len(a["top"]) == 3  # keep_top's default
    assert len(a["top_params"]) == len(b["top_params"])
    for x, y in zip(a["top_params"], b["top_params"]):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return run_child(tmp_path_factory.mktemp("one"), "one", devices=1)


def test_eight_devices_hold_one_slot_each_and_match_one_device(single, tmp_path):
    eight = run_child(tmp_path, "eight", devices=8)
    assert (single["devices"], eight["devices"]) == (1, 8)
    assert single["slots_per_device"] == [8] and eight["slots_per_device"] == [1]
    assert eight["train_traces"] == 1
    assert_same_search(eight, single)


def test_two_processes_match_one(single, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [run_child(tmp_path, "multi", devices=2, ckpt=tmp_path / "ckpt", wait=False, extra_env={
        "VTUNE_COORDINATOR": f"127.0.0.1:{port}", "VTUNE_NUM_PROCESSES": "2",
        "VTUNE_PROCESS_ID": str(i)}) for i in range(2)]
    for proc, _ in procs:
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, log.decode()[-3000:]
    multi = json.loads(procs[0][1].read_text())
    assert (multi["processes"], multi["devices"]) == (2, 4)
    assert multi["slots_per_device"] == [2]
    assert_same_search(multi, single)
    # Checkpointed by both processes together: loadable like any other.
    loaded = vtune.load(tmp_path / "ckpt")
    assert [r["trial_id"] for r in loaded.history] == [r["trial_id"] for r in multi["history"]]


@pytest.mark.parametrize("first,second", [(8, 1), (1, 8)])
def test_checkpoint_restores_onto_another_device_count(single, tmp_path, first, second):
    ckpt = tmp_path / "ckpt"
    run_child(tmp_path, "first", devices=first, ckpt=ckpt, returncode=3,
              extra_env={"EXIT_AFTER_SAVE": "2"})  # preempted after generation 2 of 3
    resumed = run_child(tmp_path, "second", devices=second, ckpt=ckpt)
    assert resumed["devices"] == second
    assert_same_search(resumed, single)


def test_population_must_divide_over_the_devices(tiny_task, compiles):
    import jax

    with pytest.raises(ValueError, match="population_size 6 is not a multiple of the 4 devices .*; "
                                         "use 8 or 4"):
        vtune.population_search(tiny_task, {"learning_rate": vtune.loguniform(1e-3, 1e-1)},
                                population_size=6, devices=jax.devices() * 4, verbose=False)
    assert sum(compiles.values()) == 0


def test_a_bucketed_search_over_two_devices_is_the_masked_search_on_one(tmp_path):
    """Each device trains its own block's runs (shard_map): the same trials as one masked
    program on one device; each bucket's program traced once."""
    two = run_child(tmp_path, "two", devices=2, extra_env={"BUCKETING": "True"})
    one = run_child(tmp_path, "one", devices=1, extra_env={"BUCKETING": "False"})
    assert two["bucket_traces"] == [1, 1, 1, 1] and two["train_traces"] == 0
    assert one["bucket_traces"] == [] and one["train_traces"] == 1
    assert len({r["width"] for r in two["history"]}) > 4
    assert_same_search(two, one, rel=1e-4)
