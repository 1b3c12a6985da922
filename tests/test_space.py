import dataclasses
import doctest
import json
import warnings

import numpy as np
import pytest

import vtune.space
from vtune.space import (
    Choice,
    Fixed,
    IntUniform,
    LogUniform,
    Space,
    Uniform,
    choice,
    fixed,
    intuniform,
    loguniform,
    uniform,
)


def make_space():
    return Space({
        "lr": loguniform(1e-4, 1.0),
        "width": intuniform(8, 512, log=True),
        "depth": intuniform(1, 4),
        "opt": choice(["adam", "sgd", "lion"]),
        "dropout": uniform(0.0, 0.5),
        "act": fixed("relu"),
    })


def test_doctests_pass():
    from vtune.space import distributions, space  # the package's modules
    results = [doctest.testmod(m) for m in (distributions, space)]
    assert sum(r.attempted for r in results) > 5
    assert sum(r.failed for r in results) == 0


# --- distributions -------------------------------------------------------------

@pytest.mark.parametrize("dist, values", [
    (uniform(-2.0, 3.0), [-2.0, -0.5, 0.0, 2.9, 3.0]),
    (loguniform(1e-4, 1.0), [1e-4, 3e-3, 0.5, 1.0]),
    (intuniform(-3, 5), [-3, 0, 4, 5]),
    (intuniform(1, 1000, log=True), [1, 2, 31, 999, 1000]),
    (choice(["a", "b", 7]), ["b", 7, "a"]),
    (choice([0.1, 2, 3.5]), [3.5, 0.1, 2]),
    (choice([True, False]), [False, True]),
])
def test_encode_decode_round_trip(dist, values):
    u = dist.encode(np.asarray(values, dtype=object if isinstance(dist, Choice) else None))
    assert u.shape == (len(values),) and np.all((u >= 0) & (u <= 1))
    back = dist.decode(u)
    if isinstance(dist, (Uniform, LogUniform)):
        np.testing.assert_allclose(back, values, rtol=1e-12)
    else:
        assert list(back) == values
    # Encoding the decoded values is stable too.
    np.testing.assert_allclose(dist.encode(back), u)


def test_continuous_decode_endpoints_and_dtype():
    u = np.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(uniform(2, 4).decode(u), [2, 3, 4])
    np.testing.assert_allclose(loguniform(1e-4, 1).decode(u), [1e-4, 1e-2, 1.0])
    assert uniform(2, 4).decode(u).dtype == np.float64
    assert intuniform(0, 9).decode(u).dtype == np.int64


def test_fixed_decode_and_encode():
    assert Fixed("adam").decode(np.zeros(2)).tolist() == ["adam", "adam"]
    np.testing.assert_array_equal(fixed(3).encode([3, 3.0]), [0.5, 0.5])


def test_is_log():
    assert loguniform(1, 2).is_log and intuniform(1, 9, log=True).is_log
    assert not any(d.is_log for d in (uniform(1, 2), intuniform(1, 9), choice([1]), fixed(1)))


def test_loguniform_is_uniform_in_log_space():
    x = Space({"x": loguniform(1e-4, 1.0)}).sample(20_000, seed=0)["x"]
    assert x.min() >= 1e-4 and x.max() <= 1.0
    assert 0.8e-2 < np.median(x) < 1.25e-2
    # Each decade holds about a quarter of the mass.
    counts = np.histogram(np.log10(x), bins=[-4, -3, -2, -1, 0])[0]
    np.testing.assert_allclose(counts / len(x), 0.25, atol=0.02)


def test_uniform_median():
    x = Space({"x": uniform(10, 20)}).sample(20_000, seed=0)["x"]
    assert 14.8 < np.median(x) < 15.2


def test_intuniform_covers_every_integer_equally():
    x = Space({"k": intuniform(-2, 3)}).sample(6000, seed=1)["k"]
    assert x.dtype == np.int64
    values, counts = np.unique(x, return_counts=True)
    assert list(values) == [-2, -1, 0, 1, 2, 3]
    np.testing.assert_allclose(counts / len(x), 1 / 6, atol=0.02)


def test_intuniform_single_value_and_unit_edges():
    assert list(intuniform(4, 4).decode(np.array([0.0, 0.5, 1.0]))) == [4, 4, 4]
    assert list(intuniform(1, 10).decode(np.array([0.0, 1.0]))) == [1, 10]
    assert list(intuniform(1, 10, log=True).decode(np.array([0.0, 1.0]))) == [1, 10]


def test_log_intuniform_bounds_and_skew():
    x = Space({"k": intuniform(1, 1000, log=True)}).sample(20_000, seed=2)["k"]
    assert x.min() == 1 and x.max() == 1000
    # log-uniform on [1, 1001): median near sqrt(1001), far below the linear 500.
    assert 25 < np.median(x) < 40
    assert set(range(1, 11)) <= set(x.tolist())


def test_choice_covers_every_option():
    x = Space({"c": choice(["a", "b", "c", "d"])}).sample(400, seed=3)["c"]
    assert x.dtype == object and set(x) == {"a", "b", "c", "d"}
    y = Space({"c": choice([1, 2.5])}).sample(50, seed=3)["c"]
    assert y.dtype == np.float64 and set(y) == {1.0, 2.5}


def test_choice_encode_is_cell_centre():
    np.testing.assert_allclose(choice(["a", "b"]).encode(["b", "a"]), [0.75, 0.25])
    np.testing.assert_allclose(intuniform(0, 3).encode([0, 3]), [0.125, 0.875])


def test_distributions_are_frozen_and_normalised():
    d = uniform(0, 1)
    assert isinstance(d.lo, float) and d == Uniform(0.0, 1.0) and d != LogUniform(0.5, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.lo = 0.5
    assert choice(np.array([1, 2])).options == (1, 2)
    assert type(choice(np.array([1, 2])).options[0]) is int
    assert IntUniform(np.int64(1), 3).lo == 1 and fixed(np.float64(0.5)) == Fixed(0.5)


# --- space ---------------------------------------------------------------------

def test_space_mapping_behaviour():
    src = {"a": uniform(0, 1), "b": fixed(2), "c": choice([1, 2])}
    s = Space(src)
    src["d"] = fixed(3)  # the space keeps its own copy
    assert s.names == ("a", "b", "c") and s.dims == ("a", "c")
    assert len(s) == 3 and list(s) == ["a", "b", "c"] and "b" in s and "d" not in s
    assert s["c"] == Choice((1, 2))
    assert Space.coerce(s) is s and Space.coerce({"a": uniform(0, 1)}) == Space({"a": uniform(0, 1)})
    assert s != Space({"c": choice([1, 2]), "b": fixed(2), "a": uniform(0, 1)})  # order matters
    assert s == Space(dict(s)) and hash(s) == hash(Space(dict(s)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.dists = {}
    with pytest.raises(TypeError):
        s.dists["a"] = fixed(1)


def test_sample_shapes_and_fixed_values():
    s = make_space()
    for method in ("random", "sobol", "halton"):
        c = s.sample(7, seed=0, method=method)
        assert list(c) == list(s.names) and all(len(v) == 7 for v in c.values())
        assert list(c["act"]) == ["relu"] * 7
        assert np.all((c["lr"] >= 1e-4) & (c["lr"] <= 1.0))
        assert np.all((c["width"] >= 8) & (c["width"] <= 512))


@pytest.mark.parametrize("method", ["random", "sobol", "halton"])
def test_sample_deterministic_and_seed_dependent(method):
    s = make_space()
    a, b, c = (s.sample(16, seed=k, method=method) for k in (5, 5, 6))
    for k in s.dims:
        assert np.array_equal(a[k], b[k])
    assert not np.array_equal(a["lr"], c["lr"])


@pytest.mark.parametrize("method", ["sobol", "halton"])
def test_skip_continues_the_sequence(method):
    s = make_space()
    first, second = s.sample(4, 9, method, skip=0), s.sample(4, 9, method, skip=4)
    whole = s.sample(8, 9, method)
    for k in s.names:
        assert np.array_equal(np.concatenate([first[k], second[k]]), whole[k]), k


def test_random_skip_gives_a_new_stream():
    s = Space({"x": uniform(0, 1)})
    assert not np.array_equal(s.sample(4, 0)["x"], s.sample(4, 0, skip=4)["x"])


def test_sobol_fills_the_cube_evenly():
    u = Space({"x": uniform(0, 1), "y": uniform(0, 1)}).encode(
        Space({"x": uniform(0, 1), "y": uniform(0, 1)}).sample(64, 0, "sobol"))
    # A (0, m, 2) net: every 1/8 x 1/8 cell holds exactly one point.
    cells = {(int(a * 8), int(b * 8)) for a, b in u}
    assert len(set(int(a * 8) for a, _ in u)) == 8 and len(cells) == 64


def test_sobol_non_power_of_two_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_space().sample(5, 0, "sobol")
        make_space().sample(3, 0, "sobol", skip=5)


def test_all_fixed_space():
    s = Space({"a": fixed(1), "b": fixed("x")})
    assert s.dims == ()
    for method in ("random", "sobol", "halton"):
        c = s.sample(3, 0, method)
        assert list(c["a"]) == [1, 1, 1] and list(c["b"]) == ["x"] * 3
    assert s.encode(c).shape == (3, 0)
    assert {k: list(v) for k, v in s.grid(5).items()} == {"a": [1], "b": ["x"]}


def test_space_encode_decode_round_trip():
    s = make_space()
    c = s.sample(32, seed=4, method="halton")
    u = s.encode(c)
    assert u.shape == (32, 5) and np.all((u >= 0) & (u <= 1))
    back = s.decode(u)
    for k in s.names:
        if k in ("lr", "dropout"):
            np.testing.assert_allclose(back[k], c[k], rtol=1e-12)
        else:
            assert np.array_equal(back[k], c[k]), k
    # Fixed names are optional in encode and checked when present.
    assert np.array_equal(s.encode({k: v for k, v in c.items() if k != "act"}), u)


def test_clip():
    np.testing.assert_array_equal(Space.clip(np.array([[-0.5, 0.3, 1.5]])), [[0.0, 0.3, 1.0]])


def test_grid_sizes_and_values():
    s = Space({"x": uniform(0, 1), "k": intuniform(0, 9), "c": choice(["a", "b", "c"]),
               "f": fixed(0)})
    g = s.grid(2)
    assert all(len(v) == 2 * 2 * 3 for v in g.values())
    assert list(g["x"][:6]) == [0.25] * 6 and list(g["x"][6:]) == [0.75] * 6
    assert sorted(set(g["k"].tolist())) == [2, 7]
    assert list(g["c"][:3]) == ["a", "b", "c"]
    assert set(g["f"]) == {0}
    g = s.grid({"x": 4, "k": 10, "c": 1})
    assert len(g["x"]) == 40 and sorted(set(g["k"].tolist())) == list(range(10))
    assert set(g["c"]) == {"b"}
    np.testing.assert_allclose(sorted(set(g["x"])), [0.125, 0.375, 0.625, 0.875])


def test_json_round_trip():
    s = Space({
        "lr": loguniform(1e-4, 0.3), "wd": uniform(-1, 1e-7), "k": intuniform(2, 64, log=True),
        "j": intuniform(-5, 5), "c": choice(["a", 1, 2.5, False]), "f": fixed(0.1),
        "g": fixed("x"),
    })
    spec = s.to_json()
    assert spec["lr"] == {"type": "loguniform", "lo": 1e-4, "hi": 0.3}
    assert spec["k"] == {"type": "intuniform", "lo": 2, "hi": 64, "log": True}
    restored = Space.from_json(json.loads(json.dumps(spec)))
    assert restored == s and list(restored) == list(s)
    assert restored["c"].options == ("a", 1, 2.5, False)
    assert [type(o) for o in restored["c"].options] == [str, int, float, bool]


# --- bad inputs ----------------------------------------------------------------

S = make_space()
BAD = [
    (lambda: loguniform(-1.0, 1.0), ValueError, r"lo must be > 0, got -1\.0"),
    (lambda: loguniform(1.0, 0.5), ValueError, r"lo=1\.0, hi=0\.5"),
    (lambda: uniform(0, float("inf")), ValueError, r"got inf"),
    (lambda: uniform(1.0, 1.0), ValueError, r"hi must be > lo, got lo=1\.0, hi=1\.0"),
    (lambda: fixed(3).encode([3, 4]), ValueError, r"got 4"),
    (lambda: uniform("0", 1), TypeError, r"got '0'"),
    (lambda: intuniform(1.5, 3), TypeError, r"got 1\.5"),
    (lambda: intuniform(5, 2), ValueError, r"lo=5, hi=2"),
    (lambda: intuniform(0, 10, log=True), ValueError, r"lo >= 1, got lo=0"),
    (lambda: choice([]), ValueError, r"non-empty, got \(\)"),
    (lambda: choice(["a", "b", "a"]), ValueError, r"duplicate option 'a'"),
    (lambda: choice([1, True]), ValueError, r"duplicate option True"),
    (lambda: choice([1, [2]]), TypeError, r"got \[2\]"),
    (lambda: choice("abc"), TypeError, r"got 'abc'"),
    (lambda: fixed(None), TypeError, r"got None"),
    (lambda: fixed(float("nan")), ValueError, r"got nan"),
    (lambda: Space({}), ValueError, r"got \{\}"),
    (lambda: Space({"lr": 0.1}), TypeError, r"vtune\.fixed\(0\.1\)"),
    (lambda: Space({"opt": "adam"}), TypeError, r"vtune\.fixed\('adam'\)"),
    (lambda: Space({"opt": ["a", "b"]}), TypeError, r"vtune\.choice\(\['a', 'b'\]\)"),
    (lambda: Space({"2x": uniform(0, 1)}), ValueError, r"got '2x'"),
    (lambda: Space({"": uniform(0, 1)}), ValueError, r"got ''"),
    (lambda: S.sample(0, 0), ValueError, r"n must be >= 1, got 0"),
    (lambda: S.sample(4, 0, method="lhs"), ValueError, r"'lhs'"),
    (lambda: S.sample(4, 0, skip=-1), ValueError, r"got -1"),
    (lambda: S.sample(4, -3), ValueError, r"got -3"),
    (lambda: S.grid(0), ValueError, r"got 0"),
    (lambda: S.grid({"nope": 2}), ValueError, r"'nope'"),
    (lambda: S.grid({"act": 2}), ValueError, r"'act'"),
    (lambda: S.grid({"lr": 2}), ValueError, r"dimension 'width'"),
    (lambda: S.decode(np.zeros((2, 3))), ValueError, r"\(2, 3\)"),
    (lambda: S.decode(np.full((1, 5), 1.5)), ValueError, r"got 1\.5"),
    (lambda: S.encode({"lr": [0.1]}), ValueError, r"'width'"),
    (lambda: S.encode({**S.sample(2, 0), "bogus": [1, 2]}), ValueError, r"'bogus'"),
    (lambda: S.encode({**S.sample(2, 0), "act": ["tanh"] * 2}), ValueError, r"'tanh'"),
    (lambda: S.encode({**S.sample(2, 0), "lr": [0.1]}), ValueError, r"\(1,\)"),
    (lambda: choice(["adam", "sgd"]).encode(["rmsprop"]), ValueError, r"'rmsprop'"),
    (lambda: intuniform(0, 9).encode([2.5]), ValueError, r"2\.5 is not an integer"),
    (lambda: uniform(0, 1).encode([1.5]), ValueError, r"value 1\.5 outside"),
    (lambda: loguniform(1e-3, 1).encode([0.0]), ValueError, r"value 0\.0 outside"),
    (lambda: Space.from_json({"x": {"type": "beta", "a": 1}}), ValueError, r"'beta'"),
]


@pytest.mark.parametrize("call, exc, match", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
