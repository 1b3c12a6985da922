"""One conformance suite over the whole strategy registry.

Pure checks drive ``init``/``ask``/``tell`` with synthetic scores (NaN, +inf
and -inf included); the search checks run every strategy through
``population_search`` on the tiny task and count traces of the compiled
program.
"""

import dataclasses

import numpy as np
import pytest

import vtune
from vtune.program import build
from vtune.strategies import REGISTRY

NAMES = sorted(REGISTRY)
SPACE = vtune.Space({
    "learning_rate": vtune.loguniform(1e-3, 1e-1),
    "dropout": vtune.uniform(0.0, 0.5),
    "init": vtune.choice(["he_normal", "xavier_uniform", "lecun_normal"]),
    "weight_decay": vtune.fixed(1e-4),
})
P, TELLS = 8, 10


def scores_for(generation: int, size: int = P) -> np.ndarray:
    """Synthetic scores: random, with a NaN, a +inf and a -inf in even generations."""
    s = np.random.default_rng(generation).random(size)
    if generation % 2 == 0 and size >= 3:
        s[[generation % size, (generation + 1) % size, (generation + 2) % size]] = \
            [np.nan, np.inf, -np.inf]
    return s


def drive(name, seed=0, size=P, tells=TELLS, scores=scores_for):
    """``(states, configs, decisions)`` of ``tells`` rounds of one strategy."""
    s = REGISTRY[name]()
    state = s.init(seed, SPACE, size)
    states = [state]
    state, configs = s.ask(state)
    states.append(state)
    all_configs, decisions = [configs], []
    for g in range(tells):
        state, dec = s.tell(state, scores(g, size), configs)
        states.append(state)
        decisions.append(dec)
        configs = dec.configs
        all_configs.append(configs)
    return states, all_configs, decisions


def leaves(state):
    """``{field: (type, shape, dtype)}`` of a state, nested dataclasses flattened."""
    out = {}
    for f in dataclasses.fields(state):
        v = getattr(state, f.name)
        if dataclasses.is_dataclass(v):
            out.update({f"{f.name}.{k}": x for k, x in leaves(v).items()})
        elif isinstance(v, np.ndarray):
            out[f.name] = (np.ndarray, v.shape, v.dtype)
        else:
            out[f.name] = (type(v), None, None)
    return out


def checkpointable(value) -> bool:
    if isinstance(value, (bool, int, float, str, np.ndarray, vtune.Space)):
        return not isinstance(value, np.ndarray) or value.dtype != object
    if isinstance(value, tuple):
        return all(checkpointable(v) for v in value)
    if dataclasses.is_dataclass(value):
        return all(checkpointable(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


@pytest.mark.parametrize("name", NAMES)
def test_state_is_checkpointable_with_stable_shapes_and_dtypes(name):
    states, configs, _ = drive(name)
    first = leaves(states[0])
    for state in states:
        assert type(state) is type(states[0])
        assert dataclasses.is_dataclass(state) and state.__dataclass_params__.frozen
        assert checkpointable(state), f"{name}: a state field is not checkpointable: {state}"
        assert leaves(state) == first
        assert sum(isinstance(getattr(state, f.name), vtune.Space)
                   for f in dataclasses.fields(state)) <= 1
    # Configs keep their names and dtypes too (the driver re-encodes them every generation).
    kinds = {k: v.dtype for k, v in configs[0].items()}
    for c in configs:
        assert {k: v.dtype for k, v in c.items()} == kinds


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [1, 2, P])
def test_decisions_keep_the_population_full_and_in_range(name, size):
    _, configs, decisions = drive(name, size=size)
    assert all(len(v) == size for v in configs[0].values())
    for dec, c in zip(decisions, configs[1:]):
        assert dec.parent.shape == (size,) and np.issubdtype(dec.parent.dtype, np.integer)
        assert dec.fresh.shape == (size,) and dec.fresh.dtype == bool
        assert np.all((dec.parent >= 0) & (dec.parent < size))
        assert set(c) >= set(SPACE.names)
        assert all(len(v) == size for v in c.values())
        SPACE.encode({k: c[k] for k in SPACE.names})  # raises on a value outside the space
        if "train_fraction" in c:
            assert np.all((c["train_fraction"] > 0) & (c["train_fraction"] <= 1))
        assert set(c) <= set(SPACE.names) | {"train_fraction"}


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_scores_rank_worst_and_are_never_kept_or_cloned(name):
    _, configs, decisions = drive(name)
    for g, dec in enumerate(decisions):
        s = scores_for(g)
        bad = ~np.isfinite(s)
        kept = ~dec.fresh
        # A diverged trial leaves its slot, and no slot continues it.
        assert not np.any(kept & (dec.parent == np.arange(P)) & bad), (g, s, dec)
        assert not np.any(kept & bad[dec.parent]), (g, s, dec)
        if g == 0:  # -inf is not "best": the best finite trial keeps training in its slot
            best = int(np.nanargmin(np.where(bad, np.nan, s)))
            assert kept[best] and dec.parent[best] == best, (s, dec)


@pytest.mark.parametrize("name", NAMES)
def test_all_diverged_starts_every_slot_afresh(name):
    _, configs, decisions = drive(name, tells=2, scores=lambda g, n: np.full(n, np.nan))
    for dec in decisions:
        assert dec.fresh.all()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_a_seed(name):
    def flat(seed):
        _, configs, decisions = drive(name, seed=seed)
        return [(d.parent.tolist(), d.fresh.tolist()) for d in decisions], \
            [{k: v.tolist() for k, v in c.items()} for c in configs]

    assert flat(3) == flat(3)
    assert flat(3)[1] != flat(4)[1]


@pytest.mark.parametrize("name", NAMES)
def test_settings_are_checked(name):
    factory = REGISTRY[name]
    bad = {"random": dict(method="lhs"), "quasi_random": dict(method="random"),
           "grid": dict(counts=0), "truncation": dict(fraction=1.0),
           "successive_halving": dict(eta=1), "hyperband": dict(brackets=0),
           "pbt": dict(quantile=0.75), "coarse_to_fine": dict(shrink=0.0),
           "bohb": dict(radius=2.0)}[name]
    with pytest.raises(ValueError, match=list(bad)[0]):
        factory(**bad)


# --- through the driver ------------------------------------------------------------

STEPS = 4


@pytest.fixture(scope="module")
def searches(tiny_task):
    """Every strategy searched twice with one seed and once with another."""
    program = build(tiny_task, SPACE, STEPS)[0]
    before = program.traces.copy()

    def run(name, seed):
        return vtune.population_search(tiny_task, SPACE, population_size=P, generations=5,
                                       steps_per_generation=STEPS, seed=seed, strategy=name,
                                       verbose=False)

    out = {name: (run(name, 0), run(name, 0), run(name, 1)) for name in NAMES}
    return out, program.traces - before


def test_the_train_program_compiles_once_for_the_whole_registry(searches):
    _, traces = searches
    assert traces["train"] <= 1 and traces["refill"] <= 1 and traces["init"] <= 1, traces


def test_new_values_and_decisions_do_not_recompile(searches, tiny_task, compiles):
    for name in ("pbt", "coarse_to_fine"):
        vtune.population_search(tiny_task, SPACE, population_size=P, generations=3,
                                steps_per_generation=STEPS, seed=7, strategy=name,
                                verbose=False)
    assert compiles["_train"] == 0 and compiles["_refill"] == 0 and compiles["_init"] == 0


def stripped(history):
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in history]


@pytest.mark.parametrize("name", NAMES)
def test_search_is_deterministic_and_its_history_consistent(searches, name):
    a, b, c = searches[0][name]
    assert stripped(a.history) == stripped(b.history)
    assert [r["val_loss"] for r in a.history] != [r["val_loss"] for r in c.history]
    rows = {(r["generation"], r["trial_id"]): r for r in a.history}
    for g in range(5):
        gen = [r for r in a.history if r["generation"] == g]
        assert sorted(r["slot"] for r in gen) == list(range(P))  # the population stays full
    first = {}
    for r in a.history:
        first.setdefault(r["trial_id"], r)
    for t, r in first.items():
        if r["parent_id"] >= 0:  # a clone: its parent was alive one generation before
            parent = rows[(r["generation"] - 1, r["parent_id"])]
            assert parent["status"] != "diverged"
            assert r["step"] == parent["step"] + STEPS
        elif r["generation"] > 0:
            assert r["step"] == STEPS
