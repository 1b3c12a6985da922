"""The benchmark baselines and scripts: same computation as vtune, no recompiles, JSON rows.

torch and optuna are optional (``pip install -e '.[bench]'``): without them the torch rows
must say they were skipped; only the tests that train with torch need it installed.
"""

import importlib.util
import json
import math
import pathlib
import sys

import jax
import numpy as np
import pytest

import vtune

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import baselines  # noqa: E402
import search_quality  # noqa: E402
import structure  # noqa: E402
import throughput  # noqa: E402

HP = {"learning_rate": 3e-3, "weight_decay": 1e-3, "dropout": 0.0, "b1": 0.85}


@pytest.fixture(scope="module")
def jax_loop(tiny_data):
    return baselines.JaxLoop(tiny_data, hidden_sizes=(16,), batch_size=32)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_jax_loop_computes_vtunes_trial(tiny_data, jax_loop, kind):
    """Same init, minibatches and update as vtune's trial 0 with the same seed (dropout 0):
    for a regression, vtune's mlp_regressor against the loop's squared error and R²."""
    data, loop, score = tiny_data, jax_loop, "val_accuracy"
    if kind == "regressor":
        data = vtune.datasets.friedman1(num_examples=200)
        loop, score = baselines.JaxLoop(data, hidden_sizes=(16,), batch_size=32), "val_r2"
    task = baselines.vtune_task(data, hidden_sizes=(16,), batch_size=32)
    result = vtune.population_search(
        task, {k: vtune.fixed(v) for k, v in HP.items()}, population_size=1, generations=1,
        steps_per_generation=20, seed=3, devices=jax.devices()[:1], verbose=False)
    mine = loop.train(HP, seed=3, steps=20)
    row = result.history[0]
    assert mine["val_loss"] == pytest.approx(row["val_loss"], rel=1e-5)
    assert mine["val_accuracy"] == pytest.approx(row[score], rel=1e-5)


def test_jax_loop_trains_without_recompiling(jax_loop, compiles):
    jax_loop.train(HP, seed=0, steps=2)
    traces, compiled = dict(jax_loop.traces), sum(compiles.values())
    seen = []
    out = jax_loop.train({**HP, "learning_rate": 1e-2, "dropout": 0.3, "b1": 0.9}, seed=1,
                         steps=60, eval_every=20,
                         report=lambda step, loss, acc: seen.append((step, loss)) or False)
    # New values, same compiled functions (a retrace or a new input layout would show).
    assert dict(jax_loop.traces) == traces and sum(compiles.values()) == compiled, compiles
    assert [s for s, _ in seen] == [20, 40, 60]
    assert seen[-1][1] < seen[0][1] and out["val_loss"] == seen[-1][1]
    stopped = jax_loop.train(HP, seed=1, steps=60, eval_every=20, report=lambda *a: True)
    assert stopped["pruned"] and stopped["steps"] == 20


def test_unknown_hparam_is_refused(jax_loop):
    with pytest.raises(ValueError, match="momentum"):
        jax_loop.train({"momentum": 0.9}, seed=0, steps=1)


def hide(monkeypatch, package):
    """Makes ``package`` look not installed."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == package else real(name, *a))


def test_torch_missing(monkeypatch):
    hide(monkeypatch, "torch")
    assert baselines.torch_missing() == "torch not installed"


def test_throughput_rows_and_missing_torch(tmp_path, monkeypatch):
    # As in CI. (A None in sys.modules["torch"] would also break scipy, which probes it.)
    monkeypatch.setattr(baselines, "torch_missing", lambda: "torch not installed")
    out = tmp_path / "throughput.json"
    # jax_sequential_scan is left out to keep this test short (its compile alone takes ~3 s).
    impls = ["vtune", "jax_python_loop", *throughput.TORCH_IMPLS]
    result = throughput.main(["--populations", "2", "--steps", "3", "--repeats", "1",
                              "--max-sequential", "1", "--matmul-size", "64",
                              "--cpu-devices", "1",  # never change the session's devices
                              "--impls", *impls, "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = {r["impl"]: r for r in result["rows"]}
    assert sorted(rows) == sorted(impls)
    for impl in throughput.TORCH_IMPLS:
        assert rows[impl]["skipped"] == "torch not installed"
        assert result["targets"][f"speedup_vs_{impl}"]["met"] is None
    for impl in ("vtune", "jax_python_loop"):
        r = rows[impl]
        assert r["trial_steps_per_s"] > 0 and r["compile_s"] > 0 and r["fraction_of_matmul"] > 0
        assert len(r["times_s"]) == 1
    loop = rows["jax_python_loop"]
    assert loop["trials_timed"] == 1 and loop["vtune_speedup"] == pytest.approx(
        rows["vtune"]["trial_steps_per_s"] / loop["trial_steps_per_s"])
    assert result["targets"]["speedup_vs_jax_sequential_scan"]["met"] is None  # P=64 not run
    assert result["torch_matmul_gflops"] is None and result["cpu_devices"] == jax.device_count()


def test_structure_flops_count_the_padding():
    # digits: 64 inputs, 10 classes; one trial 16 x 1 and one 128 x 2, batch 1.
    useful = [6 * (64 * 16 + 16 * 10), 6 * (64 * 128 + 128 * 128 + 128 * 10)]
    f = structure.flops([(16, 1), (128, 2)], 64, 10, 1)
    assert f["allocated_per_trial_step"] == useful[1]
    assert f["useful_per_trial_step"] == sum(useful) / 2
    assert f["waste_factor"] == pytest.approx(2 * useful[1] / sum(useful))
    assert structure.flops([(32, 2)], 64, 10, 1)["waste_factor"] == 1.0
    # Bucketed: each trial at its bucket's width (the smallest cap that holds it), at the
    # largest depth: 6 * (64*32 + 32*32 + 32*10) for (16, 1) in bucket 32, the (128, 2)
    # trial as allocated.
    b = structure.flops([(16, 1), (128, 2)], 64, 10, 1, caps=(32, 128))
    assert b["bucketed_per_trial_step"] == (6 * (64 * 32 + 32 * 32 + 320)
                                            + 6 * (64 * 128 + 128 * 128 + 1280)) / 2


def test_structure_rows(tmp_path):
    out = tmp_path / "structure.json"
    # One shape, two implementations: each compile takes seconds, so as few as can show
    # the rows (one_at_a_time would add one more per shape).
    result = structure.main(["--widths", "8", "--depths", "1", "--per-shape", "2",
                             "--steps", "2", "--batch-size", "8", "--repeats", "1",
                             "--matmul-size", "64", "--impls", "masked", "per_shape",
                             "--data", "synthetic",
                             "--cpu-devices", "1",  # never change the session's devices
                             "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = {r["impl"]: r for r in result["rows"]}
    assert sorted(rows) == ["masked", "per_shape"] and result["population"] == 2
    assert rows["masked"]["programs"] == rows["per_shape"]["programs"] == 1
    for r in rows.values():
        assert r["trial_steps_per_s"] > 0 and r["compile_s"] > 0 and len(r["times_s"]) == 1
        assert math.isfinite(r["val_loss_median"])
    assert rows["per_shape"]["masked_speedup"] == pytest.approx(
        rows["masked"]["trial_steps_per_s"] / rows["per_shape"]["trial_steps_per_s"])
    pad = result["padding"]
    assert pad["flop_waste_factor"] == result["flops"]["mix"]["waste_factor"] == 1.0
    assert pad["time_ratio_masked_over_per_shape"] == pytest.approx(
        rows["masked"]["median_s"] / rows["per_shape"]["median_s"])


def test_structure_padding_verdict():
    def verdict(waste, masked_s, per_shape_s):
        rows = [{"impl": "masked", "median_s": masked_s},
                {"impl": "per_shape", "median_s": per_shape_s}]
        return structure.padding({"rows": rows, "widths": [16, 128], "depths": [1, 3],
                                  "flops": {"mix": {"waste_factor": waste,
                                                    "useful_fraction": 1 / waste}}})

    fine = verdict(1.5, 1.2, 1.0)
    assert fine["wastes_more_than_limit"] == {"flops": False, "time": False}
    assert fine["time_ratio_masked_over_per_shape"] == pytest.approx(1.2)
    assert "Within 2x" in fine["verdict"] and "MORE THAN" not in fine["verdict"]
    bad = verdict(4.1, 2.6, 1.0)
    assert bad["wastes_more_than_limit"] == {"flops": True, "time": True}
    assert "wastes MORE THAN 2x (flops and time)" in bad["verdict"]
    # With the bucketed row: its FLOPs and time against one program per shape.
    with_buckets = structure.padding({
        "rows": [{"impl": "masked", "median_s": 4.0}, {"impl": "bucketed", "median_s": 2.0},
                 {"impl": "per_shape", "median_s": 1.0}],
        "widths": [16, 128], "depths": [1, 3], "buckets": [16, 128],
        "flops": {"mix": {"waste_factor": 4.0, "useful_fraction": 0.25,
                          "bucketed_waste_factor": 1.5}}})
    assert with_buckets["time_ratio_bucketed_over_per_shape"] == pytest.approx(2.0)
    assert "bucketed by width (2 buckets" in with_buckets["verdict"]
    assert "1.50x the FLOPs and 2.00x the time" in with_buckets["verdict"]
    assert verdict(4.1, 1.5, 1.0)["wastes_more_than_limit"] == {"flops": True, "time": False}


def test_search_quality_time_to_target():
    curve = search_quality.Curve(budget=10.0)
    for wall, loss, acc in [(1.0, 0.5, 0.8), (2.0, 0.6, 0.9), (3.0, 0.2, 0.85), (11.0, 0.1, 1.0)]:
        curve.add(wall, loss, acc)
    curve.add(3.0, 0.3, 0.95)  # same time (one vtune generation): one point
    curve.add(4.0, math.nan, 0.0)
    assert curve.points == [(1.0, 0.5, 0.8), (2.0, 0.5, 0.9), (3.0, 0.2, 0.95)]
    assert curve.evaluations == 4
    assert curve.at(2.5) == (0.5, 0.9) and curve.at(0.5) == (math.inf, 0.0)
    assert curve.time_to(0.3) == 3.0 and curve.time_to(0.1) == math.inf

    def runs(method, times):
        out = []
        for seed, t in enumerate(times):
            c = search_quality.Curve(budget=10.0)
            c.add(0.5, 1.0, 0.5)
            if t is not None:
                c.add(t, 0.1, 0.9)
            out.append({"method": method, "seed": seed, "curve": c, "trials": 1, "wall_s": 10.0,
                        "startup_s": 0.5, "cache": "cold"})
        return out

    class Args:
        budget, target_tolerance, caches = 10.0, 0.05, ["cold"]

    methods = ["vtune", "optuna_jax", "optuna_torch"]
    summary = search_quality.summarise_task(
        runs("vtune", [1.0, 2.0, 9.0]) + runs("optuna_jax", [6.0, None, 8.0])
        + runs("optuna_torch", [None, None, 5.0]), methods, Args, "accuracy")
    assert summary["target_val_loss"] == pytest.approx(0.105)
    cold = summary["caches"]["cold"]
    jax_s = cold["methods"]["optuna_jax"]
    assert jax_s["time_to_target_s"]["median"] == 8.0 and jax_s["seeds_reaching_target"] == 2
    assert jax_s["best_val_accuracy_at_budget"]["median"] == 0.9
    goal = cold["targets"]["optuna_jax"]
    # On a CPU the goal is half of Optuna's time: 2 s against 8 s meets it.
    assert goal["ratio"] == pytest.approx(4.0) and goal["time_met"] and goal["loss_met"]
    assert goal["met"] is True
    # Optuna's median seed never got there: only a lower bound (budget / vtune's time).
    torch_goal = cold["targets"]["optuna_torch"]
    assert torch_goal["ratio_lower_bound"] == pytest.approx(5.0) and torch_goal["met"] is True
    # Slower than half of Optuna's time, or a worse median loss: not met.
    def method(time, loss):
        return {"time_to_target_s": {"median": time},
                "best_val_loss_at_budget": {"median": loss}}
    slow = search_quality.targets({"vtune": method(5.0, 0.1), "optuna_jax": method(6.0, 0.2)},
                                  10.0, 2.0)["optuna_jax"]
    assert slow["time_met"] is False and slow["loss_met"] is True and slow["met"] is False
    worse = search_quality.targets({"vtune": method(1.0, 0.3), "optuna_jax": method(6.0, 0.2)},
                                   10.0, 2.0)["optuna_jax"]
    assert worse["time_met"] is True and worse["loss_met"] is False and worse["met"] is False
    assert search_quality.finite({"a": [math.inf, 1.0]}) == {"a": [None, 1.0]}


def test_search_quality_tasks_and_missing_methods(monkeypatch):
    regression = search_quality.dataset("friedman1", 150)
    assert search_quality.score_metric(regression) == "r2"
    assert search_quality.score_metric(search_quality.dataset("digits_small", 150)) == "accuracy"
    assert len(search_quality.dataset("digits_small", 150).x_train) == 150
    assert search_quality.missing("optuna_torch", regression) == \
        "the torch loop trains classifiers only"
    hide(monkeypatch, "optuna")
    assert search_quality.missing("optuna_jax", regression) == "optuna not installed"
    assert search_quality.missing("vtune", regression) is None


def test_torch_baselines_train(tiny_data):
    pytest.importorskip("torch")
    loop = baselines.TorchLoop(tiny_data, hidden_sizes=(16,), batch_size=32, threads=1)
    seen = []
    loop.train({**HP, "dropout": 0.2}, seed=0, steps=60, eval_every=20,
               report=lambda step, loss, acc: seen.append(loss) or False)
    assert len(seen) == 3 and seen[-1] < seen[0]
    ens = baselines.TorchFuncVmap(tiny_data, hidden_sizes=(16,), batch_size=32, threads=1)
    state = ens.init({"learning_rate": [1e-4, 1e-2], "dropout": [0.0, 0.3]}, seed=0)
    first = ens.train(state, 1)["val_loss"]
    last = ens.train(state, 60)
    assert last["val_loss"].shape == (2,) and np.all(np.isfinite(last["val_loss"]))
    assert last["val_loss"][1] < first[1]  # the learning rate is per trial


def test_torch_func_vmap_adamw_is_torchs(tiny_data):
    """The hand-written per-trial AdamW of the ensemble steps as torch.optim.AdamW does."""
    torch = pytest.importorskip("torch")
    ens = baselines.TorchFuncVmap(tiny_data, hidden_sizes=(16,), batch_size=32, threads=1)
    hp = {"learning_rate": [1e-2, 3e-3], "weight_decay": [1e-2, 0.0], "b1": [0.9, 0.8]}
    state = ens.init(hp, seed=0)
    copies = [{k: v[i].clone().requires_grad_() for k, v in state["params"].items()}
              for i in range(2)]
    opts = [torch.optim.AdamW(c.values(), lr=hp["learning_rate"][i], eps=baselines.EPS,
                              betas=(hp["b1"][i], baselines.B2),
                              weight_decay=hp["weight_decay"][i]) for i, c in enumerate(copies)]
    for _ in range(3):
        grads = {k: torch.randn_like(v) for k, v in state["params"].items()}
        state["t"] += 1
        ens._adamw_(state, grads)
        for i, (c, opt) in enumerate(zip(copies, opts)):
            for k, p in c.items():
                p.grad = grads[k][i]
            opt.step()
    for i, c in enumerate(copies):
        for k, p in c.items():
            torch.testing.assert_close(state["params"][k][i], p.detach(), rtol=1e-5, atol=1e-6)
