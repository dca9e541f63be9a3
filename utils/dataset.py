"""NAS-Bench-101 as columns in memory: look-ups by hash or spec, and targets.

:class:`NASBench101` holds one row per cell, the columns of schema v1
(:mod:`utils.schema`)::

    hash                  str  (n_cells,)              module hash, 32 hex digits
    num_vertices          int8 (n_cells,)              V, 2..7
    adjacency             int8 (n_cells, 7, 7)         matrix, top-left V x V
    operations            int8 (n_cells, 7)            op codes, -3 beyond V
    trainable_parameters  int32 (n_cells,)             absent for structures only
    metrics               float32 (n_cells, 4, 3, 2, 4)
                          [cell, budget, run, point, metric], NaN = not measured

Example::

    data = NASBench101.from_hdf5("data/nasbench_only108.hdf5")
    y, n_runs = data.targets(budget=108, metric="validation_accuracy")
    row = data.find(matrix, ops)          # prunes and hashes the spec

Loading reads every column in bulk; there is no per-cell Python work, so the
423,624 cells of the full space load in well under a second.

A dataset built from structures only (the space file ``space-423k.npz``, with
``hash``, ``num_vertices``, ``adjacency`` and ``operations``) has no
``trainable_parameters`` and no ``metrics``; asking for them raises a
:class:`ValueError` that says so, rather than returning a column of NaN.

Targets
-------
:meth:`NASBench101.targets` returns one value per cell and the number of
training runs it rests on. NaN means "not measured". ``runs`` decides how the
up to three runs of a cell weigh:

``"mean"``
    the mean over the runs that were measured (``n_runs`` of them);
``0``, ``1`` or ``2``
    that run only;
``"first"``
    the first measured run;
``"random"``
    one measured run per cell, drawn with ``seed`` (required), like the
    published API's ``query()``.

A (budget, metric, point) label without any value in the whole dataset (for
example ``test_accuracy`` in ``sample-20k.h5``) is refused with a message
that lists the labels that have data; :meth:`NASBench101.available_labels`
lists them too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from utils.cells import Cell, check_in_space
from utils.schema import (
    DATASETS,
    EPOCHS,
    EVALUATION_POINTS,
    METRIC_NAMES,
    REPEATS,
    empty_arrays,
    read_hdf5,
)

__all__ = ["Label", "NASBench101", "RUN_CHOICES"]

logger = logging.getLogger(__name__)

RUN_CHOICES = ("mean", "first", "random", *range(REPEATS))

# Columns every dataset has, and those a structures-only one lacks.
_STRUCTURE = ("hash", "num_vertices", "adjacency", "operations")
_MEASURED = ("trainable_parameters", "metrics")


def _as_keys(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hashes as S32 bytes for look-ups, and a mask of those too long for it."""
    if hashes.dtype.kind not in "SU":
        hashes = hashes.astype(str)
    too_long = np.char.str_len(hashes) > 32
    if hashes.dtype.itemsize == 32 and hashes.dtype.kind == "S":
        return hashes, too_long
    try:
        return np.where(too_long, "", hashes).astype("S32"), too_long
    except UnicodeEncodeError:
        raise ValueError("hashes must be ASCII hex digits, got other text") from None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Label(NamedTuple):
    """A (budget, metric, point) combination that has data.

    Attributes
    ----------
    budget : int
        Training epochs, one of 4, 12, 36, 108.
    metric : str
        One of ``METRIC_NAMES``.
    point : str
        ``"halfway"`` or ``"final"``.
    n_cells : int
        Cells with at least one measured run.
    max_runs : int
        Most runs measured for one cell.
    """

    budget: int
    metric: str
    point: str
    n_cells: int
    max_runs: int


class NASBench101:
    """Cells of NAS-Bench-101 and their training results, as columns.

    Build one with :meth:`from_hdf5`, :meth:`from_npz` or :meth:`from_arrays`;
    the constructor takes the columns themselves.

    Parameters
    ----------
    hash : array-like of shape (n_cells,)
        Module hashes, str or bytes; must be distinct.
    num_vertices : array-like of shape (n_cells,)
    adjacency : array-like of shape (n_cells, 7, 7)
    operations : array-like of shape (n_cells, 7)
    trainable_parameters : array-like of shape (n_cells,), optional
        None for a dataset of structures only.
    metrics : array-like of shape (n_cells, 4, 3, 2, 4), optional
        None for a dataset of structures only.
    source : str, optional
        Where the data came from, for messages and ``repr``.

    Raises
    ------
    ValueError
        If a column has the wrong shape or a hash appears twice.

    Notes
    -----
    The columns are read-only views of the arrays given (copies where a dtype
    had to change); change those arrays afterwards and the dataset, and the
    encodings cached for it, go out of step.

    Rows are kept in the order given. Look-ups by hash use binary search on
    the hash column when it is sorted (as in schema-v1 files) and on a sorting
    permutation, computed once, when it is not (as after :meth:`subset` with
    unsorted indices).
    """

    def __init__(
        self,
        hash,
        num_vertices,
        adjacency,
        operations,
        trainable_parameters=None,
        metrics=None,
        source: str = "arrays",
    ):
        hashes = np.asarray(hash)
        if hashes.ndim != 1:
            raise ValueError(
                f"column `hash` must have shape (n_cells,), got {hashes.shape}"
            )
        hashes, too_long = _as_keys(hashes)
        if too_long.any():
            raise ValueError(
                f"hashes must have at most 32 characters, got "
                f"{_text(np.asarray(hash)[too_long][0].item())!r}"
            )
        n_cells = len(hashes)

        columns = {
            "hash": hashes,
            "num_vertices": np.asarray(num_vertices, dtype=np.int8),
            "adjacency": np.asarray(adjacency, dtype=np.int8),
            "operations": np.asarray(operations, dtype=np.int8),
        }
        if trainable_parameters is not None:
            columns["trainable_parameters"] = np.asarray(
                trainable_parameters, dtype=np.int32
            )
        if metrics is not None:
            columns["metrics"] = np.asarray(metrics, dtype=np.float32)

        # Shapes follow the schema; the cell axis is the hash column's.
        for name, array in columns.items():
            expected = (n_cells, *DATASETS[name][1])
            if array.shape != expected:
                raise ValueError(
                    f"column `{name}` must have shape {expected}, "
                    f"got {tuple(array.shape)}"
                )
        # Read-only views: the caller's own arrays keep their flags.
        for name, array in columns.items():
            columns[name] = array.view()
            columns[name].setflags(write=False)

        self._columns = columns
        self.source = source
        self.attrs: dict = {}
        self._sorter = None
        self._labels = None
        self._hash_text = None

        # Binary search needs the hashes in order; find duplicates on the way.
        if n_cells > 1 and not np.all(hashes[1:] > hashes[:-1]):
            self._sorter = np.argsort(hashes, kind="stable")
            ordered = hashes[self._sorter]
            same = np.flatnonzero(ordered[1:] == ordered[:-1])
            if len(same):
                repeated = ordered[same[0]]
                raise ValueError(
                    f"hashes must be distinct, got {repeated.decode()} "
                    f"{int(np.sum(hashes == repeated))} times"
                )
        logger.debug("dataset of %d cells from %s", n_cells, source)

    # -- construction ---------------------------------------------------------

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], source: str = "arrays"
    ) -> NASBench101:
        """A dataset from a mapping of schema-v1 column names to arrays.

        ``hash``, ``num_vertices``, ``adjacency`` and ``operations`` are
        required; ``trainable_parameters`` and ``metrics`` are optional.
        Other keys are ignored.

        Raises
        ------
        ValueError
            If a required column is missing or a column is malformed.
        """
        missing = [name for name in _STRUCTURE if name not in arrays]
        if missing:
            raise ValueError(
                f"missing column(s) {', '.join(missing)}; expected at least "
                f"{', '.join(_STRUCTURE)}"
            )
        return cls(
            **{name: arrays[name] for name in _STRUCTURE},
            **{name: arrays.get(name) for name in _MEASURED},
            source=source,
        )

    @classmethod
    def from_cells(
        cls, cells, trainable_parameters=None, metrics=None, source: str = "cells"
    ) -> NASBench101:
        """A dataset of the given cells, in their order, e.g. search candidates.

        Each :class:`utils.cells.Cell` is stored as it is (prune it first to
        match the dataset's rows). Without `trainable_parameters` the dataset
        holds structures only; `metrics`, shape (n_cells, 4, 3, 2, 4), needs
        them too and defaults to all NaN.
        """
        cells = list(cells)
        arrays = empty_arrays(len(cells))
        for row, cell in enumerate(cells):
            adjacency, operations, n = cell.to_row()
            arrays["adjacency"][row] = adjacency
            arrays["operations"][row] = operations
            arrays["num_vertices"][row] = n
            arrays["hash"][row] = cell.module_hash()
        if trainable_parameters is None:
            del arrays["trainable_parameters"], arrays["metrics"]
        else:
            arrays["trainable_parameters"][:] = trainable_parameters
            if metrics is not None:
                arrays["metrics"][:] = metrics
        return cls.from_arrays(arrays, source=source)

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike) -> NASBench101:
        """Load a schema-v1 HDF5 file (see :func:`utils.schema.read_hdf5`).

        Raises
        ------
        FileNotFoundError
            If `path` does not exist.
        utils.schema.SchemaError
            If the file does not follow schema v1.
        """
        arrays, attrs = read_hdf5(path)
        data = cls.from_arrays(arrays, source=str(path))
        data.attrs = attrs
        logger.info("loaded %d cells from %s", len(data), path)
        return data

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> NASBench101:
        """Load a ``.npz`` file of schema-v1 columns, such as the space file.

        Raises
        ------
        FileNotFoundError
            If `path` does not exist.
        ValueError
            If a required column is missing or malformed.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        data = cls.from_arrays(arrays, source=str(path))
        logger.info("loaded %d cells from %s", len(data), path)
        return data

    # -- columns --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._columns["hash"])

    def __repr__(self) -> str:
        kind = "with metrics" if self.has_metrics else "structures only"
        return f"NASBench101({len(self)} cells, {kind}, source={self.source!r})"

    @property
    def hash(self) -> np.ndarray:
        """Module hashes, str array of shape (n_cells,).

        The bytes of the file are kept for look-ups; the str array is made
        on first use (about 0.1 s for the full space).
        """
        if self._hash_text is None:
            self._hash_text = self._columns["hash"].astype("U32")
            self._hash_text.setflags(write=False)
        return self._hash_text

    @property
    def num_vertices(self) -> np.ndarray:
        """Vertex counts V, int8 array of shape (n_cells,)."""
        return self._columns["num_vertices"]

    @property
    def adjacency(self) -> np.ndarray:
        """Pruned matrices, int8 array of shape (n_cells, 7, 7), top-left V x V."""
        return self._columns["adjacency"]

    @property
    def operations(self) -> np.ndarray:
        """Op codes, int8 array of shape (n_cells, 7), -3 beyond V."""
        return self._columns["operations"]

    @property
    def has_trainable_parameters(self) -> bool:
        """Whether the dataset holds parameter counts."""
        return "trainable_parameters" in self._columns

    @property
    def has_metrics(self) -> bool:
        """Whether the dataset holds training results."""
        return "metrics" in self._columns

    @property
    def trainable_parameters(self) -> np.ndarray:
        """Parameter counts, int32 array of shape (n_cells,).

        Raises
        ------
        ValueError
            If the dataset holds structures only.
        """
        return self._measured("trainable_parameters")

    @property
    def metrics(self) -> np.ndarray:
        """Training results, float32 (n_cells, 4, 3, 2, 4), NaN = not measured.

        Raises
        ------
        ValueError
            If the dataset holds structures only.
        """
        return self._measured("metrics")

    def _measured(self, name: str) -> np.ndarray:
        if name not in self._columns:
            raise ValueError(
                f"this dataset has no `{name}`: it holds structures only "
                f"(hash, num_vertices, adjacency, operations), from {self.source}"
            )
        return self._columns[name]

    def cell(self, index: int) -> Cell:
        """The cell of row `index`."""
        return Cell.from_row(
            self.adjacency[index], self.operations[index], self.num_vertices[index]
        )

    def subset(self, indices) -> NASBench101:
        """A new dataset of the rows `indices` (ints or a boolean mask), in order.

        Raises
        ------
        ValueError
            If an index appears twice (hashes must stay distinct).
        """
        indices = np.asarray(indices)
        if indices.dtype == bool and indices.shape != (len(self),):
            raise ValueError(
                f"a boolean mask must have shape ({len(self)},), "
                f"got {tuple(indices.shape)}"
            )
        data = NASBench101(
            **{name: column[indices] for name, column in self._columns.items()},
            source=f"{self.source} (subset)",
        )
        data.attrs = self.attrs
        return data

    # -- look-ups -------------------------------------------------------------

    def index_of(self, module_hash):
        """Row of a module hash, or rows of an array of hashes.

        Parameters
        ----------
        module_hash : str or array-like of str
            32 hex digits each; bytes are accepted too.

        Returns
        -------
        int, or ndarray of shape like `module_hash`, int64

        Raises
        ------
        KeyError
            If a hash is not in the dataset; the message names it (the first
            few, and how many, for an array).
        """
        scalar = np.ndim(module_hash) == 0
        text = np.atleast_1d(np.asarray(module_hash))
        wanted, too_long = _as_keys(text)

        # Binary search, then check that the row found holds the hash.
        keys = self._columns["hash"]
        if len(self):
            position = np.searchsorted(keys, wanted, sorter=self._sorter)
            position = np.minimum(position, len(self) - 1)
            rows = position if self._sorter is None else self._sorter[position]
            found = (keys[rows] == wanted) & ~too_long
        else:
            rows = np.zeros(wanted.shape, dtype=np.intp)
            found = np.zeros(wanted.shape, dtype=bool)

        if not np.all(found):
            unknown = [_text(value) for value in text[~found][:3].tolist()]
            if scalar:
                raise KeyError(f"hash {unknown[0]} is not in the dataset")
            n_unknown = int(np.count_nonzero(~found))
            more = f" and {n_unknown - 3} more" if n_unknown > 3 else ""
            raise KeyError(
                f"{n_unknown} of {text.size} hashes are not in the dataset: "
                f"{', '.join(unknown)}{more}"
            )

        rows = rows.astype(np.int64)
        return int(rows[0]) if scalar else rows

    def find(self, matrix, ops) -> int:
        """Row of the cell given by a spec; the spec is pruned and hashed first.

        Raises
        ------
        ValueError
            If the spec is malformed.
        utils.cells.OutOfSpaceError
            If the pruned spec is outside the space.
        KeyError
            If the cell is not in the dataset.
        """
        cell = Cell(matrix, ops).pruned()
        check_in_space(cell.matrix, cell.ops)
        return self.index_of(cell.module_hash())

    # -- targets --------------------------------------------------------------

    def available_labels(self) -> list[Label]:
        """The (budget, metric, point) labels that have data, with counts.

        Returns
        -------
        list of Label
            In the order of the schema's axes; empty for structures only.
        """
        if not self.has_metrics:
            return []
        if self._labels is None:
            # runs[n, budget, point, metric]: measured runs of each cell.
            runs = np.sum(~np.isnan(self.metrics), axis=2, dtype=np.int8)
            n_cells = np.count_nonzero(runs, axis=0)
            max_runs = runs.max(axis=0, initial=0)
            self._labels = [
                Label(
                    budget, metric, point, int(n_cells[b, p, m]), int(max_runs[b, p, m])
                )
                for b, budget in enumerate(EPOCHS)
                for p, point in enumerate(EVALUATION_POINTS)
                for m, metric in enumerate(METRIC_NAMES)
                if n_cells[b, p, m]
            ]
        return list(self._labels)

    def targets(
        self,
        budget: int = 108,
        metric: str = "validation_accuracy",
        point: str = "final",
        runs: str | int = "mean",
        seed: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One value per cell for a (budget, metric, point) label.

        Parameters
        ----------
        budget : {4, 12, 36, 108}
            Training epochs.
        metric : str
            One of ``training_time``, ``train_accuracy``,
            ``validation_accuracy``, ``test_accuracy``.
        point : {"final", "halfway"}
        runs : {"mean", "first", "random"} or {0, 1, 2}
            How the runs of a cell weigh (see the module docstring).
        seed : int, optional
            Seed of the draw; required with ``runs="random"``.

        Returns
        -------
        values : ndarray of shape (n_cells,), float64
            NaN where no run was measured.
        n_runs : ndarray of shape (n_cells,), int64
            Runs each value rests on: 0 where NaN, 1 for a single run.

        Raises
        ------
        ValueError
            If a name is not allowed, the dataset has no metrics, the label
            (or the chosen run) has no data at all, or ``runs="random"`` comes
            without a seed.
        """
        b, m, p = self._label_indices(budget, metric, point)
        is_run_index = isinstance(runs, int | np.integer) and not isinstance(runs, bool)
        if not (runs in RUN_CHOICES and (isinstance(runs, str) or is_run_index)):
            raise ValueError(
                f"`runs` must be one of {', '.join(map(repr, RUN_CHOICES))}, "
                f"got {runs!r}"
            )
        if runs == "random" and seed is None:
            raise ValueError("`runs='random'` needs a `seed`, got None")

        # values[n, run]: every run of the label, NaN where not measured.
        values = self.metrics[:, b, :, p, m].astype(np.float64)
        measured = ~np.isnan(values)
        if not measured.any():
            available = "; ".join(
                f"({label.budget}, {label.metric}, {label.point})"
                for label in self.available_labels()
            )
            raise ValueError(
                f"no data for budget {budget}, metric {metric!r}, point "
                f"{point!r} in {self.source}; labels with data: {available}"
            )

        if runs == "mean":
            n_runs = measured.sum(axis=1)
            total = np.where(measured, values, 0.0).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(n_runs > 0, total / n_runs, np.nan), n_runs

        if runs == "first":
            chosen = np.argmax(measured, axis=1)
        elif runs == "random":
            # A random key per run; unmeasured runs never win.
            keys = np.random.default_rng(seed).random(values.shape)
            chosen = np.argmax(np.where(measured, keys, -1.0), axis=1)
        else:
            if not measured[:, runs].any():
                with_data = np.flatnonzero(measured.any(axis=0)).tolist()
                raise ValueError(
                    f"run {runs} has no data for ({budget}, {metric}, {point}); "
                    f"runs with data: {with_data}"
                )
            chosen = np.full(len(self), runs)

        picked = np.take_along_axis(values, chosen[:, None], axis=1)[:, 0]
        return picked, (~np.isnan(picked)).astype(np.int64)

    def _label_indices(self, budget, metric, point) -> tuple[int, int, int]:
        """Axis indices of a label, or a ValueError naming the allowed set."""
        if budget not in EPOCHS or isinstance(budget, bool):
            raise ValueError(
                f"`budget` must be one of {', '.join(map(str, EPOCHS))}, got {budget!r}"
            )
        if metric not in METRIC_NAMES:
            raise ValueError(
                f"`metric` must be one of {', '.join(METRIC_NAMES)}, got {metric!r}"
            )
        if point not in EVALUATION_POINTS:
            raise ValueError(
                f"`point` must be one of {', '.join(EVALUATION_POINTS)}, got {point!r}"
            )
        self._measured("metrics")
        return (
            EPOCHS.index(budget),
            METRIC_NAMES.index(metric),
            EVALUATION_POINTS.index(point),
        )
