"""Time loading the whole NAS-Bench-101 space and every built-in encoding of it.

Loads the 423,624 cells of ``space-423k.npz`` (structures only), wraps them in
:class:`utils.dataset.NASBench101` and encodes all cells with each built-in
encoding, one after the other, each computed afresh (no cache). The aligned
layout the encodings share is computed once and timed on its own line.
``params`` needs parameter counts, which the space file lacks, so it is
skipped.

Usage::

    python benchmarks/bench_encodings.py [--space PATH] [--repeat N]

Prints one line per stage: seconds (the best of ``--repeat`` runs), the shape
and the size of the result, then the total of the encodings with the
alignment, and the time to assemble the feature set ``all`` from cached
encodings. The target is under 5 s for all encodings on a 2-core machine.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils import encodings  # noqa: E402
from utils.dataset import NASBench101  # noqa: E402

logger = logging.getLogger("bench_encodings")

DEFAULT_SPACE = ROOT.parent / "shared" / "nb101" / "space-423k.npz"


def best_time(function, repeat: int):
    """(least seconds over `repeat` calls, result of the last call)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=DEFAULT_SPACE)
    parser.add_argument("--repeat", type=int, default=1, help="runs per stage")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("space file %s, best of %d run(s) per stage", args.space, args.repeat)

    # Load, then the shared alignment (kept by the encodings module once made).
    seconds, data = best_time(lambda: NASBench101.from_npz(args.space), args.repeat)
    print(f"{'load':<14} {seconds:7.3f} s   {len(data):,} cells")

    def align_afresh():
        encodings.clear_cache(data)
        return encodings._aligned(data)  # the layout every encoding shares

    seconds, _ = best_time(align_afresh, args.repeat)
    total = seconds
    print(f"{'alignment':<14} {seconds:7.3f} s")

    # Each encoding afresh, without the cache.
    for name, encoding in encodings.encodings().items():
        if not encoding.structural and not data.has_trainable_parameters:
            print(f"{name:<14} skipped (the space file has no parameter counts)")
            continue
        seconds, features = best_time(
            lambda name=name: encodings.encode(data, name, cache=False), args.repeat
        )
        total += seconds
        megabytes = features.X.nbytes / 2**20
        print(f"{name:<14} {seconds:7.3f} s   {features.X.shape}  {megabytes:6.0f} MB")
        del features

    print(f"{'total':<14} {total:7.3f} s   (alignment and all encodings above)")

    # What a predictor pays for the largest feature set once encodings are kept.
    encodings.encode(data, "all")
    seconds, features = best_time(lambda: encodings.encode(data, "all"), args.repeat)
    print(f"{'all, cached':<14} {seconds:7.3f} s   {features.X.shape} (concatenation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
