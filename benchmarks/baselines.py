"""What users would write instead of vtune: the digits MLP trained without it.

Every baseline trains the same network as ``vtune.tasks.mlp_classifier(hidden_sizes=(128,
128), batch_size=128)``: 64-128-128-10, relu, dropout after each hidden layer, kernels
lecun-normal (flax ``nnx.Linear``'s default; :func:`vtune_task` sets vtune's ``init`` to it,
vtune's default being he-normal), biases zero, adamw, minibatches of 128 drawn uniformly WITH
replacement at every step (inside the jitted step for JAX, ``torch.randint`` for torch), and
the validation cross-entropy and accuracy on the split of ``vtune.datasets.digits()``
(dropout off):

* :class:`JaxLoop` (``jax_python_loop``): the usual Flax NNX + Optax loop, a jitted train
  step called from a Python for-loop. Hyperparameters are traced arguments
  (``optax.inject_hyperparams`` state, the dropout rate an argument), so a new trial does not
  recompile (``JaxLoop.traces`` counts traces).
* :class:`TorchLoop` (``torch_loop``): plain PyTorch, ``nn.Sequential`` with ``nn.Dropout``
  and ``torch.optim.AdamW``, a Python loop of steps.
* :class:`TorchFuncVmap` (``torch_func_vmap``): a ``torch.func`` ensemble of P trials at once
  (``stack_module_state`` + ``functional_call`` + ``vmap(grad(...))``, a hand-written AdamW
  on the stacked parameters), each trial with its own hyperparameters.

Hyperparameters (:data:`HPARAM_DEFAULTS`): ``learning_rate``, ``weight_decay``, ``dropout``
and ``b1`` (Adam's beta1); ``b2 = 0.999`` and ``eps = 1e-8`` as in both libraries. optax's
``adamw`` and torch's ``AdamW`` use the same decoupled weight decay, scaled by the learning
rate: ``p <- p - lr * (adam_update + weight_decay * p)``, applied to every parameter (biases
included), so the same dict means the same optimizer in every implementation.

The single-trial loops share :meth:`_Loop.train`: ``train(hparams, seed, steps,
eval_every=None, report=None)`` trains one trial and evaluates it every ``eval_every`` steps
and after the last; ``report(step, val_loss, val_accuracy)`` returning True stops the trial
(Optuna pruning). torch is imported lazily: :func:`torch_missing` says why it cannot be
used, and the benchmark scripts then report the torch rows as skipped.

This module is imported by ``throughput.py`` and ``search_quality.py``; it is not a script.
"""

from __future__ import annotations

import collections
import importlib.util
import dataclasses
import math
import os
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import vtune
from vtune.datasets import Dataset

HIDDEN_SIZES = (128, 128)
BATCH_SIZE = 128
#: Adam constants every implementation uses (optax's and torch's defaults).
B2, EPS = 0.999, 1e-8
#: Hyperparameters the baselines take, with the values vtune's adamw task defaults to.
HPARAM_DEFAULTS = {"learning_rate": 1e-3, "weight_decay": 1e-4, "dropout": 0.0, "b1": 0.9}
#: flax's truncated-normal initializers divide the stddev by this (the std of a unit normal
#: truncated to [-2, 2]).
_TRUNC_STD = 0.87962566103423978


def space() -> dict:
    """The search space of the benchmarks, in vtune's names (the same dict goes to vtune)."""
    return {"learning_rate": vtune.loguniform(1e-4, 1e-1),
            "weight_decay": vtune.loguniform(1e-6, 1e-2),
            "dropout": vtune.uniform(0.0, 0.5),
            "b1": vtune.uniform(0.8, 0.99)}


def vtune_task(data: Dataset | None = None, hidden_sizes: Sequence[int] = HIDDEN_SIZES,
               batch_size: int = BATCH_SIZE) -> vtune.Task:
    """vtune's MLP with the baselines' init (lecun normal instead of vtune's he normal): a
    classifier (the digits MLP by default), or a regressor when ``data`` has float targets."""
    make = (vtune.tasks.mlp_classifier if data is None or data.has_class_labels
            else vtune.tasks.mlp_regressor)
    task = make(data, hidden_sizes=tuple(hidden_sizes), batch_size=batch_size)
    return dataclasses.replace(task, defaults={"init": "lecun_normal"})


def layer_sizes(data: Dataset, hidden_sizes: Sequence[int]) -> tuple[int, ...]:
    outputs = data.num_classes if data.has_class_labels else 1
    return (int(np.prod(data.x_train.shape[1:])), *hidden_sizes, outputs)


def _check_names(names) -> None:
    unknown = sorted(set(names) - set(HPARAM_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; the baselines take "
                         f"{sorted(HPARAM_DEFAULTS)}")


def complete_hparams(hparams: Mapping[str, float]) -> dict[str, float]:
    """``hparams`` with :data:`HPARAM_DEFAULTS` filled in; unknown names are an error."""
    _check_names(hparams)
    return {k: float(hparams.get(k, v)) for k, v in HPARAM_DEFAULTS.items()}


def torch_missing() -> str | None:
    """Why the torch baselines cannot run here (``"torch not installed"``), or None."""
    return "torch not installed" if importlib.util.find_spec("torch") is None else None


class _Loop:
    """One trial at a time in a Python loop of steps; subclasses say how to step.

    Subclasses implement ``_start(hp, seed) -> state``, ``_step(state, i) -> state`` and
    ``_evaluate(state) -> (val_loss, val_accuracy)`` (Python floats).
    """

    name = "loop"

    def train(self, hparams: Mapping[str, float], seed: int, steps: int,
              eval_every: int | None = None,
              report: Callable[[int, float, float], bool] | None = None) -> dict:
        """Trains one trial from scratch and evaluates it.

        Args:
          hparams: values of (some of) :data:`HPARAM_DEFAULTS`.
          seed: the trial's seed (init, minibatches, dropout masks).
          steps: optimizer steps.
          eval_every: also evaluate every this many steps (default: only at the end).
          report: called as ``report(step, val_loss, val_accuracy)`` after every
            evaluation; returning True stops the trial there.

        Returns:
          ``{"val_loss", "val_accuracy", "steps", "pruned"}`` of the last evaluation.
        """
        every = steps if eval_every is None else eval_every
        if steps < 1 or every < 1:
            raise ValueError(f"steps and eval_every must be positive, got {steps}, {every}")
        state = self._start(complete_hparams(hparams), seed)
        out = {"pruned": False}
        for i in range(steps):
            state = self._step(state, i)
            if (i + 1) % every == 0 or i + 1 == steps:
                loss, accuracy = self._evaluate(state)
                out.update(val_loss=loss, val_accuracy=accuracy, steps=i + 1)
                if report is not None and report(i + 1, loss, accuracy):
                    out["pruned"] = True
                    break
        return out


# --- JAX: Flax NNX + Optax --------------------------------------------------------------


class _FlaxMLP(nnx.Module):
    """Dense layers with relu and dropout between them; the dropout rate is an argument."""

    def __init__(self, sizes: Sequence[int], rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x, rate=None, key=None):
        """Logits; dropout with ``rate`` when a ``key`` is given (training)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = jax.nn.relu(x)
                if key is not None:
                    # nnx.Dropout branches on its rate in Python, so a traced rate needs this.
                    keep = 1.0 - rate
                    mask = jax.random.bernoulli(jax.random.fold_in(key, i), keep, x.shape)
                    x = jnp.where(mask, x / keep, 0.0)
        return x


class JaxLoop(_Loop):
    """``jax_python_loop``: a jitted Flax/Optax train step called from a Python loop.

    Keys derive as in vtune's program (``fold_in(key(seed), 0)`` is the trial key, then the
    init / data / step streams, with ``jax.threefry_partitionable(False)``, which also
    compiles faster on XLA:CPU), so with dropout 0 a trial here computes what vtune's trial 0
    of a search with the same seed computes (tests/test_benchmarks.py checks it).

    Args:
      data: the split (default ``vtune.datasets.digits()``); float targets make it a
        regression (squared error, one output; R² where a classifier reports accuracy).
      hidden_sizes, batch_size: the network and the minibatch.
      device: where the trial runs (default: the first JAX device).

    Attributes:
      traces: how often each jitted function was traced; a new trial must not add any.
    """

    name = "jax_python_loop"

    def __init__(self, data: Dataset | None = None, *,
                 hidden_sizes: Sequence[int] = HIDDEN_SIZES, batch_size: int = BATCH_SIZE,
                 device=None):
        data = vtune.datasets.digits() if data is None else data
        self._device = jax.devices()[0] if device is None else device
        device = self._device
        self.batch_size = batch_size
        self.regression = not data.has_class_labels
        self.traces = collections.Counter()
        self._train_data = jax.device_put((data.x_train, data.y_train), device)
        self._val_data = jax.device_put((data.x_val, data.y_val), device)
        # The hyperparameter values here are placeholders: each trial writes its own into
        # the optimizer state, so the update function (and the compiled step) never changes.
        self._tx = optax.inject_hyperparams(optax.adamw)(
            learning_rate=1e-3, b1=0.9, b2=B2, eps=EPS, weight_decay=1e-4)
        sizes = layer_sizes(data, hidden_sizes)
        self._graphdef = nnx.graphdef(nnx.eval_shape(lambda: _FlaxMLP(sizes, nnx.Rngs(0))))
        self._sizes = sizes
        self._init = jax.jit(self._init_fn)
        self._step_jit = jax.jit(self._step_fn, donate_argnums=(0, 1))
        self._eval = jax.jit(self._eval_fn)

    def _init_fn(self, seed, hp):
        self.traces["init"] += 1
        with jax.threefry_partitionable(False):
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 0), 0)
            model = _FlaxMLP(self._sizes, nnx.Rngs(params=jax.random.fold_in(key, 0)))
        params = nnx.state(model, nnx.Param)
        opt_state = self._tx.init(params)
        hyper = dict(opt_state.hyperparams)
        hyper.update({k: jnp.asarray(hp[k], hyper[k].dtype)
                      for k in ("learning_rate", "weight_decay", "b1")})
        return params, opt_state._replace(hyperparams=hyper)

    def _step_fn(self, params, opt_state, data, seed, step, rate):
        self.traces["step"] += 1
        with jax.threefry_partitionable(False):
            key = jax.random.fold_in(jax.random.key(seed), 0)
            x, y = data
            idx = jax.random.randint(jax.random.fold_in(jax.random.fold_in(key, 1), step),
                                     (self.batch_size,), 0, x.shape[0])
            drop_key = jax.random.fold_in(jax.random.fold_in(key, 2), step)

            def loss(p):
                out = nnx.merge(self._graphdef, p)(x[idx], rate, drop_key)
                return self._loss(out, y[idx])

            grads = jax.grad(loss)(params)
        updates, opt_state = self._tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def _eval_fn(self, params, data):
        self.traces["eval"] += 1
        x, y = data
        out = nnx.merge(self._graphdef, params)(x)
        if self.regression:  # R² in the accuracy's place
            score = 1.0 - jnp.sum(jnp.square(out[:, 0] - y)) / jnp.sum(jnp.square(y - y.mean()))
        else:
            score = jnp.mean(jnp.argmax(out, -1) == y)
        return jnp.stack([self._loss(out, y), score])

    def _loss(self, out, y):
        if self.regression:
            return jnp.mean(jnp.square(out[:, 0] - y))
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()

    def _start(self, hp, seed):
        # Typed scalars (not Python floats, which are weakly typed) keep one trace, and a
        # seed committed to the device commits the state as the step's outputs are (an
        # uncommitted first input would compile the step a second time).
        f32 = {k: np.float32(v) for k, v in hp.items()}
        params, opt_state = self._init(jax.device_put(np.uint32(seed), self._device), f32)
        return params, opt_state, np.uint32(seed), jnp.float32(hp["dropout"])

    def _step(self, state, i):
        params, opt_state, seed, rate = state
        params, opt_state = self._step_jit(params, opt_state, self._train_data, seed,
                                           np.int32(i), rate)
        return params, opt_state, seed, rate

    def _evaluate(self, state):
        loss, accuracy = np.asarray(self._eval(state[0], self._val_data)).tolist()
        return loss, accuracy


# --- PyTorch ------------------------------------------------------------------------------


def torch_device() -> str:
    """Where the torch baselines run: ``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch_setup(data: Dataset, threads: int | None):
    """torch with ``threads`` intra-op threads (default: the core count), and the data on
    :func:`torch_device`."""
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(torch_device())
    return torch, (as_t(data.x_train), as_t(data.y_train).long(),
                   as_t(data.x_val), as_t(data.y_val).long())


def _lecun_(linear) -> None:
    """flax's lecun_normal kernel (truncated normal, fan-in scaling) and a zero bias."""
    import torch

    std = math.sqrt(1.0 / linear.in_features) / _TRUNC_STD
    with torch.no_grad():
        torch.nn.init.trunc_normal_(linear.weight, std=std, a=-2 * std, b=2 * std)
        torch.nn.init.zeros_(linear.bias)


class TorchLoop(_Loop):
    """``torch_loop``: ``nn.Sequential`` + ``nn.Dropout`` + ``torch.optim.AdamW``, one trial
    at a time, a Python loop of steps.

    Args:
      data, hidden_sizes, batch_size: as for :class:`JaxLoop`.
      threads: torch's intra-op threads (default: the core count).
    """

    name = "torch_loop"

    def __init__(self, data: Dataset | None = None, *,
                 hidden_sizes: Sequence[int] = HIDDEN_SIZES, batch_size: int = BATCH_SIZE,
                 threads: int | None = None):
        data = vtune.datasets.digits() if data is None else data
        self._torch, (self._x, self._y, self._xv, self._yv) = _torch_setup(data, threads)
        self._sizes = layer_sizes(data, hidden_sizes)
        self.batch_size = batch_size

    def _start(self, hp, seed):
        torch, nn = self._torch, self._torch.nn
        torch.manual_seed(seed)
        layers = []
        for i, (a, b) in enumerate(zip(self._sizes[:-1], self._sizes[1:])):
            layers.append(nn.Linear(a, b))
            _lecun_(layers[-1])
            if i < len(self._sizes) - 2:
                layers += [nn.ReLU(), nn.Dropout(hp["dropout"])]
        model = nn.Sequential(*layers).to(self._x.device)
        # torch's AdamW decays decoupled and scaled by lr, as optax.adamw (module docstring).
        # fused=True: one kernel per step, 10-20% faster than the default on 2 CPU cores.
        opt = torch.optim.AdamW(model.parameters(), lr=hp["learning_rate"],
                                betas=(hp["b1"], B2), eps=EPS, weight_decay=hp["weight_decay"],
                                fused=True)
        return model, opt

    def _step(self, state, i):
        torch = self._torch
        model, opt = state
        idx = torch.randint(len(self._x), (self.batch_size,), device=self._x.device)
        loss = torch.nn.functional.cross_entropy(model(self._x[idx]), self._y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return state

    def _evaluate(self, state):
        torch = self._torch
        model = state[0]
        model.eval()
        with torch.no_grad():
            logits = model(self._xv)
            loss = torch.nn.functional.cross_entropy(logits, self._yv).item()
            accuracy = (logits.argmax(-1) == self._yv).float().mean().item()
        model.train()
        return loss, accuracy


def _torch_mlp_class():
    """An MLP whose dropout rate is a forward argument (a tensor: one per trial under vmap)."""
    import torch

    class TorchMLP(torch.nn.Module):
        def __init__(self, sizes):
            super().__init__()
            self.layers = torch.nn.ModuleList(
                [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
            for layer in self.layers:
                _lecun_(layer)

        def forward(self, x, rate):
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i < len(self.layers) - 1:
                    x = torch.relu(x)
                    if self.training:
                        keep = 1.0 - rate
                        x = torch.where(torch.rand_like(x) < keep, x / keep, 0.0)
            return x

    return TorchMLP


class TorchFuncVmap:
    """``torch_func_vmap``: P trials at once as a ``torch.func`` ensemble.

    The P models' parameters are stacked (``stack_module_state``); one step is
    ``vmap(grad(loss), randomness="different")`` over ``functional_call`` of a stateless
    copy, on per-trial minibatches, then a hand-written AdamW on the stacked tensors with
    per-trial ``learning_rate``, ``weight_decay`` and ``b1`` (``torch.optim`` takes one value
    per parameter group, not one per trial). Dropout takes a per-trial rate tensor.

    Args:
      data, hidden_sizes, batch_size, threads: as for :class:`TorchLoop`.
    """

    name = "torch_func_vmap"

    def __init__(self, data: Dataset | None = None, *,
                 hidden_sizes: Sequence[int] = HIDDEN_SIZES, batch_size: int = BATCH_SIZE,
                 threads: int | None = None):
        data = vtune.datasets.digits() if data is None else data
        torch, (self._x, self._y, self._xv, self._yv) = _torch_setup(data, threads)
        from torch.func import functional_call, grad, vmap

        self._torch = torch
        self._mlp = _torch_mlp_class()
        self._sizes = layer_sizes(data, hidden_sizes)
        self.batch_size = batch_size
        self._net = self._mlp(self._sizes).to("meta")
        F = torch.nn.functional

        def loss(params, x, y, rate):
            return F.cross_entropy(functional_call(self._net, params, (x, rate)), y)

        def metrics(params, rate):
            logits = functional_call(self._net, params, (self._xv, rate))
            return (F.cross_entropy(logits, self._yv),
                    (logits.argmax(-1) == self._yv).float().mean())

        self._grads = vmap(grad(loss), randomness="different")
        self._metrics = vmap(metrics)

    def init(self, hparams: Mapping[str, Sequence[float]], seed: int) -> dict:
        """A fresh ensemble: one trial per entry of the per-trial hyperparameter arrays."""
        from torch.func import stack_module_state

        torch = self._torch
        _check_names(hparams)
        hp = {k: np.asarray(v, np.float32) for k, v in hparams.items()}
        size = len(next(iter(hp.values())))
        hp = {k: (torch.from_numpy(hp[k]) if k in hp else torch.full((size,), float(v)))
              .to(self._x.device) for k, v in HPARAM_DEFAULTS.items()}
        torch.manual_seed(seed)
        params, _ = stack_module_state([self._mlp(self._sizes) for _ in range(size)])
        params = {k: v.detach().to(self._x.device) for k, v in params.items()}
        zeros = lambda: {k: torch.zeros_like(v) for k, v in params.items()}
        return {"params": params, "m": zeros(), "v": zeros(), "t": 0, "hp": hp}

    def train(self, state: dict, steps: int) -> dict:
        """Trains every trial of ``state`` (in place) for ``steps`` steps, then evaluates.

        Returns:
          ``{"val_loss": float32[P], "val_accuracy": float32[P]}``.
        """
        torch = self._torch
        params, hp = state["params"], state["hp"]
        size = len(hp["dropout"])
        self._net.train()
        for _ in range(steps):
            idx = torch.randint(len(self._x), (size, self.batch_size), device=self._x.device)
            grads = self._grads(params, self._x[idx], self._y[idx], hp["dropout"])
            state["t"] += 1
            self._adamw_(state, grads)
        self._net.eval()
        with torch.no_grad():
            loss, accuracy = self._metrics(params, hp["dropout"])
        return {"val_loss": loss.cpu().numpy(), "val_accuracy": accuracy.cpu().numpy()}

    def _adamw_(self, state, grads) -> None:
        """One AdamW step with per-trial hyperparameters, as ``torch.optim.AdamW`` computes it."""
        torch = self._torch
        t, hp = state["t"], state["hp"]
        lr, b1 = hp["learning_rate"], hp["b1"]
        decay, step_size = 1 - lr * hp["weight_decay"], lr / (1 - b1 ** t)  # [P]
        with torch.no_grad():
            for k, p in state["params"].items():
                per_trial = lambda x: x.view((-1,) + (1,) * (p.ndim - 1))
                g, m, v = grads[k], state["m"][k], state["v"][k]
                m.lerp_(g, per_trial(1 - b1))
                v.mul_(B2).addcmul_(g, g, value=1 - B2)
                denom = v.sqrt().div_(math.sqrt(1 - B2 ** t)).add_(EPS)
                p.mul_(per_trial(decay)).sub_(per_trial(step_size) * m / denom)


def torch_matmul_gflops(repeats: int, n: int = 2048, threads: int | None = None) -> float:
    """Median GFLOP/s of ``torch.matmul`` of two n x n float32 matrices on :func:`torch_device`."""
    import time

    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    device = torch_device()
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.matmul(a, b)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        sync()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / float(np.median(times)) / 1e9
