"""The ``vtune`` command: run searches described in a TOML file and report on finished ones.

* :mod:`vtune.cli.config`: TOML configs (presets, spaces, strategies, thresholds);
* :mod:`vtune.cli.commands`: ``vtune``, ``vtune run`` and ``vtune report``.
"""

from vtune.cli.commands import main
from vtune.cli.config import (EXAMPLE_CONFIG, PRESETS, ConfigError, default_space, default_task,
                              load_config)

__all__ = ["EXAMPLE_CONFIG", "PRESETS", "ConfigError", "default_space", "default_task",
           "load_config", "main"]
