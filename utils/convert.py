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
    OP_LABELS,
    OUTPUT,
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

# What a worker keeps of a record: its hash as 16 bytes, a number that
# encodes its spec (see _spec_key), its byte offset, budget index, parameter
# count (-1 if absent) and the 8 metrics (halfway, then final).
_ROW = struct.Struct("<16sqqqq8d")
_ROW_DTYPE = np.dtype(
    [
        ("hash", "V16"),
        ("spec", "<i8"),
        ("offset", "<i8"),
        ("budget", "<i8"),
        ("parameters", "<i8"),
        ("metrics", "<f8", (8,)),
    ]
)
_TABLE_DTYPE = np.dtype(
    [
        ("hash", "V16"),
        ("spec", "<i8"),
        ("offset", "<i8"),
        ("budget", "i1"),
        ("parameters", "<i8"),
        ("metrics", "<f4", (8,)),
    ]
)

# A spec key packs a well-formed spec into one integer: the matrix read as a
# binary number (at most 49 bits), then the inner ops as base-3 digits (at
# most 3**5 = 243 values, 8 bits), then V (3 bits).
_OPS_BITS, _V_BITS = 8, 3
_OP_DIGIT = {label: digit for digit, label in enumerate(OP_LABELS)}
_OPS_KEYS: dict[str, int] = {}  # raw_operations -> its part of the key

# Cells this process has checked: hash -> (raw spec, 16-byte hash, spec key).
# Records of a cell may lie anywhere in a file, so the memory spans blocks;
# it is bounded by the size of the space (a few hundred MB at most).
_SEEN: dict[str, tuple] = {}
_SEEN_LIMIT = 500_000


def _spec_key(raw_adjacency: str, raw_operations: str) -> int:
    """The spec key of a spec already checked by ``check_cell``."""
    ops = _OPS_KEYS.get(raw_operations)
    if ops is None:
        labels = raw_operations.split(",")
        digits = 0
        for label in reversed(labels[1:-1]):
            digits = digits * 3 + _OP_DIGIT[label]
        ops = _OPS_KEYS[raw_operations] = (digits << _V_BITS) | len(labels)
    return (int(raw_adjacency, 2) << (_OPS_BITS + _V_BITS)) | ops


def _unpack_specs(keys: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
    """Fill num_vertices, adjacency and operations from spec keys."""
    v_all = (keys & ((1 << _V_BITS) - 1)).astype(np.int8)
    ops_all = (keys >> _V_BITS) & ((1 << _OPS_BITS) - 1)
    bits_all = keys >> (_OPS_BITS + _V_BITS)
    arrays["num_vertices"][:] = v_all
    for v in np.unique(v_all):
        rows = np.flatnonzero(v_all == v)
        # Character k of raw_adjacency is bit v*v-1-k of the number: the last
        # v*v of its 64 bits, most significant first.
        as_bytes = bits_all[rows].astype(">u8").view(np.uint8).reshape(-1, 8)
        matrix = np.unpackbits(as_bytes, axis=1)[:, 64 - v * v :]
        arrays["adjacency"][rows, :v, :v] = matrix.reshape(-1, v, v)

        codes = np.full((len(rows), v), INPUT, dtype=np.int8)
        digits = ops_all[rows]
        for vertex in range(1, v - 1):
            codes[:, vertex] = digits % 3
            digits = digits // 3
        codes[:, v - 1] = OUTPUT
        arrays["operations"][rows, :v] = codes


def decode_block(block: bytes, first_index: int, first_offset: int) -> np.ndarray:
    """Decode a block of whole records into a table, one row a record.

    The block comes from :func:`utils.tfrecord.iter_blocks`; the table has
    the fields of ``_TABLE_DTYPE``. A cell's fields are checked when this
    process first meets its hash with that spec, and remembered (up to the
    size of the space); whether all records of a cell agree is left to the
    caller, who sees every block.
    """
    rows = []
    pack = _ROW.pack
    seen = _SEEN
    if len(seen) > _SEEN_LIMIT:
        seen.clear()

    for index, offset, payload in iter_frames(block, first_index, first_offset):
        module_hash, epochs, raw_adjacency, raw_operations, raw_metrics = parse_payload(
            payload, index, offset
        )
        cell = seen.get(module_hash)
        if cell is None or cell[0] != (raw_adjacency, raw_operations):
            check_cell(module_hash, raw_adjacency, raw_operations, index, offset)
            spec = (raw_adjacency, raw_operations)
            cell = (spec, bytes.fromhex(module_hash), _spec_key(*spec))
            seen[module_hash] = cell

        count, values = decode_metrics(raw_metrics, index, offset)
        rows.append(
            pack(cell[1], cell[2], offset, _BUDGET_INDEX[epochs], count, *values)
        )

    decoded = np.frombuffer(b"".join(rows), dtype=_ROW_DTYPE)
    table = np.empty(len(decoded), dtype=_TABLE_DTYPE)
    for name in _TABLE_DTYPE.names:
        table[name] = decoded[name]
    return table


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


def _first_violation(table, violation: np.ndarray, order=None) -> tuple[int, int]:
    """(record index, byte offset) of the first record in `violation`.

    `violation` is a mask over `order` (the records in some order); the
    first record is the one earliest in the file.
    """
    positions = np.flatnonzero(violation)
    records = positions if order is None else order[positions]
    record = int(records.min())
    return record, int(table["offset"][record])


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex(raw: np.ndarray) -> np.ndarray:
    """16-byte hashes (n,) as their 32 lowercase hex digits, dtype S32."""
    nibbles = np.ascontiguousarray(raw).view(np.uint8).reshape(-1, 16)
    digits = np.stack([nibbles >> 4, nibbles & 15], axis=2).reshape(-1, 32)
    return _HEX_DIGITS[digits].view("S32").ravel()


def _hash_text(raw: np.void) -> str:
    return bytes(raw).hex()


def assemble(table: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Schema-v1 arrays from the records of a file, in file order.

    Returns the arrays and the number of runs of each cell at each budget,
    shape (n_cells, 4).

    Groups records into cells (rows sorted by hash), numbers the runs of each
    (cell, budget) in file order, and checks that all records of a cell agree
    on spec and parameter count.

    Raises
    ------
    RecordError
        Naming the first record that disagrees with an earlier record of its
        cell, or that is a fourth run.
    """
    n_records = len(table)

    # Sort records by hash, keeping file order within a cell (stable sorts);
    # big-endian words sort as the hex text does. The first word almost
    # always tells cells apart; both are used only where it does not.
    words = np.ascontiguousarray(table["hash"]).view(">u8").reshape(n_records, 2)
    order = np.argsort(words[:, 0], kind="stable")
    sorted_words = words[order]
    same_first = np.diff(sorted_words[:, 0]) == 0
    if (same_first & (np.diff(sorted_words[:, 1]) != 0)).any():
        order = np.lexsort((words[:, 1], words[:, 0]))
        sorted_words = words[order]
    starts = np.r_[True, (np.diff(sorted_words, axis=0) != 0).any(axis=1)]
    group = np.cumsum(starts) - 1  # cell of each sorted record
    first = np.flatnonzero(starts)  # sorted position of each cell's first record
    n_cells = len(first)
    cell_of = np.empty(n_records, dtype=np.int64)
    cell_of[order] = group

    # All records of a cell agree with its first record on the spec.
    specs = table["spec"][order]
    clash = specs != specs[first][group]
    if clash.any():
        record, offset = _first_violation(table, clash, order)
        raise RecordError(
            f"cell {_hash_text(table['hash'][record])} has a different matrix or "
            "ops here than in its earlier records; all records of a cell must agree",
            record,
            offset,
        )

    # Parameter counts: the first known count of a cell binds the rest.
    parameters = table["parameters"][order]
    known = parameters >= 0
    position = np.where(known, np.arange(n_records), n_records)
    first_known = np.minimum.reduceat(position, first)
    reference = np.append(parameters, -1)[first_known]
    clash = known & (parameters != reference[group])
    if clash.any():
        record, offset = _first_violation(table, clash, order)
        sorted_at = int(np.flatnonzero(order == record)[0])
        count = table["parameters"][record]
        raise RecordError(
            f"cell {_hash_text(table['hash'][record])} has {count} trainable "
            f"parameters here and {reference[group[sorted_at]]} in an "
            "earlier record; all records of a cell must agree",
            record,
            offset,
        )

    # Runs of a (cell, budget) are numbered in file order: in sorted order,
    # count the earlier records of the same budget within the cell.
    budgets = table["budget"][order]
    run_sorted = np.empty(n_records, dtype=np.int64)
    for budget in range(len(EPOCHS)):
        mine = budgets == budget
        count = np.cumsum(mine)
        before = np.r_[0, count][first]  # records of this budget before each cell
        run_sorted[mine] = count[mine] - 1 - before[group[mine]]
    run = np.empty(n_records, dtype=np.int64)
    run[order] = run_sorted
    if (run >= REPEATS).any():
        record, offset = _first_violation(table, run >= REPEATS)
        raise RecordError(
            f"cell {_hash_text(table['hash'][record])} has a run number "
            f"{run[record] + 1} at {EPOCHS[table['budget'][record]]} epochs; "
            f"expected at most {REPEATS}",
            record,
            offset,
        )

    # The arrays, one row a cell in hash order.
    arrays = empty_arrays(n_cells)
    first_records = order[first]
    arrays["hash"][:] = _hex(table["hash"][first_records])
    arrays["trainable_parameters"][:] = reference
    _unpack_specs(table["spec"][first_records], arrays)
    metrics = table["metrics"].reshape(n_records, 2, 4)
    arrays["metrics"][cell_of, table["budget"], run] = metrics

    slot = cell_of * len(EPOCHS) + table["budget"]
    runs = np.bincount(slot, minlength=n_cells * len(EPOCHS))
    return arrays, runs.reshape(n_cells, len(EPOCHS))


def _summary(runs, source: str, n_records: int, seconds: float) -> ConversionSummary:
    return ConversionSummary(
        source=source,
        n_records=n_records,
        n_cells=len(runs),
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
    tables: list[np.ndarray] = []
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
            tables.append(decode_block(block, first_index, first_offset))
            bar.update(len(block))
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            pending: deque = deque()

            def take_one():
                size, future = pending.popleft()
                tables.append(future.result())
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

    _SEEN.clear()
    table = np.concatenate(tables) if tables else np.empty(0, _TABLE_DTYPE)
    tables.clear()  # the blocks' own tables are no longer needed
    arrays, runs = assemble(table)
    summary = _summary(runs, path.name, len(table), time.perf_counter() - started)
    return arrays, summary
