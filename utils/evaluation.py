"""Evaluation of accuracy predictors: metrics, splits, search and a runner.

This module answers one question the same way every time: trained on these
cells with this label, how well does a predictor rank the cells it has not
seen? It has five parts.

Metrics
    :func:`score_predictions` compares predictions with true values: Kendall's
    tau (tau-b), Spearman's rho, Pearson's r, R^2, MAE, RMSE and the precision
    of the predicted top 1% and 5% (:func:`top_k_precision`).
Labels and splits
    A :class:`Label` names one target of the file (budget, metric, point and
    which runs). :func:`make_split` draws training cells and evaluation cells
    for one training size and one seed; training sets of one seed are nested
    across sizes. :data:`PROTOCOLS` holds named choices of sizes and seeds.
Hyperparameter search
    :func:`search` runs scikit-learn's grid or randomised search, scored by
    Kendall's tau in K-fold cross-validation inside the training cells, and
    refits the winner on all of them.
The runner
    :func:`run_experiments` fits every model x feature set x training size x
    seed, in parallel, with a progress bar, and returns one tidy row per fit;
    with ``results_path`` it appends rows to a JSON-lines file and a rerun
    skips the fits already there.
The noise ceiling
    :func:`noise_ceiling` measures how well two training runs of the same
    cells agree: no predictor of one run can be expected to beat it.

Input contract: a dataset is a :class:`utils.dataset.NASBench101` (anything
with ``len()`` and ``targets(budget, metric, point, runs, seed)`` returning
``(values, n_runs)`` works); feature sets are names understood by
:func:`utils.encodings.encode`; models are names of
:data:`utils.predictors.MODELS` or unfitted scikit-learn regressors.

Example::

    results = run_experiments(dataset, ["xgb", "ridge"], ["adj_path"],
                              train_sizes=[172, 424], seeds=range(5))

``results`` is a :class:`pandas.DataFrame` with one row per fit::

    model  feature_set  train_size  seed  train_label  eval_label  evaluate
    n_train  n_eval  n_eval_dropped  kendall_tau  spearman_rho  pearson_r  r2
    mae  rmse  precision_at_1pct  precision_at_5pct  fit_seconds
    predict_seconds

Unless asked otherwise, predictors are evaluated on held-out cells only:
every cell with an evaluation label that was not used for training
(``evaluate="rest"``). ``evaluate="all"`` scores every labelled cell, training
cells included, as some papers report; an integer ``m`` scores a fixed
held-out subsample of ``m`` cells, the same for every training size of a seed.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import make_scorer
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV

__all__ = [
    "Label",
    "Protocol",
    "PROTOCOLS",
    "Split",
    "EVALUATE_MODES",
    "top_k_precision",
    "score_predictions",
    "kendall_tau",
    "kendall_tau_scorer",
    "make_split",
    "search",
    "run_experiments",
    "noise_ceiling",
]

logger = logging.getLogger(__name__)

#: Named evaluation modes; an int (a held-out subsample size) is also allowed.
EVALUATE_MODES = ("rest", "all")

#: Columns that identify a fit: a rerun skips rows whose key is already saved.
KEY_COLUMNS = (
    "model",
    "feature_set",
    "train_size",
    "seed",
    "train_label",
    "eval_label",
    "evaluate",
)

#: Models whose fits use many threads of their own (TensorFlow).
NEURAL_MODELS = ("mlp", "gcn")


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Two finite 1-D float arrays of one length, at least two values."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must be 1-D of one length, got shapes "
            f"{y_true.shape} and {y_pred.shape}"
        )
    if len(y_true) < 2:
        raise ValueError(f"need at least 2 cells to score, got {len(y_true)}")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise ValueError(
                f"{name} has {bad} non-finite value(s) of {len(values)}; "
                "expected finite values only (drop unmeasured cells first)"
            )
    return y_true, y_pred


def top_k_precision(y_true, y_pred, fraction: float) -> float:
    """Fraction of the predicted top ``fraction`` that is in the true top.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_cells,)
        True values and predictions; higher is better for both.
    fraction : float
        Share of cells in the top, in (0, 1].

    Returns
    -------
    precision : float
        In [0, 1].

    Notes
    -----
    The top holds ``k = max(1, round(fraction * n_cells))`` cells, with
    halves rounded up (``floor(x + 0.5)``, not Python's round-half-to-even).

    Ties are handled so that the result depends on values only, never on the
    order of the cells:

    * the true top is every cell whose true value is at least the k-th
      largest true value, so cells tied at the boundary all count as good
      (it can hold more than k cells);
    * the predicted top is exactly k cells; where predictions tie at the
      boundary, the precision is its expected value when the tied cells are
      drawn uniformly at random to fill the k places.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    if not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must lie in (0, 1], got {fraction}")
    n_cells = len(y_true)
    k = max(1, math.floor(fraction * n_cells + 0.5))

    # The true top: everything at least as good as the k-th best value.
    true_threshold = np.sort(y_true)[::-1][k - 1]
    good = y_true >= true_threshold

    # The predicted top: cells strictly above the k-th prediction are in; the
    # remaining places go to cells tied with it, in expectation.
    pred_threshold = np.sort(y_pred)[::-1][k - 1]
    above = y_pred > pred_threshold
    tied = y_pred == pred_threshold
    places_left = k - int(above.sum())
    hits = good[above].sum() + places_left * good[tied].mean()
    return float(hits / k)


def kendall_tau(y_true, y_pred) -> float:
    """Kendall's tau-b between true values and predictions (NaN if constant)."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    with warnings.catch_warnings():
        # Constant input gives NaN, which is the answer we want.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.kendalltau(y_true, y_pred, variant="b").statistic)


#: Kendall's tau as a scikit-learn scorer (greater is better).
kendall_tau_scorer = make_scorer(kendall_tau)


def score_predictions(
    y_true, y_pred, top_fractions: Sequence[float] = (0.01, 0.05)
) -> dict[str, float]:
    """Rank and error metrics of predictions against true values.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_cells,)
        True values and predictions, finite, at least two cells.
    top_fractions : sequence of float, default=(0.01, 0.05)
        Shares of cells for :func:`top_k_precision`.

    Returns
    -------
    scores : dict of str to float
        ``kendall_tau`` (tau-b), ``spearman_rho``, ``pearson_r``, ``r2``,
        ``mae``, ``rmse`` and ``precision_at_<p>pct`` for each fraction
        (``precision_at_1pct`` for 0.01, ``precision_at_0.5pct`` for 0.005).

    Notes
    -----
    The correlations are NaN when either side is constant. R^2, MAE and RMSE
    only mean something for predictions on the scale of the target; ranking
    models (``xgb_rank``, the rank ensemble) are compared by the rank metrics.

    Examples
    --------
    >>> scores = score_predictions([1, 2, 3, 4], [1, 2, 4, 3])
    >>> round(scores["kendall_tau"], 4)
    0.6667
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    errors = y_pred - y_true

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        scores = {
            "kendall_tau": kendall_tau(y_true, y_pred),
            "spearman_rho": float(stats.spearmanr(y_true, y_pred).statistic),
            "pearson_r": float(stats.pearsonr(y_true, y_pred).statistic),
        }

    # R^2 against the mean of the true values; undefined for a constant truth.
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    residual = float(np.sum(errors**2))
    scores["r2"] = 1.0 - residual / total if total > 0 else float("nan")
    scores["mae"] = float(np.mean(np.abs(errors)))
    scores["rmse"] = float(np.sqrt(np.mean(errors**2)))

    for fraction in top_fractions:
        name = f"precision_at_{100 * fraction:g}pct"
        scores[name] = top_k_precision(y_true, y_pred, fraction)
    return scores


# --------------------------------------------------------------------------
# Labels, protocols and splits
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """One target of a NAS-Bench-101 file: what a predictor learns or is scored on.

    Parameters
    ----------
    budget : int, default=108
        Training epochs: 4, 12, 36 or 108.
    metric : str, default="validation_accuracy"
        ``"training_time"``, ``"train_accuracy"``, ``"validation_accuracy"``
        or ``"test_accuracy"``.
    point : str, default="final"
        ``"halfway"`` or ``"final"``.
    runs : {"mean", "first", "random"} or int, default="mean"
        Mean of the measured runs, the first measured run, one measured run
        drawn at random per cell, or run 0, 1 or 2.
    seed : int or None, default=None
        Seed of ``runs="random"``. With None, :func:`run_experiments` uses
        the seed of each split, so each seed draws its own runs.

    Examples
    --------
    >>> str(Label(runs=0))
    'validation_accuracy@108/final/run0'
    """

    budget: int = 108
    metric: str = "validation_accuracy"
    point: str = "final"
    runs: str | int = "mean"
    seed: int | None = None

    def __str__(self) -> str:
        if isinstance(self.runs, (int, np.integer)):
            runs = f"run{int(self.runs)}"
        elif self.runs == "random":
            runs = "random" if self.seed is None else f"random(seed={self.seed})"
        else:
            runs = str(self.runs)
        return f"{self.metric}@{self.budget}/{self.point}/{runs}"

    def values(self, dataset, seed: int | None = None) -> np.ndarray:
        """This label for every cell of `dataset`, NaN where not measured.

        Parameters
        ----------
        dataset : NASBench101
            The cells.
        seed : int or None, default=None
            Seed for ``runs="random"`` when the label has none of its own.

        Returns
        -------
        values : ndarray of shape (n_cells,)
            float64.

        Raises
        ------
        ValueError
            If the file has no such label (from ``dataset.targets``).
        """
        values, _ = dataset.targets(
            budget=self.budget,
            metric=self.metric,
            point=self.point,
            runs=self.runs,
            seed=self.seed if self.seed is not None else seed,
        )
        return np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class Protocol:
    """A named choice of training sizes, seeds and evaluation cells.

    Parameters
    ----------
    name : str
        Short name, as in :data:`PROTOCOLS`.
    train_sizes : tuple of int
        Numbers of training cells; nested for each seed.
    seeds : tuple of int
        Seeds of the cell permutations.
    evaluate : {"rest", "all"} or int, default="rest"
        Evaluation cells (see :func:`make_split`).
    description : str, default=""
        Where the protocol comes from.
    """

    name: str
    train_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    evaluate: str | int = "rest"
    description: str = ""


#: Named protocols. ``"nb101"`` is what most recent papers report on the full
#: benchmark: 100, 172, 424 and 4,236 training cells (4,236 is 1% of 423,624),
#: evaluated on all other cells.
PROTOCOLS: dict[str, Protocol] = {
    "nb101": Protocol(
        "nb101",
        train_sizes=(100, 172, 424, 4236),
        seeds=tuple(range(5)),
        evaluate="rest",
        description="train on 100/172/424/4,236 cells, evaluate on the rest",
    ),
    "nb101-all": Protocol(
        "nb101-all",
        train_sizes=(100, 172, 424, 4236),
        seeds=tuple(range(5)),
        evaluate="all",
        description="as nb101, but scored on every cell, training cells included",
    ),
    "sample": Protocol(
        "sample",
        train_sizes=(172, 424, 1000),
        seeds=tuple(range(5)),
        evaluate="rest",
        description="for a sample of ~20k cells: 172/424/1,000, evaluate on the rest",
    ),
}


@dataclass(frozen=True)
class Split:
    """Training and evaluation cells of one training size and one seed.

    Attributes
    ----------
    train : ndarray of shape (train_size,)
        Row indices of the training cells, in the order of the permutation.
    evaluate : ndarray of shape (n_eval,)
        Row indices of the evaluation cells, sorted.
    train_size, seed : int
        As asked.
    mode : str or int
        The ``evaluate`` argument of :func:`make_split`.
    n_eval_dropped : int
        Evaluation candidates dropped because their evaluation label is NaN.
    """

    train: np.ndarray = field(repr=False)
    evaluate: np.ndarray = field(repr=False)
    train_size: int
    seed: int
    mode: str | int
    n_eval_dropped: int


def _check_mask(mask, n_cells: int, name: str) -> np.ndarray:
    """A boolean mask of length `n_cells`, all True when None."""
    if mask is None:
        return np.ones(n_cells, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (n_cells,):
        raise ValueError(f"`{name}` must have shape ({n_cells},), got {mask.shape}")
    return mask


def make_split(
    n_cells: int,
    train_size: int,
    seed: int,
    evaluate: str | int = "rest",
    train_mask=None,
    eval_mask=None,
) -> Split:
    """Draw training and evaluation cells for one size and one seed.

    One seed gives one permutation of the cells,
    ``numpy.random.default_rng(seed).permutation(n_cells)``; the training
    cells are its first `train_size` cells that have a training label. So for
    one seed the first 100 training cells are among the first 172, and so on.

    Parameters
    ----------
    n_cells : int
        Number of cells in the dataset.
    train_size : int
        Number of training cells, at least 1.
    seed : int
        Seed of the permutation.
    evaluate : {"rest", "all"} or int, default="rest"
        ``"rest"``: every cell not used for training. ``"all"``: every cell,
        training cells included. An int ``m``: the last ``m`` cells of the
        permutation, held out from training at every size, so the same
        evaluation cells serve every training size of the seed.
    train_mask : array-like of bool, shape (n_cells,), optional
        Cells that may be drawn for training (e.g. a finite training label).
    eval_mask : array-like of bool, shape (n_cells,), optional
        Cells that may be evaluated (e.g. a finite evaluation label); the
        others are dropped from evaluation and counted in ``n_eval_dropped``.

    Returns
    -------
    split : Split

    Raises
    ------
    ValueError
        If `train_size` is below 1 or above the cells available for training,
        or `evaluate` is neither a mode nor a positive int.

    Examples
    --------
    >>> split = make_split(1000, 100, seed=0)
    >>> len(split.train), len(split.evaluate)
    (100, 900)
    """
    train_mask = _check_mask(train_mask, n_cells, "train_mask")
    eval_mask = _check_mask(eval_mask, n_cells, "eval_mask")
    if isinstance(evaluate, bool) or not (
        evaluate in EVALUATE_MODES
        or (isinstance(evaluate, (int, np.integer)) and evaluate > 0)
    ):
        raise ValueError(
            f"`evaluate` must be one of {EVALUATE_MODES} or a positive int, "
            f"got {evaluate!r}"
        )
    if train_size < 1:
        raise ValueError(f"`train_size` must be at least 1, got {train_size}")

    # With a held-out subsample, its cells come off the end of the permutation.
    permutation = np.random.default_rng(seed).permutation(n_cells)
    if isinstance(evaluate, str):
        pool, held_out = permutation, None
    else:
        if evaluate >= n_cells:
            raise ValueError(
                f"held-out subsample of {evaluate} cells leaves no training "
                f"cells among {n_cells}"
            )
        pool, held_out = permutation[:-evaluate], permutation[-evaluate:]

    candidates = pool[train_mask[pool]]
    if train_size > len(candidates):
        unlabelled = int(np.count_nonzero(~train_mask))
        raise ValueError(
            f"train_size={train_size} exceeds the {len(candidates)} cells "
            f"available for training ({n_cells} cells, {unlabelled} without a "
            "training label"
            + ("" if held_out is None else f", {len(held_out)} held out")
            + ")"
        )
    train = candidates[:train_size]

    # Evaluation candidates by mode, then the unlabelled ones dropped.
    if evaluate == "all":
        chosen = np.arange(n_cells)
    elif evaluate == "rest":
        chosen = np.setdiff1d(np.arange(n_cells), train)
    else:
        chosen = np.sort(held_out)
    evaluation = chosen[eval_mask[chosen]]

    return Split(
        train=train,
        evaluate=evaluation,
        train_size=int(train_size),
        seed=int(seed),
        mode=evaluate,
        n_eval_dropped=int(len(chosen) - len(evaluation)),
    )


# --------------------------------------------------------------------------
# Hyperparameter search
# --------------------------------------------------------------------------


def _resolve_model(model, random_state=None) -> BaseEstimator:
    """A fresh unfitted estimator from a registry name or an estimator."""
    if isinstance(model, str):
        from utils.predictors import make_model

        return make_model(model, random_state=random_state)
    if not hasattr(model, "fit"):
        raise ValueError(
            f"model must be a name of utils.predictors.MODELS or an estimator, "
            f"got {model!r}"
        )
    # Seed every random_state, nested ones too (a wrapped regressor's).
    estimator = clone(model)
    if random_state is not None:
        seeds = {
            name: random_state
            for name in estimator.get_params()
            if name == "random_state" or name.endswith("__random_state")
        }
        estimator.set_params(**seeds)
    return estimator


def search(
    model: str | BaseEstimator,
    param_space: Mapping | Sequence[Mapping],
    X_train,
    y_train,
    *,
    cv: int = 5,
    n_iter: int | None = None,
    random_state: int = 0,
    n_jobs: int = 1,
) -> tuple[BaseEstimator, pd.DataFrame]:
    """Tune a model by cross-validated Kendall's tau on the training cells.

    Every trial fits a fresh clone of the model on K-1 folds of the training
    cells and scores Kendall's tau on the remaining fold; the parameters with
    the best mean tau are refitted on all training cells. Cells outside
    `X_train` take no part, so the evaluation cells stay unseen.

    Parameters
    ----------
    model : str or estimator
        A name of :data:`utils.predictors.MODELS` or an unfitted regressor.
    param_space : dict or list of dict
        Parameter names to lists of values (a grid), or with `n_iter` to
        lists or scipy distributions (randomised search).
    X_train : array-like of shape (n_train, n_features)
        Features of the training cells.
    y_train : array-like of shape (n_train,)
        Training labels, finite.
    cv : int, default=5
        Folds, shuffled with `random_state`.
    n_iter : int or None, default=None
        None: try the whole grid (``GridSearchCV``). An int: that many random
        draws (``RandomizedSearchCV``).
    random_state : int, default=0
        Seed of the model, the folds and the draws.
    n_jobs : int, default=1
        Trials in parallel.

    Returns
    -------
    best_model : estimator
        The winner, refitted on all training cells.
    trials : pandas.DataFrame
        One row per parameter setting, best first: ``params`` (dict), one
        ``param_<name>`` column per parameter, ``mean_cv_tau``,
        ``std_cv_tau``, ``rank`` and ``best`` (True for the winner).

    Notes
    -----
    To tune inside every fit of :func:`run_experiments`, pass it a searcher
    as a model, e.g. ``GridSearchCV(model, grid, scoring=kendall_tau_scorer,
    cv=KFold(5, shuffle=True))``: it is fitted on the training cells of each
    split only, so the search is nested in the evaluation.

    Examples
    --------
    >>> best, trials = search("ridge", {"alpha": [0.1, 1, 10]}, X, y, cv=3)
    ... # doctest: +SKIP
    """
    estimator = _resolve_model(model, random_state=random_state)
    folds = KFold(n_splits=cv, shuffle=True, random_state=random_state)
    common = dict(scoring=kendall_tau_scorer, cv=folds, refit=True, n_jobs=n_jobs)
    if n_iter is None:
        searcher = GridSearchCV(estimator, param_space, **common)
    else:
        searcher = RandomizedSearchCV(
            estimator,
            param_space,
            n_iter=n_iter,
            random_state=random_state,
            **common,
        )
    searcher.fit(X_train, y_train)

    # What was tried, best first.
    results = searcher.cv_results_
    trials = pd.DataFrame(
        {
            "params": results["params"],
            **{
                name: np.asarray(values, dtype=object)
                for name, values in results.items()
                if name.startswith("param_")
            },
            "mean_cv_tau": results["mean_test_score"],
            "std_cv_tau": results["std_test_score"],
            "rank": results["rank_test_score"],
        }
    )
    trials["best"] = trials.index == searcher.best_index_
    trials = trials.sort_values(["rank", "mean_cv_tau"], ascending=[True, False])
    logger.info(
        "search over %d settings: best %s, mean CV tau %.4f",
        len(trials),
        searcher.best_params_,
        searcher.best_score_,
    )
    return searcher.best_estimator_, trials.reset_index(drop=True)


# --------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------


def _named(items, kind: str) -> dict:
    """A {display name: spec} dict from a list of names or a mapping."""
    if isinstance(items, Mapping):
        named = dict(items)
    elif isinstance(items, str):
        named = {items: items}
    else:
        named = {}
        for item in items:
            if not isinstance(item, str):
                raise ValueError(
                    f"{kind} given as a list must be names; give an object as "
                    f"a {{name: object}} mapping, got {item!r}"
                )
            named[item] = item
    if not named:
        raise ValueError(f"no {kind} given; expected at least one")
    return named


def _is_neural(spec) -> bool:
    """Whether a model uses TensorFlow, which brings its own threads.

    A registry name is looked up in ``NEURAL_MODELS``; an estimator is
    neural if its class comes from ``utils.neural``, Keras or TensorFlow, or
    if any estimator nested in its parameters is (ensemble members, pipeline
    steps, wrapped regressors).
    """
    if isinstance(spec, str):
        return spec in NEURAL_MODELS
    if type(spec).__module__.startswith(("utils.neural", "keras", "tensorflow")):
        return True
    if not hasattr(spec, "get_params"):
        return False

    # Nested estimators: direct values, or (name, estimator) pairs in lists.
    for value in spec.get_params(deep=False).values():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, tuple) and len(item) >= 2:
                item = item[1]
            if hasattr(item, "fit") and _is_neural(item):
                return True
    return False


def _evaluate_key(evaluate) -> str:
    return str(evaluate)


def _read_done(path: Path) -> list[dict]:
    """Rows already saved in a JSON-lines file (none if it does not exist)."""
    if not path.exists():
        return []
    rows = []
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                # A line cut short by an interrupted run: refit that one.
                logger.warning("%s:%d is not valid JSON; ignored", path, number)
    return rows


def _row_key(row: Mapping) -> tuple:
    return tuple(str(row[column]) for column in KEY_COLUMNS)


def _fit_one(
    job: dict, X: np.ndarray, y_train: np.ndarray, y_eval: np.ndarray, top_fractions
) -> dict:
    """Fit one model on one split and score it; the row of the results."""
    split = job["split"]
    model = _resolve_model(job["model_spec"], random_state=split.seed)

    start = time.perf_counter()
    model.fit(X[split.train], y_train[split.train])
    fit_seconds = time.perf_counter() - start

    start = time.perf_counter()
    predictions = np.asarray(model.predict(X[split.evaluate]), dtype=np.float64)
    predict_seconds = time.perf_counter() - start

    scores = score_predictions(y_eval[split.evaluate], predictions, top_fractions)
    return {
        **job["key"],
        "n_train": int(len(split.train)),
        "n_eval": int(len(split.evaluate)),
        "n_eval_dropped": split.n_eval_dropped,
        **scores,
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
    }


def run_experiments(
    dataset,
    models: Sequence[str] | Mapping[str, str | BaseEstimator],
    feature_sets: Sequence[str] | Mapping[str, str | Sequence[str]],
    train_sizes: Iterable[int] | None = None,
    seeds: Iterable[int] | None = None,
    *,
    train_label: Label = Label(),
    eval_label: Label = Label(),
    protocol: str | Protocol | None = None,
    evaluate: str | int | None = None,
    n_jobs: int = 1,
    results_path: str | os.PathLike | None = None,
    top_fractions: Sequence[float] = (0.01, 0.05),
    progress: bool = True,
) -> pd.DataFrame:
    """Fit and score every model x feature set x training size x seed.

    Everything that can be wrong is checked before the first fit: model and
    feature-set names, labels the file lacks, training sizes larger than the
    cells available. Each feature set is encoded once. Fits run in `n_jobs`
    processes (joblib), under a progress bar.

    Parameters
    ----------
    dataset : NASBench101
        The cells and their labels.
    models : list of str, or mapping of str to str or estimator
        Names of :data:`utils.predictors.MODELS`, or display names mapped to
        such names or to unfitted regressors (cloned for each fit, their
        ``random_state`` set to the seed).
    feature_sets : list of str, or mapping of str to str or list of str
        Names understood by :func:`utils.encodings.encode`, or display names
        mapped to such names or lists of them.
    train_sizes, seeds : iterable of int, optional
        Training sizes and split seeds; by default those of `protocol`.
    train_label : Label, default=Label()
        What the models learn (default: mean final validation accuracy at
        108 epochs). Cells where it is NaN are never drawn for training.
    eval_label : Label, default=Label()
        What predictions are scored against. Cells where it is NaN are
        dropped from evaluation and counted in ``n_eval_dropped``.
    protocol : str or Protocol, optional
        A name of :data:`PROTOCOLS` or a :class:`Protocol`: default sizes,
        seeds and evaluation mode. Without it and without sizes and seeds,
        ``"nb101"``.
    evaluate : {"rest", "all"} or int, optional
        Evaluation cells (see :func:`make_split`); default the protocol's,
        which is ``"rest"`` for the named ones.
    n_jobs : int, default=1
        Fits in parallel. Neural models (``mlp``, ``gcn``, and ensembles with
        such a member) always run one at a time in this process, after the
        others, so their TensorFlow threads do not compete with other fits.
    results_path : str or path-like, optional
        A JSON-lines file. Each finished fit is appended as one line; rows
        already there with the same key (``model``, ``feature_set``,
        ``train_size``, ``seed``, ``train_label``, ``eval_label``,
        ``evaluate``) are not fitted again and are returned as saved.
    top_fractions : sequence of float, default=(0.01, 0.05)
        Shares for the top-k precision columns.
    progress : bool, default=True
        Show a tqdm progress bar.

    Returns
    -------
    results : pandas.DataFrame
        One row per (model, feature set, size, seed), in that nested order;
        columns as in the module docstring.

    Raises
    ------
    ValueError
        For an unknown model or feature-set name, a label the file lacks or
        that no cell has, or a training size above the cells available.

    Notes
    -----
    A saved row is recognised by its key alone, which holds the display name
    of a model but not its parameters: after changing a model's parameters,
    give it a new display name or a new `results_path`. One file should have
    one writer at a time; two runs appending to it at once are not guarded
    against.

    Warning: ``evaluate="all"`` scores training cells too, which flatters
    models that memorise them (forests, boosted trees); use it only to
    compare with papers that report it.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from utils.encodings import encode
    from utils.predictors import MODELS

    # Sizes, seeds and the evaluation mode: explicit ones win over the protocol.
    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise ValueError(
                f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}"
            )
        protocol = PROTOCOLS[protocol]
    if protocol is None and (train_sizes is None or seeds is None):
        protocol = PROTOCOLS["nb101"]
    train_sizes = list(protocol.train_sizes if train_sizes is None else train_sizes)
    seeds = list(protocol.seeds if seeds is None else seeds)
    if evaluate is None:
        evaluate = protocol.evaluate if protocol is not None else "rest"

    # Model names are checked before anything is computed.
    models = _named(models, "models")
    for name, spec in models.items():
        if isinstance(spec, str) and spec not in MODELS:
            raise ValueError(
                f"unknown model {spec!r}; expected one of {', '.join(sorted(MODELS))}"
            )
        if not isinstance(spec, str) and not hasattr(spec, "fit"):
            raise ValueError(
                f"model {name!r} must be a name or an estimator, got {spec!r}"
            )
    feature_sets = _named(feature_sets, "feature sets")

    # Labels: missing ones raise in dataset.targets; per-seed for "random".
    n_cells = len(dataset)
    label_values = {}
    for role, label in (("train", train_label), ("eval", eval_label)):
        for seed in seeds:
            values = label.values(dataset, seed=seed)
            if not np.isfinite(values).any():
                raise ValueError(
                    f"{role} label {label} is NaN for all {n_cells} cells; "
                    "expected a label the file holds"
                )
            label_values[role, seed] = values

    # Every split, so that a size too large fails before the first fit.
    splits = {}
    for seed in seeds:
        for size in train_sizes:
            splits[size, seed] = make_split(
                n_cells,
                size,
                seed,
                evaluate=evaluate,
                train_mask=np.isfinite(label_values["train", seed]),
                eval_mask=np.isfinite(label_values["eval", seed]),
            )

    # Each feature set encoded once; unknown names raise here.
    features = {}
    for name, spec in feature_sets.items():
        start = time.perf_counter()
        features[name] = np.asarray(encode(dataset, spec).X)
        logger.info(
            "feature set %s: %d columns in %.1f s",
            name,
            features[name].shape[1],
            time.perf_counter() - start,
        )

    # Rows already saved, and the jobs still to do.
    path = Path(results_path) if results_path is not None else None
    saved = {_row_key(row): row for row in (_read_done(path) if path else [])}
    jobs, done_rows = [], []
    for model_name, feature_name, size, seed in itertools.product(
        models, feature_sets, train_sizes, seeds
    ):
        key = {
            "model": model_name,
            "feature_set": feature_name,
            "train_size": int(size),
            "seed": int(seed),
            "train_label": str(train_label),
            "eval_label": str(eval_label),
            "evaluate": _evaluate_key(evaluate),
        }
        if _row_key(key) in saved:
            done_rows.append(saved[_row_key(key)])
            continue
        jobs.append(
            {
                "key": key,
                "model_spec": models[model_name],
                "feature_set": feature_name,
                "split": splits[size, seed],
                "neural": _is_neural(models[model_name]),
            }
        )
    logger.info("%d fits to run, %d already in %s", len(jobs), len(done_rows), path)

    # Run: the non-neural fits in parallel, then the neural ones one by one.
    def arguments(job):
        seed = job["split"].seed
        return (
            job,
            features[job["feature_set"]],
            label_values["train", seed],
            label_values["eval", seed],
            top_fractions,
        )

    parallel_jobs = [job for job in jobs if not job["neural"]]
    serial_jobs = [job for job in jobs if job["neural"]]
    new_rows = []
    with tqdm(total=len(jobs), desc="fits", disable=not progress) as bar:
        streams = []
        if parallel_jobs:
            streams.append(
                Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
                    delayed(_fit_one)(*arguments(job)) for job in parallel_jobs
                )
            )
        streams.append(_fit_one(*arguments(job)) for job in serial_jobs)
        for row in itertools.chain.from_iterable(streams):
            new_rows.append(row)
            if path is not None:
                _append_row(path, row)
            bar.set_postfix_str(f"{row['model']}/{row['feature_set']}")
            bar.update()

    # One row per requested fit, in nested order.
    results = pd.DataFrame(done_rows + new_rows)
    order = {
        name: {value: i for i, value in enumerate(values)}
        for name, values in (
            ("model", list(models)),
            ("feature_set", list(feature_sets)),
            ("train_size", train_sizes),
            ("seed", seeds),
        )
    }
    results = results.sort_values(
        list(order), key=lambda column: column.map(order[column.name])
    )
    return results.reset_index(drop=True)


def _append_row(path: Path, row: Mapping) -> None:
    """Append one result row as a JSON line (NaN written as null)."""
    clean = {
        key: (None if isinstance(value, float) and math.isnan(value) else value)
        for key, value in row.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(clean) + "\n")


# --------------------------------------------------------------------------
# The noise ceiling
# --------------------------------------------------------------------------


def noise_ceiling(
    dataset,
    budget: int = 108,
    metric: str = "validation_accuracy",
    point: str = "final",
) -> pd.DataFrame:
    """Rank agreement between training runs of the same cells.

    For each pair of runs (0 vs 1, 0 vs 2, 1 vs 2) over the cells where both
    are measured: Kendall's tau-b and Spearman's rho. A predictor trained on
    one run and scored on another cannot be expected to do better.

    Parameters
    ----------
    dataset : NASBench101
        The cells.
    budget, metric, point
        The label, as in :class:`Label`.

    Returns
    -------
    ceiling : pandas.DataFrame
        One row per pair of runs with at least two cells measured by both:
        ``run_a``, ``run_b``, ``n_cells``, ``kendall_tau``, ``spearman_rho``.
        Empty (same columns) when fewer than two runs are measured; that case
        is logged at WARNING level rather than raised, so that a report over
        several files goes on.

    Raises
    ------
    ValueError
        If the file has no such label at all (from ``dataset.targets``).
    """
    columns = ["run_a", "run_b", "n_cells", "kendall_tau", "spearman_rho"]

    # One column per run; a run nobody measured is left out.
    runs, errors = {}, []
    for run in range(3):
        try:
            values, _ = dataset.targets(
                budget=budget, metric=metric, point=point, runs=run
            )
        except ValueError as error:
            errors.append(error)
            continue
        values = np.asarray(values, dtype=np.float64)
        if np.isfinite(values).any():
            runs[run] = values
    if len(errors) == 3:
        raise errors[0]

    rows = []
    for run_a, run_b in itertools.combinations(sorted(runs), 2):
        both = np.isfinite(runs[run_a]) & np.isfinite(runs[run_b])
        if both.sum() < 2:
            continue
        a, b = runs[run_a][both], runs[run_b][both]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            rows.append(
                {
                    "run_a": run_a,
                    "run_b": run_b,
                    "n_cells": int(both.sum()),
                    "kendall_tau": float(stats.kendalltau(a, b).statistic),
                    "spearman_rho": float(stats.spearmanr(a, b).statistic),
                }
            )

    if not rows:
        logger.warning(
            "no noise ceiling for %s@%d/%s: %d run(s) measured, at least two "
            "runs of the same cells are needed",
            metric,
            budget,
            point,
            len(runs),
        )
    return pd.DataFrame(rows, columns=columns)
