"""Tests of utils.cells: validation, pruning, the module hash, rows, alignment."""

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import pruned_cells

from utils.cells import (
    Cell,
    OutOfSpaceError,
    align,
    check_in_space,
    codes_to_ops,
    module_hash,
    ops_to_codes,
    prune,
    validate_spec,
)
from utils.schema import OP_LABELS, PADDING, read_hdf5

CONV3, CONV1, POOL = OP_LABELS

# input -> conv3x3 -> output, plus a skip edge input -> output.
SMALL_MATRIX = [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
SMALL_OPS = ["input", CONV3, "output"]


def md5(text):
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def random_relabeling(matrix, ops, rng, upper=True):
    """The cell with its inner vertices relabeled at random.

    With `upper`, the relabeling is a random topological order (the matrix
    stays upper-triangular); without, any permutation of the inner vertices.
    """
    matrix = np.asarray(matrix)
    n = len(ops)
    if upper:
        # Kahn's algorithm, drawing among the ready vertices at random.
        remaining = set(range(n))
        order = []
        while remaining:
            ready = [v for v in remaining if not matrix[list(remaining), v].any()]
            vertex = ready[rng.integers(len(ready))]
            order.append(vertex)
            remaining.remove(vertex)
    else:
        order = [0, *(rng.permutation(n - 2) + 1), n - 1]
    order = np.asarray(order)
    return matrix[np.ix_(order, order)], [ops[v] for v in order]


# -- the hash -----------------------------------------------------------------


def test_hash_of_the_two_vertex_cell_follows_the_definition():
    # Step 2: (out_degree, in_degree, label) as Python ints.
    input_hash = md5(str((1, 0, -1)))
    output_hash = md5(str((0, 1, -2)))
    # Step 3: V = 2 rounds of in-neighbours | out-neighbours | own.
    for _ in range(2):
        input_hash, output_hash = (
            md5("" + "|" + output_hash + "|" + input_hash),
            md5(input_hash + "|" + "" + "|" + output_hash),
        )
    expected = md5(str(sorted([input_hash, output_hash])))

    assert module_hash([[0, 1], [0, 0]], ["input", "output"]) == expected


def test_hash_of_a_three_vertex_cell_follows_the_definition():
    # Vertices: input (2 out), conv3x3 (1 in, 1 out), output (2 in).
    hashes = [
        md5(str((2, 0, -1))),
        md5(str((1, 1, 0))),
        md5(str((0, 2, -2))),
    ]
    for _ in range(3):
        a, b, c = hashes
        hashes = [
            md5("|" + "".join(sorted([b, c])) + "|" + a),
            md5(a + "|" + c + "|" + b),
            md5("".join(sorted([a, b])) + "||" + c),
        ]
    expected = md5(str(sorted(hashes)))

    assert module_hash(SMALL_MATRIX, SMALL_OPS) == expected
    assert Cell(SMALL_MATRIX, SMALL_OPS).module_hash() == expected


def test_hash_does_not_depend_on_the_integer_type_of_the_matrix():
    expected = module_hash(SMALL_MATRIX, SMALL_OPS)
    for dtype in (np.int8, np.int64, np.uint8, bool, float):
        assert module_hash(np.array(SMALL_MATRIX, dtype=dtype), SMALL_OPS) == expected


def test_numpy_integers_would_change_the_hashed_text():
    # Why the hash converts degrees to Python ints first (numpy 2 and later).
    assert str((np.int64(1), 0, -1)) == "(np.int64(1), 0, -1)"


def test_hash_tells_ops_and_edges_apart():
    other_op = module_hash(SMALL_MATRIX, ["input", CONV1, "output"])
    no_skip = module_hash([[0, 1, 0], [0, 0, 1], [0, 0, 0]], SMALL_OPS)
    assert len({module_hash(SMALL_MATRIX, SMALL_OPS), other_op, no_skip}) == 3


def test_hash_reproduces_the_golden_cells(golden_dir):
    cells = json.loads((golden_dir / "golden-4.json").read_text())["cells"]
    for cell in cells:
        n = cell["num_vertices"]
        matrix = np.asarray(cell["adjacency"])[:n, :n]
        assert module_hash(matrix, cell["operations"][:n]) == cell["hash"]


@pytest.mark.slow
def test_hash_reproduces_every_cell_of_the_sample(sample_20k):
    arrays, _ = read_hdf5(sample_20k)
    rows = zip(
        arrays["adjacency"],
        arrays["operations"],
        arrays["num_vertices"],
        arrays["hash"],
        strict=True,
    )
    wrong = []
    for adjacency, operations, num_vertices, expected in rows:
        matrix = adjacency[:num_vertices, :num_vertices]
        ops = codes_to_ops(operations[:num_vertices])
        if module_hash(matrix, ops) != expected.decode():
            wrong.append(expected.decode())

    assert len(arrays["hash"]) == 20_001
    assert wrong == []


def test_hash_is_invariant_under_1000_relabelings_of_sample_cells(sample_20k):
    arrays, _ = read_hdf5(sample_20k)
    rng = np.random.default_rng(0)
    for row in rng.choice(len(arrays["hash"]), size=1000, replace=False):
        cell = Cell.from_row(
            arrays["adjacency"][row],
            arrays["operations"][row],
            arrays["num_vertices"][row],
        )
        upper = bool(row % 2)
        matrix, ops = random_relabeling(cell.matrix, cell.ops, rng, upper=upper)
        assert module_hash(matrix, ops) == arrays["hash"][row].decode()
        if upper:
            assert Cell(matrix, ops).module_hash() == arrays["hash"][row].decode()


@settings(max_examples=150, deadline=None)
@given(cell=pruned_cells(), seed=st.integers(0, 2**32 - 1))
def test_hash_is_invariant_under_relabeling_of_random_cells(cell, seed):
    cell = cell.pruned()
    rng = np.random.default_rng(seed)
    matrix, ops = random_relabeling(cell.matrix, cell.ops, rng, upper=False)
    assert module_hash(matrix, ops) == module_hash(cell.matrix, cell.ops)


# -- pruning and the space ----------------------------------------------------


def test_prune_removes_vertices_off_every_input_output_path():
    # 0 input, 1 conv3x3 (on the path), 2 conv1x1 (reached from the input but a
    # dead end), 3 maxpool (not reached from the input), 4 output.
    matrix = [
        [0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0],
    ]
    ops = ["input", CONV3, CONV1, POOL, "output"]

    pruned_matrix, pruned_ops = prune(matrix, ops)

    assert pruned_matrix.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert pruned_ops == ["input", CONV3, "output"]
    assert Cell(matrix, ops).pruned() == Cell(*prune(matrix, ops))
    assert Cell(matrix, ops).module_hash() == module_hash(pruned_matrix, pruned_ops)


def test_prune_keeps_a_cell_without_extraneous_vertices():
    matrix, ops = prune(SMALL_MATRIX, SMALL_OPS)
    assert matrix.tolist() == SMALL_MATRIX
    assert ops == SMALL_OPS


def test_prune_refuses_a_cell_without_an_input_output_path():
    with pytest.raises(OutOfSpaceError, match="no path from input to output"):
        prune([[0, 1, 0], [0, 0, 0], [0, 0, 0]], SMALL_OPS)
    assert not Cell([[0, 1, 0], [0, 0, 0], [0, 0, 0]], SMALL_OPS).is_valid


def test_too_many_vertices():
    n = 8
    matrix = np.eye(n, k=1, dtype=int)
    ops = ["input", *[CONV3] * (n - 2), "output"]
    with pytest.raises(OutOfSpaceError, match=r"too many vertices, got 8 \(max 7\)"):
        check_in_space(matrix, ops)
    assert not Cell(matrix, ops).is_valid


def test_too_many_edges():
    matrix = np.triu(np.ones((6, 6), dtype=int), k=1)  # 15 edges
    ops = ["input", *[CONV3] * 4, "output"]
    with pytest.raises(OutOfSpaceError, match=r"too many edges, got 15 \(max 9\)"):
        check_in_space(matrix, ops)
    assert not Cell(matrix, ops).is_valid


def test_out_of_space_error_is_a_value_error():
    assert issubclass(OutOfSpaceError, ValueError)


def test_a_valid_cell():
    cell = Cell(SMALL_MATRIX, SMALL_OPS)
    assert cell.is_valid
    assert (cell.num_vertices, cell.num_edges) == (3, 3)
    assert not cell.matrix.flags.writeable
    assert repr(cell) == f"Cell(matrix={SMALL_MATRIX}, ops={SMALL_OPS})"
    assert cell != Cell(SMALL_MATRIX, ["input", CONV1, "output"])


# -- malformed specs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("matrix", "ops", "message"),
    [
        (
            [[0, 1, 0], [0, 0, 1]],
            SMALL_OPS,
            r"must be square \(V, V\), got shape \(2, 3\)",
        ),
        ([0, 1], SMALL_OPS, r"must be square \(V, V\), got shape \(2,\)"),
        ([[0]], ["input"], "at least 2 vertices .*, got 1"),
        ([[0, 2], [0, 0]], ["input", "output"], "only 0 and 1, got 2"),
        (
            [[0, 1, 0], [0, 0, 1], [1, 0, 0]],
            SMALL_OPS,
            "must be upper-triangular .*, got an edge 2 -> 0",
        ),
        ([[1, 1], [0, 0]], ["input", "output"], "got an edge 0 -> 0"),
        (SMALL_MATRIX, ["input", "output"], "one label per vertex, got 2 labels for 3"),
        (SMALL_MATRIX, "input", "a sequence of labels, got the string 'input'"),
        (SMALL_MATRIX, [CONV3, CONV3, "output"], "ops\\[0\\] must be 'input', got"),
        (SMALL_MATRIX, ["input", CONV3, CONV3], "ops\\[-1\\] must be 'output', got"),
        (
            SMALL_MATRIX,
            ["input", "conv5x5", "output"],
            "ops\\[1\\] is not an inner op label, got 'conv5x5'; expected one of "
            "conv3x3-bn-relu, conv1x1-bn-relu, maxpool3x3",
        ),
        (SMALL_MATRIX, ["input", "input", "output"], "ops\\[1\\] is not an inner"),
    ],
)
def test_malformed_specs_are_refused(matrix, ops, message):
    with pytest.raises(ValueError, match=message) as caught:
        validate_spec(matrix, ops)
    assert not isinstance(caught.value, OutOfSpaceError)
    with pytest.raises(ValueError, match=message):
        Cell(matrix, ops)


def test_hash_accepts_a_lower_triangular_dag_but_not_a_cycle():
    # input -> 2 -> 1 -> output is the chain input -> 1 -> 2 -> output relabeled.
    relabeled = [[0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]]
    chain = [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert module_hash(relabeled, ["input", CONV1, CONV3, "output"]) == module_hash(
        chain, ["input", CONV3, CONV1, "output"]
    )
    with pytest.raises(ValueError, match="upper-triangular"):
        Cell(relabeled, ["input", CONV1, CONV3, "output"])
    with pytest.raises(ValueError, match="must be a DAG, got a matrix with a cycle"):
        module_hash([[0, 1, 0], [0, 0, 1], [0, 1, 0]], SMALL_OPS)


# -- rows of codes ------------------------------------------------------------


def test_ops_and_codes_convert_both_ways():
    ops = ["input", CONV3, CONV1, POOL, "output"]
    assert ops_to_codes(ops).tolist() == [-1, 0, 1, 2, -2]
    assert codes_to_ops([-1, 0, 1, 2, -2]) == ops


def test_unknown_labels_and_codes():
    with pytest.raises(ValueError, match="unknown op label, got 'conv5x5'"):
        ops_to_codes(["input", "conv5x5"])
    with pytest.raises(ValueError, match="unknown op code, got -3; expected one of"):
        codes_to_ops([-1, -3])


def test_cell_to_row_and_back():
    adjacency, operations, num_vertices = Cell(SMALL_MATRIX, SMALL_OPS).to_row()

    expected = np.zeros((7, 7), dtype=np.int8)
    expected[:3, :3] = SMALL_MATRIX
    assert adjacency.dtype == np.int8 and operations.dtype == np.int8
    assert np.array_equal(adjacency, expected)
    assert operations.tolist() == [-1, 0, -2, -3, -3, -3, -3]
    assert num_vertices == 3
    assert Cell.from_row(adjacency, operations) == Cell(SMALL_MATRIX, SMALL_OPS)
    assert Cell.from_row(adjacency, operations, 3) == Cell(SMALL_MATRIX, SMALL_OPS)


def test_a_cell_of_eight_vertices_does_not_fit_a_row():
    cell = Cell(np.eye(8, k=1, dtype=int), ["input", *[CONV3] * 6, "output"])
    with pytest.raises(OutOfSpaceError, match=r"too many vertices, got 8 \(max 7\)"):
        cell.to_row()


# -- alignment ----------------------------------------------------------------


def test_align_moves_the_output_to_index_6():
    # input -> conv3x3 -> maxpool -> output, and input -> maxpool.
    matrix = [[0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    adjacency, operations, _ = Cell(matrix, ["input", CONV3, POOL, "output"]).to_row()

    aligned, aligned_ops = align(adjacency[None], operations[None], np.array([4]))

    expected = np.zeros((7, 7), dtype=np.int8)
    expected[0, 1] = expected[0, 2] = expected[1, 2] = expected[2, 6] = 1
    assert np.array_equal(aligned[0], expected)
    assert aligned_ops[0].tolist() == [-1, 0, 2, PADDING, PADDING, PADDING, -2]
    assert operations.tolist() == [-1, 0, 2, -2, -3, -3, -3]  # input unchanged


def test_align_matches_a_cell_by_cell_reference(sample_20k):
    arrays, _ = read_hdf5(sample_20k)
    adjacency, operations = arrays["adjacency"], arrays["operations"]
    num_vertices = arrays["num_vertices"]

    aligned, aligned_ops = align(adjacency, operations, num_vertices)

    assert aligned.shape == (20_001, 7, 7) and aligned_ops.shape == (20_001, 7)
    seven = num_vertices == 7
    assert np.array_equal(aligned[seven], adjacency[seven])
    for row in np.flatnonzero(~seven)[:500]:
        n = num_vertices[row]
        order = [*range(n - 1), *[None] * (7 - n), n - 1]
        for i, source in enumerate(order):
            expected_op = PADDING if source is None else operations[row, source]
            assert aligned_ops[row, i] == expected_op
            for j, target in enumerate(order):
                edge = 0 if None in (source, target) else adjacency[row, source, target]
                assert aligned[row, i, j] == edge


def test_align_refuses_bad_shapes_and_vertex_counts():
    adjacency = np.zeros((2, 7, 7), dtype=np.int8)
    operations = np.full((2, 7), PADDING, dtype=np.int8)
    with pytest.raises(ValueError, match=r"`operations` must have shape \(2, 7\), got"):
        align(adjacency, operations[:, :6], np.array([2, 2]))
    with pytest.raises(
        ValueError, match=r"`num_vertices` must lie in 2..7, got .* 1 to 8"
    ):
        align(adjacency, operations, np.array([1, 8]))
