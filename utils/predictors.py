"""Accuracy predictors: scikit-learn regressors from cell features to accuracy.

Every predictor here maps a feature matrix ``X`` of shape (n_cells, n_features)
(an encoding from :mod:`utils.encodings`) to a target ``y`` of shape
(n_cells,), usually the final validation accuracy at 108 epochs. All of them
follow scikit-learn's estimator contract, so they clone, pickle, and work in
pipelines, cross-validation and hyperparameter search:

* ``__init__`` only stores its parameters;
* ``fit(X, y)`` checks its input, standardises ``y`` with the mean and
  standard deviation of the training targets, builds a fresh model, learns
  into attributes ending in ``_`` and returns ``self``;
* ``predict(X)`` refuses an unfitted model (``NotFittedError``) and returns
  predictions on the scale of the training targets, shape (n_cells,);
* ``random_state`` fixes every source of randomness: one seed, one set of
  predictions. A second ``fit`` starts again from scratch.

Models
------
``"ridge"``     :class:`RidgePredictor`, ridge regression on standardised
                features.
``"rf"``        :class:`RandomForestPredictor`, a random forest.
``"xgb"``       :class:`XGBPredictor`, gradient-boosted trees, squared error.
``"xgb_rank"``  :class:`XGBPredictor` with ``objective="rank:pairwise"``: it
                learns the order of the cells only; its scores are mapped
                onto the targets by an increasing line (:func:`score_line`).
``"mlp"``       :class:`utils.neural.MLPPredictor`, a Keras multilayer
                perceptron.
``"gcn"``       :class:`utils.neural.GCNPredictor`, a graph convolutional
                network over the cell's matrix and ops (needs the 84-column
                adjacency + op one-hot encoding).
``"ensemble"``  :class:`RankEnsemble`, the average rank of several members.

Example::

    model = make_model("xgb", random_state=0).fit(X_train, y_train)
    scores = model.predict(X_test)              # (n_test,)

Defaults were chosen on the real 20k-cell sample: Kendall's tau between
predictions and final validation accuracy on 2,000 held-out cells, after
training on 172 / 424 / 1,000 cells (mean of 1-3 seeds; trees and ridge on
the 400 ``adj_path`` columns, the networks on the 84 ``graph`` columns)::

    ridge     0.57 / 0.61 / 0.60       mlp       0.64 / 0.71 / 0.78
    rf        0.60 / 0.67 / 0.72       gcn       0.76 / 0.80 / 0.83
    xgb       0.65 / 0.72 / 0.75       ensemble  0.67 / 0.73 / 0.77
    xgb_rank  0.65 / 0.70 / 0.76

Targets with NaN (cells whose requested runs were not all measured) are
refused with a message that says how many; drop those cells first or average
the runs that were measured. TensorFlow is imported only when a neural model
is fitted, so importing this module stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "TargetScaledRegressor",
    "score_line",
    "RidgePredictor",
    "RandomForestPredictor",
    "XGBPredictor",
    "RankEnsemble",
    "MODELS",
    "make_model",
]

logger = logging.getLogger(__name__)

XGB_OBJECTIVES = ("reg:squarederror", "rank:pairwise")
COMBINE_RULES = ("rank", "zscore")


def _check_no_nan_targets(y) -> None:
    """Refuse targets with NaN, saying how many are missing."""
    if y is None:
        return

    # Only float (or object) targets can hold NaN; scikit-learn's own
    # validation names every other problem.
    values = np.asarray(y)
    if values.dtype.kind == "O":
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            return
    if values.dtype.kind != "f":
        return

    missing = int(np.isnan(values).sum())
    if missing:
        raise ValueError(
            f"y contains NaN: {missing} of {values.size} targets are not "
            "measured; drop those cells or choose runs='mean' to average the "
            "measured runs (expected finite targets only)"
        )


def score_line(scores: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Increasing line that maps ranking scores onto targets.

    The least-squares line from ``scores`` to ``z`` on the training cells;
    when its slope is not positive (scores that rank the training cells
    badly), the line that matches their mean and standard deviation instead,
    so that the order of the scores is always kept.

    Parameters
    ----------
    scores : ndarray of shape (n_cells,)
        Ranking scores of the training cells.
    z : ndarray of shape (n_cells,)
        Their (standardised) targets.

    Returns
    -------
    slope, offset : float
        ``offset + slope * scores`` approximates ``z``; (1.0, 0.0) for
        constant scores.
    """
    spread = float(np.std(scores))
    if spread == 0:
        return 1.0, 0.0

    slope = float(np.cov(scores, z, bias=True)[0, 1]) / spread**2
    if slope <= 0:
        slope = float(np.std(z)) / spread
    return slope, float(np.mean(z) - slope * np.mean(scores))


class TargetScaledRegressor(RegressorMixin, BaseEstimator):
    """Base for predictors that learn on standardised targets.

    Subclasses implement ``_fit_scaled(X, z, random_state)``, which learns
    from ``z = (y - y_mean_) / y_scale_`` (rounded to 1e-9), and
    ``_predict_scaled(X)``, which returns predictions on that scale; this
    class checks the input, does the scaling and maps predictions back to the
    scale of ``y``.

    Attributes
    ----------
    y_mean_ : float
        Mean of the training targets.
    y_scale_ : float
        Standard deviation of the training targets (1.0 when they are
        constant).
    n_features_in_ : int
        Number of features seen in ``fit``.
    """

    def fit(self, X, y):
        """Fit the model on standardised targets.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_features)
            Features of the training cells.
        y : array-like of shape (n_cells,)
            Targets, e.g. final validation accuracy. NaN is refused.

        Returns
        -------
        self : object
            The fitted predictor.
        """
        _check_no_nan_targets(y)
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        self._check_features(X)

        # Standardise the targets on the training cells only.
        self.y_mean_ = float(np.mean(y))
        scale = float(np.std(y))
        self.y_scale_ = scale if scale > 0 else 1.0
        # Rounding makes z bitwise equal for targets that differ by an affine
        # map (accuracy as a fraction or in percent), so the models agree.
        z = np.round((y - self.y_mean_) / self.y_scale_, 9)

        self._fit_scaled(X, z, check_random_state(self.random_state))
        return self

    def predict(self, X) -> np.ndarray:
        """Predict targets of cells.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_features)
            Features of the cells, same columns as in ``fit``.

        Returns
        -------
        y_pred : ndarray of shape (n_cells,)
            Predictions on the scale of the training targets.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        self._check_features(X)
        z = np.asarray(self._predict_scaled(X), dtype=np.float64)
        return self._unscale(z)

    def _unscale(self, z: np.ndarray) -> np.ndarray:
        """Map predictions on the standardised scale back to the scale of y."""
        return self.y_mean_ + self.y_scale_ * z

    def _check_features(self, X: np.ndarray) -> None:
        """Refuse features the model cannot read (none by default)."""

    def _fit_scaled(self, X, z, random_state):  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict_scaled(self, X):  # pragma: no cover - abstract
        raise NotImplementedError


class RidgePredictor(TargetScaledRegressor):
    """Ridge regression on standardised features.

    A linear baseline that stays well defined on collinear columns, such as
    the one-hot op columns of an encoding: the features are standardised and
    the L2 penalty ``alpha`` picks one solution among the equivalent ones.

    Parameters
    ----------
    alpha : float, default=300.0
        L2 penalty, on the scale of standardised features and targets. Rare
        binary columns (most path features) become large once standardised,
        so a long encoding needs a strong penalty: on the real sample, with
        the 400 ``adj_path`` columns, 300 ranked held-out cells better than
        10 or 100 and about as well as 1,000; the 36 ``basic`` columns prefer
        10-100.
    random_state : int, RandomState instance or None, default=None
        Unused (ridge is deterministic); present so that every model of the
        registry takes the same arguments.

    Attributes
    ----------
    model_ : sklearn.pipeline.Pipeline
        ``StandardScaler`` followed by ``Ridge``, fitted on scaled targets.
    """

    def __init__(self, alpha: float = 300.0, random_state=None):
        self.alpha = alpha
        self.random_state = random_state

    def _fit_scaled(self, X, z, random_state):
        self.model_ = make_pipeline(StandardScaler(), Ridge(alpha=self.alpha))
        self.model_.fit(X, z)

    def _predict_scaled(self, X):
        return self.model_.predict(X)


class RandomForestPredictor(TargetScaledRegressor):
    """Random forest regressor with defaults for a few hundred cells.

    Parameters
    ----------
    n_estimators : int, default=500
        Number of trees.
    max_features : float, int or str, default=0.33
        Features tried at each split (a fraction, a count, ``"sqrt"``...);
        a third of them decorrelates the trees of a one-hot encoding.
    min_samples_leaf : int, default=1
        Smallest number of cells in a leaf.
    n_jobs : int or None, default=None
        Threads for fitting and prediction (None: one).
    random_state : int, RandomState instance or None, default=None
        Seed of the bootstrap and of the feature sampling.

    Attributes
    ----------
    model_ : sklearn.ensemble.RandomForestRegressor
        The fitted forest, on scaled targets.
    """

    def __init__(
        self,
        n_estimators: int = 500,
        max_features=0.33,
        min_samples_leaf: int = 1,
        n_jobs: int | None = None,
        random_state=None,
    ):
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _fit_scaled(self, X, z, random_state):
        self.model_ = RandomForestRegressor(
            n_estimators=self.n_estimators,
            max_features=self.max_features,
            min_samples_leaf=self.min_samples_leaf,
            n_jobs=self.n_jobs,
            random_state=random_state.randint(np.iinfo(np.int32).max),
        )
        self.model_.fit(X, z)

    def _predict_scaled(self, X):
        return self.model_.predict(X)


class XGBPredictor(TargetScaledRegressor):
    """Gradient-boosted trees (XGBoost), as a regressor or as a ranker.

    With ``objective="reg:squarederror"`` this is an ``xgboost.XGBRegressor``
    on standardised targets. With ``objective="rank:pairwise"`` it is an
    ``xgboost.XGBRanker`` in which all training cells form one query group,
    so that the trees learn the order of the cells and nothing else.

    Parameters
    ----------
    objective : {"reg:squarederror", "rank:pairwise"}, default="reg:squarederror"
        Loss: squared error on the targets, or pairwise ranking.
    n_estimators : int, default=500
        Boosting rounds.
    max_depth : int, default=6
        Depth of each tree.
    learning_rate : float, default=0.05
        Shrinkage of each tree.
    subsample : float, default=0.8
        Fraction of cells sampled for each tree.
    colsample_bytree : float, default=0.8
        Fraction of features sampled for each tree.
    min_child_weight : float, default=1.0
        Smallest hessian sum in a child.
    reg_lambda : float, default=1.0
        L2 penalty on leaf weights.
    num_pair_per_sample : int, default=8
        Pairs sampled for each cell per round by the ranking objective
        (unused by squared error).
    n_jobs : int or None, default=None
        Threads (None: one).
    random_state : int, RandomState instance or None, default=None
        Seed of row and column sampling.

    Attributes
    ----------
    model_ : xgboost.XGBRegressor or xgboost.XGBRanker
        The fitted booster.
    score_slope_, score_offset_ : float
        Line from the booster's output to standardised targets: the
        identity for squared error, :func:`score_line` on the training cells
        for ranking.

    Notes
    -----
    With ``"rank:pairwise"`` the booster learns an order only. Its scores are
    put on the scale of ``y`` by an increasing line fitted on the training
    cells, so the order of the predictions is the ranker's and their values
    are approximate: R^2 (``score``) and the mean absolute error understate or
    misstate such a model; compare it by a rank correlation such as Kendall's
    tau.
    """

    def __init__(
        self,
        objective: str = "reg:squarederror",
        n_estimators: int = 500,
        max_depth: int = 6,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        num_pair_per_sample: int = 8,
        n_jobs: int | None = None,
        random_state=None,
    ):
        self.objective = objective
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.num_pair_per_sample = num_pair_per_sample
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _fit_scaled(self, X, z, random_state):
        import xgboost

        if self.objective not in XGB_OBJECTIVES:
            raise ValueError(
                f"`objective` must be one of {XGB_OBJECTIVES}, got {self.objective!r}"
            )

        params = dict(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            min_child_weight=self.min_child_weight,
            reg_lambda=self.reg_lambda,
            tree_method="hist",
            n_jobs=1 if self.n_jobs is None else self.n_jobs,
            random_state=random_state.randint(np.iinfo(np.int32).max),
        )

        # One query group holding every training cell.
        if self.objective == "rank:pairwise":
            self.model_ = xgboost.XGBRanker(
                objective="rank:pairwise",
                lambdarank_pair_method="mean",
                lambdarank_num_pair_per_sample=self.num_pair_per_sample,
                **params,
            )
            self.model_.fit(X, z, qid=np.zeros(len(z), dtype=np.int64))
        else:
            self.model_ = xgboost.XGBRegressor(objective=self.objective, **params)
            self.model_.fit(X, z)

        # Ranking scores have no scale: map them onto z by an increasing line.
        self.score_slope_, self.score_offset_ = 1.0, 0.0
        if self.objective == "rank:pairwise":
            line = score_line(self.model_.predict(X), z)
            self.score_slope_, self.score_offset_ = line

    def _predict_scaled(self, X):
        return self.score_offset_ + self.score_slope_ * self.model_.predict(X)

    def predict(self, X) -> np.ndarray:
        """Predict targets of cells (ranking scores for ``"rank:pairwise"``).

        Parameters
        ----------
        X : array-like of shape (n_cells, n_features)
            Features of the cells, same columns as in ``fit``.

        Returns
        -------
        y_pred : ndarray of shape (n_cells,)
            Predicted targets; for the ranking objective, ranking scores put
            on the scale of ``y`` (their order is what the model learnt).
        """
        return super().predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = self.objective == "rank:pairwise"
        return tags


def _default_members() -> list[tuple[str, BaseEstimator]]:
    """Members of the default ensemble: boosted trees, regressor and ranker."""
    return [
        ("xgb", XGBPredictor()),
        ("xgb_rank", XGBPredictor(objective="rank:pairwise")),
    ]


class RankEnsemble(TargetScaledRegressor):
    """Average of several predictors, by rank or by standardised output.

    Each member is cloned and fitted on the same cells. With
    ``combine="rank"`` the prediction is the mean over members of each cell's
    rank among the cells being predicted, scaled to [0, 1]; members on
    different scales (ranking scores, accuracies) then weigh alike. With
    ``combine="zscore"`` each member's output is standardised with the mean
    and standard deviation of its predictions on the training cells, the
    results are averaged and mapped back to the scale of ``y``.

    Parameters
    ----------
    estimators : list of (str, estimator) or None, default=None
        Named members. None: :class:`XGBPredictor` with squared error and with
        the pairwise ranking objective, both with their defaults (on the real
        cells they rank better together than either alone, and better than
        with ridge or a forest added).
    combine : {"rank", "zscore"}, default="rank"
        How the members' outputs are combined.
    random_state : int, RandomState instance or None, default=None
        When not None, each member that takes a ``random_state`` gets its own
        seed drawn from this one; when None, the members keep theirs.

    Attributes
    ----------
    estimators_ : list of estimator
        The fitted clones, in the order of ``estimators``.
    member_means_, member_scales_ : ndarray of shape (n_members,)
        Mean and standard deviation of each member's predictions on the
        training cells (used by ``"zscore"``).

    Notes
    -----
    With ``"rank"`` a prediction depends on the other cells of the same call
    to ``predict``: predict all candidates at once. One cell alone gets 0.5.
    The values are ranks, so R^2 and the mean absolute error are not
    meaningful; ``"zscore"`` predictions stay on the scale of ``y``.
    """

    def __init__(
        self,
        estimators: Sequence[tuple[str, BaseEstimator]] | None = None,
        combine: str = "rank",
        random_state=None,
    ):
        self.estimators = estimators
        self.combine = combine
        self.random_state = random_state

    def _members(self) -> list[tuple[str, BaseEstimator]]:
        """Checked (name, estimator) pairs."""
        members = _default_members() if self.estimators is None else self.estimators
        members = list(members)
        if not members:
            raise ValueError("`estimators` must name at least one member, got none")
        for member in members:
            if not (isinstance(member, tuple) and len(member) == 2):
                raise ValueError(
                    "`estimators` must be a list of (name, estimator) pairs, "
                    f"got an item {member!r}"
                )
        return members

    def _fit_scaled(self, X, z, random_state):
        if self.combine not in COMBINE_RULES:
            raise ValueError(
                f"`combine` must be one of {COMBINE_RULES}, got {self.combine!r}"
            )

        # Fit a fresh clone of each member, seeded from our own seed if given.
        self.estimators_ = []
        for name, estimator in self._members():
            member = clone(estimator)
            if self.random_state is not None and "random_state" in member.get_params():
                member.set_params(random_state=random_state.randint(2**31 - 1))
            logger.debug("fitting ensemble member %s", name)
            self.estimators_.append(member.fit(X, z))

        # Each member's spread on the training cells, for "zscore".
        train_predictions = np.array([m.predict(X) for m in self.estimators_])
        self.member_means_ = train_predictions.mean(axis=1)
        scales = train_predictions.std(axis=1)
        self.member_scales_ = np.where(scales > 0, scales, 1.0)

    def _predict_scaled(self, X):
        predictions = np.array([m.predict(X) for m in self.estimators_])
        if self.combine == "zscore":
            centred = predictions - self.member_means_[:, None]
            return (centred / self.member_scales_[:, None]).mean(axis=0)

        # Ranks among the predicted cells, scaled to [0, 1]; ties share a rank.
        n_cells = predictions.shape[1]
        if n_cells == 1:
            ranks = np.full_like(predictions, 0.5)
        else:
            ranks = (rankdata(predictions, axis=1) - 1) / (n_cells - 1)
        return ranks.mean(axis=0)

    def predict(self, X) -> np.ndarray:
        """Predict by combining the members.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_features)
            Features of the cells, same columns as in ``fit``.

        Returns
        -------
        y_pred : ndarray of shape (n_cells,)
            Mean scaled rank in [0, 1] (``"rank"``), or the mean standardised
            output on the scale of ``y`` (``"zscore"``).
        """
        return super().predict(X)

    def _unscale(self, z: np.ndarray) -> np.ndarray:
        # Ranks are returned as they are; z-scores go back to the scale of y.
        return z if self.combine == "rank" else super()._unscale(z)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = self.combine == "rank"
        return tags


def _mlp(**params) -> BaseEstimator:
    from utils.neural import MLPPredictor

    return MLPPredictor(**params)


def _gcn(**params) -> BaseEstimator:
    from utils.neural import GCNPredictor

    return GCNPredictor(**params)


def _xgb_rank(**params) -> BaseEstimator:
    return XGBPredictor(**{"objective": "rank:pairwise", **params})


#: Model names and the factories that build them: ``MODELS[name](**params)``.
MODELS: dict[str, Callable[..., BaseEstimator]] = {
    "ridge": RidgePredictor,
    "rf": RandomForestPredictor,
    "xgb": XGBPredictor,
    "xgb_rank": _xgb_rank,
    "mlp": _mlp,
    "gcn": _gcn,
    "ensemble": RankEnsemble,
}


def make_model(name: str, random_state=None, **params) -> BaseEstimator:
    """Build an unfitted predictor by name.

    Parameters
    ----------
    name : str
        One of the keys of :data:`MODELS`.
    random_state : int, RandomState instance or None, default=None
        Seed of the model.
    **params
        Other parameters of the model, overriding its defaults.

    Returns
    -------
    model : estimator
        A scikit-learn regressor.

    Examples
    --------
    >>> make_model("ridge", alpha=1.0)
    RidgePredictor(alpha=1.0)
    """
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}"
        )
    return MODELS[name](random_state=random_state, **params)
