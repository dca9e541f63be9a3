"""The project's HDF5 layout for NAS-Bench-101 (schema version 1).

A schema-v1 file holds one row per cell, sorted by module hash, with the
columns below. ``tfrecord_to_hdf5.py`` writes it; :func:`read_hdf5` reads and
checks it; :class:`utils.dataset.NASBench101` builds on that reader.

Root attributes::

    format             "nasbench101-hdf5"
    version            1
    epochs             [4, 12, 36, 108]           (int32)
    repeats            3
    evaluation_points  ["halfway", "final"]
    metric_names       ["training_time", "train_accuracy",
                        "validation_accuracy", "test_accuracy"]
    op_labels          ["conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"]
    source             where the data came from (file name, SHA-256 if known)

Datasets (N cells)::

    hash                  S32      (N,)                 module hash, ASCII hex
    num_vertices          int8     (N,)                 V, 2..7
    adjacency             int8     (N, 7, 7)            matrix in the top-left V x V
    operations            int8     (N, 7)               -1 input, -2 output,
                                                        0/1/2 op_labels, -3 padding
    trainable_parameters  int32    (N,)
    metrics               float32  (N, 4, 3, 2, 4)      [cell, budget, run,
                                                         point, metric]

NaN in ``metrics`` means "not measured": the 4/12/36 budgets of a 108-only
file, runs missing from a partial file, a field a record lacks.

Example::

    arrays, attrs = read_hdf5("data/nasbench_only108.hdf5")
    arrays["metrics"][:, 3, :, 1, 2]     # final validation accuracy, 108 epochs

Writing is atomic: :func:`write_hdf5` writes a temporary file beside the
target and renames it into place only once the file is complete, so a failed
run never leaves a partial file and never harms an existing one.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = [
    "FORMAT",
    "VERSION",
    "EPOCHS",
    "REPEATS",
    "EVALUATION_POINTS",
    "METRIC_NAMES",
    "OP_LABELS",
    "INPUT",
    "OUTPUT",
    "PADDING",
    "MAX_VERTICES",
    "DATASETS",
    "SchemaError",
    "empty_arrays",
    "read_hdf5",
    "write_hdf5",
]

logger = logging.getLogger(__name__)

FORMAT = "nasbench101-hdf5"
VERSION = 1
EPOCHS = (4, 12, 36, 108)
REPEATS = 3
EVALUATION_POINTS = ("halfway", "final")
METRIC_NAMES = (
    "training_time",
    "train_accuracy",
    "validation_accuracy",
    "test_accuracy",
)
OP_LABELS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
MAX_VERTICES = 7

# Codes of the `operations` column besides the indices into OP_LABELS.
INPUT, OUTPUT, PADDING = -1, -2, -3

# name -> (dtype, shape after the cell axis)
DATASETS = {
    "hash": (np.dtype("S32"), ()),
    "num_vertices": (np.dtype(np.int8), ()),
    "adjacency": (np.dtype(np.int8), (MAX_VERTICES, MAX_VERTICES)),
    "operations": (np.dtype(np.int8), (MAX_VERTICES,)),
    "trainable_parameters": (np.dtype(np.int32), ()),
    "metrics": (
        np.dtype(np.float32),
        (len(EPOCHS), REPEATS, len(EVALUATION_POINTS), len(METRIC_NAMES)),
    ),
}


class SchemaError(ValueError):
    """A file or a set of arrays that does not follow schema version 1."""


def empty_arrays(n_cells: int) -> dict[str, np.ndarray]:
    """Arrays for `n_cells` cells, with padding codes and NaN metrics."""
    arrays = {
        name: np.zeros((n_cells, *shape), dtype=dtype)
        for name, (dtype, shape) in DATASETS.items()
    }
    arrays["operations"][:] = PADDING
    arrays["metrics"][:] = np.nan
    return arrays


def _check_arrays(arrays: dict[str, np.ndarray], where: str) -> int:
    """Check names, dtypes and shapes; return the number of cells."""
    missing = [name for name in DATASETS if name not in arrays]
    if missing:
        raise SchemaError(
            f"{where}: missing dataset(s) {', '.join(missing)}; "
            f"schema v1 expects {', '.join(DATASETS)}"
        )

    n_cells = len(arrays["hash"])
    for name, (dtype, shape) in DATASETS.items():
        array = arrays[name]
        expected = (n_cells, *shape)
        if tuple(array.shape) != expected:
            raise SchemaError(
                f"{where}: dataset '{name}' has shape {tuple(array.shape)}, "
                f"expected {expected}"
            )
        if array.dtype != dtype:
            raise SchemaError(
                f"{where}: dataset '{name}' has dtype {array.dtype}, expected {dtype}"
            )
    return n_cells


def _decode_attr(value):
    """HDF5 attributes come back as bytes or numpy arrays; make them plain."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_decode_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_hdf5(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Read a schema-v1 file into memory.

    Parameters
    ----------
    path : str or path-like
        A file written by ``tfrecord_to_hdf5.py`` or any writer of the schema.

    Returns
    -------
    arrays : dict of str to ndarray
        The six datasets, by name, with the dtypes and shapes of the schema.
    attrs : dict
        The root attributes as plain Python values.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    SchemaError
        If the file is not HDF5, has another format or version, or a dataset
        is missing or has the wrong dtype or shape.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise SchemaError(f"{path}: not an HDF5 file ({error})") from None

    with handle:
        attrs = {key: _decode_attr(value) for key, value in handle.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise SchemaError(
                f"{path}: attribute 'format' is {attrs.get('format')!r}, "
                f"expected {FORMAT!r}"
            )
        if attrs.get("version") != VERSION:
            raise SchemaError(
                f"{path}: schema version {attrs.get('version')!r}, expected {VERSION}"
            )
        arrays = {name: handle[name][()] for name in DATASETS if name in handle}

    _check_arrays(arrays, str(path))
    return arrays, attrs


def write_hdf5(
    path: str | os.PathLike,
    arrays: dict[str, np.ndarray],
    source: str,
    force: bool = False,
    extra_attrs: dict | None = None,
) -> None:
    """Write `arrays` as a schema-v1 file at `path`, atomically.

    Rows are written in the order given; callers sort them by hash. An
    existing `path` is refused unless `force`; even then it is only replaced
    once the new file is complete.

    Raises
    ------
    FileExistsError
        If `path` exists and `force` is false.
    SchemaError
        If `arrays` do not follow the schema.
    OSError
        If the folder of `path` cannot be written.
    """
    import h5py

    path = Path(path)
    _check_arrays(arrays, "arrays to write")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to replace it")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, expected a file name")

    folder = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".part", dir=folder
    )
    os.close(handle)
    try:
        with h5py.File(temporary, "w") as out:
            out.attrs["format"] = FORMAT
            out.attrs["version"] = VERSION
            out.attrs["epochs"] = np.asarray(EPOCHS, dtype=np.int32)
            out.attrs["repeats"] = REPEATS
            out.attrs["evaluation_points"] = list(EVALUATION_POINTS)
            out.attrs["metric_names"] = list(METRIC_NAMES)
            out.attrs["op_labels"] = list(OP_LABELS)
            out.attrs["source"] = source
            for key, value in (extra_attrs or {}).items():
                out.attrs[key] = value
            # Stored whole and uncompressed: loading is then one plain read
            # per dataset (gzip would save about 40% of the bytes but cost
            # seconds at every load of the full data).
            for name in DATASETS:
                out.create_dataset(name, data=arrays[name])
        # mkstemp makes the file private; give it the mode a new file gets.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("wrote %d cells to %s", len(arrays["hash"]), path)
