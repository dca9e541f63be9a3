"""What the analysis notebook needs besides figures: data, labels, tables, runs.

The notebook ``analysis.ipynb`` keeps its cells short; the steps longer than
a few lines live here. They fall in four groups:

Data
    :func:`resolve_data_file` finds the HDF5 file (the environment variable
    ``NB101_DATA``, else the converted official files in ``data/``) and says
    how to make it when it is missing. :func:`pick_label` chooses a label the
    file has; :func:`label_coverage` and :func:`missing_labels` say what the
    file holds and what it lacks.
Encodings
    :func:`feature_set_table` and :func:`column_correlations`.
Predictors
    :func:`run_grid` runs :func:`utils.evaluation.run_experiments` over
    models and feature sets, giving models that read one layout only (the
    GCN) their own feature set; :func:`fit_predict` returns the per-cell
    predictions of one predictor on one split; :func:`precision_curve`.
Published results
    :data:`PUBLISHED` and :func:`comparison_table`, :func:`comparison_notes`.

and one tool: :func:`run_notebook` executes a notebook headless from a fresh
kernel, with parameters injected after the cell tagged ``parameters`` (as
papermill does)::

    python -m utils.notebook_support analysis.ipynb -o results/analysis.ipynb \\
        -p "SEEDS=[0, 1]" -p "MODELS=['ridge', 'xgb']"

(``-o`` defaults to ``results/<notebook name>``; ``--data FILE`` sets
``NB101_DATA`` for the run.)

Example::

    path = resolve_data_file()               # raises FileNotFoundError, with help
    data = NASBench101.from_hdf5(path)
    label, note = pick_label(data, metric="test_accuracy")
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from utils.evaluation import Label, make_split, score_predictions, top_k_precision

__all__ = [
    "DATA_ENV",
    "DEFAULT_DATA_FILES",
    "SPACE_SIZE",
    "FIXED_FEATURE_SETS",
    "SCORE_MODELS",
    "PUBLISHED",
    "PUBLISHED_PROTOCOL",
    "resolve_data_file",
    "pick_label",
    "label_coverage",
    "validation_and_test",
    "missing_labels",
    "feature_set_table",
    "column_correlations",
    "run_grid",
    "run_pairs",
    "best_pairs",
    "fit_predict",
    "precision_curve",
    "comparison_table",
    "comparison_notes",
    "run_notebook",
]

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]

#: Environment variable that names the data file.
DATA_ENV = "NB101_DATA"

#: Files looked for when ``NB101_DATA`` is unset, in order.
DEFAULT_DATA_FILES = ("data/nasbench_only108.hdf5", "data/nasbench_full.hdf5")

#: Distinct cells of NAS-Bench-101.
SPACE_SIZE = 423_624

#: Models that read one feature layout only, and that layout.
FIXED_FEATURE_SETS = {"gcn": "graph"}

#: Models whose predictions are ranks, not accuracies, with their defaults
#: (the rank ensemble; the rankers map their scores onto the targets).
SCORE_MODELS = ("ensemble",)

_HOW_TO_GET = """\
no NAS-Bench-101 data file: {tried}.
Make one from the official file (about 500 MB to download):
    python tfrecord_to_hdf5.py --download only108   # -> data/nasbench_only108.hdf5
    python tfrecord_to_hdf5.py --download full      # 4/12/36/108 epochs, ~2 GB
or point the environment variable {env} at a schema-v1 HDF5 file, e.g.
    export {env}=/path/to/nasbench101.hdf5"""


# -- data ---------------------------------------------------------------------


def resolve_data_file(
    path: str | os.PathLike | None = None, root: str | os.PathLike = ROOT
) -> Path:
    """The data file: `path`, else ``$NB101_DATA``, else the first default.

    Parameters
    ----------
    path : str or path-like, optional
        An explicit file; wins over the environment.
    root : str or path-like
        Folder that the default files are relative to (the project).

    Returns
    -------
    Path
        An existing file.

    Raises
    ------
    FileNotFoundError
        If the file named (or every default) is missing; the message gives
        the commands that make it.
    """
    given = path if path is not None else os.environ.get(DATA_ENV) or None
    if given is not None:
        candidates = [Path(given).expanduser()]
        source = f"{given} (from {'the argument' if path is not None else DATA_ENV})"
    else:
        candidates = [Path(root) / name for name in DEFAULT_DATA_FILES]
        source = f"{DATA_ENV} is unset and {', '.join(DEFAULT_DATA_FILES)} are missing"

    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = f"{source}" if given is None else f"{source} does not exist"
    raise FileNotFoundError(_HOW_TO_GET.format(tried=tried, env=DATA_ENV))


def pick_label(
    data,
    budget: int = 108,
    metric: str = "validation_accuracy",
    point: str = "final",
    runs: str | int = "mean",
) -> tuple[Label, str]:
    """The label asked for if the file has it, else the closest one it has.

    The fallback keeps `budget` and `point` if it can and prefers, in order,
    validation accuracy, test accuracy and train accuracy (never training
    time, which is not an accuracy).

    Returns
    -------
    label : utils.evaluation.Label
    note : str
        Empty when the label asked for is used; else what replaced what.

    Raises
    ------
    ValueError
        If the file holds no accuracy at all.
    """
    available = data.available_labels()
    have = {(a.budget, a.metric, a.point): a for a in available}
    if (budget, metric, point) in have:
        return Label(budget, metric, point, runs), ""

    preference = ("validation_accuracy", "test_accuracy", "train_accuracy")
    ranked = sorted(
        (a for a in available if a.metric in preference),
        key=lambda a: (
            a.budget != budget,
            a.point != point,
            preference.index(a.metric),
            -a.budget,
        ),
    )
    if not ranked:
        raise ValueError(
            f"{data.source} holds no accuracy; labels with data: "
            f"{', '.join(f'{a.metric}@{a.budget}/{a.point}' for a in available)}"
        )
    chosen = ranked[0]
    label = Label(chosen.budget, chosen.metric, chosen.point, runs)
    note = (
        f"the file has no {metric}@{budget}/{point}; using {label} instead"
        f" ({chosen.n_cells:,} cells, up to {chosen.max_runs} run(s) each)"
    )
    return label, note


def label_coverage(data, wide: bool = False) -> pd.DataFrame:
    """Every (budget, metric, point) of the schema with what the file holds.

    Parameters
    ----------
    data : NASBench101
    wide : bool, default=False
        Return one row per (metric, point) and one column per budget, each
        entry "cells x most runs" ("-" where nothing was measured).

    Returns
    -------
    DataFrame
        Long form: columns ``budget``, ``metric``, ``point``, ``n_cells``
        (cells with at least one run, 0 if none), ``max_runs``, ``share`` (of
        the cells of the file).
    """
    from utils.schema import EPOCHS, EVALUATION_POINTS, METRIC_NAMES

    have = {(a.budget, a.metric, a.point): a for a in data.available_labels()}
    rows = []
    for budget in EPOCHS:
        for metric in METRIC_NAMES:
            for point in EVALUATION_POINTS:
                label = have.get((budget, metric, point))
                n_cells = label.n_cells if label else 0
                rows.append(
                    {
                        "budget": budget,
                        "metric": metric,
                        "point": point,
                        "n_cells": n_cells,
                        "max_runs": label.max_runs if label else 0,
                        "share": n_cells / max(len(data), 1),
                    }
                )
    coverage = pd.DataFrame(rows)
    if not wide:
        return coverage

    coverage["entry"] = [
        f"{row.n_cells:,} x {row.max_runs}" if row.n_cells else "-"
        for row in coverage.itertuples()
    ]
    table = coverage.pivot(index=["metric", "point"], columns="budget", values="entry")
    table.columns = [f"{budget} epochs" for budget in table.columns]
    return table.reindex(
        pd.MultiIndex.from_product([METRIC_NAMES, EVALUATION_POINTS])
    ).rename_axis(["metric", "point"])


def validation_and_test(
    data, budget: int = 108, runs: str | int = "mean"
) -> tuple[np.ndarray, np.ndarray] | None:
    """Final validation and test accuracy of the cells that have both.

    Returns
    -------
    (validation, test) : pair of arrays of shape (n_both,), or None
        None when the file lacks either metric at `budget`.
    """
    have = {a.metric for a in data.available_labels() if a.budget == budget}
    if not {"validation_accuracy", "test_accuracy"} <= have:
        return None
    validation, _ = data.targets(budget, "validation_accuracy", runs=runs)
    test, _ = data.targets(budget, "test_accuracy", runs=runs)
    both = np.isfinite(validation) & np.isfinite(test)
    return validation[both], test[both]


def missing_labels(data) -> list[str]:
    """Sentences on what the file lacks against the full benchmark.

    Covers the share of the space, missing metrics, budgets, evaluation
    points and repeated runs; empty for a complete file.
    """
    coverage = label_coverage(data)
    present = coverage[coverage["n_cells"] > 0]
    notes = []
    if len(data) < SPACE_SIZE:
        notes.append(
            f"{len(data):,} of the {SPACE_SIZE:,} cells of the space "
            f"({len(data) / SPACE_SIZE:.1%})"
        )
    for column, values in (
        ("metric", coverage["metric"].unique()),
        ("budget", coverage["budget"].unique()),
        ("point", coverage["point"].unique()),
    ):
        absent = [str(v) for v in values if v not in set(present[column])]
        if absent:
            notes.append(f"no {column} {', '.join(absent)}")

    # Accuracies measured at some budget but not at another the file has.
    budgets = sorted(present["budget"].unique())
    for metric in present["metric"].unique():
        measured = set(present.loc[present["metric"] == metric, "budget"])
        lacking = [str(b) for b in budgets if b not in measured]
        if lacking and len(measured) < len(budgets):
            notes.append(f"{metric} missing at {', '.join(lacking)} epochs")

    max_runs = int(present["max_runs"].max()) if len(present) else 0
    if max_runs < 3:
        notes.append(
            f"at most {max_runs} training run(s) per cell instead of 3: no noise "
            "ceiling, and 'mean' targets rest on one run"
        )
    partial = present[present["share"] < 1]
    for row in partial.itertuples():
        notes.append(
            f"{row.metric}@{row.budget}/{row.point} measured for "
            f"{row.share:.1%} of the cells"
        )
    return notes


# -- encodings ----------------------------------------------------------------


def feature_set_table(data, names: Iterable[str] | None = None) -> pd.DataFrame:
    """Feature sets with their encodings and number of columns.

    Parameters
    ----------
    data : NASBench101
        Used to count columns (its first cells are encoded).
    names : iterable of str, optional
        Feature sets to list; default every registered one.

    Returns
    -------
    DataFrame
        Index ``feature_set``; columns ``encodings``, ``columns``,
        ``invariant`` (all its encodings are) and ``structural``.
    """
    from utils.encodings import encode, encodings, feature_sets

    registry = encodings()
    sets = feature_sets()
    names = list(sets) if names is None else list(names)
    head = data.subset(np.arange(min(len(data), 8)))
    rows = []
    for name in names:
        members = sets.get(name, (name,))
        rows.append(
            {
                "feature_set": name,
                "encodings": ", ".join(members),
                "columns": encode(head, name, cache=False).X.shape[1],
                "invariant": all(registry[m].invariant for m in members),
                "structural": all(registry[m].structural for m in members),
            }
        )
    return pd.DataFrame(rows).set_index("feature_set")


def column_correlations(
    data, encoding_names: Iterable[str], target: np.ndarray
) -> pd.DataFrame:
    """Spearman correlation of every column of some encodings with a target.

    Parameters
    ----------
    data : NASBench101
    encoding_names : iterable of str
        Encodings (not feature sets) whose columns to correlate.
    target : array of shape (n_cells,)
        E.g. accuracy; NaN cells are left out.

    Returns
    -------
    DataFrame
        One row per column: ``encoding``, ``column``, ``spearman`` (NaN for a
        column constant over the cells), ``nonzero`` (share of cells where
        the column is not 0).
    """
    from scipy.stats import rankdata

    from utils.encodings import encode

    keep = np.isfinite(target)
    y = rankdata(target[keep])
    y = (y - y.mean()) / y.std()
    frames = []
    for name in encoding_names:
        features = encode(data, name)
        X = np.asarray(features.X)[keep]

        # Spearman = Pearson on ranks, for all columns at once.
        ranks = np.apply_along_axis(rankdata, 0, X)
        spread = ranks.std(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = ((ranks - ranks.mean(axis=0)) * y[:, None]).mean(axis=0) / spread
        rho[spread == 0] = np.nan
        frames.append(
            pd.DataFrame(
                {
                    "encoding": name,
                    "column": features.columns,
                    "spearman": rho,
                    "nonzero": (X != 0).mean(axis=0),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# -- predictors ---------------------------------------------------------------


def run_grid(
    data,
    models: Sequence[str],
    feature_sets: Sequence[str],
    train_sizes: Sequence[int],
    seeds: Sequence[int],
    fixed: Mapping[str, str] = FIXED_FEATURE_SETS,
    **kwargs,
) -> pd.DataFrame:
    """:func:`utils.evaluation.run_experiments` over models x feature sets.

    A model of `fixed` (the GCN) runs on its own feature set only, whatever
    `feature_sets` holds; every other model runs on every feature set.

    Parameters
    ----------
    data : NASBench101
    models, feature_sets : sequence of str
    train_sizes, seeds : sequence of int
    fixed : mapping of str to str
        Model name -> the only feature set it reads.
    **kwargs
        Passed on (labels, ``evaluate``, ``n_jobs``, ``results_path``...).

    Returns
    -------
    DataFrame
        The tidy rows of every run, models in the order given.
    """
    from utils.evaluation import run_experiments

    free = [m for m in models if m not in fixed]
    runs = []
    if free:
        runs.append(
            run_experiments(
                data, free, list(feature_sets), train_sizes, seeds, **kwargs
            )
        )
    for model in (m for m in models if m in fixed):
        runs.append(
            run_experiments(data, [model], [fixed[model]], train_sizes, seeds, **kwargs)
        )
    results = pd.concat(runs, ignore_index=True)
    order = {name: i for i, name in enumerate(models)}
    return results.sort_values(
        "model", key=lambda column: column.map(order), kind="stable"
    ).reset_index(drop=True)


def run_pairs(
    data,
    pairs: pd.DataFrame,
    train_sizes: Sequence[int],
    seeds: Sequence[int],
    **kwargs,
) -> pd.DataFrame:
    """:func:`run_grid` for given (model, feature set) pairs only.

    Parameters
    ----------
    data : NASBench101
    pairs : DataFrame
        Columns ``model`` and ``feature_set``, e.g. from :func:`best_pairs`.
    train_sizes, seeds : sequence of int
    **kwargs
        Passed on to :func:`run_grid`.

    Returns
    -------
    DataFrame
        The tidy rows of every pair, in the order of `pairs`.
    """
    runs = [
        run_grid(data, [pair.model], [pair.feature_set], train_sizes, seeds, **kwargs)
        for pair in pairs.itertuples()
    ]
    return pd.concat(runs, ignore_index=True)


def best_pairs(results: pd.DataFrame, metric: str = "kendall_tau") -> pd.DataFrame:
    """The best feature set of each model by mean `metric` over seeds.

    Returns
    -------
    DataFrame
        One row per model, best first: ``model``, ``feature_set``, the mean
        and the standard deviation of `metric`.
    """
    summary = (
        results.groupby(["model", "feature_set"], sort=False)[metric]
        .agg(["mean", "std"])
        .reset_index()
    )
    best = summary.loc[summary.groupby("model", sort=False)["mean"].idxmax()]
    return best.sort_values("mean", ascending=False).reset_index(drop=True)


def fit_predict(
    data,
    model: str,
    feature_set: str,
    train_size: int,
    seed: int,
    train_label: Label | None = None,
    eval_label: Label | None = None,
    evaluate: str | int = "rest",
) -> pd.DataFrame:
    """Fit one predictor on one split and return its per-cell predictions.

    The split, the model and its seed are those of
    :func:`utils.evaluation.run_experiments` for the same arguments, so the
    scores of these predictions equal the row it reports. The labels default
    to mean final validation accuracy at 108 epochs.

    Returns
    -------
    DataFrame
        One row per evaluated cell: ``row`` (index in `data`), ``hash``,
        ``y_true``, ``y_pred``; ``attrs`` holds the scores, fit and predict
        seconds.
    """
    from utils.encodings import encode
    from utils.predictors import make_model

    train_label = train_label or Label()
    eval_label = eval_label or Label()
    y_train = train_label.values(data, seed=seed)
    y_eval = eval_label.values(data, seed=seed)
    split = make_split(
        len(data),
        train_size,
        seed,
        evaluate=evaluate,
        train_mask=np.isfinite(y_train),
        eval_mask=np.isfinite(y_eval),
    )
    X = np.asarray(encode(data, feature_set).X)

    estimator = make_model(model, random_state=seed)
    start = time.perf_counter()
    estimator.fit(X[split.train], y_train[split.train])
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = np.asarray(estimator.predict(X[split.evaluate]), dtype=np.float64)
    predict_seconds = time.perf_counter() - start

    frame = pd.DataFrame(
        {
            "row": split.evaluate,
            "hash": data.hash[split.evaluate],
            "y_true": y_eval[split.evaluate],
            "y_pred": predictions,
        }
    )
    frame.attrs = {
        **score_predictions(frame["y_true"], frame["y_pred"]),
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
    }
    logger.info(
        "%s on %s, %d cells, seed %d: tau %.3f",
        model,
        feature_set,
        train_size,
        seed,
        frame.attrs["kendall_tau"],
    )
    return frame


def precision_curve(y_true, y_pred, ks: Iterable[int] | None = None) -> pd.DataFrame:
    """Precision of the predicted top k for several k.

    Parameters
    ----------
    y_true, y_pred : array of shape (n_cells,)
    ks : iterable of int, optional
        Sizes of the top; default about 20 sizes from 1 to a tenth of the
        cells, evenly spaced on a log scale.

    Returns
    -------
    DataFrame
        Columns ``k``, ``fraction`` (k / n_cells), ``precision``, ``chance``
        (the precision of a random order, about k / n_cells).
    """
    n_cells = len(y_true)
    if ks is None:
        ks = np.unique(np.geomspace(1, max(n_cells // 10, 1), 20).round().astype(int))
    rows = []
    for k in ks:
        fraction = k / n_cells
        rows.append(
            {
                "k": int(k),
                "fraction": fraction,
                "precision": top_k_precision(y_true, y_pred, fraction),
                "chance": fraction,
            }
        )
    return pd.DataFrame(rows)


# -- published results --------------------------------------------------------

#: How the published numbers of :data:`PUBLISHED` were measured.
PUBLISHED_PROTOCOL = (
    "NAS-Bench-101; train on N cells drawn at random; label: validation "
    "accuracy at 108 epochs; Kendall tau over all cells of the benchmark, "
    "training cells included"
)

#: Kendall tau on NAS-Bench-101 for :data:`PUBLISHED_PROTOCOL`, as listed in
#: Table 1 of Lu et al., "TNASP: A Transformer-based NAS Predictor with a
#: Self-evolution Framework", NeurIPS 2021; the Neural Predictor row is their
#: run of the GCN of Wen et al., "Neural Predictor for Neural Architecture
#: Search", ECCV 2020.
PUBLISHED = pd.DataFrame(
    [
        ("Neural Predictor (Wen et al. 2020), run by Lu et al. 2021", 100, 0.391),
        ("Neural Predictor (Wen et al. 2020), run by Lu et al. 2021", 172, 0.545),
        ("Neural Predictor (Wen et al. 2020), run by Lu et al. 2021", 424, 0.710),
        ("TNASP (Lu et al. 2021)", 100, 0.600),
        ("TNASP (Lu et al. 2021)", 172, 0.669),
        ("TNASP (Lu et al. 2021)", 424, 0.705),
    ],
    columns=["label", "train_size", "kendall_tau"],
)


def comparison_table(
    results: pd.DataFrame, published: pd.DataFrame = PUBLISHED
) -> pd.DataFrame:
    """Our mean tau per model beside published values, at shared sizes.

    Returns
    -------
    DataFrame
        Index ``train_size`` (every size of either side); one column per
        published method and one per model of `results` (its best feature
        set, mean over seeds, with the standard deviation in brackets);
        blank where a side has no value.
    """
    sizes = sorted(set(results["train_size"]) | set(published["train_size"]))
    theirs = published.pivot_table(
        index="train_size", columns="label", values="kendall_tau"
    ).reindex(sizes)
    theirs = theirs.map(lambda v: f"{v:.3f}" if np.isfinite(v) else "")
    theirs.columns = [f"published: {label}" for label in theirs.columns]

    ours = {}
    for model, group in results[results["train_size"].isin(sizes)].groupby(
        "model", sort=False
    ):
        feature_set = best_pairs(group)["feature_set"].iloc[0]
        stats = (
            group[group["feature_set"] == feature_set]
            .groupby("train_size")["kendall_tau"]
            .agg(["mean", "std"])
        )
        spread = stats["std"].fillna(0.0)
        text = [
            f"{mean:.3f} (±{std:.3f})"
            for mean, std in zip(stats["mean"], spread, strict=True)
        ]
        ours[f"this file: {model} ({feature_set})"] = pd.Series(text, stats.index)
    return pd.concat([theirs, pd.DataFrame(ours)], axis=1).fillna("")


def comparison_notes(
    data, train_label: Label, eval_label: Label, evaluate, n_seeds: int
) -> list[str]:
    """Where this run's protocol differs from the published one.

    Returns
    -------
    list of str
        One sentence per difference; empty when the run is like for like.
    """
    notes = []
    if len(data) < SPACE_SIZE:
        notes.append(
            f"the file holds {len(data):,} cells ({len(data) / SPACE_SIZE:.1%} of "
            f"the space): cells are drawn and ranked among those, not all "
            f"{SPACE_SIZE:,}; if they are a uniform sample, tau over them "
            "estimates tau over the space, otherwise it does not"
        )
    runs = max(
        (a.max_runs for a in data.available_labels() if a.metric == eval_label.metric),
        default=0,
    )
    if runs < 3:
        notes.append(
            f"each cell has {runs} training run(s), not the mean of 3: the "
            "targets are noisier, which lowers every tau"
        )
    for role, label in (("training", train_label), ("evaluation", eval_label)):
        if (label.budget, label.metric, label.point) != (
            108,
            "validation_accuracy",
            "final",
        ):
            notes.append(f"the {role} label is {label}, not validation accuracy@108")
    if evaluate != "all":
        notes.append(
            f"evaluation cells: {evaluate!r}, where the published tau counts every "
            "cell, training cells included (a minor difference: they are at most "
            "1% of the space at the published sizes)"
        )
    if n_seeds < 5:
        notes.append(f"{n_seeds} seed(s): the spread over splits is barely measured")
    return notes


# -- headless runs ------------------------------------------------------------


def _parameter_source(parameters: Mapping[str, object]) -> str:
    lines = ["# Parameters injected for this run"]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    return "\n".join(lines)


def run_notebook(
    path: str | os.PathLike,
    parameters: Mapping[str, object] | None = None,
    output: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    timeout: int = 1800,
    cwd: str | os.PathLike | None = None,
):
    """Execute a notebook top to bottom in a fresh kernel.

    Parameters
    ----------
    path : str or path-like
        The ``.ipynb`` file (left unchanged).
    parameters : mapping, optional
        Values assigned in a cell inserted after the cell tagged
        ``parameters``; they must have a Python literal ``repr``.
    output : str or path-like, optional
        Where to write the executed notebook.
    env : mapping, optional
        Environment variables set for the kernel (e.g. ``NB101_DATA``).
    timeout : int, default=1800
        Seconds allowed per cell.
    cwd : str or path-like, optional
        Working folder of the kernel; default the notebook's folder.

    Returns
    -------
    nbformat.NotebookNode
        The executed notebook.

    Raises
    ------
    ValueError
        If parameters are given and no cell is tagged ``parameters``.
    nbclient.exceptions.CellExecutionError
        If a cell fails; the message holds its traceback.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    if parameters:
        tagged = [
            i
            for i, cell in enumerate(notebook.cells)
            if "parameters" in cell.get("metadata", {}).get("tags", [])
        ]
        if not tagged:
            raise ValueError(f"{path} has no cell tagged 'parameters'")
        cell = nbformat.v4.new_code_cell(_parameter_source(parameters))
        cell.metadata["tags"] = ["injected-parameters"]
        notebook.cells.insert(tagged[0] + 1, cell)

    previous = {name: os.environ.get(name) for name in (env or {})}
    os.environ.update(env or {})
    try:
        started = time.perf_counter()
        client = NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(cwd or path.parent)}},
        )
        client.execute()
        logger.info("executed %s in %.0f s", path, time.perf_counter() - started)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if output is not None:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, output)
    return notebook


def _parse_parameter(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return name.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a notebook headless with parameters (fresh kernel)."
    )
    parser.add_argument("notebook", type=Path)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="where to write the executed notebook (default: results/NOTEBOOK)",
    )
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        type=_parse_parameter,
        help="NAME=VALUE, a Python literal (repeatable)",
    )
    parser.add_argument("--data", help=f"data file (sets {DATA_ENV})")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    env = {DATA_ENV: str(Path(args.data).resolve())} if args.data else None
    parameters = dict(args.parameter)
    output = args.output or Path("results") / args.notebook.name
    logger.info("running %s with %s", args.notebook, parameters or "its defaults")
    run_notebook(args.notebook, parameters, output, env=env, timeout=args.timeout)
    logger.info("executed notebook written to %s", output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
