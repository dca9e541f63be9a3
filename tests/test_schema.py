"""The schema-v1 HDF5 writer and reader: round trip and every refusal."""

import os
import stat

import h5py
import numpy as np
import pytest

from utils.schema import (
    DATASETS,
    EPOCHS,
    METRIC_NAMES,
    OP_LABELS,
    SchemaError,
    empty_arrays,
    read_hdf5,
    write_hdf5,
)


def arrays_of(n_cells=3):
    arrays = empty_arrays(n_cells)
    arrays["hash"][:] = [f"{k:032x}".encode() for k in range(n_cells)]
    arrays["num_vertices"][:] = 2
    arrays["adjacency"][:, 0, 1] = 1
    arrays["operations"][:, :2] = [-1, -2]
    arrays["trainable_parameters"][:] = np.arange(n_cells) + 100
    arrays["metrics"][:, 3, 0, 1, 2] = np.linspace(0.8, 0.9, n_cells)
    return arrays


def test_round_trip(tmp_path):
    arrays = arrays_of()
    write_hdf5(tmp_path / "t.h5", arrays, source="test", extra_attrs={"note": "x"})
    read, attrs = read_hdf5(tmp_path / "t.h5")
    for name in DATASETS:
        np.testing.assert_array_equal(read[name], arrays[name])
        assert read[name].dtype == arrays[name].dtype
    assert attrs["format"] == "nasbench101-hdf5" and attrs["version"] == 1
    assert attrs["epochs"] == list(EPOCHS) and attrs["repeats"] == 3
    assert attrs["metric_names"] == list(METRIC_NAMES)
    assert attrs["op_labels"] == list(OP_LABELS)
    assert attrs["evaluation_points"] == ["halfway", "final"]
    assert attrs["source"] == "test" and attrs["note"] == "x"


def test_written_file_gets_the_usual_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        write_hdf5(tmp_path / "t.h5", arrays_of(), source="test")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "t.h5").stat().st_mode) == 0o644


def test_empty_table_round_trips(tmp_path):
    write_hdf5(tmp_path / "t.h5", empty_arrays(0), source="none")
    read, _ = read_hdf5(tmp_path / "t.h5")
    assert read["metrics"].shape == (0, 4, 3, 2, 4)


def test_the_shared_sample_follows_the_schema(sample_20k):
    arrays, attrs = read_hdf5(sample_20k)
    assert len(arrays["hash"]) == 20001
    assert (np.sort(arrays["hash"]) == arrays["hash"]).all()


def test_existing_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "t.h5"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match=r"t\.h5 exists; pass --force"):
        write_hdf5(path, arrays_of(), source="test")
    assert path.read_bytes() == b"keep me"


def test_a_failed_forced_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "t.h5"
    path.write_bytes(b"keep me")
    arrays = arrays_of()
    arrays["metrics"] = arrays["metrics"][:, :2]
    with pytest.raises(SchemaError):
        write_hdf5(path, arrays, source="test", force=True)
    assert path.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["t.h5"]


def test_an_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    with pytest.raises(KeyboardInterrupt):
        write_hdf5(tmp_path / "t.h5", arrays_of(), source="test")
    assert list(tmp_path.iterdir()) == []


def rewrite(path, change):
    write_hdf5(path, arrays_of(), source="test")
    with h5py.File(path, "r+") as handle:
        change(handle)


def drop(name):
    return lambda handle: handle.__delitem__(name)


def replace(name, data):
    def change(handle):
        del handle[name]
        handle[name] = data

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda h: h.attrs.__setitem__("version", 2),
            r"schema version 2, expected 1",
        ),
        (
            lambda h: h.attrs.__setitem__("format", "other"),
            r"attribute 'format' is 'other', expected 'nasbench101-hdf5'",
        ),
        (drop("metrics"), r"missing dataset\(s\) metrics; schema v1 expects hash"),
        (
            replace("adjacency", np.zeros((3, 6, 6), np.int8)),
            r"dataset 'adjacency' has shape \(3, 6, 6\), expected \(3, 7, 7\)",
        ),
        (
            replace("num_vertices", np.zeros(3, np.int64)),
            r"dataset 'num_vertices' has dtype int64, expected int8",
        ),
        (
            replace("operations", np.zeros((2, 7), np.int8)),
            r"dataset 'operations' has shape \(2, 7\), expected \(3, 7\)",
        ),
    ],
)
def test_files_outside_the_schema_are_refused(tmp_path, change, message):
    path = tmp_path / "t.h5"
    rewrite(path, change)
    with pytest.raises(SchemaError, match=message):
        read_hdf5(path)


def test_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nothing\.h5"):
        read_hdf5(tmp_path / "nothing.h5")


def test_not_hdf5(tmp_path):
    (tmp_path / "x.h5").write_text("hello")
    with pytest.raises(SchemaError, match=r"x\.h5: not an HDF5 file"):
        read_hdf5(tmp_path / "x.h5")


def test_writing_to_a_folder_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match=r"is a folder, expected a file name"):
        write_hdf5(tmp_path, arrays_of(), source="test", force=True)
