"""Host-only readers of a search: the history schema, results, exports, lineage, diagnosis, plots.

Nothing here touches a device or imports matplotlib or pandas until a function
that needs them is called.

* :mod:`vtune.report.schema`: what a history row holds (the one place);
* :mod:`vtune.report.codec`: the JSON codec for numpy and non-finite values;
* :mod:`vtune.report.result`: :class:`SearchResult` and :class:`Trial`;
* :mod:`vtune.report.lineage`, :mod:`vtune.report.diagnose`,
  :mod:`vtune.report.plots`, :mod:`vtune.report.callbacks` (per-generation hooks);
* :mod:`vtune.report.optuna`: a search as an Optuna study (the ``optuna`` extra,
  imported only when used);
* :mod:`vtune.report.tensorboard`: a callback writing TensorBoard event files (the
  ``tensorboard`` extra, imported only when used).
"""

from vtune.report import callbacks, codec, diagnose, lineage, optuna, schema, tensorboard
from vtune.report.result import SearchResult, Trial

__all__ = ["SearchResult", "Trial", "callbacks", "codec", "diagnose", "lineage", "optuna",
           "schema", "tensorboard"]
