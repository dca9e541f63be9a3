"""Tests of utils.evaluation: metrics, splits, search, runner, noise ceiling."""

import math

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from utils.evaluation import (
    PROTOCOLS,
    Label,
    kendall_tau,
    make_split,
    score_predictions,
    search,
    top_k_precision,
)

# --------------------------------------------------------------------------
# Metrics, checked by hand
# --------------------------------------------------------------------------


def test_score_predictions_on_four_cells():
    # One swapped pair of four: 5 concordant, 1 discordant pair.
    scores = score_predictions([1, 2, 3, 4], [1, 2, 4, 3], top_fractions=())

    assert scores["kendall_tau"] == pytest.approx(4 / 6)
    # Rank differences 0, 0, 1, 1: rho = 1 - 6 * 2 / (4 * 15).
    assert scores["spearman_rho"] == pytest.approx(0.8)
    assert scores["pearson_r"] == pytest.approx(0.8)
    # Residual sum of squares 2, total sum of squares 5.
    assert scores["r2"] == pytest.approx(0.6)
    assert scores["mae"] == pytest.approx(0.5)
    assert scores["rmse"] == pytest.approx(math.sqrt(0.5))


def test_score_predictions_names_the_top_fractions():
    scores = score_predictions(np.arange(10), np.arange(10), (0.01, 0.05, 0.005))

    assert scores["precision_at_1pct"] == 1.0
    assert scores["precision_at_5pct"] == 1.0
    assert scores["precision_at_0.5pct"] == 1.0


def test_kendall_tau_is_tau_b_with_ties():
    # Pairs: (0,1) tied in x; the other five concordant. tau-b = 5/sqrt(5*6).
    assert kendall_tau([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))


def test_constant_predictions_give_nan_correlations():
    scores = score_predictions([1, 2, 3], [5, 5, 5], top_fractions=())

    assert math.isnan(scores["kendall_tau"])
    assert math.isnan(scores["spearman_rho"])
    assert scores["mae"] == pytest.approx(3.0)


def test_top_k_precision_counts_hits_among_k():
    y_true = np.arange(10.0)
    # Predicted top 2: cells 9 and 0; true top 2: cells 9 and 8.
    y_pred = np.array([9.5, 1, 2, 3, 4, 5, 6, 7, 8, 9])

    assert top_k_precision(y_true, y_pred, 0.2) == 0.5


@pytest.mark.parametrize(
    ("fraction", "k"),
    [(0.01, 1), (0.1, 1), (0.25, 3), (0.35, 4), (0.5, 5), (1.0, 10)],
)
def test_top_k_size_rounds_half_up_and_is_at_least_one(fraction, k):
    # The worst predictor possible: the predicted top is the true bottom, so
    # the precision is 0 until the top reaches past the middle.
    y_true = np.arange(10.0)
    y_pred = -y_true

    hits = max(0, k - (10 - k))
    assert top_k_precision(y_true, y_pred, fraction) == pytest.approx(hits / k)


def test_top_k_ties_in_predictions_count_in_expectation():
    # All predictions tie: 2 places among 4 cells, 2 of which are good.
    assert top_k_precision([0, 1, 2, 3], [0, 0, 0, 0], 0.5) == pytest.approx(0.5)
    # One cell clearly in, one place among three tied cells, one of them good.
    value = top_k_precision([0, 1, 2, 3], [0, 0, 9, 0], 0.5)
    assert value == pytest.approx((1 + 1 / 3) / 2)


def test_top_k_ties_in_truth_all_count_as_good():
    # The true top 1 is a three-way tie: any of the three is a hit.
    assert top_k_precision([1, 1, 1, 0], [0, 0, 1, 0], 0.25) == 1.0


def test_top_k_does_not_depend_on_cell_order():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 50).astype(float)
    y_pred = rng.integers(0, 5, 50).astype(float)
    order = rng.permutation(50)

    expected = top_k_precision(y_true, y_pred, 0.1)
    assert top_k_precision(y_true[order], y_pred[order], 0.1) == pytest.approx(expected)


def test_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match=r"got shapes \(3,\) and \(2,\)"):
        score_predictions([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="y_pred has 1 non-finite value"):
        score_predictions([1, 2, 3], [1, np.nan, 3])
    with pytest.raises(ValueError, match="at least 2 cells to score, got 1"):
        score_predictions([1], [1])
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\], got 0"):
        top_k_precision([1, 2], [1, 2], 0)


# --------------------------------------------------------------------------
# Labels and splits
# --------------------------------------------------------------------------


def test_label_names_say_everything_that_was_asked():
    assert str(Label()) == "validation_accuracy@108/final/mean"
    assert str(Label(runs=0)) == "validation_accuracy@108/final/run0"
    assert str(Label(12, "test_accuracy", "halfway", "random", seed=3)) == (
        "test_accuracy@12/halfway/random(seed=3)"
    )


def test_training_and_evaluation_cells_do_not_overlap():
    split = make_split(500, 100, seed=0)

    assert len(split.train) == 100
    assert len(np.intersect1d(split.train, split.evaluate)) == 0
    assert len(split.train) + len(split.evaluate) == 500


def test_training_sets_are_nested_across_sizes():
    sizes = [100, 172, 424]
    trains = [set(make_split(1000, size, seed=3).train) for size in sizes]

    assert trains[0] < trains[1] < trains[2]


def test_splits_are_deterministic_per_seed_and_differ_across_seeds():
    first = make_split(1000, 100, seed=1)
    again = make_split(1000, 100, seed=1)
    other = make_split(1000, 100, seed=2)

    np.testing.assert_array_equal(first.train, again.train)
    np.testing.assert_array_equal(first.evaluate, again.evaluate)
    assert set(first.train) != set(other.train)


def test_unlabelled_cells_are_not_drawn_and_not_evaluated():
    train_mask = np.ones(100, dtype=bool)
    train_mask[:50] = False
    eval_mask = np.ones(100, dtype=bool)
    eval_mask[:10] = False

    split = make_split(100, 40, seed=0, train_mask=train_mask, eval_mask=eval_mask)

    # 60 cells left after training, 10 of them without an evaluation label.
    assert split.train.min() >= 50
    assert split.evaluate.min() >= 10
    assert len(split.evaluate) == 50
    assert split.n_eval_dropped == 10


def test_evaluate_all_includes_training_cells():
    split = make_split(100, 10, seed=0, evaluate="all")

    assert set(split.train) <= set(split.evaluate)
    assert len(split.evaluate) == 100


def test_held_out_subsample_is_shared_across_sizes():
    small = make_split(1000, 100, seed=0, evaluate=200)
    large = make_split(1000, 700, seed=0, evaluate=200)

    np.testing.assert_array_equal(small.evaluate, large.evaluate)
    assert len(small.evaluate) == 200
    assert not set(large.train) & set(large.evaluate)
    assert set(small.train) < set(large.train)


def test_split_refuses_more_training_cells_than_available():
    mask = np.arange(100) < 30
    with pytest.raises(
        ValueError,
        match=r"train_size=50 exceeds the 30 cells available for training "
        r"\(100 cells, 70 without a training label\)",
    ):
        make_split(100, 50, seed=0, train_mask=mask)
    with pytest.raises(ValueError, match=r"exceeds the 80 cells .* 20 held out"):
        make_split(100, 90, seed=0, evaluate=20)


def test_split_refuses_bad_arguments():
    with pytest.raises(ValueError, match="`evaluate` must be one of .* got 'test'"):
        make_split(100, 10, seed=0, evaluate="test")
    with pytest.raises(ValueError, match="`train_size` must be at least 1, got 0"):
        make_split(100, 0, seed=0)
    with pytest.raises(ValueError, match=r"`train_mask` must have shape \(100,\)"):
        make_split(100, 10, seed=0, train_mask=np.ones(5, dtype=bool))
    with pytest.raises(ValueError, match="leaves no training cells among 100"):
        make_split(100, 10, seed=0, evaluate=100)


def test_the_published_protocol_is_there():
    protocol = PROTOCOLS["nb101"]

    assert protocol.train_sizes == (100, 172, 424, 4236)
    assert protocol.evaluate == "rest"


# --------------------------------------------------------------------------
# Hyperparameter search
# --------------------------------------------------------------------------

#: Row ids seen by every fit of RecordingRegressor (clones share the list).
SEEN_ROWS: list[np.ndarray] = []


class RecordingRegressor(RegressorMixin, BaseEstimator):
    """A linear model on column 1 that records the row ids (column 0) it sees."""

    def __init__(self, slope: float = 1.0, random_state=None):
        self.slope = slope
        self.random_state = random_state

    def fit(self, X, y):
        X = np.asarray(X)
        SEEN_ROWS.append(X[:, 0].astype(int).copy())
        self.n_fit_rows_ = len(X)
        return self

    def predict(self, X):
        return self.slope * np.asarray(X)[:, 1]


def _row_id_data(n_cells=60, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n_cells)
    X = np.column_stack([np.arange(n_cells), signal])
    y = signal + 0.1 * rng.normal(size=n_cells)
    return X, y


def test_search_sees_only_training_cells():
    X, y = _row_id_data()
    split = make_split(len(y), 30, seed=0)
    SEEN_ROWS.clear()

    best, trials = search(
        RecordingRegressor(),
        {"slope": [-1.0, 1.0, 2.0]},
        X[split.train],
        y[split.train],
        cv=3,
    )

    seen = np.concatenate(SEEN_ROWS)
    assert set(seen) <= set(split.train)
    assert not set(seen) & set(split.evaluate)
    # 3 settings x 3 folds, then the winner refitted on all 30 cells.
    assert len(SEEN_ROWS) == 10
    assert best.n_fit_rows_ == 30


def test_search_returns_the_table_of_trials():
    X, y = _row_id_data()

    best, trials = search(RecordingRegressor(), {"slope": [-1.0, 2.0]}, X, y, cv=3)

    assert list(trials.columns) == [
        "params",
        "param_slope",
        "mean_cv_tau",
        "std_cv_tau",
        "rank",
        "best",
    ]
    # A negative slope reverses the order: tau near -1, the worst.
    assert trials.loc[0, "best"] and trials.loc[0, "param_slope"] == 2.0
    assert trials.loc[1, "mean_cv_tau"] < -0.5
    assert best.slope == 2.0


def test_randomised_search_tries_n_iter_settings():
    from scipy.stats import uniform

    X, y = _row_id_data()

    _, trials = search(
        RecordingRegressor(), {"slope": uniform(0.5, 1)}, X, y, cv=2, n_iter=4
    )

    assert len(trials) == 4
    assert trials["best"].sum() == 1
