"""Cells of NAS-Bench-101: validation, pruning, the module hash and row codes.

A cell (a "spec" in NAS-Bench-101's words) is a small DAG given by two things:

``matrix``
    a V x V array of 0/1, upper-triangular with a zero diagonal: an edge runs
    from a lower to a higher vertex, so vertex order is a topological order.
``ops``
    V labels: ``"input"`` first, ``"output"`` last and, in between, labels
    from :data:`utils.schema.OP_LABELS` (``conv3x3-bn-relu``,
    ``conv1x1-bn-relu``, ``maxpool3x3``).

The space of the benchmark holds the cells that, once pruned (vertices on no
input-to-output path removed), have at most 7 vertices and at most 9 edges.

Example::

    cell = Cell([[0, 1, 1], [0, 0, 1], [0, 0, 0]],
                ["input", "conv3x3-bn-relu", "output"])
    cell.module_hash()          # 32 hex digits, as in the published files

Two kinds of bad input are told apart:

* a malformed spec (not square, not 0/1, not upper-triangular, wrong number of
  labels, unknown label) raises :class:`ValueError`;
* a well-formed spec outside the space (too many vertices or edges after
  pruning, no path from input to output) raises :class:`OutOfSpaceError`, a
  subclass of :class:`ValueError`, whose message gives what was got and the
  limit: ``"too many edges, got 10 (max 9)"``.

Rows of a schema-v1 file store a cell as codes (see :mod:`utils.schema`)::

    adjacency     int8 (7, 7)   the matrix in the top-left V x V corner
    operations    int8 (7,)     -1 input, -2 output, 0/1/2 OP_LABELS,
                                -3 padding beyond V
    num_vertices  int           V

:meth:`Cell.to_row` and :meth:`Cell.from_row` convert between the two.
:func:`align` works on all rows at once and moves each output vertex to index
6, so that the same index means the same role in every cell::

    index    0      1 .. V-2        V-1 .. 5       6
    role     input  inner vertices  padding        output
             (padding rows and columns are zero; padding ops are -3)

Relabeling and the hash
-----------------------
:func:`module_hash` is defined on any DAG matrix, not only an upper-triangular
one, so that it can be checked on arbitrary relabelings of the inner vertices.
:class:`Cell` itself keeps the upper-triangular contract of the published
data; a relabeling that keeps a cell upper-triangular is a different
topological order of the same graph.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from utils.schema import INPUT, MAX_VERTICES, OP_LABELS, OUTPUT, PADDING

__all__ = [
    "MAX_EDGES",
    "MAX_VERTICES",
    "OutOfSpaceError",
    "Cell",
    "validate_spec",
    "check_in_space",
    "prune",
    "module_hash",
    "ops_to_codes",
    "codes_to_ops",
    "align",
]

MAX_EDGES = 9

# Label <-> code of the `operations` column; the codes of inner ops are also
# the labels step 1 of the hash uses.
_CODE_OF_LABEL = {"input": INPUT, "output": OUTPUT}
_CODE_OF_LABEL.update({label: code for code, label in enumerate(OP_LABELS)})
_LABEL_OF_CODE = {code: label for label, code in _CODE_OF_LABEL.items()}


class OutOfSpaceError(ValueError):
    """A well-formed cell that is not in the NAS-Bench-101 space."""


class Cell:
    """A NAS-Bench-101 cell: an upper-triangular 0/1 matrix and its op labels.

    The constructor checks the spec and keeps a read-only copy; it does not
    prune. Use :meth:`pruned` for the cell NAS-Bench-101 would train and
    :meth:`module_hash` for its hash.

    Parameters
    ----------
    matrix : array-like of shape (V, V)
        0/1 upper-triangular adjacency matrix; ``matrix[i, j] == 1`` is an
        edge from vertex i to vertex j.
    ops : sequence of str, length V
        ``"input"``, inner labels from ``OP_LABELS``, ``"output"``.

    Attributes
    ----------
    matrix : ndarray of shape (V, V), int8, read-only
    ops : list of str

    Raises
    ------
    ValueError
        If the spec is malformed (see :func:`validate_spec`).
    """

    __slots__ = ("matrix", "ops")

    def __init__(self, matrix, ops: Sequence[str]):
        self.matrix, self.ops = validate_spec(matrix, ops)

    @property
    def num_vertices(self) -> int:
        """Number of vertices V, input and output included."""
        return len(self.ops)

    @property
    def num_edges(self) -> int:
        """Number of edges."""
        return int(self.matrix.sum())

    @property
    def is_valid(self) -> bool:
        """Whether the pruned cell is in the space (a path, sizes in limits)."""
        try:
            check_in_space(*prune(self.matrix, self.ops))
        except OutOfSpaceError:
            return False
        return True

    def pruned(self) -> Cell:
        """The cell without vertices that lie on no input-to-output path.

        Raises
        ------
        OutOfSpaceError
            If no path leads from input to output.
        """
        return Cell(*prune(self.matrix, self.ops))

    def module_hash(self) -> str:
        """The module hash of the pruned cell, as in the published files.

        Raises
        ------
        OutOfSpaceError
            If no path leads from input to output.
        """
        return module_hash(*prune(self.matrix, self.ops))

    def to_row(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The cell as one row of schema-v1 codes (the cell is not pruned).

        Returns
        -------
        adjacency : ndarray of shape (7, 7), int8
            The matrix in the top-left V x V corner, zeros elsewhere.
        operations : ndarray of shape (7,), int8
            Op codes, ``PADDING`` (-3) beyond V.
        num_vertices : int

        Raises
        ------
        OutOfSpaceError
            If the cell has more than 7 vertices and so does not fit a row.
        """
        n = self.num_vertices
        if n > MAX_VERTICES:
            raise OutOfSpaceError(f"too many vertices, got {n} (max {MAX_VERTICES})")

        adjacency = np.zeros((MAX_VERTICES, MAX_VERTICES), dtype=np.int8)
        adjacency[:n, :n] = self.matrix
        operations = np.full(MAX_VERTICES, PADDING, dtype=np.int8)
        operations[:n] = ops_to_codes(self.ops)
        return adjacency, operations, n

    @classmethod
    def from_row(cls, adjacency, operations, num_vertices: int | None = None):
        """The cell stored in one row of schema-v1 codes.

        Parameters
        ----------
        adjacency : array-like of shape (7, 7)
        operations : array-like of shape (7,)
            Op codes; ``PADDING`` (-3) beyond V.
        num_vertices : int, optional
            V; by default the number of codes that are not padding.

        Raises
        ------
        ValueError
            If a code is unknown or the result is not a valid spec.
        """
        operations = np.asarray(operations)
        if num_vertices is None:
            num_vertices = int(np.count_nonzero(operations != PADDING))
        num_vertices = int(num_vertices)
        matrix = np.asarray(adjacency)[:num_vertices, :num_vertices]
        return cls(matrix, codes_to_ops(operations[:num_vertices]))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Cell):
            return NotImplemented
        return self.ops == other.ops and np.array_equal(self.matrix, other.matrix)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Cell(matrix={self.matrix.tolist()}, ops={self.ops})"


def _check_matrix(matrix) -> np.ndarray:
    """A square 0/1 matrix with at least 2 vertices, as int8."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"matrix must be square (V, V), got shape {tuple(matrix.shape)}"
        )
    if matrix.shape[0] < 2:
        raise ValueError(
            f"matrix must have at least 2 vertices (input and output), "
            f"got {matrix.shape[0]}"
        )

    bad = (matrix != 0) & (matrix != 1)
    if bad.any():
        value = matrix[bad][0].item()
        raise ValueError(f"matrix must hold only 0 and 1, got {value!r}")
    return matrix.astype(np.int8)


def _check_ops(ops, num_vertices: int) -> list[str]:
    """V labels: input first, output last, known op labels between."""
    if isinstance(ops, str):
        raise ValueError(f"ops must be a sequence of labels, got the string {ops!r}")
    ops = list(ops)
    if len(ops) != num_vertices:
        raise ValueError(
            f"ops must have one label per vertex, got {len(ops)} labels "
            f"for {num_vertices} vertices"
        )
    if ops[0] != "input":
        raise ValueError(f"ops[0] must be 'input', got {ops[0]!r}")
    if ops[-1] != "output":
        raise ValueError(f"ops[-1] must be 'output', got {ops[-1]!r}")

    for index, label in enumerate(ops[1:-1], start=1):
        if label not in OP_LABELS:
            raise ValueError(
                f"ops[{index}] is not an inner op label, got {label!r}; "
                f"expected one of {', '.join(OP_LABELS)}"
            )
    return ops


def validate_spec(matrix, ops: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Check a spec and return it as a read-only int8 matrix and a label list.

    Parameters
    ----------
    matrix : array-like of shape (V, V)
    ops : sequence of str, length V

    Returns
    -------
    matrix : ndarray of shape (V, V), int8, read-only copy
    ops : list of str, a copy

    Raises
    ------
    ValueError
        If `matrix` is not square, has fewer than 2 vertices, holds values
        other than 0 and 1, or is not strictly upper-triangular; if `ops`
        has not one label per vertex, does not start with ``"input"`` and end
        with ``"output"``, or holds a label outside ``OP_LABELS`` in between.
    """
    matrix = _check_matrix(matrix)

    below = np.argwhere(np.tril(matrix) != 0)
    if len(below):
        source, target = below[0].tolist()
        raise ValueError(
            f"matrix must be upper-triangular (edges from a lower to a higher "
            f"vertex), got an edge {source} -> {target}"
        )

    ops = _check_ops(ops, matrix.shape[0])
    matrix.setflags(write=False)
    return matrix, ops


def check_in_space(matrix, ops: Sequence[str]) -> None:
    """Refuse a (pruned) spec whose size is outside the space.

    Raises
    ------
    OutOfSpaceError
        If the spec has more than 7 vertices or more than 9 edges.
    """
    num_vertices = len(ops)
    if num_vertices > MAX_VERTICES:
        raise OutOfSpaceError(
            f"too many vertices, got {num_vertices} (max {MAX_VERTICES})"
        )
    num_edges = int(np.sum(matrix))
    if num_edges > MAX_EDGES:
        raise OutOfSpaceError(f"too many edges, got {num_edges} (max {MAX_EDGES})")


def _reachable(neighbours: list[list[int]], start: int) -> set[int]:
    """Vertices reachable from `start` along `neighbours` (start included)."""
    seen = {start}
    stack = [start]
    while stack:
        vertex = stack.pop()
        for other in neighbours[vertex]:
            if other not in seen:
                seen.add(other)
                stack.append(other)
    return seen


def prune(matrix, ops: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Remove the vertices that lie on no input-to-output path.

    This is the pruning NAS-Bench-101 applies before hashing and training: a
    vertex stays if it can be reached from the input and the output can be
    reached from it.

    Parameters
    ----------
    matrix : array-like of shape (V, V)
        A valid spec (see :func:`validate_spec`).
    ops : sequence of str, length V

    Returns
    -------
    matrix : ndarray of shape (V', V'), int8
    ops : list of str, length V'

    Raises
    ------
    ValueError
        If the spec is malformed.
    OutOfSpaceError
        If no path leads from input to output.
    """
    matrix, ops = validate_spec(matrix, ops)
    rows = matrix.tolist()
    n = len(ops)

    # Walk forward from the input and backward from the output.
    successors = [[j for j in range(n) if rows[i][j]] for i in range(n)]
    predecessors = [[i for i in range(n) if rows[i][j]] for j in range(n)]
    from_input = _reachable(successors, 0)
    to_output = _reachable(predecessors, n - 1)
    if n - 1 not in from_input:
        raise OutOfSpaceError("no path from input to output, got a disconnected cell")

    keep = sorted(from_input & to_output)
    pruned = matrix[np.ix_(keep, keep)].copy()
    return pruned, [ops[i] for i in keep]


# CPython's own md5 is about three times faster than OpenSSL's on the short
# texts of the hash, which is most of its cost; both give the same digests.
try:
    from _md5 import md5 as _md5_new
except ImportError:  # a Python built without its own hash modules
    _md5_new = hashlib.md5


def _md5(text: str) -> str:
    return _md5_new(text.encode("utf-8")).hexdigest()


def module_hash(matrix, ops: Sequence[str]) -> str:
    """The NAS-Bench-101 module hash of a spec, as FORMAT.md defines it.

    The spec is hashed as given; prune it first (:func:`prune`) to get the
    hash of the published files. Any DAG matrix is accepted, upper-triangular
    or not, so the hash can be checked on relabelings of the inner vertices;
    isomorphic cells get the same hash.

    Parameters
    ----------
    matrix : array-like of shape (V, V)
        0/1 adjacency matrix of a DAG.
    ops : sequence of str, length V
        ``"input"`` first, ``"output"`` last, labels of ``OP_LABELS`` between.

    Returns
    -------
    str
        32 lowercase hex digits.

    Raises
    ------
    ValueError
        If the matrix is not square 0/1, has a cycle, or `ops` is malformed.

    Notes
    -----
    Each vertex starts as md5 of ``str((out_degree, in_degree, label))`` with
    Python ints (numpy integers would print differently and change the hash),
    with labels -1 input, -2 output and the index into ``OP_LABELS``. Then V
    rounds replace each vertex's hash by md5 of its in-neighbours' hashes
    sorted and joined, ``|``, its out-neighbours' likewise, ``|``, its own.
    The module hash is md5 of ``str(sorted(vertex hashes))``.
    """
    matrix = _check_matrix(matrix)
    ops = _check_ops(ops, matrix.shape[0])
    n = len(ops)
    if np.any(np.tril(matrix)) and np.any(
        np.linalg.matrix_power(matrix.astype(np.int64), n)
    ):
        raise ValueError("matrix must be a DAG, got a matrix with a cycle")

    # Degrees and labels as plain Python ints: their text is hashed.
    rows = matrix.tolist()
    columns = [list(column) for column in zip(*rows, strict=True)]
    labels = [_CODE_OF_LABEL[label] for label in ops]
    hashes = [_md5(str((sum(rows[v]), sum(columns[v]), labels[v]))) for v in range(n)]

    # V rounds of neighbourhood aggregation.
    neighbours = [
        ([u for u in range(n) if columns[v][u]], [w for w in range(n) if rows[v][w]])
        for v in range(n)
    ]
    for _ in range(n):
        hashes = [
            _md5(
                "".join(sorted([hashes[u] for u in sources]))
                + "|"
                + "".join(sorted([hashes[w] for w in targets]))
                + "|"
                + hashes[v]
            )
            for v, (sources, targets) in enumerate(neighbours)
        ]

    return _md5(str(sorted(hashes)))


def ops_to_codes(ops: Sequence[str]) -> np.ndarray:
    """Labels -> int8 codes of the `operations` column (-1, -2, 0, 1, 2).

    Raises
    ------
    ValueError
        If a label is unknown.
    """
    try:
        return np.array([_CODE_OF_LABEL[label] for label in ops], dtype=np.int8)
    except KeyError as error:
        raise ValueError(
            f"unknown op label, got {error.args[0]!r}; expected one of "
            f"{', '.join(_CODE_OF_LABEL)}"
        ) from None


def codes_to_ops(codes) -> list[str]:
    """Codes of the `operations` column -> labels (padding not allowed).

    Raises
    ------
    ValueError
        If a code is not -1, -2, 0, 1 or 2.
    """
    try:
        return [_LABEL_OF_CODE[int(code)] for code in np.asarray(codes).ravel()]
    except KeyError as error:
        raise ValueError(
            f"unknown op code, got {error.args[0]}; expected one of "
            f"{', '.join(str(code) for code in _LABEL_OF_CODE)}"
        ) from None


def align(
    adjacency: np.ndarray, operations: np.ndarray, num_vertices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move the output vertex of every cell to index 6, all cells at once.

    Inner vertices keep their order at indices 1..V-2; padding vertices sit
    between them and the output, with zero rows and columns and the op code
    ``PADDING`` (-3). Cells with 7 vertices are unchanged.

    Parameters
    ----------
    adjacency : ndarray of shape (n_cells, 7, 7)
        Matrices in the top-left V x V corner, zeros elsewhere.
    operations : ndarray of shape (n_cells, 7)
        Op codes, ``PADDING`` beyond V.
    num_vertices : ndarray of shape (n_cells,)
        V per cell, 2..7.

    Returns
    -------
    adjacency : ndarray of shape (n_cells, 7, 7), int8
    operations : ndarray of shape (n_cells, 7), int8
        New arrays; the inputs are not changed.

    Raises
    ------
    ValueError
        If the shapes disagree or a vertex count is outside 2..7.
    """
    adjacency = np.asarray(adjacency)
    operations = np.asarray(operations)
    num_vertices = np.asarray(num_vertices)
    n_cells = len(num_vertices)
    expected = {
        "adjacency": (adjacency, (n_cells, MAX_VERTICES, MAX_VERTICES)),
        "operations": (operations, (n_cells, MAX_VERTICES)),
        "num_vertices": (num_vertices, (n_cells,)),
    }
    for name, (array, shape) in expected.items():
        if array.shape != shape:
            raise ValueError(
                f"`{name}` must have shape {shape}, got {tuple(array.shape)}"
            )
    if n_cells and (num_vertices.min() < 2 or num_vertices.max() > MAX_VERTICES):
        raise ValueError(
            f"`num_vertices` must lie in 2..{MAX_VERTICES}, got values from "
            f"{num_vertices.min()} to {num_vertices.max()}"
        )

    # Cells with 7 vertices are already aligned. For V < 7, index j of the
    # aligned cell takes vertex source[j] of the stored one:
    #   j:        0  1 .. V-2   V-1 .. 5   6
    #   source:   0  1 .. V-2   (padding)  V-1
    aligned = adjacency.astype(np.int8, copy=True)
    aligned_ops = operations.astype(np.int8, copy=True)
    for n in range(2, MAX_VERTICES):
        rows = np.flatnonzero(num_vertices == n)
        if not len(rows):
            continue
        source = np.r_[np.arange(n - 1), np.full(MAX_VERTICES - n, n - 1), n - 1]
        is_real = np.arange(MAX_VERTICES) < n - 1
        is_real[-1] = True

        # Gather rows and columns, then clear the padding ones.
        block = adjacency[rows][:, source][:, :, source]
        aligned[rows] = block * (is_real[:, None] & is_real[None, :])
        aligned_ops[rows] = np.where(is_real, operations[rows][:, source], PADDING)
    return aligned, aligned_ops
