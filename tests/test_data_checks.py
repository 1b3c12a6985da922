"""Bad data is refused when the Dataset is built, in words that name the split and the values."""

import numpy as np
import pytest

import vtune
from vtune.datasets import Dataset


def split(n=8, d=3, labels=(0, 1, 2, 1), dtype=np.int32):
    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    y = np.resize(np.asarray(labels, dtype), n)
    return x, y


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["train", "val"])
def test_non_finite_inputs_are_refused_naming_split_and_count(bad, where):
    x, y = split()
    xt, xv = x.copy(), x.copy()
    target = xt if where == "train" else xv
    target[1, 0] = target[5, 2] = bad
    with pytest.raises(ValueError, match=rf"x_{where} has 2 non-finite values"):
        Dataset(xt, y, xv, y)


def test_non_finite_regression_targets_are_refused():
    x, _ = split()
    y = np.linspace(0, 1, len(x)).astype(np.float32)
    yv = y.copy()
    yv[3] = np.nan
    with pytest.raises(ValueError, match=r"y_val has 1 non-finite value"):
        Dataset(x, y, x, yv)


def test_negative_integer_labels_are_refused():
    x, y = split(labels=(0, 1, -1, 2))
    with pytest.raises(ValueError, match=r"y_train.*negative.*-1"):
        Dataset(x, y, x, np.abs(y))
    with pytest.raises(ValueError, match=r"y_val.*negative.*-1"):
        Dataset(x, np.abs(y), x, y)


def test_num_classes_refuses_float_targets_and_class_labels_follow_the_dtype():
    x, y = split()
    labels = Dataset(x, y, x, y)
    assert labels.has_class_labels and labels.num_classes == 3
    reg = Dataset(x, y.astype(np.float32) * 0.5, x, y.astype(np.float32))
    assert not reg.has_class_labels
    with pytest.raises(ValueError, match=r"num_classes.*float32.*not integer class labels"):
        reg.num_classes


def test_one_class_data_is_a_legitimate_regression_set_but_not_a_classification_one():
    x, _ = split()
    y = np.zeros(len(x), np.int32)
    data = Dataset(x, y, x, y)  # a constant integer target: fine as data
    with pytest.raises(ValueError, match=r"y_train has 1 distinct class.*at least 2"):
        data.check_labels()
    reg = Dataset(x, np.ones(len(x), np.float32), x, np.ones(len(x), np.float32))
    with pytest.raises(ValueError, match=r"integer class labels.*float32"):
        reg.check_labels()


def test_check_labels_against_the_model_outputs():
    x, y = split(labels=(0, 1, 2, 3))
    data = Dataset(x, y, x, np.minimum(y, 4))
    data.check_labels()
    data.check_labels(num_outputs=4)
    with pytest.raises(ValueError, match=r"label 3.*y_train.*3 outputs"):
        data.check_labels(num_outputs=3)
    x, y = split(labels=(0, 1))
    yv = y.copy()
    yv[0] = 5
    with pytest.raises(ValueError, match=r"label 5.*y_val.*2 outputs"):
        Dataset(x, y, x, yv).check_labels(num_outputs=2)


def test_bundled_sets_pass_every_check():
    for data in (vtune.datasets.digits(), vtune.datasets.synthetic(num_examples=40)):
        assert data.has_class_labels
        data.check_labels(num_outputs=data.num_classes)


def test_friedman1_targets_are_the_textbook_formula():
    """Without noise, the targets are Friedman's function of the uniform inputs drawn here."""
    data = vtune.datasets.friedman1(num_examples=300, num_features=7, noise=0.0, seed=4)
    x = np.random.default_rng(4).uniform(size=(300, 7))
    y = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3]
         + 5 * x[:, 4])
    got = np.sort(np.concatenate([data.y_train, data.y_val]))
    np.testing.assert_allclose(got, np.sort(y), rtol=1e-6)
    assert data.x_train.shape == (225, 7) and data.y_train.dtype == np.float32
    assert abs(data.x_train.mean()) < 1e-5  # standardized with the training statistics


def test_teacher_student_targets_are_the_teachers_outputs():
    data = vtune.datasets.teacher_student(num_examples=200, num_features=5, hidden=3,
                                          noise=0.0, seed=2)
    rng = np.random.default_rng(2)
    w = rng.normal(scale=2.0 / np.sqrt(5), size=(3, 5))
    v = rng.normal(scale=1.0 / np.sqrt(3), size=3)
    x = rng.normal(size=(200, 5))
    got = np.sort(np.concatenate([data.y_train, data.y_val]))
    np.testing.assert_allclose(got, np.sort(np.tanh(x @ w.T) @ v), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, kw", [
    (vtune.datasets.friedman1, {"num_features": 4}),
    (vtune.datasets.teacher_student, {"hidden": 0}),
])
def test_synthetic_regressions_refuse_impossible_sizes(make, kw):
    with pytest.raises(ValueError, match=make.__name__):
        make(**kw)


def test_mlp_regressor_refuses_class_labels():
    with pytest.raises(ValueError, match="targets must be floats"):
        vtune.tasks.mlp_regressor(vtune.datasets.synthetic(num_examples=40))
