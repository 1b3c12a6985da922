"""Offline data sets: the bundled digits and a seeded synthetic generator.

Nothing here touches the network. ``digits`` is the 8x8 handwritten-digit set
(UCI ML hand-written digits, 1797 images, as shipped with scikit-learn), stored
inside vtune as a compressed ``.npz`` (no pickle).
"""

from __future__ import annotations

import dataclasses
import importlib.resources

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A supervised train/validation split as host arrays.

    Attributes:
      x_train: inputs, shape ``[n_train, ...]``, floating point.
      y_train: targets, shape ``[n_train, ...]``: an integer dtype means class
        labels (``0 .. num_classes - 1``), a float dtype regression targets.
      x_val: validation inputs, same trailing shape as ``x_train``.
      y_val: validation targets, same trailing shape as ``y_train``.
      name: a short identifier (part of the task fingerprint).

    Construction refuses what would train silently into a useless search:
    non-finite inputs or float targets (the message names the split and how
    many), and negative integer labels. A one-class integer target is
    accepted here (it is a legitimate constant regression target); a
    classifier calls :meth:`check_labels`, which refuses it.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    name: str = "data"

    def __post_init__(self):
        for split in ("train", "val"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
                raise TypeError(f"Dataset: x_{split} and y_{split} must be numpy arrays, "
                                f"got {type(x).__name__} and {type(y).__name__}")
            if x.ndim < 1 or len(x) == 0:
                raise ValueError(f"Dataset: x_{split} is empty (shape {x.shape})")
            if len(x) != len(y):
                raise ValueError(f"Dataset: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
            if not np.issubdtype(x.dtype, np.floating):
                raise TypeError(f"Dataset: x_{split} must be floating point, got {x.dtype}")
            for name, a in ((f"x_{split}", x), (f"y_{split}", y)):
                if np.issubdtype(a.dtype, np.floating):
                    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
                    if bad:
                        raise ValueError(
                            f"Dataset: {name} has {bad} non-finite value{'s' * (bad > 1)} "
                            f"(NaN or inf) among {a.size}; clean or impute them first")
            if np.issubdtype(y.dtype, np.integer) and y.size and y.min() < 0:
                raise ValueError(f"Dataset: y_{split} holds integer class labels, which must be "
                                 f">= 0, but has {int(np.count_nonzero(y < 0))} negative "
                                 f"(smallest {int(y.min())}); relabel them 0 .. C-1, or pass "
                                 f"float targets for regression")
        if self.x_train.shape[1:] != self.x_val.shape[1:]:
            raise ValueError(f"Dataset: x_train rows have shape {self.x_train.shape[1:]} "
                             f"but x_val rows have shape {self.x_val.shape[1:]}")
        if self.y_train.shape[1:] != self.y_val.shape[1:]:
            raise ValueError(f"Dataset: y_train rows have shape {self.y_train.shape[1:]} "
                             f"but y_val rows have shape {self.y_val.shape[1:]}")

    @property
    def num_train(self) -> int:
        return len(self.x_train)

    @property
    def has_class_labels(self) -> bool:
        """Whether the targets are class labels (an integer dtype), not regression targets."""
        return bool(np.issubdtype(self.y_train.dtype, np.integer)
                    and np.issubdtype(self.y_val.dtype, np.integer))

    @property
    def num_classes(self) -> int:
        """Number of classes (largest label + 1) of integer class labels.

        Raises:
          ValueError: the targets are not integer class labels.
        """
        if not self.has_class_labels:
            raise ValueError(f"Dataset.num_classes: the targets (y_train {self.y_train.dtype}, "
                             f"y_val {self.y_val.dtype}) are not integer class labels; cast "
                             f"them with .astype(np.int32) for classification")
        return int(max(self.y_train.max(), self.y_val.max())) + 1

    def check_labels(self, num_outputs: int | None = None) -> None:
        """Refuses targets a classifier cannot learn from; call it before building one.

        Args:
          num_outputs: the model's number of outputs (logits), if known: every
            label must be below it (a larger label gives a NaN loss).

        Raises:
          ValueError: the targets are not integer labels, ``y_train`` has fewer
            than 2 distinct classes (accuracy would be trivially 1), or a label
            is ``>= num_outputs``.
        """
        if not self.has_class_labels:
            raise ValueError(f"Dataset {self.name!r}: a classifier needs integer class labels, "
                             f"got y_train {self.y_train.dtype} and y_val {self.y_val.dtype}; "
                             f"cast them with .astype(np.int32), or train a regression")
        seen = np.unique(self.y_train)
        if seen.size < 2:
            raise ValueError(f"Dataset {self.name!r}: y_train has {seen.size} distinct class "
                             f"({seen.tolist()}); a classifier needs at least 2")
        if num_outputs is not None:
            for split in ("train", "val"):
                top = int(getattr(self, f"y_{split}").max())
                if top >= num_outputs:
                    raise ValueError(f"Dataset {self.name!r}: label {top} in y_{split} does not "
                                     f"fit a model with {num_outputs} outputs (labels must be "
                                     f"0 .. {num_outputs - 1}); give the model "
                                     f"{self.num_classes} outputs")


def _split(x, y, val_fraction, seed, name):
    """A seeded shuffled split, standardized with the training statistics."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(len(x) * val_fraction)))
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(0), x[train].std(0)
    std = np.where(std > 0, std, 1.0)
    norm = lambda a: ((a - mean) / std).astype(np.float32)
    return Dataset(norm(x[train]), y[train], norm(x[val]), y[val], name=name)


def digits(val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 8x8 handwritten digits, standardized, with a fixed seeded split.

    Args:
      val_fraction: share of the 1797 images held out for validation.
      seed: seed of the split (the default gives 1438 train / 359 val images).

    Example:
        >>> data = vtune.datasets.digits()
        >>> data.x_train.shape, data.x_val.shape, data.num_classes
        ((1438, 64), (359, 64), 10)
    """
    ref = importlib.resources.files("vtune") / "data" / "digits.npz"
    with ref.open("rb") as f, np.load(f, allow_pickle=False) as z:
        x, y = z["images"].astype(np.float64), z["labels"].astype(np.int32)
    return _split(x, y, val_fraction, seed, name=f"digits(val_fraction={val_fraction},seed={seed})")


def synthetic(num_examples: int = 512, num_features: int = 16, num_classes: int = 4,
              noise: float = 1.0, val_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """Gaussian class clusters: a small, fast classification problem for tests.

    Each class has a random centre on the unit sphere scaled by 3; examples are
    the centre plus isotropic Gaussian ``noise``.

    Example:
        >>> data = vtune.datasets.synthetic(num_examples=100, num_features=8, num_classes=3)
        >>> data.x_train.shape, data.num_classes
        ((75, 8), 3)
    """
    if num_examples < 2 or num_features < 1 or num_classes < 2:
        raise ValueError(f"synthetic: need num_examples >= 2, num_features >= 1 and "
                         f"num_classes >= 2, got {num_examples}, {num_features}, {num_classes}")
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, num_features))
    centres *= 3.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    y = rng.integers(0, num_classes, num_examples).astype(np.int32)
    x = centres[y] + noise * rng.normal(size=(num_examples, num_features))
    return _split(x, y, val_fraction, seed,
                  name=f"synthetic({num_examples},{num_features},{num_classes},{noise},{seed})")


def friedman1(num_examples: int = 1000, num_features: int = 10, noise: float = 1.0,
              val_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """Friedman's first regression problem (Friedman 1991; scikit-learn's ``make_friedman1``).

    Inputs are uniform on ``[0, 1]^num_features``; the target
    ``10 sin(pi x0 x1) + 20 (x2 - 0.5)^2 + 10 x3 + 5 x4 + noise * N(0, 1)``
    depends on the first five only. Inputs are standardized with the training
    statistics, targets are left as the formula gives them (float32).

    Example:
        >>> data = vtune.datasets.friedman1(num_examples=100)
        >>> data.x_train.shape, data.y_train.shape, data.y_train.dtype
        ((75, 10), (75,), dtype('float32'))
    """
    if num_examples < 2 or num_features < 5:
        raise ValueError(f"friedman1: need num_examples >= 2 and num_features >= 5, got "
                         f"{num_examples}, {num_features}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(num_examples, num_features))
    y = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3]
         + 5 * x[:, 4] + noise * rng.normal(size=num_examples)).astype(np.float32)
    return _split(x, y, val_fraction, seed,
                  name=f"friedman1({num_examples},{num_features},{noise},{seed})")


def teacher_student(num_examples: int = 4000, num_features: int = 16, hidden: int = 32,
                    noise: float = 0.01, val_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """Regression targets of a random teacher network: ``y = v . tanh(W x) + noise``.

    ``x ~ N(0, I)``, ``W`` is ``hidden x num_features`` with entries
    ``N(0, 4 / num_features)`` (so the teacher's units saturate: a sharp,
    nonlinear target), ``v ~ N(0, 1 / hidden)``. With the defaults (much
    data, little noise) fitting precisely is what counts, and for a student
    MLP the learning rates that do are a narrow band (see
    ``benchmarks/search_quality.py``).

    Example:
        >>> data = vtune.datasets.teacher_student(num_examples=100)
        >>> data.x_train.shape, data.y_train.shape
        ((75, 16), (75,))
    """
    if num_examples < 2 or num_features < 1 or hidden < 1:
        raise ValueError(f"teacher_student: need num_examples >= 2, num_features >= 1 and "
                         f"hidden >= 1, got {num_examples}, {num_features}, {hidden}")
    rng = np.random.default_rng(seed)
    w = rng.normal(scale=2.0 / np.sqrt(num_features), size=(hidden, num_features))
    v = rng.normal(scale=1.0 / np.sqrt(hidden), size=hidden)
    x = rng.normal(size=(num_examples, num_features))
    y = (np.tanh(x @ w.T) @ v + noise * rng.normal(size=num_examples)).astype(np.float32)
    return _split(x, y, val_fraction, seed,
                  name=f"teacher_student({num_examples},{num_features},{hidden},{noise},{seed})")
