"""Feature encodings of NAS-Bench-101 cells, computed for all cells at once.

An encoding turns the cells of a dataset into a float32 matrix ``X`` of shape
(n_cells, d) with one name per column. Every built-in encoding is vectorised
over cells with numpy: the loops run over the 7 vertices or the 32 vertex
sequences, never over cells, so the 423,624 cells of the space take about a
second for all of them together (``benchmarks/bench_encodings.py``).

Example::

    from utils.encodings import encode
    features = encode(data, "adj_path")       # a feature set or an encoding
    features.X.shape                           # (n_cells, 400)
    features.columns[:2]                       # ['adj_0_1', 'adj_0_2']

Input
-----
A :class:`utils.dataset.NASBench101`, or any object with the columns
``adjacency`` (n_cells, 7, 7), ``operations`` (n_cells, 7) and
``num_vertices`` (n_cells,) in the codes of :mod:`utils.schema`, and
``trainable_parameters`` (n_cells,) for ``params``.

Most encodings work on the *aligned* cell (:func:`utils.cells.align`): the
output vertex is moved to index 6, so that index 6 is the output in every
cell; inner vertices keep indices 1..V-2 and padding vertices sit between
them and the output, with no edges and no op.

Built-in encodings (``invariant``: unchanged under any relabeling of the inner
vertices, that is, a function of the graph and not of the vertex order)::

    name          d    invariant  columns
    adjacency     21   no         adj_i_j: upper triangle of the aligned 7x7
                                  matrix, row by row (i < j)
    ops_onehot    15   no         op_v_label: inner vertices 1..5 x the three
                                  op labels; padding vertices are all zero
    op_counts     3    yes        count_label: vertices with each op label
    path          364  yes        path_input>...>output: 1 if some input-to-
                                  output path carries that op sequence
    path_trunc    40   yes        the 40 sequences of at most 3 inner ops
                                  (the first 40 columns of ``path``)
    graph_stats   12   yes        vertex, edge and path counts, depth, width,
                                  degrees (see ``GRAPH_STATS_COLUMNS``)
    params        1    yes        log10 of trainable parameters: a property
                                  known before training, not of structure
    graph         84   no         the graph network's layout: the full aligned
                                  7x7 matrix row-major (49 columns), then an
                                  op one-hot of the 7 aligned vertices over 5
                                  classes (35 columns, vertex by vertex)

The ``graph`` layout: ``X[:, :49].reshape(-1, 7, 7)`` is the aligned matrix
and ``X[:, 49:].reshape(-1, 7, 5)`` the vertex classes
``[input, conv3x3-bn-relu, conv1x1-bn-relu, maxpool3x3, output]`` (see
``GRAPH_MATRIX_COLUMNS``, ``GRAPH_OP_CLASSES``); padding vertices are zero.

The path encoding records whether a sequence occurs, not how often: two
parallel branches with the same ops count once, as in the path encoding of
BANANAS (White et al., 2021). Sequences are ordered by length, then
lexicographically in the order of ``OP_LABELS``; length 0 is the direct
input-to-output edge. ``path_trunc`` keeps the short sequences (lengths 0-3,
1 + 3 + 9 + 27 = 40) rather than the most frequent ones, so it needs no
statistics of a dataset.

``graph_stats`` columns: ``num_vertices``, ``num_edges``, ``depth`` (longest
input-to-output path, in edges), ``shortest_path``, ``width`` (most vertices
at one depth, depth being the longest distance from the input), ``num_paths``
(input-to-output paths), ``input_out_degree``, ``output_in_degree``,
``input_output_edge`` (0/1), ``mean_degree`` (2 edges / vertices),
``max_in_degree``, ``max_out_degree``.

Feature sets name a list of encodings; any encoding name also works as a
one-encoding set. Encodings whose column names clash (``path`` and
``path_trunc``) cannot be combined::

    name        encodings                                            d
    basic       adjacency, ops_onehot                                36
    counts      op_counts                                            3
    path        path                                                 364
    adj_path    adjacency, ops_onehot, path                          400
    stats       op_counts, graph_stats                               15
    all         adjacency, ops_onehot, op_counts, path, graph_stats  415
    all_params  all + params                                         416

Registering
-----------
A new encoding is one line, or a decorator; it then works everywhere a
built-in does (feature sets, :func:`encode`, the cache)::

    register_encoding("n_edges", lambda data: data.adjacency.sum(axis=(1, 2)),
                      description="number of edges", invariant=True)

The function takes the dataset and returns an array of shape (n_cells,) or
(n_cells, d), or a pair ``(X, columns)``. Registering a name again replaces
the encoding and drops its cached values.

Caching
-------
Each encoding is computed once per dataset object and kept in memory as long
as the dataset lives (a weak reference); the arrays handed out are read-only,
so that no caller can change what another one gets. Datasets are immutable;
a duck-typed object whose arrays are changed in place needs
:func:`clear_cache`. Memory is the price: ``path`` of the full space holds
588 MB, ``all`` another 700 MB once assembled. There is no disk cache: all
built-in encodings of the full space take about a second together, no longer
than reading their 870 MB back would.
"""

from __future__ import annotations

import itertools
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from utils.cells import align
from utils.schema import MAX_VERTICES, OP_LABELS, PADDING

__all__ = [
    "GRAPH_MATRIX_COLUMNS",
    "GRAPH_OP_CLASSES",
    "GRAPH_CLASS_LABELS",
    "GRAPH_STATS_COLUMNS",
    "PATH_SEQUENCES",
    "Encoding",
    "Features",
    "register_encoding",
    "register_feature_set",
    "encodings",
    "feature_sets",
    "encode",
    "clear_cache",
]

logger = logging.getLogger(__name__)

GRAPH_MATRIX_COLUMNS = MAX_VERTICES * MAX_VERTICES
GRAPH_CLASS_LABELS = ("input", *OP_LABELS, "output")
GRAPH_OP_CLASSES = len(GRAPH_CLASS_LABELS)

GRAPH_STATS_COLUMNS = (
    "num_vertices",
    "num_edges",
    "depth",
    "shortest_path",
    "width",
    "num_paths",
    "input_out_degree",
    "output_in_degree",
    "input_output_edge",
    "mean_degree",
    "max_in_degree",
    "max_out_degree",
)

_N_INNER = MAX_VERTICES - 2
_N_OPS = len(OP_LABELS)
_SHORT_LABELS = {
    "conv3x3-bn-relu": "conv3x3",
    "conv1x1-bn-relu": "conv1x1",
    "maxpool3x3": "maxpool3x3",
}

# Op sequences of input-to-output paths, by length then lexicographically:
# (), (0,), (1,), (2,), (0, 0), (0, 1), ... (2, 2, 2, 2, 2): 364 in all.
PATH_SEQUENCES = tuple(
    sequence
    for length in range(_N_INNER + 1)
    for sequence in itertools.product(range(_N_OPS), repeat=length)
)
# First column of the sequences of each length: (3**k - 1) / 2.
_PATH_OFFSET = [(_N_OPS**length - 1) // (_N_OPS - 1) for length in range(7)]
_PATH_TRUNC_LENGTH = 3


@dataclass(frozen=True)
class Encoding:
    """A registered encoding.

    Attributes
    ----------
    name : str
    function : callable
        ``function(dataset)`` -> array (n_cells,) or (n_cells, d), or a pair
        ``(X, columns)``.
    description : str
    invariant : bool
        Whether the values are unchanged under relabelings of inner vertices.
    structural : bool
        Whether the values follow from the cell's structure alone (false for
        ``params``, which needs the dataset's parameter counts).
    """

    name: str
    function: Callable
    description: str = ""
    invariant: bool = False
    structural: bool = True


@dataclass(frozen=True)
class Features:
    """Encoded cells: a read-only matrix and its column names.

    Attributes
    ----------
    X : ndarray of shape (n_cells, d), float32, read-only
    columns : list of str, length d
    encodings : tuple of str
        The encodings, in the order of their column blocks.
    """

    X: np.ndarray
    columns: list[str]
    encodings: tuple[str, ...]

    def to_frame(self):
        """The features as a pandas DataFrame (a copy)."""
        import pandas as pd

        return pd.DataFrame(self.X, columns=self.columns)


_ENCODINGS: dict[str, Encoding] = {}
_FEATURE_SETS: dict[str, tuple[str, ...]] = {}

# dataset -> {encoding name: (X, columns)}; entries go with their dataset.
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ALIGNED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# -- registry -----------------------------------------------------------------


def register_encoding(
    name: str,
    function: Callable | None = None,
    *,
    description: str = "",
    invariant: bool = False,
    structural: bool = True,
):
    """Register an encoding under `name`; usable as a decorator.

    Parameters
    ----------
    name : str
    function : callable, optional
        ``function(dataset)`` returning an array of shape (n_cells,) or
        (n_cells, d), or a pair ``(X, columns)``. Without it, a decorator is
        returned.
    description : str
    invariant : bool
        Claim that the values do not change under relabelings of the inner
        vertices (tests check this claim for the built-ins).
    structural : bool
        Whether the values follow from the structure alone.

    Returns
    -------
    callable
        `function` itself (or the decorator).

    Raises
    ------
    ValueError
        If `name` is empty.
    TypeError
        If `function` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"an encoding name must be a non-empty str, got {name!r}")
    if function is None:
        return lambda function: register_encoding(
            name,
            function,
            description=description,
            invariant=invariant,
            structural=structural,
        )
    if not callable(function):
        raise TypeError(
            f"encoding {name!r} needs a callable, got {type(function).__name__}"
        )

    if name in _ENCODINGS:
        logger.info("encoding %r replaced; its cached values are dropped", name)
        for cached in list(_CACHE.values()):
            cached.pop(name, None)
    _ENCODINGS[name] = Encoding(name, function, description, invariant, structural)
    return function


def register_feature_set(
    name: str, names: str | Iterable[str], description: str = ""
) -> tuple[str, ...]:
    """Register a feature set: a list of encodings (or other feature sets).

    Feature sets named in `names` are expanded now, so a later change of them
    does not change this one.

    Returns
    -------
    tuple of str
        The encodings of the set, in order.

    Raises
    ------
    ValueError
        If `name` is empty or a name in `names` is unknown.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a feature set name must be a non-empty str, got {name!r}")
    expanded = _resolve(names)
    _FEATURE_SETS[name] = expanded
    logger.debug("feature set %r = %s (%s)", name, expanded, description)
    return expanded


def encodings() -> dict[str, Encoding]:
    """The registered encodings, by name (a copy)."""
    return dict(_ENCODINGS)


def feature_sets() -> dict[str, tuple[str, ...]]:
    """The registered feature sets, by name, as tuples of encodings (a copy)."""
    return dict(_FEATURE_SETS)


def _resolve(names: str | Iterable[str]) -> tuple[str, ...]:
    """Feature set or encoding names -> encoding names, in order, once each."""
    if isinstance(names, str):
        names = [names]
    resolved: list[str] = []
    for name in names:
        if name in _FEATURE_SETS:
            resolved.extend(_FEATURE_SETS[name])
        elif name in _ENCODINGS:
            resolved.append(name)
        else:
            raise ValueError(
                f"unknown encoding or feature set {name!r}; feature sets: "
                f"{', '.join(_FEATURE_SETS)}; encodings: {', '.join(_ENCODINGS)}"
            )
    if not resolved:
        raise ValueError("no encoding named, got an empty list")
    return tuple(dict.fromkeys(resolved))


# -- encoding -----------------------------------------------------------------


def encode(dataset, names: str | Iterable[str], cache: bool = True) -> Features:
    """Encode every cell of `dataset` with a feature set or encodings.

    Parameters
    ----------
    dataset : NASBench101 or an object with the same columns
    names : str or list of str
        A feature set, an encoding, or a list mixing both; an encoding named
        twice is used once.
    cache : bool
        Keep each encoding's values for the next call on the same dataset.

    Returns
    -------
    Features
        ``X`` float32 (n_cells, d), read-only, and its ``columns``.

    Raises
    ------
    ValueError
        If a name is unknown, an encoding returns a malformed result, two
        encodings share a column name, or an encoding lacks its data (for
        example ``params`` on structures only).
    """
    resolved = _resolve(names)
    blocks = [_encoding_values(dataset, name, cache) for name in resolved]

    columns = [column for _, block_columns in blocks for column in block_columns]
    if len(set(columns)) != len(columns):
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        raise ValueError(
            f"encodings {', '.join(resolved)} share column names, got "
            f"{', '.join(repeated[:3])}; combine encodings with distinct columns"
        )

    if len(blocks) == 1:
        X = blocks[0][0]
    else:
        X = np.concatenate([X for X, _ in blocks], axis=1)
        X.setflags(write=False)
    return Features(X, columns, resolved)


def clear_cache(dataset=None) -> None:
    """Drop cached encodings of `dataset`, or of every dataset."""
    if dataset is None:
        _CACHE.clear()
        _ALIGNED.clear()
    else:
        _CACHE.pop(dataset, None)
        _ALIGNED.pop(dataset, None)


def _cache_of(dataset) -> dict | None:
    """The cache dict of `dataset`, or None if it cannot be weakly keyed."""
    try:
        return _CACHE.setdefault(dataset, {})
    except TypeError:
        return None


def _encoding_values(dataset, name: str, cache: bool) -> tuple[np.ndarray, list]:
    """(X, columns) of one encoding, from the cache or computed."""
    store = _cache_of(dataset) if cache else None
    if store is not None and name in store:
        return store[name]

    started = time.perf_counter()
    function = _ENCODINGS[name].function
    X, columns = _as_block(name, function, function(dataset), _n_cells(dataset))
    logger.debug(
        "encoding %r: %s in %.3f s", name, X.shape, time.perf_counter() - started
    )
    if store is not None:
        store[name] = (X, columns)
    return X, columns


def _n_cells(dataset) -> int:
    try:
        return len(dataset)
    except TypeError:
        return len(dataset.operations)


def _as_block(
    name: str, function: Callable, result, n_cells: int
) -> tuple[np.ndarray, list[str]]:
    """Check and normalise what an encoding function returned."""
    if isinstance(result, Features):
        X, columns = result.X, list(result.columns)
    elif isinstance(result, tuple) and len(result) == 2:
        X, columns = result[0], list(result[1])
    else:
        X, columns = result, None

    # Values are cached read-only: an array the function may still hold (one
    # it did not make fresh) is copied rather than frozen in its hands.
    given = X
    X = np.asarray(X, dtype=np.float32)
    if X is given and function not in _FRESH_RESULTS:
        X = X.copy()
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] != n_cells:
        raise ValueError(
            f"encoding {name!r} must return (n_cells, d) = ({n_cells}, d) values, "
            f"got shape {X.shape}"
        )
    if columns is None:
        columns = (
            [name] if X.shape[1] == 1 else [f"{name}_{i}" for i in range(X.shape[1])]
        )
    if len(columns) != X.shape[1]:
        raise ValueError(
            f"encoding {name!r} must name each of its {X.shape[1]} columns, "
            f"got {len(columns)} names"
        )

    X = np.ascontiguousarray(X)
    if X.flags.writeable:
        X.setflags(write=False)
    return X, columns


class _Aligned:
    """The aligned cells of a dataset, in the layouts the encodings use.

    ``matrix`` (n_cells, 7, 7) and ``ops`` (n_cells, 7) as from
    :func:`utils.cells.align`; ``edge[i, j]`` is the edge i -> j of every cell,
    ``op[v]`` the op code of vertex v of every cell, each a contiguous array of
    shape (n_cells,), so that loops over vertices read memory in order.
    """

    def __init__(self, dataset):
        matrix, ops = align(dataset.adjacency, dataset.operations, dataset.num_vertices)
        n_cells = len(ops)
        rows, cols = np.triu_indices(MAX_VERTICES, k=1)
        upper = np.take(matrix.reshape(n_cells, -1), rows * MAX_VERTICES + cols, 1)

        self.matrix, self.ops = matrix, ops
        self.upper = upper
        self.edge = np.zeros((MAX_VERTICES, MAX_VERTICES, n_cells), dtype=bool)
        self.edge[rows, cols] = upper.T
        self.op = np.ascontiguousarray(ops.T)
        for array in (self.matrix, self.ops, self.upper, self.edge, self.op):
            array.setflags(write=False)


def _aligned(dataset) -> _Aligned:
    """The aligned cells of `dataset`, computed once per dataset."""
    try:
        return _ALIGNED[dataset]
    except (KeyError, TypeError):
        pass

    aligned = _Aligned(dataset)
    try:
        _ALIGNED[dataset] = aligned
    except TypeError:
        pass
    return aligned


# -- built-in encodings -------------------------------------------------------


def _adjacency(dataset):
    upper = _aligned(dataset).upper
    rows, cols = np.triu_indices(MAX_VERTICES, k=1)
    columns = [f"adj_{i}_{j}" for i, j in zip(rows, cols, strict=True)]
    X = np.empty(upper.shape, dtype=np.float32)
    X[:] = upper
    return X, columns


def _ops_onehot(dataset):
    ops = _aligned(dataset).ops

    # X[n, 3 * (v - 1) + k] = inner vertex v of cell n has op k; padding: none.
    X = np.empty((len(ops), _N_INNER, _N_OPS), dtype=np.float32)
    X[:] = ops[:, 1:-1, None] == np.arange(_N_OPS)
    columns = [
        f"op_{vertex}_{label}"
        for vertex in range(1, MAX_VERTICES - 1)
        for label in OP_LABELS
    ]
    return X.reshape(len(ops), -1), columns


def _op_counts(dataset):
    op = _aligned(dataset).op
    X = np.empty((op.shape[1], _N_OPS), dtype=np.float32)
    for k in range(_N_OPS):
        X[:, k] = np.count_nonzero(op == k, axis=0)
    return X, [f"count_{label}" for label in OP_LABELS]


def _path_columns(n_columns: int) -> list[str]:
    names = []
    for sequence in PATH_SEQUENCES[:n_columns]:
        inner = [_SHORT_LABELS[OP_LABELS[k]] for k in sequence]
        names.append("path_" + ">".join(["input", *inner, "output"]))
    return names


def _path_indicator(dataset, max_length: int) -> np.ndarray:
    """(n_cells, sum of 3**k for k <= max_length) path-sequence indicators.

    A path of the aligned cell visits an increasing sequence of inner vertices
    1..5, so there are at most 2**5 = 32 vertex sequences. They are grown from
    the input one vertex at a time, for all cells at once: `reach` marks the
    cells that have the edges so far and `digits` the op sequence read as a
    base-3 number. Each sequence that closes on the output marks its column.
    """
    aligned = _aligned(dataset)
    edge, op = aligned.edge, aligned.op.astype(np.int16)
    n_cells = op.shape[1]
    n_columns = _PATH_OFFSET[max_length + 1]
    X = np.zeros((n_cells, n_columns), dtype=np.float32)
    flat = X.reshape(-1)
    row_start = np.arange(n_cells, dtype=np.int64) * n_columns
    output = MAX_VERTICES - 1

    # Depth-first over vertex sequences: (last vertex, length, reach, digits).
    stack = [(0, 0, np.ones(n_cells, dtype=bool), np.zeros(n_cells, np.int16))]
    while stack:
        last, length, reach, digits = stack.pop()
        rows = np.flatnonzero(reach & edge[last, output])
        flat[row_start[rows] + _PATH_OFFSET[length] + digits[rows]] = 1.0
        if length == max_length:
            continue
        for vertex in range(last + 1, output):
            grown = reach & edge[last, vertex]
            if grown.any():
                stack.append((vertex, length + 1, grown, digits * 3 + op[vertex]))
    return X


def _path(dataset):
    return _path_indicator(dataset, _N_INNER), _path_columns(len(PATH_SEQUENCES))


def _path_trunc(dataset):
    n_columns = _PATH_OFFSET[_PATH_TRUNC_LENGTH + 1]
    return _path_indicator(dataset, _PATH_TRUNC_LENGTH), _path_columns(n_columns)


def _graph_stats(dataset):
    aligned = _aligned(dataset)
    edge, op = aligned.edge, aligned.op
    n_cells = op.shape[1]
    in_degree = edge.sum(axis=0, dtype=np.int16)
    out_degree = edge.sum(axis=1, dtype=np.int16)
    num_vertices = np.count_nonzero(op != PADDING, axis=0)
    num_edges = in_degree.sum(axis=0)

    # Longest and shortest distances from the input and path counts, vertex
    # by vertex in topological order; -1 and `far` mark "no path".
    far = 10 * MAX_VERTICES
    longest = np.full((MAX_VERTICES, n_cells), -1, dtype=np.int16)
    shortest = np.full((MAX_VERTICES, n_cells), far, dtype=np.int16)
    n_paths = np.zeros((MAX_VERTICES, n_cells), dtype=np.int32)
    longest[0], shortest[0], n_paths[0] = 0, 0, 1
    for v in range(1, MAX_VERTICES):
        for u in range(v):
            into = edge[u, v]
            np.maximum(longest[v], np.where(into, longest[u] + 1, -1), out=longest[v])
            np.minimum(
                shortest[v], np.where(into, shortest[u] + 1, far), out=shortest[v]
            )
            n_paths[v] += into * n_paths[u]

    # Width: most vertices sharing one depth (longest distance from input).
    # Padding vertices have depth -1 and so never count.
    width = np.zeros(n_cells, dtype=np.int16)
    for depth in range(MAX_VERTICES):
        np.maximum(width, np.count_nonzero(longest == depth, axis=0), out=width)

    columns = {
        "num_vertices": num_vertices,
        "num_edges": num_edges,
        "depth": longest[-1],
        "shortest_path": shortest[-1],
        "width": width,
        "num_paths": n_paths[-1],
        "input_out_degree": out_degree[0],
        "output_in_degree": in_degree[-1],
        "input_output_edge": edge[0, -1],
        "mean_degree": 2 * num_edges / num_vertices,
        "max_in_degree": in_degree.max(axis=0),
        "max_out_degree": out_degree.max(axis=0),
    }
    X = np.empty((n_cells, len(GRAPH_STATS_COLUMNS)), dtype=np.float32)
    for index, name in enumerate(GRAPH_STATS_COLUMNS):
        X[:, index] = columns[name]
    return X, list(GRAPH_STATS_COLUMNS)


def _params(dataset):
    try:
        parameters = np.asarray(dataset.trainable_parameters, dtype=np.float64)
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"encoding 'params' needs trainable_parameters, got a dataset "
            f"without them ({error})"
        ) from None
    return np.log10(parameters), ["log10_trainable_parameters"]


def _graph(dataset):
    aligned = _aligned(dataset)
    matrix, ops = aligned.matrix, aligned.ops
    n_cells = len(ops)

    # Class of each op code, indexed by code + 3: codes -3 padding (none),
    # -2 output (4), -1 input (0), 0..2 the OP_LABELS (1..3).
    class_of_code = np.array([-1, 4, 0, 1, 2, 3])
    classes = class_of_code[ops.astype(np.intp) - PADDING]
    onehot = classes[:, :, None] == np.arange(GRAPH_OP_CLASSES)

    X = np.empty(
        (n_cells, GRAPH_MATRIX_COLUMNS + MAX_VERTICES * GRAPH_OP_CLASSES),
        dtype=np.float32,
    )
    X[:, :GRAPH_MATRIX_COLUMNS] = matrix.reshape(n_cells, -1)
    X[:, GRAPH_MATRIX_COLUMNS:] = onehot.reshape(n_cells, -1)
    columns = [
        f"graph_adj_{i}_{j}" for i in range(MAX_VERTICES) for j in range(MAX_VERTICES)
    ]
    columns += [
        f"graph_op_{vertex}_{label}"
        for vertex in range(MAX_VERTICES)
        for label in GRAPH_CLASS_LABELS
    ]
    return X, columns


register_encoding(
    "adjacency",
    _adjacency,
    description="upper triangle of the aligned 7x7 matrix (21)",
)
register_encoding(
    "ops_onehot",
    _ops_onehot,
    description="inner vertices 1..5 x 3 op labels on the aligned cell (15)",
)
register_encoding(
    "op_counts",
    _op_counts,
    description="number of vertices with each op label (3)",
    invariant=True,
)
register_encoding(
    "path",
    _path,
    description="which of the 364 op sequences some input-output path carries",
    invariant=True,
)
register_encoding(
    "path_trunc",
    _path_trunc,
    description="path encoding for sequences of at most 3 inner ops (40)",
    invariant=True,
)
register_encoding(
    "graph_stats",
    _graph_stats,
    description="vertex, edge, path counts, depth, width, degrees (12)",
    invariant=True,
)
register_encoding(
    "params",
    _params,
    description="log10 trainable parameters: known before training (1)",
    invariant=True,
    structural=False,
)
register_encoding(
    "graph",
    _graph,
    description="aligned 7x7 matrix (49) + 7 x 5 op-class one-hot (35), for GNNs",
)

# Built-in encodings return arrays of their own, which need no copy.
_FRESH_RESULTS = frozenset(
    {_adjacency, _ops_onehot, _op_counts, _path, _path_trunc, _graph_stats}
    | {_params, _graph}
)

register_feature_set("basic", ["adjacency", "ops_onehot"])
register_feature_set("counts", ["op_counts"])
register_feature_set("path", ["path"])
register_feature_set("adj_path", ["adjacency", "ops_onehot", "path"])
register_feature_set("stats", ["op_counts", "graph_stats"])
register_feature_set(
    "all", ["adjacency", "ops_onehot", "op_counts", "path", "graph_stats"]
)
register_feature_set("all_params", ["all", "params"])
