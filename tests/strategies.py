"""Hypothesis strategies shared by the tests of cells and encodings."""

import numpy as np
from hypothesis import strategies as st

from utils.cells import MAX_EDGES, Cell
from utils.schema import OP_LABELS


@st.composite
def pruned_cells(draw):
    """Random pruned cells of the space, of every size.

    A chain through all vertices (so that pruning removes nothing) and random
    extra edges, at most 9 edges in all.
    """
    n = draw(st.integers(2, 7))
    chain = [(i, i + 1) for i in range(n - 1)]
    others = [(i, j) for i in range(n) for j in range(i + 2, n)]
    extra = []
    if others:
        extra = draw(
            st.lists(st.sampled_from(others), unique=True, max_size=MAX_EDGES - n + 1)
        )
    matrix = np.zeros((n, n), dtype=np.int8)
    for i, j in chain + extra:
        matrix[i, j] = 1
    inner = draw(st.lists(st.sampled_from(OP_LABELS), min_size=n - 2, max_size=n - 2))
    return Cell(matrix, ["input", *inner, "output"])
