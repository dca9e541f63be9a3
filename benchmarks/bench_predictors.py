"""Benchmark of accuracy predictors on the 20,001-cell sample of NAS-Bench-101.

Every predictor is trained on 172, 424 and 1,000 cells drawn from the sample
(five seeds, training sets nested per seed) and scored by Kendall's tau on
all the other cells of the sample. Training and evaluation label are the one
run the sample holds: final validation accuracy at 108 epochs, run 0.

Usage::

    python benchmarks/bench_predictors.py [DATA] [--out FILE] [--n-jobs 2]
        [--seeds 5] [--sizes 172 424 1000] [--only NAME ...] [--cache FILE]

``DATA`` defaults to ``../shared/nb101/sample-20k.h5`` beside the checkout.
The table (markdown) goes to stdout and to ``--out`` (default
``results/predictors.md``). Finished fits are appended to ``--cache``
(JSON lines, default ``results/predictors.jsonl``; ``results/`` is ignored by git)
so that an interrupted run resumes where it stopped.

The grid (:func:`build_grid`) pairs each model with the feature sets it suits.
Beside the registry's models with their defaults it holds variants built
here from the registry's classes, without changing their defaults:

``*_qt``
    the model learns the quantile of each training cell's accuracy (its
    rank scaled to [0, 1], by scikit-learn's ``QuantileTransformer`` with
    100 quantiles) instead of the accuracy; predictions are mapped back.
    ``xgb_qt`` also samples half the features per tree
    (``colsample_bytree=0.5``, the registry's default is 0.8). The ~0.6% of runs
    that diverge to ~10% accuracy then weigh like any other bad cell instead
    of dominating a squared error.
``xgb_qt_cv``
    ``xgb_qt`` whose depth, learning rate and minimum child weight are
    chosen by a grid search (``XGB_GRID``) scored by Kendall's tau in 5-fold
    cross-validation inside the training cells, the winner refitted on all
    of them.
``gcn_qt+xgb_qt``
    the rank average (``RankEnsemble``) of the two, each reading its own
    columns of the ``graph`` + ``all`` features.

Reading the table: the median and spread (IQR and min-max) of Kendall's tau
over the seeds, and the median fit and predict times (predict: all
evaluation cells, ~19k) on the machine named in the header.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.preprocessing import QuantileTransformer
from sklearn.utils.validation import check_is_fitted

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.dataset import NASBench101  # noqa: E402
from utils.encodings import encode  # noqa: E402
from utils.evaluation import Label, kendall_tau_scorer, run_experiments  # noqa: E402
from utils.predictors import RankEnsemble, make_model  # noqa: E402

logger = logging.getLogger("bench_predictors")

DEFAULT_DATA = ROOT.parent / "shared" / "nb101" / "sample-20k.h5"
DEFAULT_OUT = ROOT / "results" / "predictors.md"
DEFAULT_CACHE = ROOT / "results" / "predictors.jsonl"

#: Kendall's tau the best predictor should reach, by training size.
TARGETS = {172: 0.66, 424: 0.72, 1000: 0.76}

#: Settings tried for ``xgb_qt_cv`` (on top of the registry's defaults).
XGB_GRID = {
    "regressor__max_depth": [3, 6],
    "regressor__learning_rate": [0.02, 0.05],
    "regressor__min_child_weight": [1, 4],
}

#: The one label of the sample: final validation accuracy at 108 epochs, run 0.
LABEL = Label(budget=108, metric="validation_accuracy", point="final", runs=0)


def quantile_target(model):
    """`model` learning the quantile of each training target, not its value."""
    return TransformedTargetRegressor(
        regressor=model,
        transformer=QuantileTransformer(n_quantiles=100),
    )


class Columns(RegressorMixin, BaseEstimator):
    """`model` reading only columns ``start:stop`` of the features.

    Unlike a pipeline it takes a ``random_state`` and passes it on to every
    ``random_state`` of the wrapped model, so that an ensemble's seed reaches
    its members.
    """

    def __init__(self, model=None, start: int = 0, stop: int = 0, random_state=None):
        self.model = model
        self.start = start
        self.stop = stop
        self.random_state = random_state

    def fit(self, X, y):
        self.model_ = clone(self.model)
        if self.random_state is not None:
            seeds = {
                name: self.random_state
                for name in self.model_.get_params()
                if name == "random_state" or name.endswith("__random_state")
            }
            self.model_.set_params(**seeds)
        self.model_.fit(np.asarray(X)[:, self.start : self.stop], y)
        return self

    def predict(self, X):
        check_is_fitted(self)
        return self.model_.predict(np.asarray(X)[:, self.start : self.stop])


def cv_tuned(model, grid: dict):
    """`model` tuned by 5-fold CV Kendall's tau inside the training cells."""
    folds = KFold(n_splits=5, shuffle=True, random_state=0)
    return GridSearchCV(model, grid, scoring=kendall_tau_scorer, cv=folds)


def build_grid(threads: int) -> list[tuple[dict, dict]]:
    """(models, feature sets) pairs; the runner crosses each pair.

    Neural fits run one at a time (the runner keeps them serial) with
    `threads` TensorFlow threads. The losses of the networks are given
    explicitly, so that the table does not change with the registry's
    defaults.
    """
    gcn_mse = make_model("gcn", loss="mse", n_jobs=threads)
    gcn_pair = make_model("gcn", loss="pairwise", n_jobs=threads)
    mlp_mse = make_model("mlp", loss="mse", n_jobs=threads)
    xgb_qt = quantile_target(make_model("xgb", colsample_bytree=0.5))
    # The registry's default ensemble before it became XGBoost + ranker.
    members = [(name, make_model(name)) for name in ("ridge", "rf", "xgb")]
    ridge_rf_xgb = RankEnsemble(members)
    fast = {
        "ridge": "ridge",
        "rf": "rf",
        "xgb": "xgb",
        "xgb_rank": "xgb_rank",
        "xgb_qt": xgb_qt,
        "ensemble": "ensemble",
        "ens_ridge_rf_xgb": ridge_rf_xgb,
    }

    # graph (84 columns) first, then all: each member reads its own part.
    n_graph = encode_width("graph")
    n_both = n_graph + encode_width("all")
    gcn_xgb = RankEnsemble(
        [
            ("gcn_qt", Columns(quantile_target(gcn_mse), 0, n_graph)),
            ("xgb_qt", Columns(xgb_qt, n_graph, n_both)),
        ]
    )

    return [
        (fast, {"adj_path": "adj_path", "all": "all"}),
        ({"xgb": "xgb", "xgb_qt": xgb_qt}, {"path": "path"}),
        ({"xgb_qt_cv": cv_tuned(xgb_qt, XGB_GRID)}, {"all": "all"}),
        (
            {
                "gcn_qt": quantile_target(gcn_mse),
                "gcn_mse": gcn_mse,
                "gcn_pair": gcn_pair,
            },
            {"graph": "graph"},
        ),
        ({"mlp_mse": mlp_mse, "mlp_qt": quantile_target(mlp_mse)}, {"all": "all"}),
        ({"gcn_qt+xgb_qt": gcn_xgb}, {"graph+all": ["graph", "all"]}),
    ]


_WIDTHS: dict[str, int] = {}


def encode_width(name: str) -> int:
    """Number of columns of a feature set (set by :func:`main` from the data)."""
    return _WIDTHS[name]


#: What the model names of the table mean; printed under the table.
LEGEND = """\
Models: `ridge`, `rf`, `xgb`, `xgb_rank` (pairwise ranking objective) and
`ensemble` (rank average of `xgb` and `xgb_rank`) are the registry's
(`utils.predictors.make_model`) with their defaults; `ens_ridge_rf_xgb` is
the rank average of ridge, forest and `xgb`. `_qt`: trained on the quantile
(scaled rank) of the training accuracies, predictions mapped back;
`xgb_qt` also samples half the features per tree. `xgb_qt_cv`: `xgb_qt`
with depth, learning rate and minimum child weight chosen by 5-fold CV
Kendall tau inside the training cells. `gcn_mse`, `gcn_pair`: the
registry's GCN with squared-error or pairwise loss; `gcn_qt`: `gcn_mse` on
quantiles. `mlp_mse`, `mlp_qt`: the same for the MLP. `gcn_qt+xgb_qt`: rank
average of `gcn_qt` on the graph columns and `xgb_qt` on the `all` columns.
Feature sets are those of `utils.encodings`.
"""


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Median, IQR and range of tau, median times, per model x features x size."""

    def q(p):
        return lambda values: float(np.quantile(values, p))

    table = results.groupby(["model", "feature_set", "train_size"], sort=False).agg(
        seeds=("kendall_tau", "size"),
        tau_median=("kendall_tau", "median"),
        tau_q1=("kendall_tau", q(0.25)),
        tau_q3=("kendall_tau", q(0.75)),
        tau_min=("kendall_tau", "min"),
        tau_max=("kendall_tau", "max"),
        spearman_median=("spearman_rho", "median"),
        top1_median=("precision_at_1pct", "median"),
        fit_seconds=("fit_seconds", "median"),
        predict_seconds=("predict_seconds", "median"),
        n_eval=("n_eval", "median"),
    )
    return table.reset_index()


def markdown(table: pd.DataFrame, header: list[str]) -> str:
    """The full table and a pivot of median tau by size, as markdown."""
    lines = [*header, ""]
    lines.append(
        "| model | features | n_train | seeds | Kendall tau median | IQR | "
        "min-max | Spearman median | top-1% precision | fit s | predict s |"
    )
    lines.append("|" + "---|" * 11)
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.model} | {row.feature_set} | {row.train_size} | {row.seeds} "
            f"| {row.tau_median:.3f} | {row.tau_q1:.3f}-{row.tau_q3:.3f} "
            f"| {row.tau_min:.3f}-{row.tau_max:.3f} | {row.spearman_median:.3f} "
            f"| {row.top1_median:.2f} | {row.fit_seconds:.1f} "
            f"| {row.predict_seconds:.2f} |"
        )

    # Median tau by training size, with the targets as the last row.
    pivot = table.pivot_table(
        index=["model", "feature_set"],
        columns="train_size",
        values="tau_median",
        sort=False,
    )
    sizes = list(pivot.columns)
    lines += ["", "Median Kendall tau by training size:", ""]
    lines.append("| model | features | " + " | ".join(map(str, sizes)) + " |")
    lines.append("|---|---|" + "---|" * len(sizes))
    for (model, features), values in pivot.iterrows():
        cells = " | ".join("" if np.isnan(v) else f"{v:.3f}" for v in values)
        lines.append(f"| {model} | {features} | {cells} |")
    targets = " | ".join(f"{TARGETS.get(size, float('nan')):.2f}" for size in sizes)
    lines.append(f"| target | | {targets} |")
    lines += ["", LEGEND]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[172, 424, 1000])
    parser.add_argument(
        "--only", nargs="+", default=None, help="run only these model names"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    data = NASBench101.from_hdf5(args.data)
    for name in ("graph", "all"):
        _WIDTHS[name] = encode(data, name).X.shape[1]
    logger.info(
        "%d cells from %s; sizes %s, %d seeds, label %s",
        len(data),
        args.data,
        args.sizes,
        args.seeds,
        LABEL,
    )

    # One runner call per (models, feature sets) pair, all into one cache.
    frames = []
    for models, feature_sets in build_grid(args.n_jobs):
        if args.only is not None:
            models = {k: v for k, v in models.items() if k in args.only}
            if not models:
                continue
        logger.info("models %s on %s", ", ".join(models), ", ".join(feature_sets))
        frames.append(
            run_experiments(
                data,
                models,
                feature_sets,
                train_sizes=args.sizes,
                seeds=range(args.seeds),
                train_label=LABEL,
                eval_label=LABEL,
                evaluate="rest",
                n_jobs=args.n_jobs,
                results_path=args.cache,
            )
        )
    results = pd.concat(frames, ignore_index=True)
    results = results.drop_duplicates(["model", "feature_set", "train_size", "seed"])
    compute = float((results["fit_seconds"] + results["predict_seconds"]).sum())

    header = [
        "# Predictors on the NAS-Bench-101 sample (20,001 cells)",
        "",
        f"Data: `{args.data.name}`, {len(data)} cells. Label for training and "
        f"evaluation: `{LABEL}`. Training sizes {args.sizes}, seeds "
        f"0-{args.seeds - 1} (nested training sets per seed); evaluation on "
        "every sample cell not used for training.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with "
        f"other work while it ran), Python {platform.python_version()}, "
        f"{platform.system()}. Fits and predictions took "
        f"{compute / 60:.0f} min in total (sum over fits; the non-neural ones "
        f"ran {args.n_jobs} at a time). Times below are medians per fit; "
        "predict times are for all evaluation cells (~19k).",
    ]
    text = markdown(summarise(results), header)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
