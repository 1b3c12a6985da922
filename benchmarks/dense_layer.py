"""Which formulation of the population-batched dense layer is fastest here.

Two measurements per population size P (``--populations``), on the digits MLP
64-128-128-10 with batch 128, all in one process on one device:

* ``layers``: forward and backward (weight gradients of the mean cross-entropy)
  of the whole MLP for P trials, each layer through one formulation of
  :mod:`vtune.kernels.dense`: ``vmap`` (what vtune runs today: ``vmap`` of one
  trial's code), ``batched``, ``batch_minor``, ``unrolled`` (at most
  ``--max-unrolled`` trials: its compile time grows with P), and
  ``shared_input`` (every trial reads the same minibatch, so the first layer is
  one wide matmul; the other layers are ``batched``).
* ``step``: a whole training step as vtune runs it (minibatch gather, forward,
  backward, adamw update) with per-trial minibatches against one minibatch
  shared by every trial (common random numbers), both through ``vmap``.

Each is compiled once (compile time reported apart), then timed as the median
of ``--repeats`` calls of ``--inner`` back-to-back steps, formulations
interleaved so load changes hit all alike. Throughput is trial-steps per second
and achieved GFLOP/s (6 * batch * sum(in*out) per trial-step) as a fraction of
a jitted 2048x2048 float32 matmul measured in the same run; every row has its
ratio to ``vmap``.

Run from the repository root::

    PYTHONPATH=. python benchmarks/dense_layer.py
    PYTHONPATH=. python benchmarks/dense_layer.py --populations 16 --repeats 3  # quick

Results go to ``benchmarks/results/dense-layer-<backend>.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import functools
import shlex
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import vtune
from common import environment, matmul_gflops, timed, write_result
from vtune.kernels import dense

SIZES = (64, 128, 128, 10)
BATCH = 128


def init(key, size: int):
    """Stacked params of ``size`` MLPs: ``[(w [P, I, O], b [P, O]), ...]``."""
    keys = jax.random.split(key, len(SIZES) - 1)
    return [(jax.random.normal(k, (size, i, o), jnp.float32) / np.sqrt(i),
             jnp.zeros((size, o), jnp.float32))
            for k, i, o in zip(keys, SIZES[:-1], SIZES[1:])]


def mlp_loss(layer, first_layer, params, x, y):
    """Sum over trials of the mean cross-entropy; ``layer(h, w, b)`` is the formulation."""
    h = x
    for j, (w, b) in enumerate(params):
        h = (first_layer if j == 0 else layer)(h, w, b)
        if j < len(params) - 1:
            h = jax.nn.relu(h)
    return optax.softmax_cross_entropy_with_integer_labels(h, y).mean(axis=1).sum()


def trial_loss(params, x, y):
    """One trial's mean cross-entropy, written for one trial as a user would."""
    h = x
    for j, (w, b) in enumerate(params):
        h = h @ w + b
        if j < len(params) - 1:
            h = jax.nn.relu(h)
    return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()


def vmap_loss(params, x, y):
    """One trial's code, vmapped: what vtune's programs compute."""
    x_axis = 0 if x.ndim == 3 else None
    return jax.vmap(trial_loss, (0, x_axis, 0))(params, x, y).sum()


def layer_losses(size: int, max_unrolled: int) -> dict:
    """The fwd+bwd functions compared, by name: ``(loss(params, x, y), shares_x)``."""
    losses = {"vmap": (vmap_loss, False)}
    for name, fn in dense.PER_TRIAL.items():
        if name != "unrolled" or size <= max_unrolled:
            losses[name] = (functools.partial(mlp_loss, fn, fn), False)
    losses["shared_input"] = (functools.partial(mlp_loss, dense.batched, dense.shared_input), True)
    return losses


def sgd_steps(grad, inner: int, params, x, y):
    """``inner`` chained gradient steps on one minibatch (the forward and backward passes
    are the work; the plain update keeps XLA from hoisting them out of the loop)."""
    step = lambda _, p: jax.tree.map(lambda a, g: a - 1e-3 * g, p, grad(p, x, y))
    return jax.lax.fori_loop(0, inner, step, params)


def train_steps(shared: bool, inner: int):
    """``inner`` vtune-style steps (gather, fwd, bwd, adamw) of the whole population."""
    tx = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3)

    def one_step(params, opt_state, lr, x_all, y_all, key, trial):
        data_key = key if shared else jax.random.fold_in(key, trial)
        idx = jax.random.randint(data_key, (BATCH,), 0, x_all.shape[0])
        grads = jax.grad(trial_loss)(params, x_all[idx], y_all[idx])
        opt_state.hyperparams["learning_rate"] = lr
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def run(params, opt_state, lr, x_all, y_all):
        def body(i, carry):
            key = jax.random.fold_in(jax.random.key(0), i)
            return jax.vmap(one_step, (0, 0, 0, None, None, None, 0))(
                *carry, lr, x_all, y_all, key, jnp.arange(lr.shape[0]))
        return jax.lax.fori_loop(0, inner, body, (params, opt_state))

    return jax.jit(run), tx


def bench(size: int, args, data, flops_per_trial_step: int, peak: float) -> list[dict]:
    key = jax.random.key(args.seed)
    params = init(key, size)
    x_all, y_all = (jnp.asarray(a) for a in data)
    idx = jax.random.randint(jax.random.key(1), (size, BATCH), 0, x_all.shape[0])
    x, y = x_all[idx], y_all[idx]
    fns, compile_s = {}, {}
    for name, (loss, shared) in layer_losses(size, args.max_unrolled).items():
        xs = x[0] if shared else x
        run = jax.jit(functools.partial(sgd_steps, jax.grad(loss), args.inner))
        t = time.perf_counter()
        compiled = run.lower(params, xs, y).compile()
        compile_s["layers", name] = time.perf_counter() - t
        fns["layers", name] = functools.partial(compiled, params, xs, y)

    lr = jnp.full((size,), 1e-3, jnp.float32)
    for mode in ("per_trial", "shared"):
        run, tx = train_steps(mode == "shared", args.inner)
        opt_state = jax.vmap(tx.init)(params)
        t = time.perf_counter()
        compiled = run.lower(params, opt_state, lr, x_all, y_all).compile()
        compile_s["step", mode] = time.perf_counter() - t
        fns["step", mode] = functools.partial(compiled, params, opt_state, lr, x_all, y_all)

    for fn in fns.values():  # warm up
        jax.block_until_ready(fn())
    runs = {k: [] for k in fns}
    for _ in range(args.repeats):  # interleaved
        for k, fn in fns.items():
            runs[k].append(timed(lambda: jax.block_until_ready(fn()))[0])

    rows = []
    for (kind, name), times in runs.items():
        median = statistics.median(times)
        rate = size * args.inner / median
        rows.append({"kind": kind, "formulation": name, "population": size,
                     "trial_steps_per_s": rate, "median_s": median, "times_s": times,
                     "compile_s": compile_s[kind, name],
                     "gflops": rate * flops_per_trial_step / 1e9,
                     "fraction_of_matmul": rate * flops_per_trial_step / 1e9 / peak})
    for kind, base in (("layers", "vmap"), ("step", "per_trial")):
        ref = next(r for r in rows if r["kind"] == kind and r["formulation"] == base)
        for r in rows:
            if r["kind"] == kind:
                r["ratio_vs_" + base] = r["trial_steps_per_s"] / ref["trial_steps_per_s"]
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--populations", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--inner", type=int, default=20, help="steps per timed call")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-unrolled", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/results/dense-layer-<backend>.json")
    args = parser.parse_args(argv)
    out = args.out or f"benchmarks/results/dense-layer-{jax.default_backend()}.json"

    d = vtune.datasets.digits()
    data = (d.x_train.reshape(d.x_train.shape[0], -1), d.y_train)
    flops = 6 * BATCH * sum(i * o for i, o in zip(SIZES[:-1], SIZES[1:]))
    peak, _ = matmul_gflops(10, 2048)
    result = {**environment(),
              "command": shlex.join(["python", "benchmarks/dense_layer.py",
                                    *(sys.argv[1:] if argv is None else argv)]),
              "sizes": SIZES, "batch_size": BATCH, "inner_steps": args.inner,
              "matmul_gflops": peak, "train_flops_per_trial_step": flops, "rows": []}
    print(f"matmul {peak:.0f} GFLOP/s on {jax.devices()[0].device_kind}")
    print(f"{'kind':>6} {'formulation':>13} {'P':>5} {'trial-steps/s':>14} {'GFLOP/s':>8} "
          f"{'% matmul':>9} {'ratio':>6} {'compile s':>10}")
    for size in args.populations:
        rows = bench(size, args, data, flops, peak)
        result["rows"] += rows
        for r in rows:
            ratio = r.get("ratio_vs_vmap", r.get("ratio_vs_per_trial"))
            print(f"{r['kind']:>6} {r['formulation']:>13} {size:>5} {r['trial_steps_per_s']:>14,.0f} "
                  f"{r['gflops']:>8.1f} {100 * r['fraction_of_matmul']:>8.1f}% {ratio:>6.2f} "
                  f"{r['compile_s']:>10.2f}", flush=True)
    best = {}
    for r in result["rows"]:
        if r["kind"] == "layers" and r["formulation"] != "shared_input":
            best.setdefault(r["population"], []).append((r["trial_steps_per_s"], r["formulation"]))
    result["fastest_per_trial_formulation"] = {p: max(v)[1] for p, v in best.items()}
    write_result(out, result)
    return result


if __name__ == "__main__":
    main()
