"""Tests of utils.predictors: the estimator contract, seeds, scaling, errors."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import kendalltau, rankdata
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from utils.predictors import (
    MODELS,
    RandomForestPredictor,
    RankEnsemble,
    RidgePredictor,
    XGBPredictor,
    make_model,
    score_line,
)

# Small versions of every model, fast enough for the full estimator checks.
SMALL_MEMBERS = [
    ("ridge", RidgePredictor()),
    ("rf", RandomForestPredictor(n_estimators=5)),
]
SMALL_MODELS = [
    RidgePredictor(),
    RandomForestPredictor(n_estimators=5),
    XGBPredictor(n_estimators=5, learning_rate=0.5),
    XGBPredictor(objective="rank:pairwise", n_estimators=5, learning_rate=0.5),
    RankEnsemble(SMALL_MEMBERS),
]
SEEDED_MODELS = [*SMALL_MODELS[1:], RankEnsemble(SMALL_MEMBERS, combine="zscore")]


def _expected_failed_checks(estimator):
    """Checks a model fails by design, with the reason."""
    if isinstance(estimator, RankEnsemble) and estimator.combine == "rank":
        return {
            "check_methods_subset_invariance": (
                "combine='rank' ranks each cell among the cells of the same "
                "predict call, so a subset gets other values"
            )
        }
    return {}


# The "zscore" ensemble differs from the "rank" one only in predict, which
# the tests below cover; the checks run on the "rank" one.
@parametrize_with_checks(SMALL_MODELS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


def _linear_problem(n_cells=300, n_features=12, noise=0.3, seed=0):
    """y = X @ w + noise, with a few one-hot-like binary columns."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_cells, n_features))
    X[:, :4] = (X[:, :4] > 0).astype(float)
    w = rng.normal(size=n_features)
    y = X @ w + noise * rng.normal(size=n_cells)
    return X, y


@pytest.mark.parametrize("estimator", SEEDED_MODELS, ids=repr)
def test_same_seed_same_predictions_other_seed_other(estimator):
    estimator = clone(estimator)
    X, y = _linear_problem()
    first = estimator.set_params(random_state=1).fit(X, y).predict(X)
    again = estimator.set_params(random_state=1).fit(X, y).predict(X)
    other = estimator.set_params(random_state=2).fit(X, y).predict(X)

    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize("estimator", SEEDED_MODELS, ids=repr)
def test_second_fit_starts_from_scratch(estimator):
    estimator = clone(estimator)
    X, y = _linear_problem()
    X_other, y_other = _linear_problem(seed=1)
    estimator.set_params(random_state=0)

    refitted = estimator.fit(X, y).fit(X_other, y_other).predict(X)
    fresh = estimator.fit(X_other, y_other).predict(X)

    np.testing.assert_array_equal(refitted, fresh)


@pytest.mark.parametrize("estimator", [SMALL_MODELS[0], *SEEDED_MODELS], ids=repr)
def test_affine_change_of_targets_keeps_the_ranking(estimator):
    estimator = clone(estimator).set_params(random_state=0)
    X, y = _linear_problem()

    on_y = estimator.fit(X, y).predict(X)
    on_scaled_y = estimator.fit(X, 100 * y + 5).predict(X)

    np.testing.assert_array_equal(rankdata(on_y), rankdata(on_scaled_y))


@pytest.mark.parametrize("name", ["ridge", "rf", "xgb", "xgb_rank"])
def test_model_ranks_held_out_cells(name):
    X, y = _linear_problem(n_cells=400)
    params = {"n_estimators": 100} if name in ("rf", "xgb", "xgb_rank") else {}
    model = make_model(name, random_state=0, **params).fit(X[:300], y[:300])

    tau = kendalltau(model.predict(X[300:]), y[300:])[0]
    assert tau > 0.5


def test_regressors_predict_on_the_scale_of_y():
    X, y = _linear_problem()
    y = 0.9 + 0.01 * y
    for model in (RidgePredictor(), XGBPredictor(n_estimators=50)):
        predictions = model.fit(X, y).predict(X)
        assert abs(predictions.mean() - y.mean()) < 0.01
        assert model.y_mean_ == pytest.approx(y.mean())
        assert model.y_scale_ == pytest.approx(y.std())


def test_score_line_is_least_squares_when_increasing():
    scores = np.array([0.0, 1.0, 2.0, 3.0])
    z = np.array([1.0, 3.0, 5.0, 7.0])
    assert score_line(scores, z) == pytest.approx((2.0, 1.0))


def test_score_line_keeps_the_order_of_bad_scores():
    scores = np.array([0.0, 1.0, 2.0, 3.0])
    slope, offset = score_line(scores, -scores)
    assert slope == pytest.approx(1.0)
    assert offset == pytest.approx(-3.0)
    assert score_line(np.ones(4), scores) == (1.0, 0.0)


def test_ranker_scores_are_put_on_the_scale_of_y():
    X, y = _linear_problem()
    y = 0.9 + 0.01 * y
    model = XGBPredictor(objective="rank:pairwise", n_estimators=50).fit(X, y)

    assert model.score_slope_ > 0
    assert model.predict(X).mean() == pytest.approx(y.mean())


def test_constant_targets_predict_the_constant():
    X, _ = _linear_problem(n_cells=50)
    y = np.full(50, 0.93)
    predictions = RidgePredictor().fit(X, y).predict(X)
    np.testing.assert_allclose(predictions, 0.93)


@pytest.mark.parametrize("combine", ["rank", "zscore"])
def test_rank_ensemble_ranks_held_out_cells(combine):
    X, y = _linear_problem(n_cells=400)
    members = [*SMALL_MEMBERS, ("xgb", XGBPredictor(n_estimators=50))]
    model = RankEnsemble(members, combine=combine, random_state=0)
    model.fit(X[:300], y[:300])

    tau = kendalltau(model.predict(X[300:]), y[300:])[0]
    assert tau > 0.5


def test_rank_ensemble_returns_scaled_ranks():
    X, y = _linear_problem()
    model = RankEnsemble(SMALL_MEMBERS, random_state=0).fit(X, y)

    predictions = model.predict(X)
    assert predictions.min() >= 0.0 and predictions.max() <= 1.0
    assert model.predict(X[:1]) == pytest.approx([0.5])
    assert [type(m) for m in model.estimators_] == [
        RidgePredictor,
        RandomForestPredictor,
    ]


def test_default_ensemble_members():
    names = [name for name, _ in RankEnsemble()._members()]
    assert names == ["xgb", "xgb_rank"]


def test_rank_ensemble_zscore_is_batch_independent():
    X, y = _linear_problem()
    model = RankEnsemble(SMALL_MEMBERS, combine="zscore", random_state=0).fit(X, y)

    whole = model.predict(X)
    one_by_one = np.concatenate([model.predict(X[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(whole[:5], one_by_one)


def test_rank_ensemble_seeds_members_from_its_own_seed():
    X, y = _linear_problem()
    members = [("rf", RandomForestPredictor(n_estimators=2, random_state=7))]
    model = RankEnsemble(members, random_state=3).fit(X, y)

    assert model.estimators_[0].random_state != 7
    assert members[0][1].random_state == 7


def test_nan_targets_are_refused_with_counts():
    X, y = _linear_problem(n_cells=10)
    y[[2, 5, 7]] = np.nan
    with pytest.raises(ValueError, match=r"y contains NaN: 3 of 10 targets"):
        RidgePredictor().fit(X, y)


@pytest.mark.parametrize("estimator", SMALL_MODELS, ids=repr)
def test_predict_before_fit_is_refused(estimator):
    estimator = clone(estimator)
    X, _ = _linear_problem(n_cells=10)
    with pytest.raises(NotFittedError):
        estimator.predict(X)


def test_unknown_objective_is_refused():
    X, y = _linear_problem(n_cells=20)
    with pytest.raises(ValueError, match=r"`objective` must be one of .*got 'rank'"):
        XGBPredictor(objective="rank").fit(X, y)


def test_unknown_combine_rule_is_refused():
    X, y = _linear_problem(n_cells=20)
    with pytest.raises(ValueError, match=r"`combine` must be one of .*got 'mean'"):
        RankEnsemble(SMALL_MEMBERS, combine="mean").fit(X, y)


def test_empty_ensemble_is_refused():
    X, y = _linear_problem(n_cells=20)
    with pytest.raises(ValueError, match="at least one member, got none"):
        RankEnsemble([]).fit(X, y)


def test_unnamed_ensemble_member_is_refused():
    X, y = _linear_problem(n_cells=20)
    with pytest.raises(ValueError, match=r"\(name, estimator\) pairs, got an item"):
        RankEnsemble([RidgePredictor()]).fit(X, y)


def test_ranking_objective_is_tagged_as_scoring_poorly():
    tags = XGBPredictor(objective="rank:pairwise").__sklearn_tags__()
    assert tags.regressor_tags.poor_score
    assert not XGBPredictor().__sklearn_tags__().regressor_tags.poor_score


def test_make_model_builds_every_name():
    assert sorted(MODELS) == sorted(
        ["ridge", "rf", "xgb", "xgb_rank", "mlp", "gcn", "ensemble"]
    )
    for name in MODELS:
        model = make_model(name, random_state=4)
        assert model.get_params()["random_state"] == 4
    assert make_model("xgb_rank").objective == "rank:pairwise"
    assert make_model("rf", n_estimators=7).n_estimators == 7


def test_make_model_refuses_unknown_names():
    with pytest.raises(ValueError, match=r"unknown model 'svm'; expected one of "):
        make_model("svm")


def test_import_does_not_load_tensorflow():
    code = (
        "import sys, utils.predictors, utils.neural; "
        "utils.predictors.make_model('gcn'); "
        "loaded = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "sys.exit(f'loaded {loaded}' if loaded else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
