"""Figures of the analysis notebook: data, encodings and predictors.

Every function draws one figure from plain arrays or the tidy results of
:func:`utils.evaluation.run_experiments` and returns the
:class:`matplotlib.figure.Figure`; none of them shows or saves it.
:func:`save_figure` writes a figure to a folder given by the caller, once as
vector graphics and once as PNG::

    fig = plot_learning_curves(results)
    save_figure(fig, "learning_curves", "imgs")   # imgs/learning_curves.svg, .png

Input contract: accuracies are fractions in [0, 1] (as in the data files),
results frames have the columns ``model``, ``feature_set``, ``train_size``,
``seed`` and a metric column such as ``kendall_tau``. NaN values are left
out of every plot; an empty input draws an empty panel with a note rather
than raising, so that a notebook on a partial file goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

__all__ = [
    "use_style",
    "save_figure",
    "plot_accuracy_distribution",
    "plot_cost_accuracy",
    "plot_validation_vs_test",
    "plot_correlations",
    "plot_metric_heatmap",
    "plot_learning_curves",
    "plot_predicted_vs_true",
    "plot_precision_at_k",
    "plot_cost_quality",
]

logger = logging.getLogger(__name__)

#: Formats written by :func:`save_figure`: one vector, one raster.
FORMATS = ("svg", "png")

_METRIC_NAMES = {
    "kendall_tau": "Kendall tau",
    "spearman_rho": "Spearman rho",
    "pearson_r": "Pearson r",
    "precision_at_1pct": "precision of the predicted top 1%",
    "precision_at_5pct": "precision of the predicted top 5%",
}


def use_style() -> None:
    """Set the look shared by all figures (seaborn's white grid, 10 pt)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight"})


def save_figure(
    fig: Figure,
    name: str,
    folder: str | os.PathLike,
    formats: Sequence[str] = FORMATS,
    dpi: int = 150,
) -> list[Path]:
    """Write `fig` as ``folder/name.<format>`` for each format.

    Parameters
    ----------
    fig : Figure
    name : str
        File name without suffix.
    folder : str or path-like
        Created if missing.
    formats : sequence of str, default=("svg", "png")
        Formats matplotlib can write ("svg", "pdf", "png", ...).
    dpi : int, default=150
        Resolution of raster formats.

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = folder / f"{name}.{fmt}"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    logger.info("saved %s as %s", folder / name, ", ".join(formats))
    return paths


def _metric_name(metric: str) -> str:
    return _METRIC_NAMES.get(metric, metric.replace("_", " "))


def _empty(ax, message: str) -> None:
    """Mark a panel that has nothing to show."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _plain_log_ticks(axis) -> None:
    """Plain numbers at the major ticks of a log axis, no minor labels."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _finite(*arrays) -> list[np.ndarray]:
    """The arrays as float, restricted to the rows where all are finite."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    keep = np.logical_and.reduce([np.isfinite(a) for a in arrays])
    return [a[keep] for a in arrays]


# -- the data -----------------------------------------------------------------


def plot_accuracy_distribution(
    accuracies: Mapping[str, np.ndarray], floor: float = 0.8
) -> Figure:
    """Histograms of accuracy: the whole range, and the range above `floor`.

    Parameters
    ----------
    accuracies : mapping of str to array of shape (n_cells,)
        One histogram per label (e.g. one per budget); NaN is left out.
    floor : float, default=0.8
        Lower edge of the right panel, where nearly all cells lie.

    Returns
    -------
    Figure
        Left: counts on a log scale over [0, 1], which shows the few runs
        that diverged; right: densities above `floor`.
    """
    fig, (left, right) = plt.subplots(1, 2, layout="constrained", figsize=(11, 3.8))
    for name, values in accuracies.items():
        (values,) = _finite(values)
        if not len(values):
            continue
        left.hist(values, bins=np.linspace(0, 1, 101), histtype="step", label=name)
        high = values[values >= floor]
        if not len(high):
            continue
        right.hist(
            high,
            bins=np.linspace(floor, max(floor + 0.01, high.max(initial=floor)), 81),
            histtype="step",
            density=True,
            label=f"{name} ({len(high) / len(values):.1%} of cells)",
        )
    left.set(yscale="log", xlabel="accuracy", ylabel="cells", title="whole range (log)")
    right.set(xlabel="accuracy", ylabel="density", title=f"above {floor:.0%}")
    left.legend(fontsize="small", loc="upper left")
    right.legend(fontsize="small", loc="upper left")
    return fig


def plot_cost_accuracy(
    parameters: np.ndarray,
    accuracy: np.ndarray,
    training_time: np.ndarray | None = None,
) -> Figure:
    """How model size and training time go with accuracy, as 2-D histograms.

    Parameters
    ----------
    parameters : array of shape (n_cells,)
        Trainable parameters.
    accuracy : array of shape (n_cells,)
    training_time : array of shape (n_cells,), optional
        Seconds; without it only the parameters panel is drawn.

    Returns
    -------
    Figure
        Parameters vs accuracy; with training time also time vs accuracy and
        parameters vs time coloured by the median accuracy of each bin.
    """
    has_time = training_time is not None and np.isfinite(training_time).any()
    n_panels = 3 if has_time else 1
    fig, axes = plt.subplots(
        1, n_panels, layout="constrained", figsize=(4.6 * n_panels, 4), squeeze=False
    )
    axes = axes[0]

    params, acc = _finite(parameters, accuracy)
    hexbin = axes[0].hexbin(
        params, acc, xscale="log", gridsize=45, bins="log", mincnt=1, cmap="viridis"
    )
    axes[0].set(xlabel="trainable parameters", ylabel="accuracy")
    fig.colorbar(hexbin, ax=axes[0], label="cells")
    if not has_time:
        return fig

    time, acc = _finite(training_time, accuracy)
    hexbin = axes[1].hexbin(
        time, acc, xscale="log", gridsize=45, bins="log", mincnt=1, cmap="viridis"
    )
    axes[1].set(xlabel="training time (s)", ylabel="accuracy")
    _plain_log_ticks(axes[1].xaxis)
    fig.colorbar(hexbin, ax=axes[1], label="cells")

    params, time, acc = _finite(parameters, training_time, accuracy)
    low, high = np.percentile(acc, [5, 99]) if len(acc) else (0, 1)
    hexbin = axes[2].hexbin(
        params,
        time,
        C=acc,
        reduce_C_function=np.median,
        xscale="log",
        yscale="log",
        gridsize=45,
        mincnt=1,
        cmap="magma",
        vmin=low,
        vmax=high,
    )
    axes[2].set(xlabel="trainable parameters", ylabel="training time (s)")
    _plain_log_ticks(axes[2].yaxis)
    fig.colorbar(hexbin, ax=axes[2], label="median accuracy")
    return fig


def plot_validation_vs_test(validation: np.ndarray, test: np.ndarray) -> Figure:
    """Test accuracy against validation accuracy, with the line y = x.

    Parameters
    ----------
    validation, test : array of shape (n_cells,)

    Returns
    -------
    Figure
        Left: the whole range; right: the cells above the 5th percentile of
        validation accuracy, where the ranking matters.
    """
    validation, test = _finite(validation, test)
    fig, axes = plt.subplots(1, 2, layout="constrained", figsize=(10, 4.2))
    if not len(validation):
        for ax in axes:
            _empty(ax, "no cell has both labels")
        return fig

    floor = np.percentile(validation, 5)
    for ax, keep in zip(axes, (slice(None), validation >= floor), strict=True):
        x, y = validation[keep], test[keep]
        hexbin = ax.hexbin(x, y, gridsize=60, bins="log", mincnt=1, cmap="viridis")
        limits = [min(x.min(), y.min()), max(x.max(), y.max())]
        ax.plot(limits, limits, color="0.3", lw=0.8, ls="--")
        ax.set(xlabel="validation accuracy", ylabel="test accuracy")
        fig.colorbar(hexbin, ax=ax, label="cells")
    axes[0].set_title("all cells")
    axes[1].set_title("above the 5th percentile of validation accuracy")
    return fig


# -- encodings ----------------------------------------------------------------


def plot_correlations(correlations: pd.DataFrame, top: int = 20) -> Figure:
    """Rank correlation of feature columns with accuracy, by encoding.

    Parameters
    ----------
    correlations : DataFrame
        One row per column: ``encoding``, ``column``, ``spearman`` (NaN for
        a constant column), as from
        :func:`utils.notebook_support.column_correlations`.
    top : int, default=20
        Columns shown in the right panel, by absolute correlation.

    Returns
    -------
    Figure
        Left: the spread of |rho| over the columns of each encoding; right:
        the `top` columns with their signed rho, coloured by encoding.
    """
    frame = correlations.dropna(subset=["spearman"]).copy()
    frame["abs"] = frame["spearman"].abs()
    fig, (left, right) = plt.subplots(
        1,
        2,
        layout="constrained",
        figsize=(12, 0.25 * top + 1.5),
        width_ratios=[1, 1.4],
    )
    if frame.empty:
        _empty(left, "no column varies")
        _empty(right, "no column varies")
        return fig

    import seaborn as sns

    order = frame.groupby("encoding")["abs"].max().sort_values(ascending=False).index
    palette = dict(zip(order, sns.color_palette("tab10", len(order)), strict=False))
    sns.stripplot(
        frame,
        x="abs",
        y="encoding",
        hue="encoding",
        order=order,
        palette=palette,
        size=3,
        jitter=0.25,
        ax=left,
        legend=False,
    )
    left.set(xlabel="|Spearman rho| with accuracy", ylabel="", title="every column")

    best = frame.nlargest(top, "abs").iloc[::-1]
    right.barh(
        best["column"],
        best["spearman"],
        color=[palette[e] for e in best["encoding"]],
    )
    right.axvline(0, color="0.3", lw=0.8)
    right.set(xlabel="Spearman rho with accuracy", title=f"the {len(best)} strongest")
    right.tick_params(axis="y", labelsize="small")
    return fig


# -- predictors ---------------------------------------------------------------


def plot_metric_heatmap(
    results: pd.DataFrame,
    metric: str = "kendall_tau",
    rows: str = "model",
    columns: str = "feature_set",
) -> Figure:
    """Mean of `metric` over seeds for each (row, column), with its spread.

    Parameters
    ----------
    results : DataFrame
        Tidy results, one row per fit.
    metric : str, default="kendall_tau"
    rows, columns : str
        Columns of `results` that index the grid.

    Returns
    -------
    Figure
        A heatmap annotated with "mean ± standard deviation" over seeds;
        pairs never fitted stay blank.
    """
    import seaborn as sns

    grouped = results.groupby([rows, columns], sort=False)[metric]
    mean = grouped.mean().unstack(columns)
    spread = grouped.std().unstack(columns).reindex_like(mean)
    row_order = list(dict.fromkeys(results[rows]))
    column_order = list(dict.fromkeys(results[columns]))
    mean = mean.reindex(index=row_order, columns=column_order)
    spread = spread.reindex(index=row_order, columns=column_order).fillna(0.0)

    text = mean.map(lambda v: "" if np.isnan(v) else f"{v:.3f}")
    text = text + spread.map(lambda v: f"\n±{v:.3f}" if v > 0 else "")
    text = text.where(mean.notna(), "")

    width = 1.3 * len(column_order) + 2.5
    fig, ax = plt.subplots(
        layout="constrained", figsize=(width, 0.75 * len(row_order) + 1.5)
    )
    sns.heatmap(
        mean,
        annot=text.to_numpy(),
        fmt="",
        cmap="viridis",
        cbar_kws={"label": f"mean {_metric_name(metric)}"},
        linewidths=0.5,
        ax=ax,
        annot_kws={"fontsize": "small"},
    )
    ax.set(xlabel=columns.replace("_", " "), ylabel=rows.replace("_", " "))
    ax.grid(False)
    ax.tick_params(axis="x", rotation=30)
    ax.tick_params(axis="y", rotation=0)
    return fig


def plot_learning_curves(
    results: pd.DataFrame,
    metric: str = "kendall_tau",
    hue: str = "model",
    reference: pd.DataFrame | None = None,
    ceiling: float | None = None,
) -> Figure:
    """`metric` against training size, one line per `hue`, a band over seeds.

    Parameters
    ----------
    results : DataFrame
        Tidy results with ``train_size`` and ``seed``.
    metric : str, default="kendall_tau"
    hue : str, default="model"
        Column that names the lines (a line's label adds its feature set
        when `hue` is ``"model"`` and each model used one).
    reference : DataFrame, optional
        Published points to draw as black markers: ``train_size``,
        ``kendall_tau`` (or `metric`) and ``label``.
    ceiling : float, optional
        A horizontal line, e.g. the agreement of repeated training runs.

    Returns
    -------
    Figure
        The median over seeds as a line and the range between the lowest
        and the highest seed as a band; the x axis is logarithmic.
    """
    fig, ax = plt.subplots(layout="constrained", figsize=(7.5, 4.5))
    for name, group in results.groupby(hue, sort=False):
        stats = group.groupby("train_size")[metric].agg(["median", "min", "max"])
        label = str(name)
        if hue == "model" and group["feature_set"].nunique() == 1:
            label = f"{name} ({group['feature_set'].iloc[0]})"
        (line,) = ax.plot(stats.index, stats["median"], marker="o", label=label)
        ax.fill_between(
            stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2
        )

    if reference is not None and len(reference):
        value = metric if metric in reference else "kendall_tau"
        markers = iter("sD^vP*X")
        for label, group in reference.groupby("label", sort=False):
            ax.scatter(
                group["train_size"],
                group[value],
                marker=next(markers, "o"),
                color="black",
                zorder=3,
                label=label,
            )
    if ceiling is not None and np.isfinite(ceiling):
        ax.axhline(ceiling, color="0.3", ls="--", lw=1, label="agreement of runs")

    ax.set_xscale("log")
    sizes = set(results["train_size"])
    if reference is not None:
        sizes |= set(reference["train_size"])
    sizes = sorted(int(size) for size in sizes)
    ax.set_xticks(sizes, [str(size) for size in sizes])
    ax.minorticks_off()
    ax.set(xlabel="training cells", ylabel=_metric_name(metric))
    ax.legend(fontsize="small", loc="best")
    return fig


def plot_predicted_vs_true(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    top_fraction: float = 0.05,
    title: str = "",
    scores: bool = False,
) -> Figure:
    """Predictions against true values: all cells, and a zoom on the top.

    Parameters
    ----------
    y_true, y_pred : array of shape (n_cells,)
    top_fraction : float, default=0.05
        The zoom shows the cells in the true or the predicted top fraction.
    title : str
        Figure title (the predictor).
    scores : bool, default=False
        The predictions are ranking scores, not accuracies: no y = x line.

    Returns
    -------
    Figure
        Left: a 2-D histogram of every cell with the line y = x; right: the
        top cells, with the two thresholds that split them into hits (both
        tops), misses (true top, not predicted) and false alarms.
    """
    y_true, y_pred = _finite(y_true, y_pred)
    fig, (left, right) = plt.subplots(1, 2, layout="constrained", figsize=(11, 4.5))
    if len(y_true) < 2:
        _empty(left, "fewer than two cells")
        _empty(right, "fewer than two cells")
        return fig

    hexbin = left.hexbin(
        y_true, y_pred, gridsize=60, norm=LogNorm(), mincnt=1, cmap="viridis"
    )
    fig.colorbar(hexbin, ax=left, label="cells")
    ylabel = "predicted score" if scores else "predicted accuracy"
    if not scores:
        limits = np.percentile(np.concatenate([y_true, y_pred]), [0, 100])
        left.plot(limits, limits, color="0.3", lw=0.8, ls="--")
    left.set(xlabel="true accuracy", ylabel=ylabel, title="every evaluated cell")

    # The two thresholds of the top fraction and the cells above either.
    true_cut = np.quantile(y_true, 1 - top_fraction)
    pred_cut = np.quantile(y_pred, 1 - top_fraction)
    in_true, in_pred = y_true >= true_cut, y_pred >= pred_cut
    for mask, colour, label in (
        (in_true & in_pred, "tab:green", "in both tops"),
        (in_true & ~in_pred, "tab:red", "missed"),
        (~in_true & in_pred, "tab:orange", "false alarm"),
    ):
        right.scatter(
            y_true[mask],
            y_pred[mask],
            s=6,
            alpha=0.6,
            color=colour,
            label=f"{label} ({mask.sum()})",
        )
    right.axvline(true_cut, color="0.3", lw=0.8, ls=":")
    right.axhline(pred_cut, color="0.3", lw=0.8, ls=":")
    right.set(
        xlabel="true accuracy",
        ylabel=ylabel,
        title=f"top {top_fraction:.0%} by truth or by prediction",
    )
    right.legend(fontsize="small", loc="lower right", markerscale=2)
    if title:
        fig.suptitle(title)
    return fig


def plot_precision_at_k(
    curves: Mapping[str, pd.DataFrame], n_cells: int | None = None
) -> Figure:
    """Precision of the predicted top k against k, with the chance level.

    Parameters
    ----------
    curves : mapping of str to DataFrame
        One curve per predictor: columns ``k`` and ``precision`` (from
        :func:`utils.notebook_support.precision_curve`).
    n_cells : int, optional
        Cells ranked; draws the precision of a random order, k / n_cells.

    Returns
    -------
    Figure
        Precision against k on a logarithmic x axis.
    """
    fig, ax = plt.subplots(layout="constrained", figsize=(7.5, 4.5))
    for name, curve in curves.items():
        ax.plot(curve["k"], curve["precision"], marker=".", label=name)
    if n_cells:
        ks = np.unique(np.concatenate([c["k"].to_numpy() for c in curves.values()]))
        ax.plot(ks, ks / n_cells, color="0.4", ls="--", label="random order")
    ax.set_xscale("log")
    ax.set(
        xlabel="k (cells taken from the top of the prediction)",
        ylabel="precision: share of them in the true top k",
        ylim=(0, 1.02),
    )
    ax.legend(fontsize="small")
    return fig


def plot_cost_quality(
    results: pd.DataFrame, metric: str = "kendall_tau", hue: str = "model"
) -> Figure:
    """Quality against cost: `metric` against fit + predict seconds per fit.

    Parameters
    ----------
    results : DataFrame
        Tidy results with ``fit_seconds`` and ``predict_seconds``.
    metric : str, default="kendall_tau"
    hue : str, default="model"

    Returns
    -------
    Figure
        One point per (hue, feature set), labelled with the feature set: the
        medians over seeds, with the fit time and the prediction time in two
        panels (log x).
    """
    keys = [hue, "feature_set"] if hue != "feature_set" else [hue]
    summary = results.groupby(keys, sort=False)[
        [metric, "fit_seconds", "predict_seconds"]
    ].median()
    fig, axes = plt.subplots(1, 2, layout="constrained", figsize=(11, 4.2), sharey=True)
    for ax, cost in zip(axes, ("fit_seconds", "predict_seconds"), strict=True):
        for name, group in summary.groupby(level=0, sort=False):
            ax.scatter(group[cost], group[metric], label=str(name), s=30)
            for key, row in group.iterrows():
                feature_set = key[-1] if isinstance(key, tuple) else key
                ax.annotate(
                    str(feature_set),
                    (row[cost], row[metric]),
                    xytext=(4, 3),
                    textcoords="offset points",
                    fontsize="x-small",
                    color="0.3",
                )
        ax.set_xscale("log")
        ax.set(xlabel=cost.replace("_", " ") + " (median per fit)")
    n_eval = results["n_eval"].median() if "n_eval" in results else None
    if n_eval:
        axes[1].set_title(f"predicting {int(n_eval):,} cells")
    axes[0].set(ylabel=f"median {_metric_name(metric)}")
    axes[0].legend(fontsize="small")
    return fig
