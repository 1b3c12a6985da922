"""Search spaces: distributions of one parameter, and the named ``Space`` of a search.

Example:
    >>> from vtune.space import Space, loguniform, choice
    >>> Space({"learning_rate": loguniform(1e-4, 1.0), "init": choice(["he_normal"])}).dims
    ('learning_rate', 'init')
"""

from vtune.space.distributions import (KINDS, Choice, Distribution, Fixed, IntUniform, LogUniform,
                                       Uniform, choice, fixed, intuniform, loguniform, uniform)
from vtune.space.space import METHODS, Space

__all__ = ["KINDS", "METHODS", "Choice", "Distribution", "Fixed", "IntUniform", "LogUniform",
           "Space", "Uniform", "choice", "fixed", "intuniform", "loguniform", "uniform"]
