"""The data knobs: batch_size, class_balance and plateau decay, per trial in one program."""

import dataclasses
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import vtune
from helpers.reference import mean_ce  # the 8-8-4 MLP of these tests
from vtune.population import take
from vtune.program import build

KNOBS = {
    "learning_rate": vtune.loguniform(1e-3, 1e-1),
    "batch_size": vtune.choice([8, 16, 24, 32]),
    "class_balance": vtune.uniform(0.0, 1.0),
    "plateau_factor": vtune.uniform(0.1, 1.0),
    "plateau_patience": vtune.intuniform(1, 4),
}
PRIORS = [0.55, 0.25, 0.15, 0.05]


def imbalanced(n_train=200, n_val=40, seed=0):
    """Four classes in proportions PRIORS, Gaussian blobs in 8 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n_train + n_val, p=PRIORS).astype(np.int32)
    x = (1.5 * rng.normal(size=(4, 8))[y] + rng.normal(size=(len(y), 8))).astype(np.float32)
    return vtune.datasets.Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                                  name=f"imbalanced{seed}")


@pytest.fixture(scope="module")
def data():
    return imbalanced()


@pytest.fixture(scope="module")
def task(data):
    """Allocated batch 32; no dropout, so a reference needs no masks."""
    return vtune.tasks.mlp_classifier(data, hidden_sizes=(8,), batch_size=32, dropout=False)


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


# --- equivalence with a plain optax loop ---------------------------------------------------

# Eight trials: every batch size, balanced and not, plateau off and on with several patiences,
# a subsample for two of them.
CONFIGS = {
    "learning_rate": np.array([3e-2, 8e-2, 5e-2, 6e-2, 5e-2, 3e-2, 4e-2, 8e-2]),
    "batch_size": np.array([8, 32, 16, 24, 8, 32, 16, 24]),
    "class_balance": np.array([0.0, 1.0, 0.5, 0.3, 1.0, 0.0, 0.7, 0.5]),
    "plateau_factor": np.array([1.0, 0.5, 0.2, 0.1, 0.5, 0.3, 1.0, 0.25]),
    "plateau_patience": np.array([3, 1, 2, 1, 1, 1, 3, 2]),
    "train_fraction": np.array([1.0, 1.0, 0.5, 1.0, 0.3, 1.0, 1.0, 0.6]),
}
SEED, STEPS = 5, 60


@jax.jit
def reference_step(params, opt_state, lr, x, y):
    loss, grads = jax.value_and_grad(mean_ce)(params, x, y)
    opt_state.hyperparams["learning_rate"] = lr
    updates, opt_state = optax.inject_hyperparams(optax.adamw)(
        learning_rate=lr, weight_decay=1e-4).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def test_float64_trials_in_a_population_match_plain_optax_loops(data, x64):
    task = vtune.tasks.mlp_classifier(data, hidden_sizes=(8,), batch_size=32, dropout=False)
    space = dict(KNOBS, train_fraction=vtune.uniform(0.2, 1.0))
    program, table, *_ = build(task, vtune.Space(space), steps=1, objective="val_loss", sign=1)
    hp = table.encode(table.complete(CONFIGS, 8))
    ids = np.arange(8, dtype=np.int32) * 5 + 2
    pop = program.init(np.uint32(SEED), ids, hp)
    device_data = task.device_data()
    # Each reference starts from its trial's initial params (init is tested elsewhere).
    ref = [nnx.to_pure_dict(take(pop.params, i)) for i in range(8)]
    tx = optax.inject_hyperparams(optax.adamw)(learning_rate=0.0, weight_decay=1e-4)
    opt = [tx.init(p) for p in ref]
    plateau = [{"best": np.inf, "since": 0, "scale": 1.0} for _ in range(8)]
    # vtune's programs draw with jax_threefry_partitionable off (see program._compact_rng).
    indices = jax.jit(jax.threefry_partitionable(False)(program.indices))
    x_val, y_val = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
    x_tr, y_tr = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    dropped = set()
    for step in range(STEPS):
        pop, metrics = program.train(pop, device_data, np.uint32(SEED), np.int32(STEPS))
        metrics = jax.device_get(metrics)
        for i in range(8):
            b, lr = int(CONFIGS["batch_size"][i]), CONFIGS["learning_rate"][i]
            # Documented key derivation: fold_in(fold_in(key(seed), trial_id), 1).
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(SEED), ids[i]), 1)
            rows = indices(device_data, key, jnp.int32(step), hp["train_fraction"][i],
                           hp["class_balance"][i])[:b]  # an unpadded batch of exactly b
            ref[i], opt[i], _ = reference_step(ref[i], opt[i], lr * plateau[i]["scale"],
                                               x_tr[rows], y_tr[rows])
            val_loss, train_loss = mean_ce(ref[i], x_val, y_val), mean_ce(ref[i], x_tr, y_tr)
            assert metrics["val_loss"][i] == pytest.approx(float(val_loss), rel=1e-9), (i, step)
            assert metrics["train_loss"][i] == pytest.approx(float(train_loss), rel=1e-9)
            # The textbook rule: a strict improvement resets the count; `patience`
            # evaluations without one multiply the scale by the factor.
            s = plateau[i]
            if val_loss < s["best"]:
                s["best"], s["since"] = float(val_loss), 0
            else:
                s["since"] += 1
            if s["since"] >= CONFIGS["plateau_patience"][i]:
                s["scale"] *= CONFIGS["plateau_factor"][i]
                s["since"] = 0
                dropped.add(i)
            assert float(pop.plateau["scale"][i]) == pytest.approx(s["scale"], rel=1e-12)
            assert int(pop.plateau["since"][i]) == s["since"]
    for i in range(8):
        got = nnx.to_pure_dict(take(pop.params, i))
        for a, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref[i])):
            assert a.dtype == np.float64
            np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=1e-9,
                                       atol=1e-9 * float(np.max(np.abs(r))))
    # The plateau rule fired for trials whose factor is below 1 (not vacuous).
    assert len(dropped & {i for i in range(8) if CONFIGS["plateau_factor"][i] < 1}) >= 3
    assert len({round(float(v), 6) for v in metrics["val_loss"]}) == 8


def test_the_loss_of_a_weighted_batch_is_the_loss_of_its_first_b_rows(task, data):
    program, table, *_ = build(task, vtune.Space({"batch_size": vtune.choice([8, 32])}), 1)
    hp = {k: jnp.asarray(v[0]) for k, v in table.encode(table.complete(
        {"batch_size": np.array([8])}, 1)).items()}
    params, state, _ = program.init_trial(jax.random.key(0), jnp.int32(0), hp)
    x, y, w = program.minibatch(task.device_data(), jax.random.key(1), jnp.int32(0),
                                hp["train_fraction"], None, hp["batch_size"])
    assert x.shape[0] == 32 and float(w.sum()) == pytest.approx(1.0) and (w[8:] == 0).all()
    weighted, _ = task.loss(params, state, (x, y, w), jax.random.key(2), hp)
    first, _ = task.loss(params, state, (x[:8], y[:8]), jax.random.key(2), hp)
    assert float(weighted) == pytest.approx(float(first), rel=1e-6)


# --- class balance: sampling frequencies -----------------------------------------------------

@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_class_balance_draws_with_probability_count_to_the_minus_beta(task, data, beta,
                                                                      fraction):
    program, *_ = build(task, vtune.Space({"class_balance": vtune.uniform(0.0, 1.0)}), 1)
    draws = 4000  # steps, 32 rows each
    rows = jax.jit(jax.vmap(program.indices, (None, None, 0, None, None)))(
        task.device_data(), jax.random.key(3), jnp.arange(draws), jnp.float32(fraction),
        jnp.float32(beta))
    rows = np.asarray(rows).ravel()
    used = int(np.floor(fraction * data.num_train))
    assert rows.min() >= 0 and rows.max() < used
    y = data.y_train[:used]
    counts = np.bincount(y, minlength=4).astype(float)  # counts over the used subset
    # Textbook: P(row i) = c(y_i)^-beta / sum_j c(y_j)^-beta; per class n_c^(1-beta) / sum.
    p_row = counts[y] ** -beta
    p_row /= p_row.sum()
    p_class = counts ** (1 - beta) / np.sum(counts ** (1 - beta))
    n = rows.size
    seen_class = np.bincount(y[rows], minlength=4)
    chi2_class = np.sum((seen_class - n * p_class) ** 2 / (n * p_class))
    assert chi2_class < 25, (seen_class / n, p_class)  # 3 dof: p ~ 1e-5
    seen_row = np.bincount(rows, minlength=used)
    chi2_row = np.sum((seen_row - n * p_row) ** 2 / (n * p_row))
    dof = used - 1
    assert chi2_row < dof + 6 * np.sqrt(2 * dof), chi2_row
    if beta == 1.0:
        np.testing.assert_allclose(seen_class / n, 0.25, atol=0.01)


# --- compile once, clones, checkpoints ---------------------------------------------------------

def search(task, strategy, **kw):
    kw = {"population_size": 8, "generations": 4, "steps_per_generation": 3, "seed": 1,
          "verbose": False, **kw}
    return vtune.population_search(task, KNOBS, strategy=strategy, **kw)


def test_a_search_over_the_knobs_compiles_the_train_program_once(task, compiles):
    fresh = search(task, "truncation")
    refills = [h for h in fresh.history if h["parent_id"] == -1 and h["trial_id"] >= 8]
    assert refills and any(h["status"] == "pruned" for h in fresh.history)
    pbt = search(task, vtune.strategies.pbt(quantile=0.25, resample_probability=0.5), seed=2)
    clones = [h for h in pbt.history if h["parent_id"] >= 0]
    assert clones
    assert compiles["_train"] == 1 and compiles["_refill"] == 1 and compiles["_init"] == 1
    # A clone's knobs may differ from its parent's (they are not init-only) ...
    rows = {(h["generation"], h["trial_id"]): h for h in pbt.history}
    firsts = [h for h in clones if (h["generation"] - 1, h["trial_id"]) not in rows]
    knobs = ("batch_size", "class_balance", "plateau_factor", "plateau_patience")
    assert any(h[k] != rows[(h["generation"] - 1, h["parent_id"])][k]
               for h in firsts for k in knobs)
    # ... a clone carries on its parent's count of examples ...
    for h in firsts:
        parent = rows[(h["generation"] - 1, h["parent_id"])]
        assert h["examples_seen"] == parent["examples_seen"] + 3 * h["batch_size"]
    # ... and examples_seen counts each trial's own batch size.
    for h in fresh.history:
        if h["generation"] == 0:
            assert h["examples_seen"] == 3 * h["batch_size"]
    by_trial = {}
    for h in fresh.history:
        by_trial.setdefault(h["trial_id"], []).append(h)
    for rows in by_trial.values():
        if rows[0]["parent_id"] == -1:
            assert rows[-1]["examples_seen"] == 3 * len(rows) * rows[0]["batch_size"]


def test_explore_changes_the_knobs_of_a_clone():
    space = vtune.Space(KNOBS)
    configs = space.sample(16, 0)
    new = vtune.strategies.explore(space, configs, np.random.default_rng(0), 1.0)
    for name in ("batch_size", "class_balance", "plateau_factor", "plateau_patience"):
        assert not np.array_equal(new[name], configs[name]), name


def test_a_clone_inherits_its_parents_plateau_state_and_a_fresh_trial_starts_at_one(task):
    program, table, *_ = build(task, vtune.Space(KNOBS), 2, objective="val_loss", sign=1)
    space = vtune.Space(KNOBS)
    hp = table.encode(table.complete(space.sample(4, 0), 4))
    pop = program.init(np.uint32(0), np.arange(4, dtype=np.int32), hp)
    assert np.asarray(pop.plateau["scale"]).tolist() == [1.0] * 4
    state = {"best": jnp.array([0.5, 0.7, 0.9, 1.1], jnp.float32),
             "since": jnp.array([1, 0, 2, 3], jnp.int32),
             "scale": jnp.array([0.5, 0.25, 0.125, 1.0], jnp.float32)}
    pop = dataclasses.replace(pop, plateau=state)
    parent = np.array([0, 0, 2, 1], np.int32)
    fresh = np.array([False, False, False, True])
    new_hp = table.encode(table.complete(space.sample(4, 1), 4))
    pop = program.refill(pop, parent, fresh, new_hp, np.array([0, 4, 2, 5], np.int32),
                         np.uint32(0))
    got = jax.device_get(pop.plateau)
    assert got["scale"].tolist() == [0.5, 0.5, 0.125, 1.0]
    assert got["since"].tolist() == [1, 1, 2, 0]
    assert got["best"][:3].tolist() == pytest.approx([0.5, 0.5, 0.9]) and got["best"][3] == np.inf
    # The clone in slot 1 also carries slot 0's weights.
    for leaf in jax.tree.leaves(pop.params):
        np.testing.assert_array_equal(np.asarray(leaf[1]), np.asarray(leaf[0]))


def test_a_search_with_plateau_state_resumes_from_its_checkpoint(task, tmp_path):
    kw = dict(strategy="pbt", generations=3, seed=4, steps_per_generation=2)
    reference = search(task, **kw)
    d = tmp_path / "ckpt"
    search(task, checkpoint_dir=d, **kw)
    shutil.rmtree(d / "3")  # as if killed before the last generation was saved
    resumed = search(task, checkpoint_dir=d, **kw)
    strip = lambda r: [{k: v for k, v in h.items() if k != "wall_time"} for h in r.history]
    assert strip(resumed) == strip(reference)
    for a, b in zip(jax.tree.leaves(resumed.best.params), jax.tree.leaves(reference.best.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --- bad input, before anything compiles ---------------------------------------------------

def regression_task():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = x @ np.ones((4, 1), np.float32)
    d = vtune.datasets.Dataset(x[:48], y[:48], x[48:], y[48:], name="regression")

    class Linear(nnx.Module):
        def __init__(self, hp, rngs):
            self.fc = nnx.Linear(4, 1, rngs=rngs)

        def __call__(self, x):
            return self.fc(x)

    return vtune.from_nnx(Linear, d, loss=lambda p, t: jnp.mean((p - t) ** 2),
                          classification=False, batch_size=16)


def raw_task(data, use_weights):
    def init(key, hp):
        return {"w": jnp.zeros((8, 4))}, {}

    def loss(params, state, batch, key, hp):
        x, y, w = batch
        each = optax.softmax_cross_entropy_with_integer_labels(x @ params["w"], y)
        return (jnp.sum(w * each) if use_weights else each.mean()), state

    def metrics(params, state, data, hp):
        return {"val_loss": jnp.float32(0.0)}

    return vtune.Task(init, loss, metrics, data=data, batch_size=32, name="raw")


def unpacks_two(data):
    def loss(params, state, batch, key, hp):
        x, y = batch
        return jnp.mean(x @ params["w"]), state

    t = raw_task(data, True)
    return vtune.Task(t.init, loss, t.metrics, data=data, batch_size=32, name="two")


BAD = {
    "batch above the allocation": ({"batch_size": vtune.choice([8, 64])}, None,
                                   r"64 exceeds the task's allocated batch size 32"),
    "batch above the training set": ({"batch_size": vtune.choice([8, 500])}, None,
                                     r"500 exceeds the 200 training examples"),
    "batch zero": ({"batch_size": vtune.choice([0, 8])}, None, r"'batch_size'.*\b0\b"),
    "fractional batch": ({"batch_size": vtune.choice([8, 12.5])}, None, r"12\.5"),
    "continuous batch": ({"batch_size": vtune.uniform(8, 32)}, None, r"batch_size.*integer"),
    "balance above one": ({"class_balance": vtune.uniform(0.0, 1.5)}, None, r"1\.5"),
    "balance below zero": ({"class_balance": vtune.fixed(-0.2)}, None, r"-0\.2"),
    "balance on regression": ({"class_balance": vtune.uniform(0.0, 1.0)}, regression_task,
                              r"class_balance.*float32"),
    "patience zero": ({"plateau_patience": vtune.intuniform(0, 3)}, None,
                      r"'plateau_patience'.*\b0\b"),
    "fractional patience": ({"plateau_patience": vtune.choice([1, 2.5])}, None, r"2\.5"),
    "continuous patience": ({"plateau_patience": vtune.uniform(1, 3)}, None,
                            r"plateau_patience.*integer"),
    "factor zero": ({"plateau_factor": vtune.fixed(0.0)}, None, r"'plateau_factor'.*0\.0"),
    "factor above one": ({"plateau_factor": vtune.uniform(0.5, 1.5)}, None, r"1\.5"),
    "raw loss ignores the weights": ({"batch_size": vtune.choice([8, 32])},
                                     lambda d: raw_task(d, False), r"ignores the weights"),
    "raw loss takes two": ({"batch_size": vtune.choice([8, 32])}, unpacks_two,
                           r"batch = \(x, y, w\)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_knobs_are_refused_before_compiling(case, task, data, compiles):
    space, make, match = BAD[case]
    if make is regression_task:
        t = regression_task()
    else:
        t = task if make is None else make(data)
    with pytest.raises(ValueError, match=match):
        vtune.population_search(t, {"learning_rate": vtune.fixed(0.01), **space},
                                population_size=4, generations=1, steps_per_generation=2,
                                verbose=False)
    assert sum(compiles.values()) == 0, dict(compiles)


def test_a_raw_task_with_a_weighted_loss_trains(data):
    result = vtune.population_search(raw_task(data, True), {
        "learning_rate": vtune.fixed(0.05), "batch_size": vtune.choice([8, 32])},
        population_size=4, generations=1, steps_per_generation=2, verbose=False)
    assert {h["examples_seen"] for h in result.history} <= {16, 64}


def test_the_plateau_rule_for_an_objective_to_maximise(task):
    program, *_ = build(task, vtune.Space({"plateau_factor": vtune.fixed(0.5),
                                           "plateau_patience": vtune.fixed(2)}), 1,
                        objective="val_accuracy", sign=-1)
    hp = {"plateau_factor": jnp.float32(0.5), "plateau_patience": jnp.float32(2)}
    state = {"best": jnp.float32(jnp.inf), "since": jnp.int32(0), "scale": jnp.float32(1)}
    scales = []
    for acc in (0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.7, 0.7):
        state = program.plateau_update(state, {"val_accuracy": jnp.float32(acc),
                                               "diverged": jnp.bool_(False)}, hp)
        scales.append(float(state["scale"]))
    # Higher is better: 0.6 -> 0.6 -> 0.55 is two evaluations without improvement.
    assert scales == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert float(state["best"]) == pytest.approx(-0.7)
