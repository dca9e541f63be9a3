"""Benchmark: converting a full-layout tfrecord file to HDF5.

Writes a file in the layout of ``nasbench_full.tfrecord`` with the project's
own writer (real cell structures from the space file when it is there,
random cells otherwise; 4 budgets x 3 runs of random metrics per cell, base64
wrapped at 76 characters, cells interleaved as budgets and runs), then runs
``tfrecord_to_hdf5.py`` on it in a child process and reports the time,
records per second and the peak memory of the converter with its workers.

    python benchmarks/bench_convert.py                    # 40,000 cells
    python benchmarks/bench_convert.py --cells 423624     # the full file's size

Targets on a 2-core machine: at least 150,000 records/s end to end and a
peak under 2 GB for the full file (5,083,488 records).
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.schema import EPOCHS, OP_LABELS, REPEATS  # noqa: E402
from utils.tfrecord import TFRecordWriter, model_metrics_class  # noqa: E402

LABELS = {-1: "input", -2: "output", **dict(enumerate(OP_LABELS))}


def cell_structures(n_cells: int, space: Path, rng) -> list[tuple[str, str, str]]:
    """(module_hash, raw_adjacency, raw_operations) of `n_cells` cells."""
    if space.exists():
        data = np.load(space)
        rows = np.sort(rng.choice(len(data["hash"]), size=n_cells, replace=False))
        hashes = data["hash"][rows]
        num_vertices = data["num_vertices"][rows]
        adjacency, operations = data["adjacency"][rows], data["operations"][rows]
    else:
        print(f"{space} not found: using random cells")
        hashes = np.array([f"{k:032x}".encode() for k in rng.permutation(n_cells)])
        num_vertices = np.full(n_cells, 7)
        adjacency = np.triu(rng.integers(0, 2, (n_cells, 7, 7)), 1)
        operations = np.full((n_cells, 7), -1)
        operations[:, 1:6] = rng.integers(0, 3, (n_cells, 5))
        operations[:, 6] = -2

    cells = []
    for h, v, matrix, ops in zip(
        hashes, num_vertices, adjacency, operations, strict=True
    ):
        raw_adjacency = "".join(map(str, matrix[:v, :v].ravel().tolist()))
        raw_operations = ",".join(LABELS[code] for code in ops[:v].tolist())
        cells.append((h.decode(), raw_adjacency, raw_operations))
    return cells


def metrics_pool(size: int, rng) -> dict[int, list[bytes]]:
    """Per budget, `size` serialized ModelMetrics without a parameter count."""
    message_class = model_metrics_class()
    pool = {}
    for epochs in EPOCHS:
        pool[epochs] = []
        for _ in range(size):
            message = message_class()
            message.evaluation_data.add(current_epoch=0, train_accuracy=0.1)
            for epoch in (epochs / 2, epochs):
                values = rng.random(4).astype(np.float32).tolist()
                point = message.evaluation_data.add(current_epoch=epoch)
                point.training_time = values[0] * 3000
                point.train_accuracy = values[1]
                point.validation_accuracy = values[2]
                point.test_accuracy = values[3]
            pool[epochs].append(message.SerializeToString())
    return pool


def write_file(path: Path, cells, pool, rng) -> int:
    """Write 4 budgets x 3 runs of every cell, interleaved across cells."""
    # Protobuf merges concatenated messages: a cell's own parameter count is
    # appended to a pooled metrics message, so all its records agree.
    message_class = model_metrics_class()
    counts = rng.integers(200_000, 50_000_000, size=len(cells))
    tails = [
        message_class(trainable_parameters=int(n)).SerializeToString() for n in counts
    ]
    picks = rng.integers(0, len(pool[4]), size=(len(EPOCHS), REPEATS, len(cells)))

    count = 0
    with TFRecordWriter(path) as writer:
        for b, epochs in enumerate(EPOCHS):
            for run in range(REPEATS):
                messages = pool[epochs]
                for c, (h, raw_adjacency, raw_operations) in enumerate(cells):
                    raw = messages[picks[b, run, c]] + tails[c]
                    text = base64.encodebytes(raw).decode()
                    item = [h, epochs, raw_adjacency, raw_operations, text]
                    writer.write(orjson.dumps(item))
                    count += 1
    return count


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total


def convert(source: Path, output: Path, jobs: int | None):
    """Run the converter; return (seconds, peak tree RSS in bytes)."""
    command = [sys.executable, str(ROOT / "tfrecord_to_hdf5.py"), str(source)]
    command += [str(output), "--force", "--quiet"]
    if jobs:
        command += ["--jobs", str(jobs)]
    peak = 0
    started = time.perf_counter()
    process = subprocess.Popen(command)

    def watch():
        nonlocal peak
        while process.poll() is None:
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    process.wait()
    seconds = time.perf_counter() - started
    watcher.join()
    if process.returncode:
        raise SystemExit(f"the converter failed with status {process.returncode}")
    return seconds, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=40_000)
    parser.add_argument(
        "--space",
        type=Path,
        default=ROOT.parent / "shared" / "nb101" / "space-423k.npz",
        help="cell structures to use (random cells if missing)",
    )
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="timed conversions")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        source = Path(folder) / "bench_full.tfrecord"
        started = time.perf_counter()
        cells = cell_structures(args.cells, args.space, rng)
        n_records = write_file(source, cells, metrics_pool(2000, rng), rng)
        size = source.stat().st_size
        print(
            f"wrote {n_records:,} records of {len(cells):,} cells "
            f"({size / 1e6:,.0f} MB) in {time.perf_counter() - started:.1f} s"
        )

        for attempt in range(args.repeat):
            seconds, peak = convert(source, Path(folder) / "out.hdf5", args.jobs)
            print(
                f"run {attempt + 1}: {seconds:.2f} s, "
                f"{n_records / seconds:,.0f} records/s, "
                f"{size / seconds / 1e6:.0f} MB/s, peak RSS {peak / 2**20:,.0f} MiB"
            )
        output = Path(folder) / "out.hdf5"
        print(f"HDF5 output: {output.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
