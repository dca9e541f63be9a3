"""Neural accuracy predictors in Keras: a multilayer perceptron and a GCN.

Both are scikit-learn regressors with the contract of
:mod:`utils.predictors`: ``fit(X, y)`` standardises the targets, builds a fresh
network, trains it and keeps its weights as NumPy arrays in ``weights_``;
``predict(X)`` runs the network in NumPy, so a fitted model pickles and
predicts without TensorFlow. TensorFlow and Keras are imported on the first
``fit`` only: ``import utils.neural`` stays light.

Models
------
:class:`MLPPredictor`
    Dense layers on standardised features, for any encoding.
:class:`GCNPredictor`
    The Neural Predictor of Wen et al. (2020): graph convolutions that
    propagate along the cell's edges in both directions, mean pooling over
    the vertices and a dense head.

Input contract of :class:`GCNPredictor`: ``X`` has shape (n_cells, 84)::

    X[:, :49]   matrix, the aligned 7 x 7 adjacency matrix, row-major:
                matrix[i, j] = 1 for an edge from vertex i to vertex j
    X[:, 49:]   ops, one-hot op labels of the 7 vertices over 5 classes,
                vertex-major: X[:, 49:].reshape(n_cells, 7, 5)

The input vertex comes first and the output vertex last (index 6); the
padding vertices of a cell with fewer than 7 vertices have all-zero one-hot
rows and no edges.

Example::

    model = GCNPredictor(random_state=0).fit(X_train, y_train)
    scores = model.predict(X_test)              # (n_test,)

Reproducibility: ``fit`` clears Keras' global session, seeds Keras with
``random_state`` and turns on TensorFlow's deterministic ops (for the whole
process), so one seed gives one set of predictions. The global states of
``random`` and ``numpy.random`` are restored after training. Unless the
environment says otherwise, TensorFlow's C++ logging is limited to errors.
Other Keras models of the same process keep working, but share the
deterministic ops and the thread counts set here.

Loss: by default (``loss="pairwise"``) a network learns only the order of
the training cells, by a logistic loss on every ordered pair of cells in a
batch (as in RankNet); this ranks held-out cells better than squared error.
Its scores have no scale of their own, so ``fit`` maps them onto the targets
with the least-squares line on the training cells, kept increasing: the order
is the network's, the scale only approximate, so judge such a model by a rank
correlation rather than by R^2 or the mean absolute error. ``loss="mse"``
trains on squared error of the standardised targets instead.

Quality and cost of the GCN defaults on the real 20k-cell sample (Kendall's
tau on 2,000 held-out cells; 1-3 seeds): 172 training cells 0.76, 424 cells
0.80, 1,000 cells 0.83. Training on 424 cells takes about 33 CPU-seconds,
which was 30-60 s of wall time on two cores shared with other work; the time
grows in proportion to the number of cells.
"""

from __future__ import annotations

import logging
import math
import os
import random
import warnings

import numpy as np

from utils.predictors import TargetScaledRegressor, score_line

__all__ = ["MLPPredictor", "GCNPredictor", "GCN_FEATURES"]

logger = logging.getLogger(__name__)

NUM_VERTICES = 7
NUM_OP_CLASSES = 5
GCN_FEATURES = NUM_VERTICES * NUM_VERTICES + NUM_VERTICES * NUM_OP_CLASSES
LOSSES = ("mse", "pairwise")

# Thread counts given to TensorFlow; it accepts them once per process.
_threads_set: int | None = None


def _import_keras(n_jobs: int | None):
    """Import TensorFlow and Keras, quiet and deterministic.

    ``n_jobs`` sets TensorFlow's intra- and inter-op threads on the first
    call that gives it; TensorFlow refuses a change once it has started, so a
    later, different value is ignored with a warning.
    """
    global _threads_set
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    if n_jobs is not None and n_jobs != _threads_set:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n_jobs)
            tf.config.threading.set_inter_op_parallelism_threads(n_jobs)
            _threads_set = n_jobs
        except RuntimeError:
            warnings.warn(
                f"TensorFlow already runs with its thread pools set; "
                f"n_jobs={n_jobs} is ignored in this process",
                stacklevel=3,
            )
    tf.config.experimental.enable_op_determinism()
    return tf, keras


def _mse_loss(tf, z, scores):
    """Mean squared error."""
    return tf.reduce_mean(tf.square(scores - z))


def _pairwise_logistic_loss(tf, z, scores):
    """Logistic loss on every ordered pair of a batch (RankNet)."""
    # better[i, j] = 1 where cell i has the higher target.
    better = tf.cast(z[:, None] > z[None, :], scores.dtype)
    margins = scores[:, None] - scores[None, :]
    total = tf.reduce_sum(tf.nn.softplus(-margins) * better)
    return total / tf.maximum(tf.reduce_sum(better), 1.0)


def _fit_model(tf, model, inputs, z, batches, optimizer, loss_fn):
    """Train ``model`` on the given batches in one graph; return step losses.

    ``batches`` of shape (n_steps, batch_size) holds row indices; one call of
    a compiled loop runs every step, which avoids Keras' per-epoch overhead.
    """
    data = [tf.constant(x, dtype=tf.float32) for x in inputs]
    target = tf.constant(z, dtype=tf.float32)
    weights = model.trainable_variables
    optimizer.build(weights)

    @tf.function
    def run(batches):
        losses = tf.TensorArray(tf.float32, size=tf.shape(batches)[0])
        for step in tf.range(tf.shape(batches)[0]):
            rows = batches[step]
            with tf.GradientTape() as tape:
                batch = [tf.gather(x, rows) for x in data]
                if len(batch) == 1:
                    batch = batch[0]
                scores = tf.reshape(model(batch, training=True), [-1])
                loss = loss_fn(tf, tf.gather(target, rows), scores)
            gradients = tape.gradient(loss, weights)
            optimizer.apply_gradients(zip(gradients, weights, strict=True))
            losses = losses.write(step, loss)
        return losses.stack()

    # Each fit traces a new loop by design: keep TensorFlow's retracing
    # warning out of the log.
    tf_logger = tf.get_logger()
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        return run(tf.constant(batches, dtype=tf.int32)).numpy()
    finally:
        tf_logger.setLevel(level)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


class _KerasPredictor(TargetScaledRegressor):
    """Training loop and checks shared by the Keras predictors."""

    def _check_params(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}, got {self.loss!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not (isinstance(value, int | np.integer) and value >= 1):
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")

    def _fit_scaled(self, X, z, random_state):
        self._train(self._inputs(X), z, random_state)

        # Map the network's scores onto z: the identity for "mse"; for
        # "pairwise", whose scores have no scale, the least-squares line on
        # the training cells (kept increasing, so the order never flips).
        self.score_slope_, self.score_offset_ = 1.0, 0.0
        if self.loss == "pairwise":
            line = score_line(self._network_scores(X), z)
            self.score_slope_, self.score_offset_ = line

    def _predict_scaled(self, X):
        return self.score_offset_ + self.score_slope_ * self._network_scores(X)

    def _train(self, inputs: list[np.ndarray], z: np.ndarray, random_state) -> None:
        """Build a fresh network, train it on ``z`` and keep its weights."""
        self._check_params()
        tf, keras = _import_keras(self.n_jobs)
        seed = int(random_state.randint(2**31 - 1))

        # Batches for all epochs at once: each epoch is a permutation of the
        # cells, wrapped round to whole batches, so every step has one shape.
        n_cells = len(z)
        batch_size = min(self.batch_size, n_cells)
        steps_per_epoch = math.ceil(n_cells / batch_size)
        order = np.random.RandomState(seed)
        batches = np.concatenate(
            [
                np.resize(order.permutation(n_cells), steps_per_epoch * batch_size)
                for _ in range(self.epochs)
            ]
        ).reshape(-1, batch_size)

        # Seed Keras without disturbing the caller's global generators.
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            keras.backend.clear_session()
            keras.utils.set_random_seed(seed)
            model = self._build(keras, inputs)
            step_losses = _fit_model(
                tf,
                model,
                inputs,
                z,
                batches,
                self._optimizer(keras, len(batches)),
                _mse_loss if self.loss == "mse" else _pairwise_logistic_loss,
            )
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)

        # Keep the weights by layer name; predict runs them in NumPy.
        self.weights_ = {
            layer.name: [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]
            for layer in model.layers
            if layer.get_weights()
        }
        self.loss_curve_ = step_losses.reshape(self.epochs, -1).mean(axis=1).tolist()
        logger.debug(
            "%s: %d epochs, final loss %.4f",
            type(self).__name__,
            self.epochs,
            self.loss_curve_[-1],
        )

    def _optimizer(self, keras, steps: int):
        """AdamW with the learning rate decayed to zero on a cosine."""
        schedule = keras.optimizers.schedules.CosineDecay(
            self.learning_rate, decay_steps=steps
        )
        return keras.optimizers.AdamW(
            learning_rate=schedule, weight_decay=self.weight_decay
        )

    def _dense_head(self, keras, h):
        """Dense ReLU layers named ``dense_0``..., then the linear output."""
        for i, units in enumerate(self._head_sizes()):
            h = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(h)
            if self.dropout > 0:
                h = keras.layers.Dropout(self.dropout)(h)
        return keras.layers.Dense(1, name="output")(h)

    def _dense_head_numpy(self, h: np.ndarray) -> np.ndarray:
        for i in range(len(self._head_sizes())):
            kernel, bias = self.weights_[f"dense_{i}"]
            h = _relu(h @ kernel + bias)
        kernel, bias = self.weights_["output"]
        return (h @ kernel + bias)[:, 0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = self.loss == "pairwise"
        return tags


class MLPPredictor(_KerasPredictor):
    """Multilayer perceptron regressor on standardised features.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(128, 128)
        Units of the hidden ReLU layers.
    dropout : float, default=0.1
        Dropout rate after each hidden layer.
    weight_decay : float, default=1e-3
        Decoupled weight decay of AdamW.
    epochs : int, default=200
        Passes over the training cells.
    batch_size : int, default=32
        Cells per gradient step.
    learning_rate : float, default=1e-3
        Initial learning rate, decayed to zero on a cosine schedule.
    loss : {"mse", "pairwise"}, default="pairwise"
        A pairwise logistic ranking loss, whose scores are mapped onto the
        targets by a line (see the module's notes), or squared error on the
        standardised targets. Pairwise ranks held-out cells better.
    n_jobs : int or None, default=None
        TensorFlow threads (None: TensorFlow's default); see Notes.
    random_state : int, RandomState instance or None, default=None
        Seed of initialisation, shuffling and dropout.

    Attributes
    ----------
    x_mean_, x_scale_ : ndarray of shape (n_features,)
        Feature standardisation learnt in ``fit`` (scale 1 for constant
        features).
    weights_ : dict of str to list of ndarray
        Trained weights by layer name.
    score_slope_, score_offset_ : float
        Line from network scores to standardised targets (1 and 0 for
        ``"mse"``).
    loss_curve_ : list of float
        Training loss per epoch.

    Notes
    -----
    TensorFlow takes its thread counts once per process, at the first fit
    that gives ``n_jobs``.
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (128, 128),
        dropout: float = 0.1,
        weight_decay: float = 1e-3,
        epochs: int = 200,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        loss: str = "pairwise",
        n_jobs: int | None = None,
        random_state=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.loss = loss
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _head_sizes(self) -> tuple[int, ...]:
        return tuple(self.hidden_layer_sizes)

    def _fit_scaled(self, X, z, random_state):
        # Standardise the features on the training cells, then train.
        self.x_mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.x_scale_ = np.where(scale > 0, scale, 1.0)
        super()._fit_scaled(X, z, random_state)

    def _inputs(self, X):
        return [(X - self.x_mean_) / self.x_scale_]

    def _build(self, keras, inputs):
        features = keras.Input(shape=(inputs[0].shape[1],), name="features")
        return keras.Model(features, self._dense_head(keras, features))

    def _network_scores(self, X):
        return self._dense_head_numpy((X - self.x_mean_) / self.x_scale_)


def _propagation_matrices(X: np.ndarray):
    """Split GCN input into normalised propagation matrices and features.

    Returns ``forward``, ``backward`` of shape (n_cells, 7, 7), ``ops`` of
    shape (n_cells, 7, 5) and ``mask`` of shape (n_cells, 7), 1 for real
    vertices. ``forward`` is the matrix plus self-loops on real vertices,
    each row divided by its sum (a vertex averages itself and its
    successors); ``backward`` does the same with the transposed matrix
    (itself and its predecessors). Rows of padding vertices stay zero.
    """
    n_cells = X.shape[0]
    matrix = X[:, : NUM_VERTICES * NUM_VERTICES].reshape(
        n_cells, NUM_VERTICES, NUM_VERTICES
    )
    ops = X[:, NUM_VERTICES * NUM_VERTICES :].reshape(
        n_cells, NUM_VERTICES, NUM_OP_CLASSES
    )
    mask = (np.abs(ops).sum(axis=2) > 0).astype(np.float64)

    def normalised(a: np.ndarray) -> np.ndarray:
        a = a * mask[:, :, None] * mask[:, None, :] + mask[:, :, None] * np.eye(
            NUM_VERTICES
        )
        degree = a.sum(axis=2, keepdims=True)
        return np.divide(a, degree, out=np.zeros_like(a), where=degree > 0)

    forward = normalised(matrix)
    backward = normalised(matrix.transpose(0, 2, 1))
    return forward, backward, ops, mask


class GCNPredictor(_KerasPredictor):
    """Graph convolutional predictor over the cell's matrix and ops.

    Each graph convolution propagates along the edges in both directions and
    averages the two::

        H' = (relu(F @ (H W_fwd + b_fwd)) + relu(B @ (H W_bwd + b_bwd))) / 2

    where ``F`` is the matrix with self-loops, row-normalised, and ``B`` the
    same for its transpose; ``H`` starts as the op one-hot. The vertex states
    of the last convolution are averaged over the real vertices (padding
    masked out) and a dense head maps them to the prediction.

    Parameters
    ----------
    hidden_units : int, default=144
        Units of each graph convolution.
    num_layers : int, default=3
        Number of graph convolutions.
    head_units : int, default=128
        Units of the dense ReLU layer after pooling (0: none).
    dropout : float, default=0.1
        Dropout rate after each graph convolution and the dense layer.
    weight_decay : float, default=1e-3
        Decoupled weight decay of AdamW.
    epochs : int, default=250
        Passes over the training cells.
    batch_size : int, default=32
        Cells per gradient step.
    learning_rate : float, default=1e-3
        Initial learning rate, decayed to zero on a cosine schedule.
    loss : {"mse", "pairwise"}, default="pairwise"
        A pairwise logistic ranking loss, whose scores are mapped onto the
        targets by a line (see the module's notes), or squared error on the
        standardised targets. Pairwise ranks held-out cells better.
    n_jobs : int or None, default=None
        TensorFlow threads (None: TensorFlow's default).
    random_state : int, RandomState instance or None, default=None
        Seed of initialisation, shuffling and dropout.

    Attributes
    ----------
    weights_ : dict of str to list of ndarray
        Trained weights by layer name.
    score_slope_, score_offset_ : float
        Line from network scores to standardised targets (1 and 0 for
        ``"mse"``).
    loss_curve_ : list of float
        Training loss per epoch.

    Notes
    -----
    ``X`` must follow the module's input contract: 84 columns, the 7 x 7
    matrix then the 7 x 5 op one-hot. Other encodings are refused.

    References
    ----------
    W. Wen, H. Liu, Y. Chen, H. Li, G. Bender, P.-J. Kindermans. "Neural
    Predictor for Neural Architecture Search", ECCV 2020.
    """

    def __init__(
        self,
        hidden_units: int = 144,
        num_layers: int = 3,
        head_units: int = 128,
        dropout: float = 0.1,
        weight_decay: float = 1e-3,
        epochs: int = 250,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        loss: str = "pairwise",
        n_jobs: int | None = None,
        random_state=None,
    ):
        self.hidden_units = hidden_units
        self.num_layers = num_layers
        self.head_units = head_units
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.loss = loss
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _check_features(self, X: np.ndarray) -> None:
        if X.shape[1] != GCN_FEATURES:
            raise ValueError(
                f"GCNPredictor expects X with {GCN_FEATURES} columns (7 x 7 "
                f"matrix, then 7 x 5 op one-hot), got {X.shape[1]} columns"
            )

    def _head_sizes(self) -> tuple[int, ...]:
        return (self.head_units,) if self.head_units else ()

    def _inputs(self, X):
        return list(_propagation_matrices(X))

    def _build(self, keras, inputs):
        graph_conv = _graph_conv_layer(keras)
        forward = keras.Input(shape=(NUM_VERTICES, NUM_VERTICES), name="forward")
        backward = keras.Input(shape=(NUM_VERTICES, NUM_VERTICES), name="backward")
        ops = keras.Input(shape=(NUM_VERTICES, NUM_OP_CLASSES), name="ops")
        mask = keras.Input(shape=(NUM_VERTICES,), name="mask")

        # Graph convolutions: (n, 7, 5) -> (n, 7, hidden_units).
        h = ops
        for i in range(self.num_layers):
            h = graph_conv(self.hidden_units, name=f"graph_conv_{i}")(
                [h, forward, backward]
            )
            if self.dropout > 0:
                h = keras.layers.Dropout(self.dropout)(h)

        # Mean over real vertices: (n, 7, hidden_units) -> (n, hidden_units).
        pooled = _masked_mean_layer(keras)(name="pool")([h, mask])
        return keras.Model(
            [forward, backward, ops, mask], self._dense_head(keras, pooled)
        )

    def _network_scores(self, X):
        forward, backward, h, mask = _propagation_matrices(X)
        for i in range(self.num_layers):
            w_fwd, b_fwd, w_bwd, b_bwd = self.weights_[f"graph_conv_{i}"]
            h = 0.5 * (
                _relu(forward @ (h @ w_fwd + b_fwd))
                + _relu(backward @ (h @ w_bwd + b_bwd))
            )
        count = np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        pooled = (h * mask[:, :, None]).sum(axis=1) / count
        return self._dense_head_numpy(pooled)


def _graph_conv_layer(keras):
    """The bidirectional graph convolution as a Keras layer class."""
    ops = keras.ops

    class GraphConv(keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            n_in = input_shape[0][-1]
            self.w_fwd = self.add_weight(
                shape=(n_in, self.units), initializer="glorot_uniform", name="w_fwd"
            )
            self.b_fwd = self.add_weight(
                shape=(self.units,), initializer="zeros", name="b_fwd"
            )
            self.w_bwd = self.add_weight(
                shape=(n_in, self.units), initializer="glorot_uniform", name="w_bwd"
            )
            self.b_bwd = self.add_weight(
                shape=(self.units,), initializer="zeros", name="b_bwd"
            )

        def call(self, inputs):
            h, forward, backward = inputs
            fwd = ops.relu(ops.matmul(forward, ops.matmul(h, self.w_fwd) + self.b_fwd))
            bwd = ops.relu(ops.matmul(backward, ops.matmul(h, self.w_bwd) + self.b_bwd))
            return 0.5 * (fwd + bwd)

    return GraphConv


def _masked_mean_layer(keras):
    """Mean of vertex states over the real vertices, as a Keras layer class."""
    ops = keras.ops

    class MaskedMean(keras.layers.Layer):
        def call(self, inputs):
            h, mask = inputs
            total = ops.sum(h * mask[:, :, None], axis=1)
            count = ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
            return total / count

    return MaskedMean
