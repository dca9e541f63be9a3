#!/usr/bin/env python3
"""Convert an official NAS-Bench-101 tfrecord file to an HDF5 file (schema v1).

Usage::

    python tfrecord_to_hdf5.py INPUT [OUTPUT] [--force] [--jobs N]
    python tfrecord_to_hdf5.py --download only108      # or: full

INPUT is ``nasbench_only108.tfrecord``, ``nasbench_full.tfrecord`` or any
file of records in their layout. OUTPUT defaults to INPUT with the suffix
``.hdf5`` (``data/nasbench_only108.hdf5``). ``--download`` first fetches the
official file into ``--data-dir`` (default ``data/``), resuming a partial
download and checking the published SHA-256; ``--base-url`` or the
environment variable ``NASBENCH_BASE_URL`` points it at a mirror.

Every record's two CRC-32C values are checked. A truncated or corrupt file,
a record not in the official layout, an existing OUTPUT (without
``--force``) or an unwritable OUTPUT ends the run with one message and exit
status 1; OUTPUT is written to a temporary file and renamed only on success,
so no partial file is ever left and a failed ``--force`` run keeps the old
file. The layout of the result is described in ``utils/schema.py`` and the
README.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("tfrecord_to_hdf5")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert a NAS-Bench-101 tfrecord file to HDF5 (schema v1).",
    )
    parser.add_argument("input", nargs="?", type=Path, help="the tfrecord file")
    parser.add_argument(
        "output",
        nargs="?",
        type=Path,
        help="the HDF5 file to write (default: INPUT with the suffix .hdf5)",
    )
    parser.add_argument(
        "--download",
        choices=["only108", "full"],
        help="fetch this official file into --data-dir first, then convert it",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "data",
        help="where --download puts the file (default: data/ of this project)",
    )
    parser.add_argument(
        "--base-url",
        help="base address to download from, for mirrors "
        "(default: $NASBENCH_BASE_URL or the published address)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace OUTPUT if it exists"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes for decoding (default: the usable cores)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars, warnings only"
    )
    args = parser.parse_args(argv)
    if args.input is None and args.download is None:
        parser.error("give an INPUT file, or --download only108|full")
    if args.input is not None and args.download is not None and args.output is None:
        # With --download, a single positional argument names the output.
        args.input, args.output = None, args.input
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    return args


def check_output(path: Path, force: bool) -> None:
    """Refuse an existing or unwritable OUTPUT before any work is done."""
    if path.is_dir():
        raise IsADirectoryError(f"OUTPUT {path} is a folder, expected a file name")
    if path.exists() and not force:
        raise FileExistsError(f"OUTPUT {path} exists; pass --force to replace it")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: no folder {folder}")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise PermissionError(
            f"cannot write {path}: folder {folder} is not writable ({error})"
        ) from None


def run(args: argparse.Namespace) -> None:
    from utils import schema
    from utils.convert import convert_file

    started = time.perf_counter()
    if args.download:
        from utils.download import PUBLISHED, fetch

        file_name = PUBLISHED[args.download][0]
        args.data_dir.mkdir(parents=True, exist_ok=True)
        output = args.output or (args.data_dir / file_name).with_suffix(".hdf5")
        check_output(output, args.force)
        source = fetch(
            args.download, args.data_dir, args.base_url, progress=not args.quiet
        )
        sha256 = PUBLISHED[args.download][1]
    else:
        source = args.input
        output = args.output or source.with_suffix(".hdf5")
        if not source.is_file():
            raise FileNotFoundError(f"INPUT {source} does not exist")
        check_output(output, args.force)
        sha256 = None

    logger.info("converting %s -> %s (jobs: %s)", source, output, args.jobs or "auto")
    arrays, summary = convert_file(source, n_jobs=args.jobs, progress=not args.quiet)
    for line in summary.lines():
        logger.info(line)

    described = source.name + (f" (SHA-256 {sha256})" if sha256 else "")
    schema.write_hdf5(
        output,
        arrays,
        source=described,
        force=args.force,
        extra_attrs={
            "n_records": summary.n_records,
            "converter": "tfrecord_to_hdf5.py",
        },
    )
    size = output.stat().st_size / 1e6
    logger.info(
        "wrote %s (%.1f MB) in %.1f s in all",
        output,
        size,
        time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )

    from utils.download import DownloadError
    from utils.schema import SchemaError
    from utils.tfrecord import RecordError

    try:
        run(args)
    except (RecordError, SchemaError, DownloadError, OSError) as error:
        name = "error" if isinstance(error, OSError) else type(error).__name__
        logger.error("%s: %s", name, error)
        return 1
    except KeyboardInterrupt:
        logger.error("interrupted; nothing was written")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
