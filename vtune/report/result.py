"""What a search returns: the best trial, the per-generation history, and readers of both.

A :class:`SearchResult` holds one row per generation and slot (see its
docstring) and derives everything else from those rows: per-trial summaries,
the top-k table, exports (CSV, JSON, pandas), plots (:mod:`vtune.report.plots`) and
the fit diagnosis (:mod:`vtune.report.diagnose`). Nothing here imports matplotlib or
pandas until a method that needs them is called.

Example:
    >>> rows = [{"generation": 0, "slot": 0, "trial_id": 0, "parent_id": -1, "step": 10,
    ...          "status": "alive", "learning_rate": 0.1, "val_loss": 0.5},
    ...         {"generation": 0, "slot": 1, "trial_id": 1, "parent_id": -1, "step": 10,
    ...          "status": "pruned", "learning_rate": 1.0, "val_loss": 0.9},
    ...         {"generation": 1, "slot": 0, "trial_id": 0, "parent_id": -1, "step": 20,
    ...          "status": "alive", "learning_rate": 0.1, "val_loss": 0.3},
    ...         {"generation": 1, "slot": 1, "trial_id": 2, "parent_id": 0, "step": 20,
    ...          "status": "alive", "learning_rate": 0.12, "val_loss": 0.4}]
    >>> result = SearchResult(best=None, history=rows, objective="val_loss", mode="min",
    ...                       tuned=("learning_rate",))
    >>> [(t["trial_id"], t["val_loss"], t["origin"]) for t in result.top(2)]
    [(0, 0.3, 'fresh'), (2, 0.4, 'cloned')]
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib
from typing import Any

import jax

from vtune.report import codec
from vtune.report import diagnose as diagnose_lib
from vtune.report import lineage as lineage_lib
from vtune.report import optuna as optuna_lib
from vtune.report.schema import (ORIGINS, STATUSES, best_row, by_trial, fmt,
                                 infer_metrics, keys, origin, rank_key, varies)
from vtune.report.schema import hparam_names as schema_hparam_names
from vtune.report.schema import shown_hparams as schema_shown_hparams
from vtune.space import Space
from vtune.trial.optimizers import FAMILY

_JSON_FORMAT = "vtune.SearchResult"
_JSON_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial at one evaluation.

    Attributes:
      trial_id: the trial's id (its keys derive from it).
      hparams: hyperparameter values, as in the space (strings for choices).
      metrics: the task's metrics at this evaluation.
      generation: the generation it was evaluated at.
      step: training steps the trial had taken.
      params: its parameters as an unbatched pytree on the host (for NNX
        tasks an ``nnx.State`` to load with ``nnx.update(model, params)``).
      encoded_hparams: the values as the model receives them (numpy scalars,
        strings as int codes), to rebuild the model:
        ``model = Net(trial.encoded_hparams, nnx.Rngs(0))``.
    """

    trial_id: int
    hparams: dict[str, Any]
    metrics: dict[str, float]
    generation: int
    step: int
    params: Any = None
    encoded_hparams: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The outcome of :func:`vtune.population_search`.

    Attributes:
      best: the best non-diverged trial over the whole search.
      history: one row (a dict) per generation and slot: ``generation``,
        ``slot``, ``trial_id``, ``parent_id`` (-1 for a trial sampled fresh,
        else the trial it was cloned from), ``step`` (training steps the
        trial has taken, inherited on cloning), ``examples_seen`` (training
        examples: each step counts the trial's own ``batch_size`` where the
        space tunes it, else the task's; inherited on cloning), ``wall_time``
        (seconds since the search started, at this evaluation), ``status``
        (alive | pruned | diverged, see :data:`STATUSES`), every
        hyperparameter and every metric.
      objective: the metric optimised; mode: "min" or "max".
      tuned: the names of the searched hyperparameters (the space's).
      space: the searched space, when known (plots use it for log axes and
        categorical strips; without it they infer both from the values).
      metrics: the task's metric names, as the driver recorded them (empty
        for results of vtune 0.1, whose metrics are recognised by name).
      inert: when the space chose the optimizer family, ``{family: the
        optimizer hyperparameters that family ignores}``
        (:meth:`vtune.trial.hparams.HParamTable.inert`); :meth:`inert_for`
        reads it for a row. The history still records every value a trial
        holds; :meth:`table` and :meth:`summary` show inert ones as ``-`` or
        leave them out.
      top_trials: the ``keep_top`` best trials of :func:`vtune.population_search`
        as :class:`Trial` objects with their params, best first: each trial
        once, at its best evaluation, ranked as :meth:`top` ranks them, so
        ``top_trials[0]`` is ``best`` and ``top_trials[i].trial_id ==
        top(k)[i]["trial_id"]``. :meth:`to_json` keeps them without params.

    Example: see the module docstring; with a search,
    ``[t.trial_id for t in result.top_trials]`` are the kept trials and
    ``result.top_trials[1].params`` the runner-up's parameters.
    """

    best: Trial | None
    history: list[dict[str, Any]]
    objective: str
    mode: str
    tuned: tuple[str, ...] = ()
    space: Space | None = None
    metrics: tuple[str, ...] = ()
    inert: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    top_trials: tuple[Trial, ...] = ()

    def inert_for(self, row: dict[str, Any]) -> tuple[str, ...]:
        """The hyperparameters that do nothing for the trial of ``row`` (a history
        row, a :meth:`trials` summary, or a best trial's ``hparams``): those of the
        optimizer families other than its own ``optimizer``; ``()`` when the
        search did not choose the family.

        Example:
            >>> result = SearchResult(best=None, history=[], objective="val_loss",
            ...                       mode="min", inert={"sgdw": ("b1", "b2")})
            >>> result.inert_for({"optimizer": "sgdw", "b1": 0.9})
            ('b1', 'b2')
        """
        return tuple(self.inert.get(row.get(FAMILY), ())) if self.inert else ()

    # --- the history ------------------------------------------------------------

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The task's metrics in the history (the objective among them)."""
        if self.metrics:
            present = set(keys(self.history))
            return tuple(m for m in self.metrics if m in present or not self.history)
        if self.best is not None:  # a result of vtune 0.1: the best trial's metrics
            present = set(keys(self.history))
            return tuple(k for k in self.best.metrics if k != "diverged" and k in present)
        return infer_metrics(self.history, self.objective)

    @property
    def hparam_names(self) -> tuple[str, ...]:
        """Every hyperparameter in the history (searched ones and defaults)."""
        return tuple(schema_hparam_names(self.history, self.metric_names))

    @property
    def shown_hparams(self) -> tuple[str, ...]:
        """The hyperparameters every view shows: the searched ones (:attr:`tuned`)
        in the history, in the space's order, then any other that took more than
        one value (for results that do not record what was searched).

        The one rule for :meth:`to_pandas`, :meth:`trials`, :meth:`top`,
        :meth:`table`, :meth:`summary`, :meth:`diagnose` and the figures (which
        plot against those of them that :attr:`varied`): defaults the task
        never changed (``b2``, ``eps``, ``eps_root``, ...) are left out. The
        record keeps everything: :meth:`rows`, :meth:`to_csv`, :meth:`to_json`,
        ``to_pandas(all_hparams=True)`` and ``trials(all_hparams=True)``.

        Example:
            >>> rows = [{"generation": 0, "slot": i, "trial_id": i, "parent_id": -1,
            ...          "step": 10, "status": "alive", "learning_rate": lr, "b2": 0.999,
            ...          "val_loss": 1.0 - lr} for i, lr in enumerate((0.1, 0.2))]
            >>> r = SearchResult(best=None, history=rows, objective="val_loss", mode="min",
            ...                  tuned=("learning_rate",))
            >>> r.hparam_names, r.shown_hparams
            (('learning_rate', 'b2'), ('learning_rate',))
            >>> list(r.to_pandas().columns)[-2:], "b2" in r.to_pandas(all_hparams=True)
            (['learning_rate', 'val_loss'], True)
        """
        return tuple(schema_shown_hparams(self.history, self.metric_names, self.tuned))

    @property
    def varied(self) -> tuple[str, ...]:
        """The shown hyperparameters (:attr:`shown_hparams`) that took more than one
        value in the history: what a figure can plot against."""
        return tuple(n for n in self.shown_hparams if varies(self.history, n))

    def rows(self) -> list[dict[str, Any]]:
        """The history with the derived ``origin`` column (fresh | cloned) after ``status``."""
        out = []
        for r in self.history:
            row = {}
            for k, v in r.items():
                row[k] = v
                if k == "status":
                    row["origin"] = origin(r)
            row.setdefault("origin", origin(r))
            out.append(row)
        return out

    def trials(self, at: str = "best", *, all_hparams: bool = False) -> list[dict[str, Any]]:
        """One summary per trial, in order of trial id.

        Each has ``trial_id``, ``parent_id``, ``origin``, ``first_generation``,
        ``last_generation``, ``evaluations``, ``status`` (at its last
        evaluation), ``step`` and ``examples_seen`` (at its last evaluation),
        ``best_generation`` and ``best_step`` (the evaluation ``at`` picks, or
        None when it has no finite objective), then its hyperparameters
        (:attr:`shown_hparams`) and its metrics there (else at its last
        evaluation).

        Args:
          at: which evaluation of a trial stands for it: ``"best"`` (its best
            objective: what the search optimised, and where ``best.params``
            come from) or ``"last"`` (where it ended: a trial whose one lucky
            evaluation was followed by worse ones ranks by the worse).
          all_hparams: every hyperparameter, defaults the search never changed
            included (:attr:`hparam_names`).
        """
        if at not in ("best", "last"):
            raise ValueError(f"at must be 'best' or 'last', got {at!r}")
        names = self.hparam_names if all_hparams else self.shown_hparams
        out = []
        for tid, rows in by_trial(self.history).items():
            last = rows[-1]
            top = best_row(rows if at == "best" else rows[-1:], self.objective, self.mode)
            shown = top if top is not None else last
            summary = {"trial_id": tid, "parent_id": rows[0]["parent_id"],
                       "origin": origin(rows[0]), "first_generation": rows[0]["generation"],
                       "last_generation": last["generation"], "evaluations": len(rows),
                       "status": last["status"], "step": last["step"]}
            if "examples_seen" in last:
                summary["examples_seen"] = last["examples_seen"]
            summary["best_generation"] = None if top is None else top["generation"]
            summary["best_step"] = None if top is None else top["step"]
            summary.update({k: shown[k] for k in names if k in shown})
            summary.update({k: shown[k] for k in self.metric_names if k in shown})
            out.append(summary)
        return out

    def top(self, k: int = 10, at: str = "best", *,
            all_hparams: bool = False) -> list[dict[str, Any]]:
        """The ``k`` best trials, best first: ranked by the objective at their best
        evaluation, or with ``at="last"`` at their last (see :meth:`trials`, also
        for ``all_hparams``); ties by the validation loss, then the earlier trial.

        Trials without a finite objective there are left out. The params of
        the first ``keep_top`` of them are :attr:`top_trials`.

        Example:
            >>> curves = {0: (0.1, 0.9), 1: (0.5, 0.4)}  # trial 0: one lucky evaluation
            >>> rows = [{"generation": g, "trial_id": t, "parent_id": -1, "step": 10 * (g + 1),
            ...          "status": "alive", "val_loss": v}
            ...         for t, vals in curves.items() for g, v in enumerate(vals)]
            >>> r = SearchResult(best=None, history=rows, objective="val_loss", mode="min")
            >>> [t["trial_id"] for t in r.top(2)], [t["trial_id"] for t in r.top(2, at="last")]
            ([0, 1], [1, 0])
        """
        ranked = [t for t in self.trials(at, all_hparams=all_hparams)
                  if t["best_generation"] is not None]
        ranked.sort(key=lambda t: (*rank_key(t, self.objective, self.mode), t["trial_id"]))
        return ranked[:max(int(k), 0)]

    def table(self, k: int = 10) -> str:
        """The top-``k`` trials as an aligned text table.

        Columns: rank, trial, the objective, the generation and step where it
        was reached, the trial's final status, its origin (and parent), the
        searched hyperparameters (:attr:`shown_hparams`; ``-`` where inert for
        the trial's optimizer), and the other metrics.
        """
        top = self.top(k)
        if not top:
            return "no trial has a finite " + self.objective
        metrics = [m for m in self.metric_names if m != self.objective]
        head = ["rank", "trial", self.objective, "gen", "step", "status", "origin",
                *self.shown_hparams, *metrics]
        body = []
        for i, t in enumerate(top, 1):
            origin = t["origin"] if t["parent_id"] < 0 else f"clone of {t['parent_id']}"
            body.append([str(i), str(t["trial_id"]), fmt(t[self.objective]),
                         str(t["best_generation"]), str(t["best_step"]), t["status"], origin,
                         *[fmt(None if n in self.inert_for(t) else t.get(n))
                           for n in self.shown_hparams],
                         *[fmt(t.get(m)) for m in metrics]])
        widths = [max(len(r[j]) for r in [head] + body) for j in range(len(head))]
        line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths)).rstrip()
        return "\n".join([line(head)] + [line(r) for r in body])

    def summary(self) -> str:
        """A few readable lines: the best configuration and its metrics."""
        if self.best is None:
            return "no trial finished without diverging"
        b = self.best
        inert = self.inert_for(b.hparams)
        names = self.shown_hparams or self.tuned or sorted(b.hparams)  # no history: as recorded
        hp = ", ".join(f"{k}={fmt(b.hparams[k])}" for k in names
                       if k in b.hparams and k not in inert)
        m = ", ".join(f"{k}={fmt(v)}" for k, v in sorted(b.metrics.items()) if k != "diverged")
        return (f"best trial {b.trial_id} (generation {b.generation}, step {b.step}): "
                f"{self.objective}={fmt(b.metrics[self.objective])}\n  hparams: {hp}\n"
                f"  metrics: {m}")

    # --- exports ------------------------------------------------------------------

    def to_pandas(self, *, all_hparams: bool = False):
        """The history (with ``origin``) as a ``pandas.DataFrame``; needs the ``plots`` extra.

        Columns: the bookkeeping ones, the searched hyperparameters
        (:attr:`shown_hparams`) and the metrics; ``all_hparams=True`` keeps every
        hyperparameter column, as :meth:`rows` and :meth:`to_csv` do. Integer
        columns are int64, ``wall_time`` and metrics float64 (NaN where a trial
        diverged), ``status`` and ``origin`` categoricals with the categories
        of :data:`STATUSES` and :data:`ORIGINS`.
        """
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("SearchResult.to_pandas needs pandas, from the 'plots' extra: "
                              "pip install 'vtune[plots]'") from e
        rows = self.rows()
        hidden = () if all_hparams else set(self.hparam_names) - set(self.shown_hparams)
        columns = [c for c in keys(rows) if c not in hidden]
        frame = pd.DataFrame(rows, columns=columns)
        for c in ("generation", "slot", "trial_id", "parent_id", "step", "examples_seen"):
            if c in frame:
                frame[c] = frame[c].astype("int64")
        for c in ("wall_time", *self.metric_names):
            if c in frame:
                frame[c] = frame[c].astype("float64")
        frame["status"] = pd.Categorical(frame["status"], categories=list(STATUSES))
        frame["origin"] = pd.Categorical(frame["origin"], categories=list(ORIGINS))
        return frame

    def to_csv(self, path) -> pathlib.Path:
        """Writes the history (with ``origin``) as CSV, one row per generation and slot.

        Floats are written exactly (shortest round-trip form; ``nan``/``inf``
        where non-finite), so ``pandas.read_csv`` gives back the same values.
        """
        path = pathlib.Path(path)
        rows = self.rows()
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys(rows), lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: repr(v) if isinstance(v, float) else v for k, v in r.items()}
                             for r in rows)
        return path

    def to_json(self, path=None) -> str:
        """The result as strict JSON (and written to ``path`` when given).

        Holds ``objective``, ``mode``, ``tuned``, ``space`` (or null),
        ``best`` and ``top_trials`` (without params) and ``history``. Non-finite floats are the
        strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (as in protobuf's
        JSON mapping), which :meth:`from_json` turns back into floats.
        """
        def trial(t):
            return {k: getattr(t, k) for k in
                    ("trial_id", "hparams", "metrics", "generation", "step")}

        doc = {"format": _JSON_FORMAT, "version": _JSON_VERSION, "objective": self.objective,
               "mode": self.mode, "tuned": list(self.tuned), "metrics": list(self.metric_names),
               "space": None if self.space is None else self.space.to_json(),
               "best": None if self.best is None else trial(self.best),
               "top_trials": [trial(t) for t in self.top_trials], "history": self.history}
        if self.inert:
            doc["inert"] = {k: list(v) for k, v in self.inert.items()}
        text = codec.dumps(doc, indent=1)
        if path is not None:
            pathlib.Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source) -> "SearchResult":
        """Reads :meth:`to_json` output: a path, or the JSON text itself (trials without params)."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            text = pathlib.Path(source).read_text()
        doc = codec.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != _JSON_FORMAT:
            raise ValueError(f"{str(source)[:80]!r} is not a vtune SearchResult JSON "
                             f"(no \"format\": \"{_JSON_FORMAT}\")")
        best = None if doc["best"] is None else Trial(**doc["best"])
        space = None if doc.get("space") is None else Space.from_json(doc["space"])
        return cls(best=best, history=doc["history"], objective=doc["objective"],
                   mode=doc["mode"], tuned=tuple(doc["tuned"]), space=space,
                   metrics=tuple(doc.get("metrics", ())),
                   inert={k: tuple(v) for k, v in doc.get("inert", {}).items()},
                   top_trials=tuple(Trial(**t) for t in doc.get("top_trials", ())))

    def to_optuna(self, storage=None, *, study_name: str | None = None,
                  overwrite: bool = False):
        """Writes every trial as one trial of a new Optuna study; needs the ``optuna`` extra.

        See :func:`vtune.report.optuna.export` (the arguments and what each
        trial holds); e.g. ``result.to_optuna("sqlite:///search.db",
        study_name="digits")``, then ``optuna-dashboard sqlite:///search.db``.

        Returns:
          The ``optuna.Study`` (None on processes other than 0, which write nothing).
        """
        return optuna_lib.export(self, storage, study_name=study_name, overwrite=overwrite)

    def save(self, out_dir, *, plots: bool = True, k: int = 10,
             thresholds=None) -> dict[str, pathlib.Path]:
        """Writes everything a person reads after a search into ``out_dir``.

        ``history.csv``, ``result.json``, ``top.txt`` (summary and top-``k``
        table), ``diagnosis.txt`` and ``diagnosis.json`` (with ``thresholds``,
        see :meth:`diagnose`) and, with ``plots``, the PNGs of :meth:`plot`
        (which need matplotlib: an ImportError names the ``plots`` extra).

        Returns:
          ``{name: path}`` of every file written. In a multi-host run only
          process 0 writes; the others return ``{}``.
        """
        if jax.process_index() != 0:
            return {}
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        diagnosis = self.diagnose(thresholds)
        paths = {"history": self.to_csv(out / "history.csv")}
        self.to_json(out / "result.json")
        paths["result"] = out / "result.json"
        figures = self.plot(out) if plots else {}
        top = self.summary() + "\n\n" + self.table(k) + "\n"
        if plots and "lineage" not in figures and (self.best is not None or self.top(1)):
            best = self.best.trial_id if self.best is not None else self.top(1)[0]["trial_id"]
            top += (f"\nno lineage figure: trial {best} was sampled fresh and never cloned, so "
                    "its hyperparameters never changed\n")
        (out / "top.txt").write_text(top)
        paths["top"] = out / "top.txt"
        (out / "diagnosis.txt").write_text(diagnosis.text() + "\n")
        paths["diagnosis"] = out / "diagnosis.txt"
        (out / "diagnosis.json").write_text(
            codec.dumps(diagnosis.to_dicts(), indent=1))
        paths["diagnosis_json"] = out / "diagnosis.json"
        paths.update(figures)
        return paths

    # --- readers in other modules -------------------------------------------------

    def plot(self, out_dir) -> dict[str, pathlib.Path]:
        """Saves every figure of :mod:`vtune.report.plots` as PNG in ``out_dir``.

        Needs the ``plots`` extra (matplotlib); no display is used.

        Returns:
          ``{name: path}``: ``learning_curves``, ``objective_vs_hparams``,
          ``optimization_history``, ``lineage`` (``{}`` on processes other than 0).
        """
        if jax.process_index() != 0:
            return {}
        from vtune.report import plots  # matplotlib, from the plots extra, only when asked
        return plots.save_all(self, out_dir)

    def diagnose(self, thresholds=None):
        """Reads every trial's curves: a :class:`vtune.diagnose.Diagnosis`.

        One finding per trial (kind, evidence, suggested change); ``str()`` of
        the result is readable text. See :mod:`vtune.report.diagnose` for the rules.
        """
        return diagnose_lib.diagnose(self.history, self.objective, self.mode, thresholds,
                                 tuned=self.shown_hparams,
                                 best_trial_id=None if self.best is None else self.best.trial_id)

    def lineage(self, trial_id: int | None = None) -> list[dict[str, Any]]:
        """The history rows of ``trial_id`` (default: the best trial) and its ancestors.

        Oldest first, as :func:`vtune.report.lineage.lineage` gives them: each row
        gains ``cloned_at`` and ``changes`` (the hyperparameters that changed
        since the row before), the schedule a PBT-style winner followed.
        """
        if trial_id is None:
            if self.best is None:
                raise ValueError("no best trial: pass a trial_id")
            trial_id = self.best.trial_id
        return lineage_lib.lineage(self.history, trial_id, names=self.hparam_names)
