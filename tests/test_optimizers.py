"""The optimizer family as a per-trial choice: one program, each trial its own family's update."""

import functools
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import vtune
from helpers.reference import mean_ce  # the 6-8-3 MLP of these tests
from vtune.population import sharding, take
from vtune.program import build
from vtune.search.spec import SearchSpec

FAMILIES = ["adamw", "sgdw", "rmsprop"]
# Families, their hyperparameters and the structure: one program serves every test below
# (the equivalence runs and the searches), compiled once; the whole module runs in float64.
SPACE = {
    "optimizer": vtune.choice(FAMILIES),
    "learning_rate": vtune.loguniform(1e-3, 1e-1),
    "b1": vtune.uniform(0.5, 0.95),
    "momentum": vtune.uniform(0.0, 0.95),
    "clip_norm": vtune.uniform(0.5, 10.0),
    "width": vtune.intuniform(2, 8),
    "batch_size": vtune.choice([8, 16]),
}
SEED, STEPS, N, K = 3, 30, 8, 2  # K: steps per call of the program (a search's generation)


@pytest.fixture(scope="module", autouse=True)
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.fixture(scope="module")
def data():
    return vtune.datasets.synthetic(128, num_features=6, num_classes=3, seed=1)


@pytest.fixture(scope="module")
def task(data):
    """A 6-8-3 MLP, its width tunable, its batch allocated at 16; no dropout."""
    return vtune.tasks.mlp_classifier(data, hidden_sizes=(8,), batch_size=16, dropout=False)


# --- equivalence with plain optax loops, float64 --------------------------------------------

# Each family at its own batch size; the hyperparameters of other families are set to values
# that would matter if they leaked (b1 on sgdw/rmsprop trials, momentum on adamw trials).
# Full width, so the reference is the plain 6-8-3 network.
CONFIGS = {
    "optimizer": np.array(["adamw", "sgdw", "rmsprop", "adamw", "sgdw", "rmsprop", "adamw",
                           "sgdw"], object),
    "learning_rate": np.array([3e-2, 5e-2, 1e-2, 6e-2, 2e-2, 3e-3, 1e-2, 8e-2]),
    "b1": np.array([0.8, 0.5, 0.6, 0.9, 0.7, 0.5, 0.6, 0.9]),
    "momentum": np.array([0.3, 0.9, 0.5, 0.7, 0.0, 0.2, 0.9, 0.5]),
    "clip_norm": np.array([1.0, 10.0, 0.5, 10.0, 1.0, 10.0, 2.0, 0.5]),
    "width": np.full(8, 8),
    "batch_size": np.array([16, 8, 8, 16, 8, 8, 16, 8]),  # one per family: 3 references
}


@functools.partial(jax.jit, static_argnums=0)
def reference_run(family, params, xs, ys, lr, clip, b1, momentum):
    """A plain optax loop of ``family`` (its own defaults otherwise) over the minibatches
    ``xs[s], ys[s]``, behind global-norm clipping."""
    tx = optax.chain(optax.clip_by_global_norm(clip), {
        "adamw": lambda: optax.adamw(lr, b1=b1),  # weight_decay 1e-4: adamw's default
        "sgdw": lambda: vtune.sgdw(lr, momentum=momentum),  # weight_decay 0: sgdw's default
        "rmsprop": lambda: optax.rmsprop(lr, momentum=momentum)}[family]())

    def step(carry, batch):
        params, opt_state = carry
        grads = jax.grad(mean_ce)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    return jax.lax.scan(step, (params, tx.init(params)), (xs, ys))[0][0]


@pytest.fixture(scope="module")
def trained(task):
    """The population trained STEPS steps (STEPS / K calls), twice: as CONFIGS, and with
    every other family's hyperparameters changed."""
    program, table, *_ = build(task, vtune.Space(SPACE), steps=K)
    ids = np.arange(N, dtype=np.int32) * 3 + 1
    # Placed as the driver places them, so the searches below reuse the compiled program.
    device_data = sharding.place(task.host_data(), sharding.replicated(program.mesh))

    def run(configs):
        hp = table.encode(table.complete(configs, N))
        pop = program.init(np.uint32(SEED), *sharding.place(
            (ids, hp), sharding.population(program.mesh)))
        init = [nnx.to_pure_dict(take(pop.params, i)) for i in range(N)]
        for _ in range(STEPS // K):
            pop, _ = program.train(pop, device_data, np.uint32(SEED), np.int32(STEPS))
        return init, [nnx.to_pure_dict(take(pop.params, i)) for i in range(N)], hp

    init, final, hp = run(CONFIGS)
    changed = dict(CONFIGS)
    is_adamw = CONFIGS["optimizer"] == "adamw"
    changed["b1"] = np.where(is_adamw, CONFIGS["b1"], 0.1)
    changed["momentum"] = np.where(is_adamw, 0.99, CONFIGS["momentum"])
    changed["b1"][3] = 0.5  # one adamw trial's b1 changes too: there it must matter
    _, final_changed, _ = run(changed)
    # The reference minibatches: vtune's documented draw (threefry_partitionable off), the
    # first batch_size rows of it (an unpadded batch).
    indices = jax.jit(jax.threefry_partitionable(False)(
        jax.vmap(program.indices, (None, None, 0, None))))
    rows = [indices(device_data, jax.random.fold_in(jax.random.fold_in(
        jax.random.key(SEED), ids[i]), 1), jnp.arange(STEPS, dtype=jnp.int32),
        hp["train_fraction"][i])[:, :CONFIGS["batch_size"][i]] for i in range(N)]
    return dict(init=init, final=final, final_changed=final_changed, rows=rows,
                table=table, program=program, hp=hp)


def test_each_trial_matches_a_plain_optax_loop_of_its_own_family(trained, data):
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    assert trained["hp"]["optimizer"].dtype == np.int32
    assert trained["hp"]["optimizer"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    for i in range(N):
        idx = trained["rows"][i]
        params = reference_run(CONFIGS["optimizer"][i], trained["init"][i], x[idx], y[idx],
                               *(jnp.float64(CONFIGS[n][i])
                                 for n in ("learning_rate", "clip_norm", "b1", "momentum")))
        got = trained["final"][i]
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params)):
            assert a.dtype == np.float64
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12,
                                       err_msg=f"trial {i} ({CONFIGS['optimizer'][i]})")
        # It trained: the parameters moved.
        assert any(not np.allclose(a, b) for a, b in zip(
            jax.tree.leaves(got), jax.tree.leaves(trained["init"][i])))


def test_another_familys_hyperparameters_have_no_effect(trained):
    for i in range(N):
        same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
            jax.tree.leaves(trained["final"][i]),
            jax.tree.leaves(trained["final_changed"][i])))
        assert same == (i != 3), (i, CONFIGS["optimizer"][i])
    table = trained["table"]
    assert table.inert()["sgdw"] == ("b1", "b2", "decay", "eps", "eps_root", "initial_scale")
    assert "momentum" in table.inert()["adamw"] and "b1" in table.inert()["rmsprop"]
    # Shared names the space leaves out take each family's own default.
    # (rmsprop takes none: adamw's, inert.)
    assert trained["hp"]["weight_decay"].tolist() == [1e-4, 0.0, 1e-4] * 2 + [1e-4, 0.0]


def test_a_search_that_does_not_name_the_family_keeps_its_program(data):
    """No ``optimizer`` hyperparameter, one optimizer state: the program of before. A task
    with a mapping trains its first family (an abstract trace: nothing compiles)."""
    space = vtune.Space({"learning_rate": vtune.loguniform(1e-3, 1e-1)})
    plain = vtune.tasks.mlp_classifier(data, hidden_sizes=(8,), batch_size=16, dropout=False)
    mapped = vtune.tasks.mlp_classifier(data, hidden_sizes=(8,), batch_size=16, dropout=False,
                                        optimizer={"adamw": optax.adamw, "sgdw": vtune.sgdw})
    shapes = []
    for task in (plain, mapped):
        program, table, *_ = build(task, space, steps=2)
        assert table.families == () and "optimizer" not in table.names
        hp = table.encode(table.complete(space.sample(4, 0), 4))
        shapes.append(jax.eval_shape(program.init, np.uint32(0), np.arange(4, dtype=np.int32), hp))
        assert program.traces["train"] == 0
    assert jax.tree.structure(shapes[0]) == jax.tree.structure(shapes[1])
    assert jax.tree.leaves(shapes[0]) == jax.tree.leaves(shapes[1])
    assert "b1" in shapes[0].opt_state.hyperparams  # one state, not one per family
    assert "b1" in shapes[0].hparams and "momentum" not in shapes[0].hparams
    ident = SearchSpec.create(space).identity(plain, build(plain, space, 2).traced)
    assert "optimizer_families" not in ident and ident["optimizer"] == "optax._src.alias.adamw"


# --- one compile over a search, clones keep their family ---------------------------------------

def test_a_search_over_families_and_structure_compiles_once(task, trained, compiles):
    """Two searches (pruning with fresh refills; PBT clones) run the equivalence tests'
    program: over all of them it was traced, so compiled, once."""
    kw = dict(population_size=N, generations=3, steps_per_generation=K, seed=2, verbose=False)
    truncation = vtune.population_search(task, SPACE, strategy="truncation", **kw)
    pbt = vtune.population_search(
        task, SPACE, strategy=vtune.strategies.pbt(quantile=0.25, resample_probability=1.0), **kw)
    program = build(task, vtune.Space(SPACE), K).program
    assert program is trained["program"]
    assert dict(program.traces) == {"init": 1, "train": 1, "refill": 1}
    assert compiles["_train"] == 0 and compiles["_init"] == 0 and compiles["_refill"] <= 1, \
        dict(compiles)
    refills = [h for h in truncation.history if h["parent_id"] == -1 and h["trial_id"] >= 8]
    assert refills and any(h["status"] == "pruned" for h in truncation.history)
    rows = {(h["generation"], h["trial_id"]): h for h in pbt.history}
    firsts = [h for h in pbt.history if h["parent_id"] >= 0
              and (h["generation"] - 1, h["trial_id"]) not in rows]
    assert firsts, "PBT cloned nobody"
    for h in firsts:  # a clone keeps its parent's family; its other values were redrawn
        parent = rows[(h["generation"] - 1, h["parent_id"])]
        assert h["optimizer"] == parent["optimizer"]
    assert any(h["learning_rate"] != rows[(h["generation"] - 1, h["parent_id"])]["learning_rate"]
               for h in firsts)
    assert {h["optimizer"] for h in pbt.history} == set(FAMILIES)
    # The result knows what is inert for each trial, and its table says so.
    for h in pbt.history:
        inert = pbt.inert_for(h)
        assert ("b1" in inert) == (h["optimizer"] != "adamw")
        assert ("momentum" in inert) == (h["optimizer"] == "adamw")
    assert vtune.SearchResult.from_json(pbt.to_json()).inert == pbt.inert
    if pbt.best.hparams["optimizer"] != "adamw":
        assert "b1=" not in pbt.summary()


def test_a_search_over_families_resumes_from_its_checkpoint(task, trained, tmp_path):
    """Every family's state is in the checkpoint (the same program: nothing compiles)."""
    kw = dict(population_size=N, generations=3, steps_per_generation=K, seed=4, verbose=False,
              strategy="pbt")
    reference = vtune.population_search(task, SPACE, **kw)
    vtune.population_search(task, SPACE, checkpoint_dir=tmp_path, **kw)
    shutil.rmtree(tmp_path / "3")  # as if killed before the last generation was saved
    resumed = vtune.population_search(task, SPACE, checkpoint_dir=tmp_path, **kw)
    strip = lambda r: [{k: v for k, v in h.items() if k != "wall_time"} for h in r.history]
    assert strip(resumed) == strip(reference)
    assert trained["program"].traces["train"] == 1


def test_one_fixed_family_holds_one_state(data):
    task = vtune.tasks.mlp_classifier(data, hidden_sizes=(4,), batch_size=16)
    space = vtune.Space({"optimizer": vtune.fixed("sgdw"), "momentum": vtune.uniform(0, 0.9)})
    program, table, *_ = build(task, space, 1)
    hp = table.encode(table.complete(space.sample(2, 0), 2))
    assert hp["optimizer"].tolist() == [0, 0] and table.inert() == {"sgdw": ()}
    pop = jax.eval_shape(program.init, np.uint32(0), np.arange(2, dtype=np.int32), hp)
    assert len(pop.opt_state) == 1 and "momentum" in pop.opt_state[0].hyperparams


# --- bad input, before anything compiles -------------------------------------------------------

BAD = {
    "an unknown family": ({"optimizer": vtune.choice(["adamw", "lion"])}, None,
                          r"\['lion'\] is not among the optimizer families"),
    "a family name that is not a string": ({"optimizer": vtune.choice([1, 2])}, None,
                                           r"does not name optimizer families"),
    "b1 outside [0, 1)": ({"optimizer": vtune.choice(["adamw", "sgdw"]),
                           "b1": vtune.uniform(0.5, 1.5)}, None, r"1\.5 is outside"),
    "momentum outside [0, 1)": ({"optimizer": vtune.choice(["sgdw", "rmsprop"]),
                                 "momentum": vtune.fixed(-0.1)}, None, r"-0\.1 is outside"),
    "a name no family takes": ({"optimizer": vtune.choice(["sgdw", "rmsprop"]),
                                "b1": vtune.fixed(0.9)}, None, r"\['b1'\].*consumed by nothing"),
    "a family outside the task's mapping": (
        {"optimizer": vtune.choice(["sgdw"])}, {"adamw": optax.adamw},
        r"\['sgdw'\] is not among the optimizer families \['adamw'\]"),
    "a single factory that is no family": ({"optimizer": vtune.choice(["adamw"])}, optax.adagrad,
                                           r"the one optimizer 'adagrad'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_families_are_refused_before_compiling(case, data, compiles):
    space, optimizer, match = BAD[case]
    kw = {} if optimizer is None else {"optimizer": optimizer}
    task = vtune.tasks.mlp_classifier(data, hidden_sizes=(4,), batch_size=16, **kw)
    with pytest.raises(ValueError, match=match):
        vtune.population_search(task, space, population_size=2, generations=1,
                                steps_per_generation=1, verbose=False)
    assert sum(compiles.values()) == 0, dict(compiles)


def test_a_mapping_of_families_must_name_factories():
    with pytest.raises(TypeError, match="Task.optimizer"):
        vtune.tasks.mlp_classifier(optimizer={"adamw": 3})
    with pytest.raises(TypeError, match="Task.optimizer"):
        vtune.tasks.mlp_classifier(optimizer={})


# --- the checkpoint fingerprint ---------------------------------------------------------------

def test_the_fingerprint_covers_the_family_mapping(data):
    space = vtune.Space({"optimizer": vtune.choice(["fast", "slow"])})
    spec = SearchSpec.create(space)

    def identity(families):
        task = vtune.tasks.mlp_classifier(data, hidden_sizes=(4,), batch_size=16,
                                          optimizer=families)
        return spec.identity(task, build(task, space, 1).traced)

    a = identity({"fast": optax.adamw, "slow": vtune.sgdw})
    assert a["optimizer_families"] == {"fast": "optax._src.alias.adamw",
                                       "slow": "vtune.trial.optimizers.sgdw"}
    assert identity({"fast": optax.adam, "slow": vtune.sgdw}) != a
    assert identity({"fast": optax.adamw, "slow": optax.sgd}) != a
    assert identity({"fast": optax.adamw, "slow": vtune.sgdw}) == a
    # The default families of a one-factory task are named in it too.
    task = vtune.tasks.mlp_classifier(data, hidden_sizes=(4,), batch_size=16)
    default = vtune.Space({"optimizer": vtune.choice(["adamw", "rmsprop"])})
    ident = SearchSpec.create(default).identity(task, build(task, default, 1).traced)
    assert ident["optimizer_families"] == {"adamw": "optax._src.alias.adamw",
                                           "rmsprop": "optax._src.alias.rmsprop"}
