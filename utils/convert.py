"""Convert an official NAS-Bench-101 tfrecord file to a schema-v1 table.

The conversion reads the file once, in blocks of whole records. The main
process walks the record lengths (checking their CRCs) and hands each block
to a pool of worker processes, which check the payload CRCs and decode the
JSON, base64 and protobuf of every record into flat arrays. The main process
then assigns records to cells and runs, checks that every record of a cell
agrees on its spec and parameter count, and fills the schema's arrays.

Order assumptions: none, except that the runs of one (cell, budget) come in
run order. Records of a cell may be spread anywhere in the file.

Example::

    from utils.convert import convert_file
    arrays, summary = convert_file("nasbench_only108.tfrecord", n_jobs=2)
    summary.n_records, summary.n_cells, summary.incomplete   # counts

:func:`convert_file` returns the arrays in memory; ``tfrecord_to_hdf5.py``
writes them with :func:`utils.schema.write_hdf5`.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .schema import (
    EPOCHS,
    INPUT,
    MAX_VERTICES,
    OP_LABELS,
    OUTPUT,
    PADDING,
    REPEATS,
    empty_arrays,
)
from .tfrecord import (
    RecordError,
    check_cell,
    decode_metrics,
    iter_blocks,
    iter_frames,
    parse_payload,
)

__all__ = ["ConversionSummary", "convert_file", "decode_block"]

logger = logging.getLogger(__name__)

_BUDGET_INDEX = {epochs: position for position, epochs in enumerate(EPOCHS)}
_OP_CODES = {"input": INPUT, "output": OUTPUT}
_OP_CODES.update({label: code for code, label in enumerate(OP_LABELS)})

# What a worker keeps of a record: offset, cell (in its block), budget index,
# parameter count and the 8 metrics (halfway, then final).
_ROW = struct.Struct("<qiiq8d")
_ROW_DTYPE = np.dtype(
    [
        ("offset", "<i8"),
        ("cell", "<i4"),
        ("budget", "<i4"),
        ("parameters", "<i8"),
        ("metrics", "<f8", (8,)),
    ]
)


@dataclass
class _Block:
    """What a worker returns for one block of records.

    Per record: the index of its cell among `hashes`, its budget index, its
    parameter count (-1 if absent) and its (2, 4) metrics. Per cell of the
    block: its hash, its raw spec and the record that first showed it.
    """

    first_index: int
    offsets: np.ndarray  # (n,) int64
    cells: np.ndarray  # (n,) int32, into `hashes`
    budgets: np.ndarray  # (n,) int8
    parameters: np.ndarray  # (n,) int64
    metrics: np.ndarray  # (n, 2, 4) float32
    hashes: list[str]
    specs: list[tuple[str, str]]
    first_seen: list[int]


def decode_block(block: bytes, first_index: int, first_offset: int) -> _Block:
    """Decode a block of whole records (see :func:`utils.tfrecord.iter_blocks`)."""
    rows = []  # one packed _ROW a record
    pack = _ROW.pack
    local: dict[str, int] = {}
    hashes, specs, first_seen = [], [], []

    for index, offset, payload in iter_frames(block, first_index, first_offset):
        module_hash, epochs, raw_adjacency, raw_operations, raw_metrics = parse_payload(
            payload, index, offset
        )

        # A cell is checked when the block first meets it; its later records
        # are compared with it here, and with other blocks by the caller.
        cell = local.get(module_hash)
        if cell is None:
            check_cell(module_hash, raw_adjacency, raw_operations, index, offset)
            cell = local[module_hash] = len(hashes)
            hashes.append(module_hash)
            specs.append((raw_adjacency, raw_operations))
            first_seen.append(index)
        elif specs[cell] != (raw_adjacency, raw_operations):
            _spec_conflict(module_hash, index, offset)

        count, halfway, final = decode_metrics(raw_metrics, index, offset)
        rows.append(pack(offset, cell, _BUDGET_INDEX[epochs], count, *halfway, *final))

    table = np.frombuffer(b"".join(rows), dtype=_ROW_DTYPE)
    return _Block(
        first_index=first_index,
        offsets=table["offset"],
        cells=table["cell"],
        budgets=table["budget"].astype(np.int8),
        parameters=table["parameters"],
        metrics=table["metrics"].astype(np.float32).reshape(-1, 2, 4),
        hashes=hashes,
        specs=specs,
        first_seen=first_seen,
    )


def _spec_conflict(module_hash: str, index: int, offset: int):
    raise RecordError(
        f"cell {module_hash} has a different matrix or ops here than in its "
        "earlier records; all records of a cell must agree",
        index,
        offset,
    )


@dataclass
class ConversionSummary:
    """Counts from one conversion."""

    source: str
    n_records: int = 0
    n_cells: int = 0
    seconds: float = 0.0
    # budget (epochs) -> cells with at least one run at that budget
    cells_per_budget: dict[int, int] = field(default_factory=dict)
    # budget (epochs) -> cells with 1 or 2 runs (fewer than REPEATS)
    incomplete: dict[int, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The summary as lines for a log."""
        rate = self.n_records / self.seconds if self.seconds else float("nan")
        lines = [
            f"{self.n_records:,} records, {self.n_cells:,} cells in "
            f"{self.seconds:.1f} s ({rate:,.0f} records/s)"
        ]
        for epochs in EPOCHS:
            lines.append(
                f"  {epochs:>3} epochs: {self.cells_per_budget.get(epochs, 0):,} "
                f"cells, {self.incomplete.get(epochs, 0):,} with fewer than "
                f"{REPEATS} runs"
            )
        return lines


class _Merger:
    """Gathers decoded blocks into cells and runs, checking agreement."""

    def __init__(self):
        self.cell_of: dict[str, int] = {}  # module hash -> global cell
        self.specs: list[tuple[str, str]] = []
        self.parameters = np.full(1024, -1, dtype=np.int64)
        self.runs = np.zeros((1024, len(EPOCHS)), dtype=np.int8)
        # Records are kept as (cell, budget, run) and metrics, filled at the end.
        self.keys: list[np.ndarray] = []
        self.metrics: list[np.ndarray] = []
        self.n_records = 0

    def _grow(self, n_cells: int):
        if n_cells <= len(self.parameters):
            return
        size = max(n_cells, 2 * len(self.parameters))
        self.parameters = np.concatenate(
            [self.parameters, np.full(size - len(self.parameters), -1, np.int64)]
        )
        self.runs = np.concatenate(
            [self.runs, np.zeros((size - len(self.runs), len(EPOCHS)), np.int8)]
        )

    def add(self, block: _Block):
        # Map the block's cells to global cells, comparing specs.
        mapping = np.empty(len(block.hashes), dtype=np.int64)
        for local, module_hash in enumerate(block.hashes):
            cell = self.cell_of.get(module_hash)
            if cell is None:
                cell = self.cell_of[module_hash] = len(self.specs)
                self.specs.append(block.specs[local])
            elif self.specs[cell] != block.specs[local]:
                index = block.first_seen[local]
                offset = block.offsets[index - block.first_index]
                _spec_conflict(module_hash, index, int(offset))
            mapping[local] = cell
        self._grow(len(self.specs))
        cells = mapping[block.cells]

        # Parameter counts: the first known count of a cell binds the rest.
        known = block.parameters >= 0
        unset = known & (self.parameters[cells] < 0)
        self.parameters[cells[unset][::-1]] = block.parameters[unset][::-1]
        clash = known & (block.parameters != self.parameters[cells])
        if clash.any():
            k = int(np.argmax(clash))
            raise RecordError(
                f"cell {self._hash(cells[k])} has {block.parameters[k]} "
                f"trainable parameters here and {self.parameters[cells[k]]} in "
                "another record; all records of a cell must agree",
                block.first_index + k,
                int(block.offsets[k]),
            )

        # Runs of a (cell, budget) are numbered in file order.
        slot = cells * len(EPOCHS) + block.budgets
        order = np.argsort(slot, kind="stable")
        sorted_slot = slot[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_slot)) + 1]
        group = np.repeat(starts, np.diff(np.r_[starts, len(slot)]))
        rank = np.empty(len(slot), dtype=np.int64)
        rank[order] = np.arange(len(slot)) - group
        run = self.runs[cells, block.budgets] + rank
        if (run >= REPEATS).any():
            k = int(np.argmax(run >= REPEATS))
            raise RecordError(
                f"cell {self._hash(cells[k])} has a run number {run[k] + 1} at "
                f"{EPOCHS[block.budgets[k]]} epochs; expected at most {REPEATS}",
                block.first_index + k,
                int(block.offsets[k]),
            )
        np.add.at(self.runs, (cells, block.budgets), 1)

        self.keys.append(np.stack([cells, block.budgets, run], axis=1))
        self.metrics.append(block.metrics)
        self.n_records += len(cells)

    def _hash(self, cell: int) -> str:
        return next(h for h, c in self.cell_of.items() if c == cell)

    def arrays(self) -> dict[str, np.ndarray]:
        """The schema-v1 arrays, rows sorted by hash."""
        n_cells = len(self.specs)
        hashes = np.array(list(self.cell_of), dtype="S32")
        order = np.argsort(hashes)
        arrays = empty_arrays(n_cells)
        arrays["hash"][:] = hashes[order]

        # Metrics go to their (cell, budget, run) in file order of cells.
        metrics = np.full((n_cells, *arrays["metrics"].shape[1:]), np.nan, np.float32)
        if self.keys:
            keys = np.concatenate(self.keys)
            metrics[keys[:, 0], keys[:, 1], keys[:, 2]] = np.concatenate(self.metrics)
        arrays["metrics"][:] = metrics[order]
        arrays["trainable_parameters"][:] = self.parameters[:n_cells][order]

        # Specs: the raw strings become padded matrices and op codes, a group
        # of cells with the same vertex count at a time.
        raw_adjacency = [self.specs[cell][0] for cell in order]
        lengths = np.fromiter(map(len, raw_adjacency), np.int64, n_cells)
        num_vertices = np.rint(np.sqrt(lengths)).astype(np.int8)
        arrays["num_vertices"][:] = num_vertices
        for v in np.unique(num_vertices):
            rows = np.flatnonzero(num_vertices == v)
            text = "".join([raw_adjacency[row] for row in rows]).encode()
            flat = np.frombuffer(text, dtype=np.uint8) - ord("0")
            arrays["adjacency"][rows, :v, :v] = flat.reshape(-1, v, v)

        raw_operations = np.array([self.specs[cell][1] for cell in order])
        distinct, inverse = np.unique(raw_operations, return_inverse=True)
        codes = np.full((len(distinct), MAX_VERTICES), PADDING, dtype=np.int8)
        for row, labels in enumerate(distinct):
            labels = labels.split(",")
            codes[row, : len(labels)] = [_OP_CODES[label] for label in labels]
        arrays["operations"][:] = codes[inverse.ravel()]
        return arrays

    def summary(self, source: str, seconds: float) -> ConversionSummary:
        runs = self.runs[: len(self.specs)]
        return ConversionSummary(
            source=source,
            n_records=self.n_records,
            n_cells=len(self.specs),
            seconds=seconds,
            cells_per_budget={
                epochs: int((runs[:, b] > 0).sum()) for b, epochs in enumerate(EPOCHS)
            },
            incomplete={
                epochs: int(((runs[:, b] > 0) & (runs[:, b] < REPEATS)).sum())
                for b, epochs in enumerate(EPOCHS)
            },
        )


def convert_file(
    path: str | os.PathLike,
    n_jobs: int | None = None,
    block_size: int = 1 << 22,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], ConversionSummary]:
    """Read an official NAS-Bench-101 tfrecord file into schema-v1 arrays.

    Parameters
    ----------
    path : str or path-like
        ``nasbench_full.tfrecord``, ``nasbench_only108.tfrecord`` or any file
        of records in their layout (a part of one, another training's).
    n_jobs : int, optional
        Worker processes that decode blocks; 1 decodes in this process.
        Default: the number of usable cores.
    block_size : int
        Bytes per block handed to a worker.
    progress : bool
        Show a progress bar of bytes read.

    Returns
    -------
    arrays : dict of str to ndarray
        The schema-v1 datasets (see :mod:`utils.schema`), rows sorted by hash.
    summary : ConversionSummary
        Counts of records, cells and incomplete cells, and the time taken.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    RecordError
        On an empty, truncated or corrupt file, or a record that is not in
        the layout, naming the record and its byte offset.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise RecordError(f"{path} is empty: expected TFRecord records")
    if n_jobs is None:
        n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    n_jobs = max(1, int(n_jobs))

    started = time.perf_counter()
    merger = _Merger()
    bar = tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        desc=f"reading {path.name}",
        disable=not progress,
    )
    blocks = iter_blocks(path, block_size)
    if n_jobs == 1:
        for first_index, first_offset, block in blocks:
            merger.add(decode_block(block, first_index, first_offset))
            bar.update(len(block))
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            pending: deque = deque()

            def take_one():
                size, future = pending.popleft()
                merger.add(future.result())
                bar.update(size)

            try:
                for first_index, first_offset, block in blocks:
                    future = pool.submit(decode_block, block, first_index, first_offset)
                    pending.append((len(block), future))
                    # A bounded queue keeps memory flat however large the file.
                    if len(pending) > 2 * n_jobs:
                        take_one()
            except RecordError:
                # Blocks still pending lie before this error in the file, so
                # an error of theirs is the one to report.
                while pending:
                    take_one()
                raise
            while pending:
                take_one()
    bar.close()

    arrays = merger.arrays()
    summary = merger.summary(path.name, time.perf_counter() - started)
    return arrays, summary
