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


def test_search_builds_registry_models_by_name():
    X, y = _row_id_data()

    best, trials = search("ridge", {"alpha": [0.1, 100.0]}, X[:, 1:], y, cv=3)

    assert type(best).__name__ == "RidgePredictor"
    assert best.alpha == trials.loc[0, "param_alpha"]
    assert trials["mean_cv_tau"].max() > 0.8


def test_randomised_search_tries_n_iter_settings():
    from scipy.stats import uniform

    X, y = _row_id_data()

    _, trials = search(
        RecordingRegressor(), {"slope": uniform(0.5, 1)}, X, y, cv=2, n_iter=4
    )

    assert len(trials) == 4
    assert trials["best"].sum() == 1


# --------------------------------------------------------------------------
# A synthetic dataset: chains of five ops, three runs, a known signal
# --------------------------------------------------------------------------


def _chain_dataset(n_cells=120, n_runs=3, seed=0, missing_test=0):
    """Cells input -> five ops -> output; accuracy grows with conv3x3 count."""
    from utils.dataset import NASBench101

    rng = np.random.default_rng(seed)
    ops = rng.integers(0, 3, size=(n_cells, 5))
    operations = np.column_stack([np.full(n_cells, -1), ops, np.full(n_cells, -2)])
    adjacency = np.zeros((n_cells, 7, 7), dtype=np.int8)
    adjacency[:, np.arange(6), np.arange(1, 7)] = 1

    # metrics[cell, budget, run, point, metric]: final validation and test
    # accuracy at 108 epochs, each run a noisy copy of the signal.
    signal = 0.8 + 0.02 * (ops == 0).sum(axis=1) + 0.005 * rng.normal(size=n_cells)
    metrics = np.full((n_cells, 4, 3, 2, 4), np.nan, dtype=np.float32)
    for run in range(n_runs):
        noise = 0.01 * rng.normal(size=(n_cells, 2))
        metrics[:, 3, run, 1, 2] = signal + noise[:, 0]
        metrics[:, 3, run, 1, 3] = signal + noise[:, 1]
    metrics[:missing_test, 3, :, 1, 3] = np.nan

    return NASBench101(
        hash=[f"{i:032x}" for i in range(n_cells)],
        num_vertices=np.full(n_cells, 7),
        adjacency=adjacency,
        operations=operations,
        trainable_parameters=np.full(n_cells, 1000),
        metrics=metrics,
    )


class _Features:
    def __init__(self, X):
        self.X = X
        self.columns = [f"f{i}" for i in range(X.shape[1])]


def _fake_encode(dataset, name):
    """Op one-hot of the five inner vertices ("onehot") or op counts."""
    ops = np.asarray(dataset.operations)[:, 1:6]
    onehot = (ops[:, :, None] == np.arange(3)).reshape(len(ops), -1)
    if name == "onehot":
        return _Features(onehot.astype(np.float32))
    if name == "counts":
        return _Features((ops[:, :, None] == np.arange(3)).sum(1).astype(np.float32))
    raise ValueError(f"unknown feature set {name!r}")


@pytest.fixture
def fake_encodings(monkeypatch):
    """The runner encodes with _fake_encode, independent of utils.encodings."""
    import sys
    import types

    module = types.ModuleType("utils.encodings")
    module.encode = _fake_encode
    monkeypatch.setitem(sys.modules, "utils.encodings", module)


@pytest.fixture
def count_fits(monkeypatch):
    """Count the fits the runner makes (in this process: use n_jobs=1)."""
    import utils.evaluation as evaluation

    calls = []
    original = evaluation._fit_one

    def counting(job, *args):
        calls.append(job["key"])
        return original(job, *args)

    monkeypatch.setattr(evaluation, "_fit_one", counting)
    return calls


# --------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------


def test_runner_gives_one_tidy_row_per_fit(fake_encodings):
    from utils.evaluation import run_experiments

    data = _chain_dataset()
    results = run_experiments(
        data,
        ["ridge"],
        ["onehot", "counts"],
        train_sizes=[20, 40],
        seeds=[0, 1],
        train_label=Label(runs=0),
        eval_label=Label(metric="test_accuracy", runs="mean"),
        progress=False,
    )

    assert len(results) == 1 * 2 * 2 * 2
    assert list(results[["feature_set", "train_size", "seed"]].iloc[0]) == [
        "onehot",
        20,
        0,
    ]
    assert set(results["train_label"]) == {"validation_accuracy@108/final/run0"}
    assert set(results["eval_label"]) == {"test_accuracy@108/final/mean"}
    assert set(results["evaluate"]) == {"rest"}
    np.testing.assert_array_equal(results["n_eval"], 120 - results["n_train"])
    for column in ["kendall_tau", "precision_at_5pct", "fit_seconds"]:
        assert results[column].notna().all()
    # The signal is linear in the op counts: ridge ranks well.
    assert results["kendall_tau"].min() > 0.5


def test_runner_drops_cells_without_evaluation_label(fake_encodings):
    from utils.evaluation import run_experiments

    data = _chain_dataset(missing_test=10)
    results = run_experiments(
        data,
        ["ridge"],
        ["counts"],
        train_sizes=[20],
        seeds=[0],
        eval_label=Label(metric="test_accuracy"),
        progress=False,
    )

    row = results.iloc[0]
    assert row["n_eval"] + row["n_eval_dropped"] == 100
    assert row["n_eval_dropped"] >= 1


def test_runner_parallel_matches_serial(fake_encodings):
    from utils.evaluation import run_experiments

    data = _chain_dataset()
    kwargs = dict(train_sizes=[30], seeds=[0, 1], progress=False)
    serial = run_experiments(data, ["ridge"], ["counts"], n_jobs=1, **kwargs)
    parallel = run_experiments(data, ["ridge"], ["counts"], n_jobs=2, **kwargs)

    np.testing.assert_allclose(serial["kendall_tau"], parallel["kendall_tau"])


def test_runner_resumes_from_saved_rows(fake_encodings, count_fits, tmp_path):
    from utils.evaluation import run_experiments

    data = _chain_dataset()
    path = tmp_path / "runs.jsonl"
    kwargs = dict(progress=False, results_path=path, train_sizes=[20])
    first = run_experiments(data, ["ridge"], ["counts"], seeds=[0, 1], **kwargs)
    assert len(count_fits) == 2

    # The same fits again: nothing to do. One more seed: one fit.
    again = run_experiments(data, ["ridge"], ["counts"], seeds=[0, 1], **kwargs)
    assert len(count_fits) == 2
    np.testing.assert_allclose(again["kendall_tau"], first["kendall_tau"])
    more = run_experiments(data, ["ridge"], ["counts"], seeds=[0, 1, 2], **kwargs)
    assert len(count_fits) == 3
    assert list(more["seed"]) == [0, 1, 2]
    assert len(path.read_text().splitlines()) == 3

    # Another evaluation label is another fit.
    run_experiments(
        data, ["ridge"], ["counts"], seeds=[0], eval_label=Label(runs=1), **kwargs
    )
    assert len(count_fits) == 4


def test_runner_takes_estimators_under_display_names(fake_encodings):
    from utils.evaluation import run_experiments
    from utils.predictors import make_model

    data = _chain_dataset()
    results = run_experiments(
        data,
        {"small_xgb": make_model("xgb", n_estimators=10)},
        {"both": "counts"},
        train_sizes=[30],
        seeds=[0],
        progress=False,
    )

    assert list(results["model"]) == ["small_xgb"]
    assert list(results["feature_set"]) == ["both"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(models=["nope"]), "unknown model 'nope'; expected one of .*ridge"),
        (dict(feature_sets=["nope"]), "unknown feature set 'nope'"),
        (dict(train_sizes=[500]), "train_size=500 exceeds the 120 cells available"),
        (
            dict(eval_label=Label(budget=12)),
            "no data for budget 12, metric 'validation_accuracy'",
        ),
        (dict(train_label=Label(runs=2, metric="train_accuracy")), "no data for"),
        (dict(protocol="nope"), "unknown protocol 'nope'; expected one of nb101"),
        (dict(models=[]), "no models given; expected at least one"),
    ],
)
def test_runner_refuses_bad_requests_before_any_fit(
    fake_encodings, count_fits, kwargs, message
):
    from utils.evaluation import run_experiments

    arguments = dict(
        models=["ridge"],
        feature_sets=["counts"],
        train_sizes=[20],
        seeds=[0],
        progress=False,
    )
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        run_experiments(_chain_dataset(), **arguments)
    assert count_fits == []


def test_runner_uses_the_protocol_sizes_and_seeds(fake_encodings, count_fits):
    from utils.evaluation import Protocol, run_experiments

    protocol = Protocol("tiny", train_sizes=(10, 20), seeds=(4,), evaluate=30)
    results = run_experiments(
        _chain_dataset(), ["ridge"], ["counts"], protocol=protocol, progress=False
    )

    assert list(results["train_size"]) == [10, 20]
    assert set(results["seed"]) == {4}
    assert set(results["n_eval"]) == {30}
    assert set(results["evaluate"]) == {"30"}


def test_neural_models_are_recognised():
    from utils.evaluation import _is_neural
    from utils.predictors import RankEnsemble, make_model

    assert _is_neural("gcn") and _is_neural("mlp")
    assert not _is_neural("xgb")
    assert _is_neural(make_model("gcn"))
    assert _is_neural(RankEnsemble([("g", make_model("gcn"))]))
    assert not _is_neural(make_model("ensemble"))


# --------------------------------------------------------------------------
# The noise ceiling
# --------------------------------------------------------------------------


def test_noise_ceiling_compares_every_pair_of_runs():
    from scipy import stats

    from utils.evaluation import noise_ceiling

    data = _chain_dataset(n_cells=60)
    ceiling = noise_ceiling(data)

    assert list(ceiling[["run_a", "run_b"]].itertuples(index=False, name=None)) == [
        (0, 1),
        (0, 2),
        (1, 2),
    ]
    assert set(ceiling["n_cells"]) == {60}
    runs = np.asarray(data.metrics[:, 3, :, 1, 2], dtype=np.float64)
    expected = stats.kendalltau(runs[:, 0], runs[:, 2]).statistic
    assert ceiling.loc[1, "kendall_tau"] == pytest.approx(expected)
    assert (ceiling["spearman_rho"] > 0.5).all()


def test_noise_ceiling_counts_cells_measured_by_both_runs():
    from utils.dataset import NASBench101
    from utils.evaluation import noise_ceiling

    data = _chain_dataset(n_cells=60)
    metrics = np.array(data.metrics)
    metrics[:10, 3, 2, 1, 2] = np.nan
    data = NASBench101(
        data.hash,
        data.num_vertices,
        data.adjacency,
        data.operations,
        data.trainable_parameters,
        metrics,
    )

    ceiling = noise_ceiling(data)

    assert list(ceiling["n_cells"]) == [60, 50, 50]


def test_noise_ceiling_of_one_run_is_empty_and_says_why(caplog):
    from utils.evaluation import noise_ceiling

    with caplog.at_level("WARNING", logger="utils.evaluation"):
        ceiling = noise_ceiling(_chain_dataset(n_runs=1))

    assert ceiling.empty
    assert "1 run(s) measured, at least two runs" in caplog.text


def test_noise_ceiling_refuses_a_label_the_file_lacks():
    from utils.evaluation import noise_ceiling

    with pytest.raises(ValueError, match="no data for budget 4"):
        noise_ceiling(_chain_dataset(), budget=4)


def test_neural_models_are_found_inside_wrappers():
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from utils.evaluation import _is_neural
    from utils.predictors import make_model

    wrapped = TransformedTargetRegressor(regressor=make_model("mlp"))
    piped = make_pipeline(StandardScaler(), make_model("gcn"))

    assert _is_neural(wrapped)
    assert _is_neural(piped)
    assert not _is_neural(TransformedTargetRegressor(make_model("ridge")))


# --------------------------------------------------------------------------
# With the real encodings and the real sample
# --------------------------------------------------------------------------


def test_runner_with_the_real_encodings(count_fits):
    from utils.evaluation import run_experiments

    data = _chain_dataset()
    results = run_experiments(
        data, ["ridge"], ["adj_path"], train_sizes=[30], seeds=[0], progress=False
    )
    assert results.loc[0, "kendall_tau"] > 0.3

    with pytest.raises(ValueError, match="unknown encoding or feature set 'nope'"):
        run_experiments(
            data, ["ridge"], ["nope"], train_sizes=[30], seeds=[0], progress=False
        )
    assert len(count_fits) == 1


def test_runner_on_the_sample(sample_20k):
    from utils.dataset import NASBench101
    from utils.evaluation import noise_ceiling, run_experiments

    data = NASBench101.from_hdf5(sample_20k)
    label = Label(runs=0)
    results = run_experiments(
        data,
        ["ridge"],
        ["adj_path"],
        train_sizes=[100, 172],
        seeds=[0],
        train_label=label,
        eval_label=label,
        progress=False,
    )

    assert list(results["n_eval"]) == [len(data) - 100, len(data) - 172]
    assert (results["kendall_tau"] > 0.3).all()
    # The sample holds one run per cell, and no test accuracy.
    assert noise_ceiling(data).empty
    with pytest.raises(ValueError, match="no data for budget 108, metric 'test_acc"):
        run_experiments(
            data,
            ["ridge"],
            ["adj_path"],
            train_sizes=[100],
            seeds=[0],
            eval_label=Label(metric="test_accuracy"),
            progress=False,
        )
    with pytest.raises(ValueError, match="train_size=30000 exceeds the 20001 cells"):
        run_experiments(
            data,
            ["ridge"],
            ["adj_path"],
            train_sizes=[30000],
            seeds=[0],
            train_label=label,
            progress=False,
        )
