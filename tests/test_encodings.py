"""Tests of utils.encodings: every encoding by hand, invariance, the registry."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import pruned_cells

from utils import encodings as enc
from utils.cells import Cell, module_hash
from utils.dataset import NASBench101
from utils.encodings import (
    GRAPH_MATRIX_COLUMNS,
    GRAPH_OP_CLASSES,
    GRAPH_STATS_COLUMNS,
    Features,
    clear_cache,
    encode,
    encodings,
    feature_sets,
    register_encoding,
    register_feature_set,
)
from utils.schema import OP_LABELS

CONV3, CONV1, POOL = OP_LABELS

# Three cells whose encodings are worked out by hand below.
#
#   fork (V = 4):  input -> conv3x3 -> output, input -> maxpool -> output,
#                  input -> output
#   chain (V = 7): input -> conv1x1 -> conv3x3 -> maxpool -> conv1x1 -> conv3x3
#                  -> output
#   skip (V = 2):  input -> output
FORK = Cell(
    [[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
    ["input", CONV3, POOL, "output"],
)
CHAIN = Cell(
    np.eye(7, k=1, dtype=int), ["input", CONV1, CONV3, POOL, CONV1, CONV3, "output"]
)
SKIP = Cell([[0, 1], [0, 0]], ["input", "output"])


def dataset_of(cells, parameters=None):
    """A dataset of `cells`, in the order given, with optional parameters."""
    return NASBench101.from_cells(cells, trainable_parameters=parameters)


@pytest.fixture
def hand():
    return dataset_of([FORK, CHAIN, SKIP], parameters=[1_000, 100_000, 10])


@pytest.fixture
def registry():
    """Restore the registry after a test that changes it."""
    saved = dict(enc._ENCODINGS), dict(enc._FEATURE_SETS)
    yield
    enc._ENCODINGS.clear()
    enc._ENCODINGS.update(saved[0])
    enc._FEATURE_SETS.clear()
    enc._FEATURE_SETS.update(saved[1])
    clear_cache()


def column(features, name):
    return features.X[:, features.columns.index(name)]


# -- every encoding on the hand-checked cells -----------------------------------


def test_adjacency(hand):
    features = encode(hand, "adjacency")

    assert features.X.shape == (3, 21) and features.X.dtype == np.float32
    assert features.columns[:3] == ["adj_0_1", "adj_0_2", "adj_0_3"]
    assert features.columns[-1] == "adj_5_6"
    ones = [
        {name for name, x in zip(features.columns, row, strict=True) if x}
        for row in features.X
    ]
    # fork: output moved from 3 to 6; chain: unchanged; skip: output at 6.
    assert ones[0] == {"adj_0_1", "adj_0_2", "adj_0_6", "adj_1_6", "adj_2_6"}
    assert ones[1] == {"adj_0_1", "adj_1_2", "adj_2_3", "adj_3_4", "adj_4_5", "adj_5_6"}
    assert ones[2] == {"adj_0_6"}


def test_ops_onehot(hand):
    features = encode(hand, "ops_onehot")

    assert features.X.shape == (3, 15)
    assert features.columns[:4] == [
        "op_1_conv3x3-bn-relu",
        "op_1_conv1x1-bn-relu",
        "op_1_maxpool3x3",
        "op_2_conv3x3-bn-relu",
    ]
    # fork: vertex 1 conv3x3, vertex 2 maxpool, vertices 3..5 padding.
    assert features.X[0].tolist() == [1, 0, 0, 0, 0, 1] + [0] * 9
    # chain: conv1x1, conv3x3, maxpool, conv1x1, conv3x3.
    assert features.X[1].tolist() == [0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0]
    # skip: no inner vertex at all; padding shares no code with conv3x3.
    assert features.X[2].tolist() == [0] * 15


def test_op_counts(hand):
    features = encode(hand, "op_counts")
    assert features.columns == [f"count_{label}" for label in OP_LABELS]
    assert features.X.tolist() == [[1, 0, 1], [2, 2, 1], [0, 0, 0]]


def test_path(hand):
    features = encode(hand, "path")

    assert features.X.shape == (3, 364)
    assert features.columns[:5] == [
        "path_input>output",
        "path_input>conv3x3>output",
        "path_input>conv1x1>output",
        "path_input>maxpool3x3>output",
        "path_input>conv3x3>conv3x3>output",
    ]
    ones = [set(np.flatnonzero(row).tolist()) for row in features.X]
    # fork: the skip (0), via conv3x3 (1), via maxpool (3).
    assert ones[0] == {0, 1, 3}
    # chain: one path, ops (1, 0, 2, 1, 0) in base 3 after the 121 shorter.
    assert ones[1] == {121 + 81 * 1 + 27 * 0 + 9 * 2 + 3 * 1 + 0}
    assert features.columns[223] == (
        "path_input>conv1x1>conv3x3>maxpool3x3>conv1x1>conv3x3>output"
    )
    assert ones[2] == {0}


def test_path_marks_a_sequence_once_however_many_paths_carry_it():
    # Two parallel conv3x3 vertices: two paths, one op sequence.
    twins = Cell(
        [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
        ["input", CONV3, CONV3, "output"],
    )
    features = encode(dataset_of([twins]), "path")
    assert np.flatnonzero(features.X[0]).tolist() == [1]
    assert column(features, "path_input>conv3x3>output").tolist() == [1.0]


def test_path_trunc(hand):
    features = encode(hand, "path_trunc")
    full = encode(hand, "path")

    assert features.X.shape == (3, 40)
    assert features.columns == full.columns[:40]
    assert features.columns[-1] == "path_input>maxpool3x3>maxpool3x3>maxpool3x3>output"
    assert np.array_equal(features.X, full.X[:, :40])
    assert features.X[1].sum() == 0  # the chain's only path has 5 inner ops


def test_graph_stats(hand):
    features = encode(hand, "graph_stats")

    assert features.columns == list(GRAPH_STATS_COLUMNS)
    expected = {
        #                   fork  chain    skip
        "num_vertices": [4, 7, 2],
        "num_edges": [5, 6, 1],
        "depth": [2, 6, 1],
        "shortest_path": [1, 6, 1],
        "width": [2, 1, 1],
        "num_paths": [3, 1, 1],
        "input_out_degree": [3, 1, 1],
        "output_in_degree": [3, 1, 1],
        "input_output_edge": [1, 0, 1],
        "mean_degree": [2 * 5 / 4, 2 * 6 / 7, 1],
        "max_in_degree": [3, 1, 1],
        "max_out_degree": [3, 1, 1],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(column(features, name), values, err_msg=name)


def test_params(hand):
    features = encode(hand, "params")
    assert features.columns == ["log10_trainable_parameters"]
    np.testing.assert_allclose(features.X[:, 0], [3, 5, 1])
    assert not encodings()["params"].structural


def test_params_needs_parameter_counts():
    structures = dataset_of([FORK, SKIP])
    with pytest.raises(
        ValueError,
        match="'params' needs trainable_parameters, got a dataset without them",
    ):
        encode(structures, "params")


def test_graph(hand):
    features = encode(hand, "graph")

    assert (GRAPH_MATRIX_COLUMNS, GRAPH_OP_CLASSES) == (49, 5)
    assert features.X.shape == (3, 49 + 7 * 5)
    assert features.columns[0] == "graph_adj_0_0"
    assert features.columns[49] == "graph_op_0_input"
    assert features.columns[-1] == "graph_op_6_output"

    matrices = features.X[:, :GRAPH_MATRIX_COLUMNS].reshape(-1, 7, 7)
    classes = features.X[:, GRAPH_MATRIX_COLUMNS:].reshape(-1, 7, GRAPH_OP_CLASSES)

    # fork: edges 0->1, 0->2, 0->6, 1->6, 2->6 in the full aligned matrix.
    expected = np.zeros((7, 7))
    expected[0, [1, 2, 6]] = expected[1, 6] = expected[2, 6] = 1
    assert np.array_equal(matrices[0], expected)
    # Classes [input, conv3x3, conv1x1, maxpool, output]; padding all zero.
    assert classes[0].tolist() == [
        [1, 0, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1],
    ]
    assert np.array_equal(matrices[1], np.eye(7, k=1))
    assert classes[1].argmax(axis=1).tolist() == [0, 2, 1, 3, 2, 1, 4]
    assert classes[2].sum(axis=1).tolist() == [1, 0, 0, 0, 0, 0, 1]
    assert matrices[2].sum() == 1 and matrices[2][0, 6] == 1


# -- feature sets ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "width"),
    [
        ("basic", 36),
        ("counts", 3),
        ("path", 364),
        ("adj_path", 400),
        ("stats", 15),
        ("all", 415),
        ("all_params", 416),
        ("graph", 84),
        ("path_trunc", 40),
    ],
)
def test_feature_set_widths(hand, name, width):
    features = encode(hand, name)
    assert features.X.shape == (3, width)
    assert len(features.columns) == width == len(set(features.columns))
    assert not features.X.flags.writeable


def test_a_list_of_names_concatenates_in_order_once_each(hand):
    features = encode(hand, ["basic", "op_counts", "adjacency"])

    assert features.encodings == ("adjacency", "ops_onehot", "op_counts")
    assert features.X.shape == (3, 21 + 15 + 3)
    assert np.array_equal(features.X[:, -3:], encode(hand, "op_counts").X)


def test_to_frame(hand):
    frame = encode(hand, "counts").to_frame()
    assert list(frame.columns) == [f"count_{label}" for label in OP_LABELS]
    assert frame.shape == (3, 3)


def test_built_in_sets_are_listed():
    assert feature_sets()["adj_path"] == ("adjacency", "ops_onehot", "path")
    assert set(feature_sets()) >= {"basic", "counts", "path", "stats", "all"}
    invariant = {name for name, e in encodings().items() if e.invariant}
    assert invariant == {"op_counts", "path", "path_trunc", "graph_stats", "params"}


# -- against cell-by-cell references on real cells ---------------------------------


def reference_paths(cell):
    """Op sequences of all input-output paths, by depth-first search."""
    matrix, ops, n = cell.matrix, cell.ops, cell.num_vertices
    found = set()

    def walk(vertex, sequence):
        if vertex == n - 1:
            found.add(tuple(sequence))
            return
        for target in np.flatnonzero(matrix[vertex]):
            inner = [] if target == n - 1 else [OP_LABELS.index(ops[target])]
            walk(target, sequence + inner)

    walk(0, [])
    return found


def reference_longest(cell):
    """Longest path length from the input to each vertex."""
    depth = [0] * cell.num_vertices
    for v in range(1, cell.num_vertices):
        depth[v] = max(depth[u] + 1 for u in np.flatnonzero(cell.matrix[:, v]))
    return depth


def test_path_and_stats_match_references_on_sample_cells(sample_20k):
    data = NASBench101.from_hdf5(sample_20k)
    rows = np.random.default_rng(1).choice(len(data), size=400, replace=False)
    subset = data.subset(rows)
    path = encode(subset, "path")
    stats = encode(subset, "graph_stats")
    index = {sequence: i for i, sequence in enumerate(enc.PATH_SEQUENCES)}

    for position in range(len(subset)):
        cell = subset.cell(position)
        expected = sorted(index[s] for s in reference_paths(cell))
        assert np.flatnonzero(path.X[position]).tolist() == expected

        depth = reference_longest(cell)
        widths = np.bincount(depth).max()
        row = dict(zip(stats.columns, stats.X[position].tolist(), strict=True))
        assert row["depth"] == depth[-1]
        assert row["width"] == widths
        assert row["num_vertices"] == cell.num_vertices
        assert row["num_edges"] == cell.num_edges
        assert math.isclose(
            row["mean_degree"], 2 * cell.num_edges / cell.num_vertices, rel_tol=1e-6
        )


# -- invariance under relabeling of inner vertices ---------------------------------


def random_topological_relabeling(cell, rng):
    """The same graph under a random topological order (stays upper-triangular)."""
    matrix = cell.matrix
    remaining = list(range(cell.num_vertices))
    order = []
    while remaining:
        ready = [v for v in remaining if not matrix[remaining, v].any()]
        order.append(ready[rng.integers(len(ready))])
        remaining.remove(order[-1])
    return Cell(matrix[np.ix_(order, order)], [cell.ops[v] for v in order])


def test_invariant_encodings_do_not_change_under_relabeling(sample_20k):
    data = NASBench101.from_hdf5(sample_20k)
    rng = np.random.default_rng(2)
    rows = rng.choice(len(data), size=300, replace=False)
    cells = [data.cell(row) for row in rows]
    relabeled = [random_topological_relabeling(cell, rng) for cell in cells]
    parameters = data.trainable_parameters[rows]
    original = dataset_of(cells, parameters)
    moved = dataset_of(relabeled, parameters)

    assert [module_hash(c.matrix, c.ops) for c in relabeled] == data.hash[rows].tolist()
    assert sum(a != b for a, b in zip(cells, relabeled, strict=True)) > 100
    for name, encoding in encodings().items():
        before, after = encode(original, name).X, encode(moved, name).X
        if encoding.invariant:
            assert np.array_equal(before, after), name
        else:
            assert not np.array_equal(before, after), name


@settings(max_examples=100, deadline=None)
@given(cell=pruned_cells(), seed=st.integers(0, 2**32 - 1))
def test_invariance_on_random_cells_of_every_size(cell, seed):
    relabeled = random_topological_relabeling(cell, np.random.default_rng(seed))
    original = dataset_of([cell], [12345])
    moved = dataset_of([relabeled], [12345])
    for name, encoding in encodings().items():
        if encoding.invariant:
            assert np.array_equal(encode(original, name).X, encode(moved, name).X)


# -- the registry -----------------------------------------------------------------


def test_register_an_encoding_in_one_line(hand, registry):
    register_encoding(
        "n_edges", lambda data: data.adjacency.sum(axis=(1, 2)), invariant=True
    )
    features = encode(hand, ["n_edges", "op_counts"])

    assert features.columns == ["n_edges", *[f"count_{x}" for x in OP_LABELS]]
    assert features.X[:, 0].tolist() == [5, 6, 1]
    register_feature_set("mine", ["counts", "n_edges"])
    assert encode(hand, "mine").X.shape == (3, 4)
    assert encodings()["n_edges"].invariant


def test_register_an_encoding_as_a_decorator(hand, registry):
    @register_encoding("inner", description="number of inner vertices")
    def inner(data):
        return data.num_vertices - 2, ["num_inner"]

    assert inner(hand).__class__ is tuple
    assert encode(hand, "inner").columns == ["num_inner"]
    assert encode(hand, "inner").X[:, 0].tolist() == [2, 5, 0]
    assert encodings()["inner"].description == "number of inner vertices"


def test_unnamed_columns_get_numbered(hand, registry):
    register_encoding("two", lambda data: np.zeros((len(data), 2)))
    assert encode(hand, "two").columns == ["two_0", "two_1"]


def test_encodings_are_cached_and_dropped_when_registered_again(hand, registry):
    calls = []

    def counted(data):
        calls.append(1)
        return np.ones(len(data))

    register_encoding("counted", counted)
    first, second = encode(hand, "counted"), encode(hand, "counted")
    assert len(calls) == 1 and first.X is second.X

    register_encoding("counted", lambda data: np.full(len(data), 2.0))
    assert encode(hand, "counted").X[:, 0].tolist() == [2, 2, 2]
    encode(hand, "counted", cache=False)
    clear_cache(hand)
    assert encode(hand, "path").X.shape == (3, 364)


def test_cached_values_are_read_only(hand):
    features = encode(hand, "adjacency")
    with pytest.raises(ValueError, match="read-only"):
        features.X[0, 0] = 5
    assert isinstance(features, Features)


def test_unknown_names_list_the_known_ones(hand):
    with pytest.raises(
        ValueError,
        match="unknown encoding or feature set 'pathh'; "
        "feature sets: basic, .*; encodings: adjacency, ops_onehot",
    ):
        encode(hand, "pathh")
    with pytest.raises(ValueError, match="unknown encoding or feature set 'nope'"):
        register_feature_set("broken", ["basic", "nope"])
    with pytest.raises(ValueError, match="no encoding named, got an empty list"):
        encode(hand, [])


def test_bad_registrations_are_refused():
    with pytest.raises(ValueError, match="non-empty str, got ''"):
        register_encoding("", len)
    with pytest.raises(TypeError, match="'x' needs a callable, got int"):
        register_encoding("x", 3)
    with pytest.raises(ValueError, match="feature set name must be a non-empty str"):
        register_feature_set(None, ["basic"])


def test_malformed_encoding_results_are_refused(hand, registry):
    register_encoding("short", lambda data: np.zeros(2))
    with pytest.raises(
        ValueError,
        match=r"'short' must return .* = \(3, d\) values, got shape \(2, 1\)",
    ):
        encode(hand, "short")
    register_encoding("unnamed", lambda data: (np.zeros((3, 2)), ["a"]))
    with pytest.raises(ValueError, match="name each of its 2 columns, got 1 names"):
        encode(hand, "unnamed")


def test_encodings_with_the_same_column_names_are_refused(hand):
    with pytest.raises(
        ValueError, match="path, path_trunc share column names, got path_input>"
    ):
        encode(hand, ["path", "path_trunc"])


def test_a_duck_typed_dataset_works_without_caching(hand):
    class Columns:
        __slots__ = ("adjacency", "operations", "num_vertices")
        __hash__ = None

    columns = Columns()
    columns.adjacency = hand.adjacency
    columns.operations = hand.operations
    columns.num_vertices = hand.num_vertices

    assert np.array_equal(encode(columns, "all").X, encode(hand, "all").X)


def test_an_array_the_encoding_keeps_is_copied_not_frozen(hand, registry):
    kept = np.zeros((3, 2), dtype=np.float32)
    register_encoding("kept", lambda data: kept)

    features = encode(hand, "kept")
    kept[0, 0] = 1.0

    assert kept.flags.writeable
    assert features.X[0, 0] == 0.0
