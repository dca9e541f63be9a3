"""Tests of utils.dataset: loading, columns, look-ups and targets."""

import time

import numpy as np
import pytest

from utils.cells import Cell, OutOfSpaceError, module_hash
from utils.dataset import Label, NASBench101
from utils.schema import METRIC_NAMES, OP_LABELS, SchemaError

CONV3, CONV1, POOL = OP_LABELS
VALIDATION = METRIC_NAMES.index("validation_accuracy")


def chain_cell(inner):
    """input -> inner ops in a chain -> output."""
    n = len(inner) + 2
    return Cell(np.eye(n, k=1, dtype=int), ["input", *inner, "output"])


def three_run_dataset():
    """Four cells with hand-set 108-epoch final validation accuracies.

    runs per cell:   a: 0.90 0.92 0.94    b: NaN 0.80 0.70
                     c: NaN NaN NaN       d: 0.60 NaN NaN
    """
    cells = [
        chain_cell([CONV3]),
        chain_cell([CONV1]),
        chain_cell([POOL]),
        chain_cell([]),
    ]
    parameters = [1000 * (row + 1) for row in range(len(cells))]
    runs = np.array(
        [
            [0.90, 0.92, 0.94],
            [np.nan, 0.80, 0.70],
            [np.nan, np.nan, np.nan],
            [0.60, np.nan, np.nan],
        ]
    )
    metrics = np.full((len(cells), 4, 3, 2, 4), np.nan, dtype=np.float32)
    metrics[:, 3, :, 1, VALIDATION] = runs
    data = NASBench101.from_cells(cells, parameters, metrics)
    return data, cells


# -- loading ------------------------------------------------------------------


def test_sample_loads_with_schema_columns(sample_20k):
    data = NASBench101.from_hdf5(sample_20k)

    assert len(data) == 20_001
    assert data.hash.dtype.kind == "U" and data.hash.shape == (20_001,)
    assert np.all(data.hash[1:] > data.hash[:-1])
    assert data.num_vertices.dtype == np.int8
    assert data.adjacency.shape == (20_001, 7, 7)
    assert data.operations.shape == (20_001, 7)
    assert data.trainable_parameters.dtype == np.int32
    assert data.metrics.shape == (20_001, 4, 3, 2, 4)
    assert data.has_metrics and data.has_trainable_parameters
    assert data.attrs["format"] == "nasbench101-hdf5"
    assert not data.adjacency.flags.writeable
    assert repr(data).startswith("NASBench101(20001 cells, with metrics")


def test_the_whole_space_loads_in_bulk(space_423k):
    started = time.perf_counter()
    data = NASBench101.from_npz(space_423k)
    elapsed = time.perf_counter() - started

    assert len(data) == 423_624
    assert np.bincount(data.num_vertices).tolist() == [
        0,
        0,
        1,
        6,
        84,
        2_441,
        62_010,
        359_082,
    ]
    # Under a second on a quiet machine; the bound leaves room for a busy one.
    assert elapsed < 3.0
    assert not data.has_metrics


def test_a_file_that_is_not_hdf5_is_refused(tmp_path):
    path = tmp_path / "cells.h5"
    path.write_text("not hdf5")
    with pytest.raises(SchemaError, match="not an HDF5 file"):
        NASBench101.from_hdf5(path)


def test_a_missing_npz_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file: .*space.npz"):
        NASBench101.from_npz(tmp_path / "space.npz")


def test_structures_only_has_no_parameters_or_metrics():
    data, _ = three_run_dataset()
    structures = NASBench101(
        data.hash, data.num_vertices, data.adjacency, data.operations
    )

    with pytest.raises(ValueError, match="no `trainable_parameters`: it holds struc"):
        _ = structures.trainable_parameters
    with pytest.raises(ValueError, match="no `metrics`: it holds structures only"):
        _ = structures.metrics
    with pytest.raises(ValueError, match="no `metrics`"):
        structures.targets()
    assert structures.available_labels() == []
    assert "structures only" in repr(structures)


def test_missing_columns_are_named():
    data, _ = three_run_dataset()
    with pytest.raises(ValueError, match="missing column.s. adjacency; expected"):
        NASBench101.from_arrays(
            {
                "hash": data.hash,
                "num_vertices": data.num_vertices,
                "operations": data.operations,
            }
        )


def test_the_callers_arrays_stay_writable():
    data, _ = three_run_dataset()
    adjacency = data.adjacency.copy()
    wrapped = NASBench101(data.hash, data.num_vertices, adjacency, data.operations)

    assert adjacency.flags.writeable
    assert not wrapped.adjacency.flags.writeable


def test_columns_of_the_wrong_shape_are_refused():
    data, _ = three_run_dataset()
    with pytest.raises(
        ValueError, match=r"`adjacency` must have shape \(4, 7, 7\), got"
    ):
        NASBench101(
            data.hash, data.num_vertices, data.adjacency[:, :6], data.operations
        )
    with pytest.raises(ValueError, match=r"`hash` must have shape \(n_cells,\), got"):
        NASBench101(data.hash[None], data.num_vertices, data.adjacency, data.operations)


def test_repeated_and_overlong_hashes_are_refused():
    data, _ = three_run_dataset()
    repeated = data.hash.copy()
    repeated[2] = repeated[0]
    with pytest.raises(ValueError, match=f"distinct, got {repeated[0]} 2 times"):
        NASBench101(repeated, data.num_vertices, data.adjacency, data.operations)

    accented = data.hash.copy()
    accented[0] = "é" * 32
    with pytest.raises(ValueError, match="must be ASCII hex digits, got other text"):
        NASBench101(accented, data.num_vertices, data.adjacency, data.operations)

    overlong = data.hash.astype("U40")
    overlong[1] = "f" * 40
    with pytest.raises(ValueError, match="at most 32 characters, got 'fff"):
        NASBench101(overlong, data.num_vertices, data.adjacency, data.operations)


# -- look-ups -----------------------------------------------------------------


def test_index_of_one_hash_and_of_many(sample_20k):
    data = NASBench101.from_hdf5(sample_20k)
    rows = np.array([0, 17, 20_000, 5])

    assert data.index_of(data.hash[17]) == 17
    assert isinstance(data.index_of(data.hash[17]), int)
    assert data.index_of(data.hash[17].encode()) == 17
    assert data.index_of(data.hash[rows]).tolist() == rows.tolist()
    assert data.index_of(list(data.hash[rows])).dtype == np.int64


def test_unknown_hashes_raise_a_key_error_naming_them():
    data, _ = three_run_dataset()
    with pytest.raises(KeyError, match="hash 0123 is not in the dataset"):
        data.index_of("0123")
    with pytest.raises(KeyError, match="2 of 3 hashes are not in the dataset: x, y"):
        data.index_of(["x", data.hash[1], "y"])
    with pytest.raises(KeyError, match="5 of 5 hashes .*: a, b, c and 2 more"):
        data.index_of(["a", "b", "c", "d", "e"])


def test_index_of_works_on_an_unsorted_subset():
    data, _ = three_run_dataset()
    order = np.argsort(data.hash)[::-1]
    reversed_rows = data.subset(order)

    assert reversed_rows.index_of(data.hash[order[0]]) == 0
    assert reversed_rows.index_of(data.hash).tolist() == np.argsort(order).tolist()
    with pytest.raises(KeyError, match="not in the dataset"):
        reversed_rows.subset([0, 1]).index_of(data.hash[order[3]])


def test_find_prunes_and_hashes_a_spec():
    data, cells = three_run_dataset()
    row = data.index_of(cells[0].module_hash())

    # The same cell with a dead-end maxpool vertex (2) that pruning removes.
    matrix = [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    ops = ["input", CONV3, POOL, "output"]

    assert data.find(cells[0].matrix, cells[0].ops) == row
    assert data.find(matrix, ops) == row
    assert data.cell(row) == cells[0]


def test_find_refuses_specs_outside_the_space_or_the_data():
    data, _ = three_run_dataset()
    full = np.triu(np.ones((7, 7), dtype=int), k=1)
    with pytest.raises(OutOfSpaceError, match=r"too many edges, got 21 \(max 9\)"):
        data.find(full, ["input", *[CONV3] * 5, "output"])
    with pytest.raises(OutOfSpaceError, match="no path from input to output"):
        data.find([[0, 0], [0, 0]], ["input", "output"])
    missing = chain_cell([CONV3, CONV3])
    with pytest.raises(KeyError, match=f"hash {missing.module_hash()} is not in"):
        data.find(missing.matrix, missing.ops)


def test_find_in_the_sample(sample_20k):
    data = NASBench101.from_hdf5(sample_20k)
    for row in (0, 1234, 20_000):
        cell = data.cell(row)
        assert module_hash(cell.matrix, cell.ops) == data.hash[row]
        assert data.find(cell.matrix, cell.ops) == row


def test_subset_by_indices_and_mask():
    data, _ = three_run_dataset()
    by_index = data.subset([3, 1])
    by_mask = data.subset(np.array([False, True, False, True]))

    assert len(by_index) == 2
    assert by_index.hash.tolist() == [data.hash[3], data.hash[1]]
    assert by_mask.hash.tolist() == [data.hash[1], data.hash[3]]
    assert np.array_equal(by_index.metrics, data.metrics[[3, 1]], equal_nan=True)
    assert by_index.trainable_parameters.tolist() == [4000, 2000]
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\), got \(3,\)"):
        data.subset(np.array([True, False, True]))
    with pytest.raises(ValueError, match="distinct"):
        data.subset([1, 1])


# -- targets ------------------------------------------------------------------


def test_available_labels_of_the_sample(sample_20k):
    labels = NASBench101.from_hdf5(sample_20k).available_labels()

    expected = [
        (4, "validation_accuracy", "final"),
        (12, "validation_accuracy", "final"),
        (36, "validation_accuracy", "final"),
        (108, "training_time", "final"),
        (108, "validation_accuracy", "final"),
    ]
    assert [(x.budget, x.metric, x.point) for x in labels] == expected
    assert all(x.n_cells == 20_001 and x.max_runs == 1 for x in labels)


def test_available_labels_counts_cells_and_runs():
    data, _ = three_run_dataset()
    assert data.available_labels() == [
        Label(108, "validation_accuracy", "final", n_cells=3, max_runs=3)
    ]


def test_mean_of_the_measured_runs():
    data, _ = three_run_dataset()
    values, n_runs = data.targets()

    assert values.dtype == np.float64
    np.testing.assert_allclose(values[[0, 1, 3]], [0.92, 0.75, 0.60], rtol=1e-6)
    assert np.isnan(values[2])
    assert n_runs.tolist() == [3, 2, 0, 1]


def test_one_run_first_run_and_random_run():
    data, _ = three_run_dataset()

    values, n_runs = data.targets(runs=1)
    np.testing.assert_allclose(values[[0, 1]], [0.92, 0.80], rtol=1e-6)
    assert np.isnan(values[2]) and np.isnan(values[3])
    assert n_runs.tolist() == [1, 1, 0, 0]

    values, n_runs = data.targets(runs="first")
    np.testing.assert_allclose(values[[0, 1, 3]], [0.90, 0.80, 0.60], rtol=1e-6)
    assert n_runs.tolist() == [1, 1, 0, 1]

    draws = {
        tuple(data.targets(runs="random", seed=seed)[0][[0, 1]]) for seed in range(40)
    }
    picked_a = {round(a, 2) for a, _ in draws}
    picked_b = {round(b, 2) for _, b in draws}
    assert picked_a == {0.90, 0.92, 0.94} and picked_b == {0.80, 0.70}
    first, second = (
        data.targets(runs="random", seed=7),
        data.targets(runs="random", seed=7),
    )
    assert np.array_equal(first[0], second[0], equal_nan=True)
    np.testing.assert_allclose(first[0][3], 0.60, rtol=1e-6)


def test_sample_targets_are_the_stored_run(sample_20k):
    data = NASBench101.from_hdf5(sample_20k)
    values, n_runs = data.targets(budget=12)

    np.testing.assert_array_equal(values, data.metrics[:, 1, 0, 1, VALIDATION])
    assert np.all(n_runs == 1)
    assert np.array_equal(data.targets(budget=12, runs="first")[0], values)


def test_a_label_without_data_names_those_with_data(sample_20k):
    data = NASBench101.from_hdf5(sample_20k)
    with pytest.raises(
        ValueError,
        match=r"no data for budget 108, metric 'test_accuracy', point 'final' .*"
        r"labels with data: \(4, validation_accuracy, final\);",
    ):
        data.targets(metric="test_accuracy")


def test_a_run_without_data_is_refused(sample_20k):
    data = NASBench101.from_hdf5(sample_20k)
    with pytest.raises(
        ValueError, match=r"run 2 has no data .*; runs with data: \[0\]"
    ):
        data.targets(runs=2)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"budget": 100}, "`budget` must be one of 4, 12, 36, 108, got 100"),
        ({"budget": True}, "`budget` must be one of 4, 12, 36, 108, got True"),
        ({"metric": "accuracy"}, "`metric` must be one of training_time, .*got 'acc"),
        ({"point": "last"}, "`point` must be one of halfway, final, got 'last'"),
        (
            {"runs": "median"},
            "`runs` must be one of 'mean', 'first', 'random', 0, 1, 2",
        ),
        ({"runs": 3}, "`runs` must be one of .*, got 3"),
        ({"runs": 1.0}, "`runs` must be one of .*, got 1.0"),
        ({"runs": "random"}, "`runs='random'` needs a `seed`, got None"),
    ],
)
def test_bad_target_arguments_are_refused(arguments, message):
    data, _ = three_run_dataset()
    with pytest.raises(ValueError, match=message):
        data.targets(**arguments)
