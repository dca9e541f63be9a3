"""Tests of utils.plots on synthetic data, with the Agg backend."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from utils import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def results(rng):
    """Tidy results of 2 models x 2 feature sets x 2 sizes x 3 seeds."""
    rows = []
    for model in ("ridge", "xgb"):
        for feature_set in ("stats", "path"):
            for size in (100, 172):
                for seed in range(3):
                    rows.append(
                        {
                            "model": model,
                            "feature_set": feature_set,
                            "train_size": size,
                            "seed": seed,
                            "kendall_tau": 0.5 + 0.001 * size + 0.01 * rng.random(),
                            "precision_at_1pct": rng.random(),
                            "fit_seconds": rng.random(),
                            "predict_seconds": rng.random(),
                            "n_eval": 1000 - size,
                        }
                    )
    return pd.DataFrame(rows)


def test_save_figure_writes_vector_and_png(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    paths = plots.save_figure(fig, "line", tmp_path / "new")
    assert [p.name for p in paths] == ["line.svg", "line.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert (tmp_path / "new" / "line.png").read_bytes()[:4] == b"\x89PNG"


def test_save_figure_other_formats(tmp_path):
    fig, _ = plt.subplots()
    paths = plots.save_figure(fig, "f", tmp_path, formats=("pdf",))
    assert paths == [tmp_path / "f.pdf"]
    assert paths[0].read_bytes()[:4] == b"%PDF"


def test_accuracy_distribution_skips_nan_and_empty_labels(rng):
    values = np.clip(rng.normal(0.9, 0.03, 500), 0, 1)
    values[:5] = np.nan
    fig = plots.plot_accuracy_distribution(
        {"108 epochs": values, "4 epochs": rng.uniform(0.1, 0.5, 100)}
    )
    assert isinstance(fig, Figure)
    left, right = fig.axes
    assert left.get_yscale() == "log"
    # The 4-epoch label has no cell above 80%: only one histogram on the right.
    assert len(right.patches) == 1
    assert len(left.patches) == 2


def test_cost_accuracy_with_and_without_time(rng):
    params = 10 ** rng.uniform(5, 7, 300)
    accuracy = rng.uniform(0.8, 0.95, 300)
    time = params / 1e4
    assert len(plots.plot_cost_accuracy(params, accuracy).axes) == 2  # + colorbar
    assert len(plots.plot_cost_accuracy(params, accuracy, time).axes) == 6
    all_nan = np.full(300, np.nan)
    assert len(plots.plot_cost_accuracy(params, accuracy, all_nan).axes) == 2


def test_validation_vs_test_without_common_cells():
    fig = plots.plot_validation_vs_test(
        np.array([0.9, np.nan]), np.array([np.nan, 0.9])
    )
    assert "no cell has both labels" in fig.axes[0].texts[0].get_text()


def test_validation_vs_test_draws_both_panels(rng):
    validation = rng.uniform(0.8, 0.95, 400)
    fig = plots.plot_validation_vs_test(validation, validation + 0.01)
    assert [ax.get_title() for ax in fig.axes[::2]][0] == "all cells"


def test_correlations_top_columns():
    frame = pd.DataFrame(
        {
            "encoding": ["a", "a", "b", "b"],
            "column": ["a0", "a1", "b0", "b1"],
            "spearman": [0.5, -0.1, np.nan, 0.3],
        }
    )
    fig = plots.plot_correlations(frame, top=2)
    right = fig.axes[1]
    labels = [t.get_text() for t in right.get_yticklabels()]
    assert labels == ["b1", "a0"]  # strongest last, at the top


def test_correlations_all_nan():
    frame = pd.DataFrame({"encoding": ["a"], "column": ["a0"], "spearman": [np.nan]})
    fig = plots.plot_correlations(frame)
    assert "no column varies" in fig.axes[0].texts[0].get_text()


def test_metric_heatmap_annotates_mean_and_spread(results):
    fig = plots.plot_metric_heatmap(results[results["train_size"] == 100])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 4
    assert all("±" in t for t in texts)


def test_metric_heatmap_leaves_unfitted_pairs_blank(results):
    partial = results[
        ~((results["model"] == "xgb") & (results["feature_set"] == "path"))
    ]
    fig = plots.plot_metric_heatmap(partial)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum(t == "" for t in texts) <= 1
    assert sum(t != "" for t in texts) == 3


def test_learning_curves_lines_bands_and_reference(results):
    reference = pd.DataFrame(
        {"label": ["paper"] * 2, "train_size": [100, 424], "kendall_tau": [0.4, 0.7]}
    )
    one_set = results[results["feature_set"] == "stats"]
    fig = plots.plot_learning_curves(one_set, reference=reference, ceiling=0.8)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert sorted(labels) == [
        "agreement of runs",
        "paper",
        "ridge (stats)",
        "xgb (stats)",
    ]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["100", "172", "424"]


def test_predicted_vs_true_splits_the_top(rng):
    y_true = rng.uniform(0.8, 0.95, 1000)
    y_pred = y_true + rng.normal(0, 0.01, 1000)
    fig = plots.plot_predicted_vs_true(y_true, y_pred, top_fraction=0.1, title="t")
    right = fig.axes[1]
    counts = [int(text.split("(")[1].rstrip(")")) for text in _legend(right)]
    # Hits + misses = the true top (100 cells, quantile ties aside).
    assert counts[0] + counts[1] == pytest.approx(100, abs=1)


def test_predicted_vs_true_with_too_few_cells():
    fig = plots.plot_predicted_vs_true(np.array([0.9]), np.array([0.8]))
    assert "fewer than two cells" in fig.axes[0].texts[0].get_text()


def test_precision_at_k_draws_chance(rng):
    curve = pd.DataFrame({"k": [1, 10, 100], "precision": [0.0, 0.3, 0.5]})
    fig = plots.plot_precision_at_k({"model": curve}, n_cells=1000)
    assert _legend(fig.axes[0]) == ["model", "random order"]


def test_cost_quality_labels_feature_sets(results):
    fig = plots.plot_cost_quality(results[results["train_size"] == 172])
    names = {t.get_text() for t in fig.axes[0].texts}
    assert names == {"stats", "path"}
    assert fig.axes[1].get_title().startswith("predicting")


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]
