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
