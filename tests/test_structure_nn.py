"""Width and depth as data: masked units, skipped layers, init at the actual fans."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import vtune
from vtune import nn
from vtune.population import take
from vtune.program.program import trial_key
from vtune.program import buckets, build

W, D = 16, 3  # the allocation of the padded program
B = 32  # the batch allocation
# Eight trials of distinct structure (width, depth), batch size, class balance, plateau
# decay (factor 1 = off) and optimizer settings.
CONFIGS = {
    "width": np.array([16, 4, 7, 16, 1, 11, 5, 9]),
    "depth": np.array([3, 1, 2, 1, 3, 2, 3, 1]),
    "batch_size": np.array([32, 8, 16, 32, 16, 8, 32, 16]),
    "class_balance": np.array([0.0, 1.0, 0.5, 0.0, 0.3, 0.0, 1.0, 0.7]),
    "plateau_factor": np.array([1.0, 0.5, 0.1, 0.5, 1.0, 0.3, 0.5, 0.2]),
    "plateau_patience": np.array([3, 2, 1, 4, 3, 2, 3, 1]),
    "learning_rate": np.array([1e-2, 1e-1, 1e-1, 5e-3, 1e-2, 3e-2, 2e-2, 8e-2]),
    "l2": np.array([0.0, 1e-3, 0.0, 1e-2, 1e-3, 0.0, 1e-2, 0.0]),
}
SPACE = vtune.Space({
    "width": vtune.intuniform(1, W), "depth": vtune.intuniform(1, D),
    "batch_size": vtune.choice([8, 16, 32]), "class_balance": vtune.uniform(0.0, 1.0),
    "plateau_factor": vtune.uniform(0.1, 1.0), "plateau_patience": vtune.intuniform(1, 5),
    "learning_rate": vtune.loguniform(1e-4, 1e-1), "l2": vtune.choice([0.0, 1e-3, 1e-2]),
})


@pytest.fixture
def x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


class Unpadded(nnx.Module):
    """The plain MLP of one structure: nnx.Linear layers of exactly the trial's widths."""

    def __init__(self, n_in, width, depth, n_out, rngs):
        sizes = [n_in] + [width] * depth + [n_out]
        self.layers = nnx.List([nnx.Linear(a, b, param_dtype=jnp.float64, rngs=rngs)
                                for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


def padded_layers(params):
    """``[(kernel, bias)]`` of vtune's MaskedMLP params: the D hidden layers, then the output."""
    p = nnx.to_pure_dict(params)["mlp"]
    return [(p["hidden"][i]["kernel"], p["hidden"][i]["bias"]) for i in range(D)] + \
        [(p["out"]["kernel"], p["out"]["bias"])]


def active_slices(width, depth, n_in):
    """Index slices of the active block of each layer used by a (width, depth) trial."""
    ins = [n_in] + [width] * (depth - 1)
    return [(i, width) for i in ins] + [(width, None)]


def train_unpadded(init_params, cfg, n_in, n_out, batches, data):
    """A plain optax loop (adamw + the L2 term) on the first ``batch_size`` rows of each
    minibatch, its learning rate cut by ``plateau_factor`` after ``plateau_patience``
    evaluations (one per step) without a strictly lower validation loss."""
    width, depth = int(cfg["width"]), int(cfg["depth"])
    # Abstract, then filled with the trial's active init (an eager init compiles every op).
    graph, params = nnx.split(nnx.eval_shape(lambda: Unpadded(n_in, width, depth, n_out,
                                                              nnx.Rngs(0))), nnx.Param)
    layers = padded_layers(init_params)
    nnx.replace_by_pure_dict(params, {"layers": {
        k: {"kernel": jnp.asarray(layers[k if k < depth else D][0][:i, :o]),
            "bias": jnp.asarray(layers[k if k < depth else D][1][:o])}
        for k, (i, o) in enumerate(active_slices(width, depth, n_in))}})
    lr = float(cfg["learning_rate"])
    tx = optax.inject_hyperparams(optax.adamw)(learning_rate=lr)  # weight_decay 1e-4, vtune's
    opt = tx.init(params)
    l2 = float(cfg["l2"])
    b = int(cfg["batch_size"])
    factor, patience = float(cfg["plateau_factor"]), int(cfg["plateau_patience"])

    def loss_fn(p, x, y):
        logits = nnx.merge(graph, p)(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss + 0.5 * l2 * sum(jnp.sum(w * w) for w in jax.tree.leaves(p) if w.ndim >= 2)

    def step(carry, batch):
        p, opt, scale, best, since = carry
        x, y = batch
        opt.hyperparams["learning_rate"] = lr * scale
        grads = jax.grad(loss_fn)(p, x[:b], y[:b])
        updates, opt = tx.update(grads, opt, p)
        p = optax.apply_updates(p, updates)
        evals = jnp.stack([
            optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graph, p)(xe), ye).mean()
            for xe, ye in (data["train_eval"], data["val"])])
        better = evals[1] < best
        since = jnp.where(better, 0, since + 1)
        scale = jnp.where(since >= patience, scale * factor, scale)
        since = jnp.where(since >= patience, 0, since)
        return (p, opt, scale, jnp.where(better, evals[1], best), since), evals

    # All steps in one scan: one compile per structure, no per-step dispatch.
    start = (params, opt, jnp.float64(1.0), jnp.float64(jnp.inf), jnp.int32(0))
    (params, _, scale, _, _), losses = jax.jit(lambda c, bs: jax.lax.scan(step, c, bs))(
        start, batches)
    return params, np.asarray(losses), float(scale)


@pytest.mark.parametrize("bucketed", [False, True], ids=["one_masked_program", "bucketed"])
def test_padded_population_matches_unpadded_networks_float64(tiny_data, x64, bucketed):
    """In one masked program, and trained bucket by bucket (each trial computed at its
    width bucket's allocation, vtune.program.buckets): the same unpadded networks."""
    steps = 50
    task = vtune.tasks.mlp_classifier(tiny_data, hidden_sizes=(W,) * D, dropout=False,
                                      batch_size=B)
    built = build(task, SPACE, 1)  # one step, one evaluation per call
    program, table = built.program, built.table
    trainer = buckets.choose(bucketed, program, built.specs, SPACE, 8)
    if bucketed:  # widths 1..16: buckets 2, 4, 8, 16, every one holding a trial
        assert trainer.caps == (2, 4, 8, 16)
        assert sorted(set(trainer.bucket_of({"width": CONFIGS["width"]}))) == [0, 1, 2, 3]
    hp = table.encode(table.complete(CONFIGS, 8))
    ids, seed = np.arange(8, dtype=np.int32) * 5 + 1, np.uint32(3)
    data = task.device_data()
    pop = program.init(seed, ids, hp)
    init_params = jax.device_get(pop.params)
    assert jax.tree.leaves(init_params)[0].dtype == np.float64
    horizon, vt_losses = np.int32(steps), []
    for _ in range(steps):
        pop, m = trainer.train(pop, data, seed, horizon)
        vt_losses.append(np.stack([m["train_loss"], m["val_loss"]], -1))
    vt_losses = np.stack(vt_losses, 1)  # [trial, step, (train, val)]
    final, opt_state = jax.device_get((pop.params, pop.opt_state))
    scales = np.asarray(jax.device_get(pop.plateau["scale"]))

    n_in, n_out = tiny_data.x_train.shape[1], tiny_data.num_classes
    # Rows (and their order) as the trial's sampler draws them; the weights are not used:
    # the reference trains on the first batch_size rows.
    minibatches = jax.jit(lambda key, beta, size: jax.vmap(
        lambda s: program.minibatch(data, key, s, jnp.float64(1.0), beta, size)[:2])(
            jnp.arange(steps)))
    for t in range(8):
        cfg = {k: v[t] for k, v in CONFIGS.items()}
        width, depth = int(cfg["width"]), int(cfg["depth"])
        # The same minibatch indices as the trial's own sampler draws.
        # the data stream, 1 (see Program.indices)
        data_key = jax.random.fold_in(trial_key(jax.random.key(seed), ids[t]), 1)
        with jax.threefry_partitionable(False):
            batches = minibatches(data_key, jnp.float64(cfg["class_balance"]),
                                  jnp.float64(cfg["batch_size"]))
        ref_params, ref_losses, ref_scale = train_unpadded(take(init_params, t), cfg, n_in, n_out,
                                                batches, data)
        np.testing.assert_allclose(vt_losses[t], ref_losses, rtol=1e-9, atol=0,
                                   err_msg=f"losses of trial {t} ({width=}, {depth=})")
        assert scales[t] == pytest.approx(ref_scale, rel=1e-12), t
        # Active parameters match; masked and skipped parameters are exactly zero.
        got = padded_layers(take(final, t))
        ref = [(l["kernel"], l["bias"]) for l in
               nnx.to_pure_dict(ref_params)["layers"].values()]
        used = set(range(depth)) | {D}
        for k, (i, o) in enumerate(active_slices(width, depth, n_in)):
            kernel, bias = got[k if k < depth else D]
            rk, rb = np.asarray(ref[k][0]), np.asarray(ref[k][1])
            scale = max(np.abs(rk).max(), 1e-30)
            assert np.abs(kernel[:i, :o] - rk).max() / scale <= 1e-9, (t, k)
            assert np.abs(bias[:o] - rb).max() / max(np.abs(rb).max(), 1e-30) <= 1e-9, (t, k)
            mask = np.zeros(kernel.shape, bool)
            mask[:i, :o] = True
            assert np.all(kernel[~mask] == 0) and np.all(bias[o or bias.shape[0]:] == 0), (t, k)
        for k in set(range(D + 1)) - used:  # skipped layers never moved
            assert not np.any(got[k][0]) and not np.any(got[k][1]), (t, k)
    # Optimizer state of masked units is exactly zero too (Adam's moments).
    checked = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        keys = [getattr(p, "key", getattr(p, "name", None)) for p in path]
        if "kernel" in keys and "hidden" in keys and np.ndim(leaf) == 3:
            layer = keys[keys.index("hidden") + 1]
            checked += 1
            for t in range(8):
                if layer >= CONFIGS["depth"][t]:
                    assert not np.any(leaf[t]), (path, t)
                else:
                    assert not np.any(leaf[t][:, CONFIGS["width"][t]:]), (path, t)
    assert checked >= 2 * D  # mu and nu of every hidden kernel
    assert (scales < 1).sum() >= 3  # the plateau rule fired: the comparison covers it
    # The trials really differ.
    assert len({round(float(v), 6) for v in vt_losses[:, -1, 1]}) == 8


def hparam(value, name):
    return nn.HParam(jnp.asarray(value, jnp.float32), hp_name=name, low=1, high=4096,
                     integer=True)


VARIANCE = {"he_normal": lambda fi, fo: 2 / fi, "he_uniform": lambda fi, fo: 2 / fi,
            "xavier_uniform": lambda fi, fo: 2 / (fi + fo),
            "xavier_normal": lambda fi, fo: 2 / (fi + fo), "lecun_normal": lambda fi, fo: 1 / fi}


@pytest.mark.parametrize("scheme", sorted(VARIANCE))
@pytest.mark.parametrize("shape,widths", [((512, 1024), (None, 256)),
                                          ((1024, 1024), (256, 128))])
def test_active_weights_have_the_variance_of_the_actual_fans(scheme, shape, widths):
    i_max, o_max = shape
    in_w, out_w = widths
    layer = nn.MaskedLinear(i_max, o_max, init=scheme, rngs=nnx.Rngs(1),
                            in_width=None if in_w is None else hparam(in_w, "w_in"),
                            out_width=hparam(out_w, "width"))
    w = np.asarray(layer.kernel[...])
    fi = i_max if in_w is None else in_w
    active = w[:fi, :out_w]
    want = VARIANCE[scheme](fi, out_w)
    # Sampling error of a variance estimate over >= 32k entries is about 1%.
    assert active.var() == pytest.approx(want, rel=0.04)
    assert abs(active.mean()) < 4 * np.sqrt(want / active.size)
    # Where a masked dimension enters the formula, the padded fans would be far off.
    if in_w is not None or scheme.startswith("xavier"):
        assert abs(VARIANCE[scheme](i_max, o_max) / want - 1) > 0.2
    mask = np.zeros(w.shape, bool)
    mask[:fi, :out_w] = True
    assert np.all(w[~mask] == 0) and not np.any(np.asarray(layer.bias[...]))


def test_kernel_init_at_static_fans_is_jax_initializers():
    jax_inits = {"normal": jax.nn.initializers.normal(nn.NORMAL_STDDEV),
                 "xavier_uniform": jax.nn.initializers.glorot_uniform(),
                 "xavier_normal": jax.nn.initializers.glorot_normal(),
                 "he_normal": jax.nn.initializers.he_normal(),
                 "he_uniform": jax.nn.initializers.he_uniform(),
                 "lecun_normal": jax.nn.initializers.lecun_normal()}
    key = jax.random.key(3)
    for name, f in jax_inits.items():
        got = nn.kernel_init(name)(key, (24, 40))
        # The same draws and formula; XLA's fusion inside lax.switch may round the last bit.
        np.testing.assert_allclose(got, f(key, (24, 40), jnp.float32), rtol=1e-6, atol=0,
                                   err_msg=name)
        # Python fans equal to the shape's are the same thing.
        np.testing.assert_array_equal(nn.kernel_init(name, 1.0, 24, 40)(key, (24, 40)), got)


def test_traced_fans_select_per_trial_under_vmap():
    def init(width):
        return nn.kernel_init("he_normal", 1.0, fan_in=width, fan_out=width)(
            jax.random.key(0), (256, 256))

    ws = jax.jit(jax.vmap(init))(jnp.array([16.0, 64.0]))
    assert float(ws[0].var()) == pytest.approx(2 / 16, rel=0.05)
    assert float(ws[1].var()) == pytest.approx(2 / 64, rel=0.05)


def test_structure_is_read_from_hp_and_declared_with_its_bounds():
    hp = {"width": jnp.float32(5), "depth": jnp.float32(2), "init": jnp.int32(4)}
    mlp = nn.MaskedMLP(3, 8, 3, 2, hp=hp, init=hp["init"], rngs=nnx.Rngs(0))
    assert nn.hparam_bounds(mlp) == {"width": (1, 8), "depth": (1, 3)}
    assert nn.hparam_specs(mlp)["width"] == {"low": 1, "high": 8, "integer": True, "default": 8,
                                             "width": True}
    k = [np.asarray(layer.kernel[...]) for layer in mlp.hidden]
    assert np.any(k[0][:, :5]) and not np.any(k[0][:, 5:])
    assert np.any(k[1][:5, :5]) and not np.any(k[1][5:]) and not np.any(k[1][:, 5:])
    assert not np.any(k[2])  # beyond depth 2: zero
    out = np.asarray(mlp.out.kernel[...])
    assert np.any(out[:5]) and not np.any(out[5:])
    # Per-layer widths: the output fan-in follows the last active layer.
    hp = {"width_1": jnp.float32(6), "width_2": jnp.float32(3), "depth": jnp.float32(2)}
    mlp = nn.MaskedMLP(3, 8, 2, 2, hp=hp, widths=("width_1", "width_2"), rngs=nnx.Rngs(0))
    out = np.asarray(mlp.out.kernel[...])
    assert np.any(out[:3]) and not np.any(out[3:])
    assert set(nn.hparam_bounds(mlp)) == {"width_1", "width_2", "depth"}


def test_structure_is_init_only():
    assert {"width", "depth", "width_1", "width_2"} <= set(vtune.trial.hparams.INIT_ONLY)


@pytest.fixture(scope="module")
def small_task(tiny_data):
    return vtune.tasks.mlp_classifier(tiny_data, hidden_sizes=(8, 8), dropout=False,
                                      batch_size=32)


BAD = {
    "width above the allocation": ({"width": vtune.intuniform(4, 32)},
                                   r"space\['width'\]: 32 exceeds the allocated maximum 8"),
    "width below 1": ({"width": vtune.choice([0, 4])}, r"space\['width'\]: 0 is below"),
    "depth zero": ({"depth": vtune.intuniform(0, 2)}, r"space\['depth'\]: 0 is below"),
    "depth above the allocation": ({"depth": vtune.fixed(3)},
                                   r"space\['depth'\]: 3 exceeds the allocated maximum 2"),
    "fractional width": ({"width": vtune.choice([4, 5.5])}, r"space\['width'\]: 5.5 is not an"),
    "continuous width": ({"width": vtune.uniform(1.0, 8.0)}, r"space\['width'\].*integer"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_structure_raises_before_compiling(case, small_task, compiles):
    space, match = BAD[case]
    with pytest.raises(ValueError, match=match):
        vtune.population_search(small_task, space, population_size=4, generations=1,
                                steps_per_generation=2, verbose=False)
    assert sum(compiles.values()) == 0, dict(compiles)


def test_unequal_hidden_sizes_tune_per_layer_widths(tiny_data):
    task = vtune.tasks.mlp_classifier(tiny_data, hidden_sizes=(12, 6), dropout=False,
                                      batch_size=32)
    assert task.defaults == {"width_1": 12, "width_2": 6, "depth": 2}
    result = vtune.population_search(
        task, {"width_2": vtune.intuniform(1, 12), "depth": vtune.choice([1, 2])},
        population_size=4, generations=1, steps_per_generation=3, verbose=False)
    assert all(1 <= r["width_2"] <= 12 and r["width_1"] == 12 for r in result.history)
    with pytest.raises(ValueError, match=r"\['width'\].*consumed by nothing"):
        vtune.population_search(task, {"width": vtune.intuniform(1, 8)}, verbose=False)


def test_pbt_clones_keep_their_structure_and_the_program_compiles_once(small_task, compiles):
    space = {"width": vtune.intuniform(1, 8), "depth": vtune.intuniform(1, 2),
             "learning_rate": vtune.loguniform(1e-3, 1e-1)}
    strategy = vtune.strategies.pbt(quantile=0.5, resample_probability=1.0)
    result = vtune.population_search(small_task, space, population_size=4, generations=3,
                                     steps_per_generation=2, strategy=strategy, verbose=False)
    rows = {(r["generation"], r["trial_id"]): r for r in result.history}
    clones = [r for r in result.history if r["parent_id"] >= 0 and r["generation"] > 0]
    assert clones, "PBT cloned nobody"
    for r in clones:
        parent = rows.get((r["generation"] - 1, r["parent_id"]))
        if parent is not None:  # the clone's first generation: its parent's structure
            assert (r["width"], r["depth"]) == (parent["width"], parent["depth"])
    # Every hyperparameter was redrawn (resample_probability 1) except the structure.
    assert any(r["learning_rate"] != rows[(r["generation"] - 1, r["parent_id"])]
               ["learning_rate"] for r in clones if (r["generation"] - 1, r["parent_id"]) in rows)
    assert compiles["_train"] == 1, dict(compiles)
