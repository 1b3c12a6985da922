"""Flax NNX layers whose hyperparameters are traced arrays.

Inside a population every hyperparameter is an array with one value per trial,
so a layer may not branch on it in Python. ``flax.nnx.Dropout`` checks
``rate == 0`` in Python and fails on a traced rate; the layers here take array
hyperparameters and stay one compiled program for every value.

Structure is data too: :class:`MaskedLinear` and :class:`MaskedMLP` are
allocated at the largest width and depth a search allows, and each trial
computes exactly the smaller network its ``width`` / ``depth`` hyperparameters
name (masked units through :mod:`vtune.kernels.masked`, skipped layers by a
select), initialised at its actual fans (:func:`kernel_init`).

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import vtune
    >>> class Net(nnx.Module):
    ...     def __init__(self, hp, rngs):
    ...         init = vtune.nn.kernel_init(hp["init"], hp["init_scale"])
    ...         self.fc = nnx.Linear(4, 8, kernel_init=init, rngs=rngs)
    ...         self.drop = vtune.nn.Dropout(hp["dropout"], rngs=rngs)
    ...     def __call__(self, x):
    ...         return self.drop(nnx.relu(self.fc(x)))
    >>> hp = {"init": jnp.int32(vtune.nn.INIT_SCHEMES.index("he_normal")),
    ...       "init_scale": jnp.float32(1.0), "dropout": jnp.float32(0.5)}
    >>> Net(hp, nnx.Rngs(0))(jnp.ones((2, 4))).shape
    (2, 8)
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vtune.kernels import masked as masked_kernels

#: Weight-init schemes, in the order of their integer code.
INIT_SCHEMES = (
    "zeros",
    "normal",
    "xavier_uniform",
    "xavier_normal",
    "he_normal",
    "he_uniform",
    "lecun_normal",
)

#: Activations selectable by the ``activation`` hyperparameter, in code order.
ACTIVATIONS = ("relu", "tanh", "gelu", "silu", "elu")

#: Standard deviation of the ``normal`` scheme at ``init_scale == 1``.
NORMAL_STDDEV = 0.01

# The schemes of jax.nn.initializers as variance_scaling(scale, mode, distribution),
# in INIT_SCHEMES order, so the fans can be the trial's actual (traced) widths.
_SCHEME_SPECS = (
    None,                                     # zeros
    None,                                     # normal(NORMAL_STDDEV), no fan
    (1.0, "fan_avg", "uniform"),              # glorot_uniform
    (1.0, "fan_avg", "truncated_normal"),     # glorot_normal
    (2.0, "fan_in", "truncated_normal"),      # he_normal
    (2.0, "fan_in", "uniform"),               # he_uniform
    (1.0, "fan_in", "truncated_normal"),      # lecun_normal
)
# Standard deviation of a standard normal truncated to (-2, 2) (jax's constant).
_TRUNC_STD = .87962566103423978
_ACTIVATION_FNS = (jax.nn.relu, jnp.tanh, jax.nn.gelu, jax.nn.silu, jax.nn.elu)


class HParam(nnx.Variable):
    """A hyperparameter held by a layer (e.g. a dropout rate, a width).

    vtune overwrites it with the trial's current value before every forward
    pass, so the population's hyperparameters stay the single source of truth
    (a PBT perturbation reaches the layer without re-initialising it). The
    ``hp_name`` metadata names the hyperparameter it mirrors.

    Optional metadata the library checks before compiling (see
    :func:`hparam_specs`): ``low`` / ``high``, the legal range the model was
    allocated for (a space whose range leaves it is refused);
    ``integer=True``, the value must be an integer (``intuniform`` or a
    ``choice`` of ints); ``default``, the value used when the space leaves the
    name out. Example: ``HParam(hp["width"], hp_name="width", low=1, high=128,
    integer=True, default=128)``.
    """


def _scheme_code(scheme):
    if isinstance(scheme, str):
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"unknown init scheme {scheme!r}; use one of {list(INIT_SCHEMES)}")
        return INIT_SCHEMES.index(scheme)
    return scheme


def _default_fans(shape):
    """jax's fans of a weight array: in axis -2, out axis -1, the rest a receptive field."""
    if len(shape) < 2:
        raise ValueError(f"kernel_init needs a weight array of at least 2 dimensions to know its "
                         f"fans, got shape {tuple(shape)}; pass fan_in and fan_out")
    receptive = math.prod(shape) // (shape[-2] * shape[-1]) if shape[-2] * shape[-1] else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _scheme_init(code, fan_in, fan_out):
    """``init(key, shape, dtype)`` of scheme ``INIT_SCHEMES[code]`` at the given fans.

    Python-number fans compute exactly what ``jax.nn.initializers`` computes;
    array fans (a trial's traced widths) use the same formula in ``dtype``.
    """
    spec = _SCHEME_SPECS[code]

    def init(key, shape, dtype):
        if code == 0:
            return jnp.zeros(shape, dtype)
        if spec is None:
            return jax.random.normal(key, shape, dtype) * jnp.array(NORMAL_STDDEV, dtype)
        scale, mode, distribution = spec
        if isinstance(fan_in, (int, float)) and isinstance(fan_out, (int, float)):
            denominator = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2
            variance = jnp.array(scale / denominator, dtype=dtype)
        else:
            fi, fo = jnp.asarray(fan_in, dtype), jnp.asarray(fan_out, dtype)
            denominator = fi if mode == "fan_in" else (fi + fo) / 2
            variance = (jnp.asarray(scale, dtype) / denominator).astype(dtype)
        if distribution == "truncated_normal":
            stddev = jnp.sqrt(variance) / jnp.array(_TRUNC_STD, dtype)
            return jax.random.truncated_normal(key, -2, 2, shape, dtype) * stddev
        return jax.random.uniform(key, shape, dtype, -1) * jnp.sqrt(3 * variance)

    return init


def kernel_init(scheme, scale=1.0, fan_in=None, fan_out=None):
    """An initializer that picks the scheme per trial, at the trial's actual fans.

    Args:
      scheme: an index into :data:`INIT_SCHEMES` (an int array as vtune passes
        ``hp["init"]``) or a scheme name.
      scale: float array multiplying the initial weights (``hp["init_scale"]``).
      fan_in, fan_out: the fans the scheme's formula uses; default those of
        the weight shape, as ``jax.nn.initializers`` computes them. They may be
        traced arrays: a layer allocated at ``[I, O]`` whose trial uses only
        ``w`` of its units passes ``fan_out=w``, so the active weights have the
        variance of the width-``w`` network (He: ``2 / fan_in``; Glorot:
        ``2 / (fan_in + fan_out)``; LeCun: ``1 / fan_in``; ``normal`` has a
        fixed standard deviation :data:`NORMAL_STDDEV`). The sample is drawn at
        the full allocated shape; masking it is the caller's business.

    Returns:
      ``init(key, shape, dtype)`` usable as ``kernel_init`` of ``nnx.Linear``.
      Unbatched it evaluates one scheme; under ``vmap`` every scheme runs and
      one is selected per trial, which is cheap at init time.
    """
    code = _scheme_code(scheme)

    def init(key, shape, dtype=jnp.float32):
        fi, fo = _default_fans(shape) if fan_in is None or fan_out is None else (None, None)
        fi = fi if fan_in is None else fan_in
        fo = fo if fan_out is None else fan_out
        branches = [lambda k, c=c: _scheme_init(c, fi, fo)(k, shape, dtype)
                    for c in range(len(INIT_SCHEMES))]
        return jax.lax.switch(code, branches, key) * jnp.asarray(scale, dtype)

    return init


def activation(code, x):
    """Applies the activation ``ACTIVATIONS[code]`` to ``x`` (code may be traced)."""
    return jax.lax.switch(code, _ACTIVATION_FNS, x)


class Dropout(nnx.Module):
    """Inverted dropout whose rate is an array (one value per trial).

    Args:
      rate: drop probability in [0, 1), typically ``hp["dropout"]``.
      rngs: the module's ``nnx.Rngs``; the ``dropout`` stream is used.
      hp_name: which hyperparameter this rate mirrors.

    ``model.eval()`` turns it off, ``model.train()`` back on, as in Flax.
    """

    def __init__(self, rate, *, rngs: nnx.Rngs, hp_name: str = "dropout"):
        self.rate = HParam(jnp.asarray(rate), hp_name=hp_name)
        self.rngs = rngs.dropout.fork()
        self.deterministic = False

    def __call__(self, x):
        if self.deterministic:
            return x
        keep = 1.0 - self.rate[...].astype(x.dtype)
        mask = jax.random.bernoulli(self.rngs(), keep, x.shape)
        return jnp.where(mask, x / keep, jnp.zeros_like(x))


# {width hyperparameter name: cap}: layers built inside `allocation` allocate at most the cap.
_CAPS: contextvars.ContextVar[Mapping[str, int]] = contextvars.ContextVar("vtune_caps", default={})


@contextlib.contextmanager
def allocation(caps: Mapping[str, int]) -> Iterator[None]:
    """Builds masked layers at most ``caps[name]`` wide for the widths named ``name``.

    Inside, the caps are exactly ``caps`` (``allocation({})`` is the full
    allocation, also within another ``allocation``). A width hyperparameter's layers are allocated at ``min(features, cap)``
    instead of ``features``; trials whose width is at most the cap compute
    exactly what they compute in the full allocation, on the leading block of
    its weights. vtune's bucketed programs (:mod:`vtune.program.buckets`)
    trace a task inside this context, one cap per bucket; the declared bounds
    (:func:`hparam_specs`) stay those of the full allocation.

    Example:
        >>> hp = {"width": jnp.float32(8)}
        >>> with vtune.nn.allocation({"width": 16}):
        ...     layer = vtune.nn.MaskedLinear(4, 64, out_width="width", hp=hp, rngs=nnx.Rngs(0))
        >>> layer.kernel.shape, vtune.nn.hparam_specs(layer)["width"]["high"]
        ((4, 16), 64)
    """
    token = _CAPS.set(dict(caps))
    try:
        yield
    finally:
        _CAPS.reset(token)


def _capped(features: int, names) -> int:
    """The allocation of ``features`` units whose width hyperparameters are ``names``:
    capped inside :func:`allocation` when every name is capped (a full-width
    unit, ``None``, never is)."""
    caps = _CAPS.get()
    if not caps or not names or any(n is None or n not in caps for n in names):
        return features
    return min(features, max(caps[n] for n in names))


def _name(spec):
    """The hyperparameter a width spec names (``None`` for a static width)."""
    if isinstance(spec, HParam):
        return spec.get_metadata().get("hp_name")
    return spec if isinstance(spec, str) else None


def _read(value):
    """The value of an :class:`HParam` (or anything else, unchanged)."""
    return value[...] if isinstance(value, HParam) else value


def _width_var(spec, features: int, hp, what: str):
    """A width spec as stored by a layer: an int (static) or an :class:`HParam`.

    ``None`` is the full allocation; a string names a hyperparameter read from
    ``hp``; an :class:`HParam` is kept (and may be shared between layers).
    """
    if spec is None:
        return features
    if isinstance(spec, HParam):
        return spec
    if isinstance(spec, str):
        if hp is None:
            raise TypeError(f"{what}={spec!r} names a hyperparameter; pass hp= to read it")
        return HParam(jnp.asarray(hp[spec]), hp_name=spec, low=1, high=features, integer=True,
                      default=features, width=True)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if not 1 <= spec <= features:
            raise ValueError(f"{what} must be in [1, {features}], got {spec!r}")
        return int(spec)
    raise TypeError(f"{what} must be None, an int, a hyperparameter name or a vtune.nn.HParam, "
                    f"got {type(spec).__name__}")


class MaskedLinear(nnx.Module):
    """A dense layer allocated at ``[in_features, out_features]`` whose widths are data.

    Units at index >= the trial's ``in_width`` / ``out_width`` are masked
    (:func:`vtune.kernels.masked.masked_dense`): their weights and biases are
    zero at init and receive exactly zero gradient, so optimizer state, weight
    decay and L2 never move them, and the active block computes the unpadded
    layer. The active weights are initialised at the actual fans
    (``fan_in = in_width``, ``fan_out = out_width``, see :func:`kernel_init`).

    Args:
      in_features, out_features: the allocation (the largest widths).
      in_width, out_width: ``None`` (the allocation), an int, the name of a
        hyperparameter read from ``hp`` (held in an :class:`HParam` with bounds
        ``[1, features]``, overwritten by vtune every forward pass), or an
        :class:`HParam` shared with other layers.
      hp: the trial's hyperparameters, when a width is given by name.
      init, init_scale: the scheme (name or ``hp["init"]``) and its scale.
      active: a bool (or traced bool); ``False`` initialises every weight to
        zero (a layer a shallower trial skips).
      fan_in: the active input width at init when it is not ``in_width`` (an
        array derived from other hyperparameters, e.g. the width of a stack's
        last active layer); pass the same width to ``__call__``.
      use_bias, param_dtype, rngs: as ``nnx.Linear`` (bias init zero, the
        ``params`` stream).
    """

    def __init__(self, in_features: int, out_features: int, *, in_width=None, out_width=None,
                 hp: Mapping | None = None, init="lecun_normal", init_scale=1.0, active=True,
                 fan_in=None, use_bias: bool = True, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.in_width = _width_var(in_width, in_features, hp, "in_width")
        self.out_width = _width_var(out_width, out_features, hp, "out_width")
        in_features = _capped(in_features, [_name(self.in_width)])
        out_features = _capped(out_features, [_name(self.out_width)])
        self.in_features, self.out_features = in_features, out_features
        fan_in = _read(self.in_width) if fan_in is None else fan_in
        fan_out = _read(self.out_width)
        w = kernel_init(init, init_scale, fan_in, fan_out)(rngs.params(), (in_features, out_features),
                                                           param_dtype)
        mask = (masked_kernels.unit_mask(in_features, fan_in)[:, None]
                & masked_kernels.unit_mask(out_features, fan_out)[None, :])
        self.kernel = nnx.Param(jnp.where(mask & jnp.asarray(active), w, jnp.zeros_like(w)))
        if use_bias:
            # Drawn and unused, as nnx.Linear draws a key for its (zero) bias: a model that
            # swaps nnx.Linear for MaskedLinear starts from the same kernels.
            rngs.params()
        self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if use_bias else None

    def __call__(self, x, in_width=None, out_width=None):
        """``x @ (kernel * mask) + bias * out_mask``; explicit widths override the stored ones."""
        in_w = _read(self.in_width) if in_width is None else in_width
        out_w = _read(self.out_width) if out_width is None else out_width
        b = None if self.bias is None else self.bias[...]
        return masked_kernels.masked_dense(x, self.kernel[...], b, in_w, out_w)


class MaskedMLP(nnx.Module):
    """An MLP whose hidden width and depth are per-trial hyperparameters.

    Hidden layers are allocated at one common maximum ``width`` and the stack
    at a maximum ``depth``; each trial computes exactly the smaller network it
    stands for. Units beyond the trial's width are masked (zero activations,
    zero weights and biases at init, zero gradients, see
    :class:`MaskedLinear`); hidden layers at index >= the trial's depth pass
    their input through by a select (never a residual add) and are zero at
    init, so no gradient, weight decay or L2 moves them. Init uses the actual
    fans: the first hidden layer ``in_features -> width``, the others
    ``width -> width``, the output layer ``width -> out_features``, with
    ``width`` the trial's last active layer's.

    Args:
      in_features, out_features: input and output sizes (not masked).
      width: the allocated hidden width W.
      depth: the allocated number of hidden layers D (>= 1).
      hp: the trial's hyperparameters (``model(hp, rngs)``'s ``hp``).
      widths: which hyperparameter sets each hidden layer's width: one name
        for every layer (default ``"width"``), a sequence of D names (e.g.
        ``("width_1", "width_2")``), or ``None`` for the full W. Each is held
        in an :class:`HParam` with bounds ``[1, W]``.
      depth_name: the hyperparameter that sets the depth (bounds ``[1, D]``),
        or ``None`` for all D layers.
      defaults: default values of the width hyperparameters (``{name: int}``)
        when the space leaves them out; the allocation otherwise. The depth
        defaults to D.
      init, init_scale: the init scheme and scale (e.g. ``hp["init"]``).
      activation: a callable, or an activation code (``hp["activation"]``, an
        index into :data:`ACTIVATIONS`). Activations are masked again after
        it, so ``f(0) != 0`` leaks nothing into masked units.
      dropout: ``None``, or a rate (``hp["dropout"]``) for a
        :class:`Dropout` after every hidden layer.
      param_dtype, rngs: as for ``nnx.Linear``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import vtune
        >>> class Net(nnx.Module):
        ...     def __init__(self, hp, rngs):
        ...         self.mlp = vtune.nn.MaskedMLP(16, 32, 3, 4, hp=hp, init=hp["init"],
        ...                                       rngs=rngs)
        ...     def __call__(self, x):
        ...         return self.mlp(x)
        >>> data = vtune.datasets.synthetic(num_examples=128, num_features=16, num_classes=4)
        >>> task = vtune.from_nnx(Net, data, batch_size=16)
        >>> space = {"width": vtune.intuniform(4, 32), "depth": vtune.intuniform(1, 3),
        ...          "learning_rate": vtune.loguniform(1e-3, 1e-1)}
        >>> result = vtune.population_search(task, space, population_size=4, generations=1,
        ...                                  steps_per_generation=5, verbose=False)
        >>> sorted({r["depth"] for r in result.history}) <= [1, 2, 3]
        True
        >>> vtune.population_search(task, {"width": vtune.intuniform(4, 64)}, verbose=False)
        Traceback (most recent call last):
        ...
        ValueError: space['width']: 64 exceeds the allocated maximum 32 of this model
    """

    def __init__(self, in_features: int, width: int, depth: int, out_features: int, *,
                 hp: Mapping | None = None, widths: str | Sequence[str] | None = "width",
                 depth_name: str | None = "depth", defaults: Mapping[str, int] | None = None,
                 init="lecun_normal", init_scale=1.0, activation: Callable | object = jax.nn.relu,
                 dropout=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        for what, v in (("in_features", in_features), ("width", width), ("depth", depth),
                        ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"MaskedMLP: {what} must be a positive int, got {v!r}")
        names = [widths] * depth if widths is None or isinstance(widths, str) else list(widths)
        if len(names) != depth:
            raise ValueError(f"MaskedMLP: widths names {len(names)} layers, depth is {depth}")
        if (any(n is not None for n in names) or depth_name is not None) and hp is None:
            raise TypeError("MaskedMLP: pass hp= to read the width and depth hyperparameters")
        defaults = dict(defaults or {})
        shared = {}
        for n in names:
            if n is not None and n not in shared:
                shared[n] = HParam(jnp.asarray(hp[n]), hp_name=n, low=1, high=width,
                                   integer=True, default=int(defaults.get(n, width)), width=True)
        self.width_vars = nnx.List([width if n is None else shared[n] for n in names])
        width = _capped(width, names)  # inside vtune.nn.allocation: a bucket's allocation
        self.depth_var = (depth if depth_name is None else
                          HParam(jnp.asarray(hp[depth_name]), hp_name=depth_name, low=1,
                                 high=depth, integer=True, default=depth))
        is_code = isinstance(activation, HParam) or not callable(activation)
        self.activation_fn = None if is_code else activation
        self.activation_code = (None if not is_code else
                                activation if isinstance(activation, HParam) else
                                HParam(jnp.asarray(activation), hp_name="activation"))
        d = _read(self.depth_var)
        ws = [_read(v) for v in self.width_vars]
        layers = []
        for i in range(depth):
            layers.append(MaskedLinear(
                in_features if i == 0 else width, width,
                in_width=None if i == 0 else self.width_vars[i - 1],
                out_width=self.width_vars[i], init=init, init_scale=init_scale,
                active=True if i == 0 else jnp.asarray(i) < d, param_dtype=param_dtype, rngs=rngs))
        self.hidden = nnx.List(layers)
        # The output layer's fan-in is the trial's last active layer's width.
        self.out = MaskedLinear(width, out_features, init=init, init_scale=init_scale,
                                fan_in=self._last_width(ws, d), param_dtype=param_dtype,
                                rngs=rngs)
        self.drops = nnx.List([Dropout(dropout, rngs=rngs) for _ in range(depth)]
                              if dropout is not None else [])

    def _last_width(self, ws, d):
        """The width of hidden layer ``d - 1`` (``d`` may be traced)."""
        if all(v is self.width_vars[0] for v in self.width_vars):
            return ws[0]
        out = jnp.asarray(ws[0])
        for i, w in enumerate(ws[1:], start=1):
            out = jnp.where(jnp.asarray(d) > i, w, out)
        return out

    def _act(self, x):
        if self.activation_fn is not None:
            return self.activation_fn(x)
        return activation(self.activation_code[...], x)

    def __call__(self, x):
        """``[..., in_features] -> [..., out_features]``."""
        d = _read(self.depth_var)
        ws = [_read(v) for v in self.width_vars]
        for i, layer in enumerate(self.hidden):
            h = self._act(layer(x))
            h = jnp.where(masked_kernels.unit_mask(h.shape[-1], ws[i]), h, jnp.zeros_like(h))
            if self.drops:
                h = self.drops[i](h)
            x = h if i == 0 else jnp.where(jnp.asarray(i) < d, h, x)
        return self.out(x, in_width=self._last_width(ws, d))


def hparam_specs(module: nnx.Module) -> dict[str, dict]:
    """What a module's :class:`HParam` variables declare, by hyperparameter name.

    Returns ``{hp_name: {"low", "high", "integer", "default", "width"}}`` for
    the names whose variables carry any of that metadata (absent keys are left
    out; ``width=True`` marks a layer width, which :func:`allocation` caps).
    Several variables of one name combine: the tightest bounds, ``integer`` /
    ``width`` if any says so; two different defaults are an error.
    """
    out: dict[str, dict] = {}
    for _, v in nnx.to_flat_state(nnx.state(module, HParam)):
        md = v.get_metadata()
        name = md.get("hp_name")
        keys = {k: md[k] for k in ("low", "high", "integer", "default", "width") if k in md}
        if name is None or not keys:
            continue
        spec = out.setdefault(name, {})
        if "low" in keys:
            spec["low"] = max(spec.get("low", -math.inf), keys["low"])
        if "high" in keys:
            spec["high"] = min(spec.get("high", math.inf), keys["high"])
        for flag in ("integer", "width"):
            if keys.get(flag):
                spec[flag] = True
        if "default" in keys:
            if "default" in spec and spec["default"] != keys["default"]:
                raise ValueError(f"hyperparameter {name!r} has two defaults in this model: "
                                 f"{spec['default']!r} and {keys['default']!r}")
            spec["default"] = keys["default"]
    return out


def hparam_bounds(module: nnx.Module) -> dict[str, tuple]:
    """``{hp_name: (low, high)}`` the module's :class:`HParam` variables were allocated for.

    Example:
        >>> import jax.numpy as jnp
        >>> hp = {"width": jnp.float32(8), "depth": jnp.float32(2)}
        >>> mlp = vtune.nn.MaskedMLP(4, 16, 3, 2, hp=hp, rngs=nnx.Rngs(0))
        >>> vtune.nn.hparam_bounds(mlp)
        {'depth': (1, 3), 'width': (1, 16)}
    """
    return {n: (s.get("low", -math.inf), s.get("high", math.inf))
            for n, s in hparam_specs(module).items() if "low" in s or "high" in s}
