"""The strategy protocol and the truncation strategy."""

import numpy as np
import pytest

import vtune
from vtune.strategies import truncation

SPACE = vtune.Space({"learning_rate": vtune.loguniform(1e-4, 1.0),
                     "init": vtune.choice(["he_normal", "zeros"])})


def test_truncation_drops_the_worst_fraction_and_every_nan():
    s = truncation(fraction=0.25)
    state = s.init(0, SPACE, 8)
    state, configs = s.ask(state)
    scores = np.array([0.1, 0.8, np.nan, 0.3, 0.9, 0.2, 0.4, 0.5])
    state, dec = s.tell(state, scores, configs)
    # The worst 2 of 8 (NaN ranks worst), then every other NaN too.
    assert dec.fresh.tolist() == [False, False, True, False, True, False, False, False]
    _, dec3 = s.tell(state, np.array([np.nan, 0.8, np.nan, 0.3, 0.9, np.nan, 0.4, 0.5]), configs)
    assert np.flatnonzero(dec3.fresh).tolist() == [0, 2, 5]
    assert dec.parent.tolist() == list(range(8))
    kept = ~dec.fresh
    for name in SPACE.names:
        np.testing.assert_array_equal(dec.configs[name][kept], configs[name][kept])
        assert len(dec.configs[name]) == 8
    # Fresh samples continue the sequence rather than repeating the first draws.
    assert not np.isin(dec.configs["learning_rate"][dec.fresh], configs["learning_rate"]).any()


def test_truncation_is_deterministic_under_a_seed():
    def run(seed):
        s = truncation()
        state = s.init(seed, SPACE, 6)
        state, configs = s.ask(state)
        _, dec = s.tell(state, np.arange(6.0), configs)
        return dec.configs["learning_rate"]

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


@pytest.mark.parametrize("bad", [dict(fraction=0.0), dict(fraction=1.5), dict(method="lhs")])
def test_truncation_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match=str(list(bad.values())[0])):
        truncation(**bad)


def test_registry_lookup():
    assert vtune.strategies.get(None).name == vtune.strategies.DEFAULT
    custom = truncation(0.25)
    assert vtune.strategies.get(custom) is custom


# --- one-shot designs --------------------------------------------------------------

def test_random_and_quasi_random_keep_every_healthy_trial():
    for s in (vtune.strategies.random_search(), vtune.strategies.quasi_random()):
        state, configs = s.ask(s.init(0, SPACE, 4))
        state, dec = s.tell(state, np.array([0.9, 0.1, np.inf, 0.5]), configs)
        assert dec.fresh.tolist() == [False, False, True, False]
        assert dec.parent.tolist() == [0, 1, 2, 3]
    # quasi_random continues one Sobol sequence: the refill is point 4 of it.
    assert dec.configs["learning_rate"][2] == SPACE.sample(5, 0, "sobol")["learning_rate"][4]


def test_grid_fills_the_population_with_a_balanced_grid_then_sobol_points():
    space = vtune.Space({"x": vtune.uniform(0, 1), "y": vtune.loguniform(1e-3, 1e-1),
                         "c": vtune.choice(["a", "b"])})
    assert vtune.strategies.grid_counts(space, 20) == {"x": 3, "y": 3, "c": 2}
    s = vtune.strategies.grid()
    _, configs = s.ask(s.init(0, space, 20))
    assert len(configs["x"]) == 20
    grid18 = space.grid({"x": 3, "y": 3, "c": 2})
    np.testing.assert_array_equal(configs["x"][:18], grid18["x"])
    assert configs["c"].dtype == object
    # A grid larger than the population: a seeded subset of it.
    _, small = s.ask(s.init(0, space, 4))
    assert len(small["c"]) == 4 and set(small["c"]) <= {"a", "b"}


def test_grid_points_are_an_explicit_design():
    s = vtune.strategies.grid(points={"learning_rate": [0.1, 0.01], "init": ["zeros", "zeros"]})
    _, configs = s.ask(s.init(0, SPACE, 3))
    assert configs["learning_rate"][:2].tolist() == [0.1, 0.01]
    with pytest.raises(ValueError, match="do not fit"):
        s.init(0, SPACE, 1)
    with pytest.raises(ValueError, match="miss dimensions"):
        vtune.strategies.grid(points={"learning_rate": [0.1]}).init(0, SPACE, 2)
    with pytest.raises(ValueError, match="outside"):
        vtune.strategies.grid(points={"learning_rate": [5.0], "init": ["zeros"]}).init(0, SPACE, 2)


# --- successive halving ------------------------------------------------------------

def test_successive_halving_keeps_the_top_third_at_each_rung_and_refills_the_rest():
    s = vtune.strategies.successive_halving(eta=3, refine=0.0)
    state, configs = s.ask(s.init(0, SPACE, 9))
    scores = np.arange(9.0)[::-1]  # slot 8 best
    state, dec = s.tell(state, scores, configs)
    assert np.flatnonzero(~dec.fresh).tolist() == [6, 7, 8]
    assert state.age.tolist() == [0] * 6 + [1] * 3
    # Refills continue the Sobol sequence.
    np.testing.assert_array_equal(dec.configs["learning_rate"][:6],
                                  SPACE.sample(15, 0, "sobol")["learning_rate"][9:])
    # Next generation the refills reach rung 0 and meet the records of the first nine.
    state, dec = s.tell(state, np.array([0.5, 9, 9, 9, 9, 9, 5.0, 5.0, 5.0]), dec.configs)
    assert dec.fresh.tolist() == [False] + [True] * 5 + [False] * 3
    # The survivors of the first cohort reach rung 1 (age 3): of 3 records, 1 goes on.
    state, dec = s.tell(state, np.array([9, 0, 0, 0, 0, 0, 0.3, 0.2, 0.1]), dec.configs)
    assert dec.fresh[6:].tolist() == [True, True, False]


def test_successive_halving_refinements_start_near_a_survivor():
    s = vtune.strategies.successive_halving(eta=2, refine=1.0, radius=0.02)
    state, configs = s.ask(s.init(0, SPACE, 8))
    _, dec = s.tell(state, np.arange(8.0), configs)
    u = vtune.strategies.base.unit(SPACE, dec.configs)
    survivors = u[~dec.fresh]
    for point in u[dec.fresh]:
        assert np.min(np.abs(survivors[:, 0] - point[0])) < 0.1


def test_hyperband_brackets_prune_at_their_own_rungs():
    s = vtune.strategies.hyperband(eta=3, brackets=2)
    state, configs = s.ask(s.init(0, SPACE, 8))
    _, dec = s.tell(state, np.arange(8.0)[::-1], configs)
    assert not dec.fresh[1::2].any()  # bracket 1's first rung is at age 3
    assert dec.fresh[0::2].sum() == 2  # bracket 0: 4 trials at rung 0, 2 are above the cut


# --- PBT ---------------------------------------------------------------------------

def test_pbt_exploits_the_top_quantile_on_its_schedule():
    s = vtune.strategies.pbt(quantile=0.25, burn_in=2, ready=2)
    state, configs = s.ask(s.init(0, SPACE, 8))
    scores = np.arange(8.0)
    decisions = []
    for _ in range(4):
        state, dec = s.tell(state, scores, configs)
        decisions.append(dec)
        configs = dec.configs
    moved = [np.flatnonzero(d.parent != np.arange(8)).tolist() for d in decisions]
    assert moved[0] == [] and moved[2] == []  # before burn-in, then between ready points
    for d in (decisions[1], decisions[3]):
        assert np.flatnonzero(d.parent != np.arange(8)).tolist() == [6, 7]
        assert set(d.parent[[6, 7]]) <= {0, 1} and not d.fresh.any()


def test_pbt_quantile_rounds_up_and_never_exceeds_half():
    s = vtune.strategies.pbt(quantile=0.5)
    state, configs = s.ask(s.init(0, SPACE, 3))
    _, dec = s.tell(state, np.array([0.1, 0.3, 0.2]), configs)
    assert dec.parent.tolist() == [0, 0, 2]  # one of 3 replaced, by the best


def test_explore_perturbs_by_the_factors_resamples_and_clips():
    space = vtune.Space({"lr": vtune.loguniform(1e-3, 1.0), "n": vtune.intuniform(1, 10),
                         "c": vtune.choice(["a", "b", "c"]), "f": vtune.fixed(2)})
    configs = {"lr": np.full(200, 0.1), "n": np.full(200, 5), "c": np.full(200, "b", object),
               "f": np.full(200, 2), "train_fraction": np.full(200, 0.5)}
    rng = np.random.default_rng(0)
    new = vtune.strategies.explore(space, configs, rng, 0.0, (0.8, 1.2))
    assert set(np.round(new["lr"], 12)) == {0.08, 0.12}
    assert set(new["n"]) == {4, 6} and new["n"].dtype == configs["n"].dtype
    assert set(new["c"]) == {"a", "c"} and new["c"].dtype == object
    assert set(new["f"]) == {2} and set(new["train_fraction"]) == {0.5}
    top = vtune.strategies.explore(space, {**configs, "lr": np.full(200, 1.0)}, rng, 0.0, (1.2,))
    assert set(top["lr"]) == {1.0}  # clipped to the space
    redrawn = vtune.strategies.explore(space, configs, rng, 1.0)
    assert len(set(redrawn["lr"])) > 100 and np.all((redrawn["lr"] >= 1e-3) & (redrawn["lr"] <= 1))


def test_pbt_checks_its_initial_configs():
    s = vtune.strategies.pbt(initial={"learning_rate": [0.1, 0.2], "init": ["zeros", "zeros"]})
    with pytest.raises(ValueError, match="one value per slot"):
        s.init(0, SPACE, 3)
    _, configs = s.ask(s.init(0, SPACE, 2))
    assert configs["learning_rate"].tolist() == [0.1, 0.2]


# --- coarse to fine ----------------------------------------------------------------

def test_coarse_to_fine_shrinks_around_the_top_k_and_raises_the_data_share():
    space = vtune.Space({"lr": vtune.loguniform(1e-4, 1.0), "c": vtune.choice(["a", "b", "c"])})
    s = vtune.strategies.coarse_to_fine(stage_generations=(1, 2), train_fractions=(0.25, 0.5, 1.0),
                                        top_k=2, shrink=0.5)
    state, configs = s.ask(s.init(0, space, 16))
    assert set(configs["train_fraction"]) == {0.25}
    scores = np.abs(np.log10(configs["lr"]) + 2)  # best near lr = 1e-2
    state, dec = s.tell(state, scores, configs)
    top = np.argsort(scores)[:2]
    assert np.flatnonzero(~dec.fresh).tolist() == sorted(top.tolist())
    assert set(dec.configs["train_fraction"]) == {0.5}
    u = space.encode({"lr": dec.configs["lr"], "c": dec.configs["c"]})[:, 0]
    assert state.hi[0] - state.lo[0] == pytest.approx(0.5)
    assert np.all((u >= state.lo[0] - 1e-12) & (u <= state.hi[0] + 1e-12))
    assert set(dec.configs["c"][dec.fresh]) <= set(configs["c"][top])
    state, dec2 = s.tell(state, scores, dec.configs)  # mid-stage: everything keeps training
    assert not dec2.fresh.any() and state.stage == 1
    state, dec3 = s.tell(state, scores, dec2.configs)
    assert state.stage == 2 and set(dec3.configs["train_fraction"]) == {1.0}


def test_coarse_to_fine_refuses_a_space_that_sets_train_fraction():
    with pytest.raises(ValueError, match="train_fraction"):
        vtune.strategies.coarse_to_fine().init(0, vtune.Space({"train_fraction":
                                                               vtune.uniform(0.1, 1.0)}), 4)
    with pytest.raises(ValueError, match="one value per stage"):
        vtune.strategies.coarse_to_fine(stage_generations=(1,), train_fractions=(1.0,))


# --- model-based refill ------------------------------------------------------------

def test_tpe_prefers_the_good_category_and_region():
    from vtune.strategies import tpe

    rng = np.random.default_rng(0)
    x = rng.random((60, 2))
    x[:, 1] = (np.floor(x[:, 1] * 3) + 0.5) / 3  # a 3-option choice
    scores = (x[:, 0] - 0.7) ** 2 + (x[:, 1] > 0.2) * 0.5  # option 0 good, 1 and 2 bad
    u = tpe.propose(x, scores, 20, rng, np.array([0, 3]))
    assert np.mean(u[:, 1] < 1 / 3) > 0.7
    assert abs(np.median(u[:, 0]) - 0.7) < 0.15
    assert not tpe.ready(np.array([0.1] * 5 + [np.nan] * 10), 2)


def test_tpe_ranks_by_fidelity_first_and_keeps_at_most_max_good():
    from vtune.strategies import tpe

    rng = np.random.default_rng(1)
    # Region 0.2: short-trained trials with low scores; region 0.8: trials that trained
    # further (level 1) with higher ones. Fidelity ranks first, as Optuna ranks pruned trials.
    x = np.concatenate([0.2 + 0.02 * rng.standard_normal(40), 0.8 + 0.02 * rng.standard_normal(10)])
    scores = np.concatenate([np.full(40, 0.1), np.full(10, 0.5)])
    levels = np.concatenate([np.zeros(40, int), np.ones(10, int)])
    u = tpe.propose(x[:, None], scores, 20, rng, np.array([0]), levels=levels)
    assert np.all(np.abs(u[:, 0] - 0.8) < 0.15)
    flat = tpe.propose(x[:, None], scores, 20, rng, np.array([0]))  # one fidelity
    assert np.all(np.abs(flat[:, 0] - 0.2) < 0.15)
    # The good set: 10% of the observations, at most max_good. With one good point only,
    # every candidate is drawn around the single best observation.
    best_one = tpe.propose(np.linspace(0, 1, 50)[:, None], np.linspace(0, 1, 50), 10, rng,
                           np.array([0]), max_good=1)
    assert np.all(best_one[:, 0] < 0.15)


def test_bohb_observations_move_to_the_furthest_rung_each_trial_reached():
    s = vtune.strategies.bohb(eta=2, refine=0.0)
    state, configs = s.ask(s.init(0, SPACE, 4))
    scores = np.array([0.4, 0.1, 0.3, 0.2])
    state, dec = s.tell(state, scores, configs)  # rung 0 (age 1): slots 1 and 3 continue
    assert state.observed_levels[:4].tolist() == [0, 0, 0, 0]
    np.testing.assert_array_equal(state.observed_scores[:4], scores)
    first_ids = state.observed_ids[:4].copy()
    state, dec = s.tell(state, np.array([0.9, 0.05, 0.8, 0.15]), dec.configs)
    # Slots 1 and 3 reached rung 1 (age 2): their own entries moved up, with the new scores;
    # slots 0 and 2 hold new trials, which add entries of their own at their first rung.
    assert state.observed_levels[:4].tolist() == [0, 1, 0, 1]
    np.testing.assert_array_equal(state.observed_scores[:4], [0.4, 0.05, 0.3, 0.15])
    np.testing.assert_array_equal(state.observed_ids[:4], first_ids)
    assert state.observed_levels[4:6].tolist() == [0, 0]
    np.testing.assert_array_equal(state.observed_scores[4:6], [0.9, 0.8])
    assert len(set(state.observed_ids[:6].tolist())) == 6


def test_bohb_refills_from_the_model_once_it_has_observations():
    a, b = vtune.strategies.bohb(refine=0.0), vtune.strategies.successive_halving(refine=0.0)
    decs = []
    for s in (a, b):
        state, configs = s.ask(s.init(0, SPACE, 16))
        decs.append(s.tell(state, np.abs(np.log10(configs["learning_rate"]) + 2), configs)[1])
    assert decs[0].fresh.tolist() == decs[1].fresh.tolist()
    fresh = decs[0].fresh
    assert not np.array_equal(decs[0].configs["learning_rate"][fresh],
                              decs[1].configs["learning_rate"][fresh])
    # The model's proposals sit closer to the optimum (1e-2) than the Sobol points.
    dist = [np.median(np.abs(np.log10(d.configs["learning_rate"][fresh]) + 2)) for d in decs]
    assert dist[0] < dist[1]


def test_optuna_samplers_propose_refills_near_the_good_region():
    pytest.importorskip("optuna")
    from vtune.strategies import optuna_model

    rng = np.random.default_rng(0)
    x = rng.random((60, 2))
    x[:, 1] = (np.floor(x[:, 1] * 3) + 0.5) / 3  # a 3-option choice
    scores = (x[:, 0] - 0.7) ** 2 + (x[:, 1] > 0.2) * 0.5  # option 0 good
    u = optuna_model.propose(x, scores, 16, rng, np.array([0, 3]))
    assert set(np.round(u[:, 1] * 6).astype(int)) <= {1, 3, 5}  # category centres
    assert np.mean(u[:, 1] < 1 / 3) > 0.6 and abs(np.median(u[:, 0]) - 0.7) < 0.2
    with pytest.raises(ValueError, match="unknown Optuna sampler"):
        optuna_model.propose(x, scores, 1, rng, np.array([0, 3]), sampler="anneal")
    # Through the strategy: refills come from it once there are observations.
    a = vtune.strategies.bohb(model="optuna_tpe", refine=0.0)
    state, configs = a.ask(a.init(0, SPACE, 16))
    state, dec = a.tell(state, np.abs(np.log10(configs["learning_rate"]) + 2), configs)
    b = vtune.strategies.successive_halving(refine=0.0)
    state_b, configs_b = b.ask(b.init(0, SPACE, 16))
    _, dec_b = b.tell(state_b, np.abs(np.log10(configs_b["learning_rate"]) + 2), configs_b)
    dist = [np.median(np.abs(np.log10(d.configs["learning_rate"][d.fresh]) + 2))
            for d in (dec, dec_b)]
    assert dist[0] < dist[1]


def test_an_optuna_model_without_optuna_is_refused_when_configured(monkeypatch):
    from vtune.strategies import optuna_model

    monkeypatch.setattr(optuna_model, "missing", lambda: "Optuna is not installed")
    with pytest.raises(ImportError, match="Optuna is not installed"):
        vtune.strategies.successive_halving(model="optuna_tpe")
    with pytest.raises(ValueError, match="unknown model"):
        vtune.strategies.successive_halving(model="smac")
