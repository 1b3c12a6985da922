"""How vtune validates a scalar argument: one rule, one wording, everywhere.

Every public function that takes a count, a seed or a flag checks it here, so
a bad value gets the same clear message wherever it is passed, before anything
is compiled or written.

Example:
    >>> positive_int("population_size", 8)
    8
    >>> positive_int("population_size", 0)
    Traceback (most recent call last):
    ...
    ValueError: population_size must be a positive int, got 0
"""

from __future__ import annotations

import numbers

import numpy as np


def integer(what: str, value, minimum: int | None = None) -> int:
    """``value`` as an int (bools refused), at least ``minimum`` when given.

    Raises:
      TypeError: not an integer. ValueError: below ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def positive_int(what: str, value) -> int:
    """``value`` as an int >= 1; one ValueError wording for every count."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def real_bool(what: str, value) -> bool:
    """``value`` if it is a real bool: a flag that deletes data never takes ``"False"``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be True or False, got {value!r} "
                        f"({type(value).__name__})")
    return bool(value)


class VtuneWarning(RuntimeWarning):
    """What vtune warns about (e.g. an unreadable checkpoint step moved aside).

    One category, so tests can turn vtune's own warnings into errors
    (``filterwarnings = ["error::vtune.checks.VtuneWarning"]``) and users can
    filter them as a whole.
    """
