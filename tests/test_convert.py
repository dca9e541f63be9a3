"""Conversion of tfrecord files to schema-v1 arrays, and the script itself."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tfrecord_to_hdf5
from utils.convert import convert_file
from utils.schema import EPOCHS, SchemaError, read_hdf5
from utils.tfrecord import RecordError, encode_payload, frame_record, write_records

ROOT = Path(__file__).resolve().parents[1]
OP_CODE = {"input": -1, "output": -2, "conv3x3-bn-relu": 0}
OP_CODE.update({"conv1x1-bn-relu": 1, "maxpool3x3": 2})


# Real files ---------------------------------------------------------------


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_golden_file_converts_exactly(golden_dir, n_jobs):
    arrays, summary = convert_file(
        golden_dir / "golden-4.tfrecord", n_jobs=n_jobs, block_size=3000
    )
    golden = json.loads((golden_dir / "golden-4.json").read_text())
    assert golden["epochs"] == list(EPOCHS)
    assert summary.n_records == 48 and summary.n_cells == 4
    assert list(arrays["hash"]) == sorted(c["hash"].encode() for c in golden["cells"])

    for cell in golden["cells"]:
        row = list(arrays["hash"]).index(cell["hash"].encode())
        v = cell["num_vertices"]
        assert arrays["num_vertices"][row] == v
        np.testing.assert_array_equal(
            arrays["adjacency"][row, :v, :v], cell["adjacency"]
        )
        assert not arrays["adjacency"][row, v:].any()
        assert not arrays["adjacency"][row, :, v:].any()
        codes = [OP_CODE[label] for label in cell["operations"]]
        assert arrays["operations"][row].tolist() == codes + [-3] * (7 - v)
        assert arrays["trainable_parameters"][row] == cell["trainable_parameters"]
        expected = np.array(cell["metrics"], dtype=np.float32)
        np.testing.assert_array_equal(arrays["metrics"][row], expected)


@pytest.mark.parametrize(
    "name", ["tf-written-3v-epochs4", "tf-written-3v-extra-fields"]
)
def test_tensorflow_written_samples_convert_exactly(format_samples_dir, name):
    arrays, _ = convert_file(format_samples_dir / f"{name}.tfrecord", n_jobs=1)
    expected = np.load(format_samples_dir / f"{name}.expected.npz")
    assert sorted(expected.files) == sorted(arrays)
    for key in expected.files:
        assert arrays[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(arrays[key], expected[key], err_msg=key)


def test_record_order_does_not_matter(golden_dir, tmp_path):
    from utils.tfrecord import iter_records

    records = list(iter_records(golden_dir / "golden-4.tfrecord"))
    # Reverse the file, then restore run order within each (cell, budget).
    keyed = {}
    for _, _, payload in records:
        item = json.loads(payload)
        keyed.setdefault((item[0], item[1]), []).append(payload)
    order = sorted(keyed, key=lambda key: (key[1], key[0]), reverse=True)
    payloads = []
    for run in range(3):
        payloads += [keyed[key][run] for key in order]
    write_records(tmp_path / "shuffled.tfrecord", payloads)

    original, _ = convert_file(golden_dir / "golden-4.tfrecord", n_jobs=1)
    shuffled, _ = convert_file(tmp_path / "shuffled.tfrecord", n_jobs=2, block_size=500)
    for key in original:
        np.testing.assert_array_equal(original[key], shuffled[key])


# Partial and 108-only files -----------------------------------------------

MATRIX = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
OPS = ["input", "conv3x3-bn-relu", "output"]
HASH_A, HASH_B = "a" * 32, "b" * 32


def payload(module_hash=HASH_A, epochs=108, value=0.5, parameters=1000, **kwargs):
    metrics = np.full((2, 4), value)
    matrix = kwargs.pop("matrix", MATRIX)
    ops = kwargs.pop("ops", OPS)
    return encode_payload(module_hash, epochs, matrix, ops, metrics, parameters)


def test_only108_file_leaves_other_budgets_nan(tmp_path):
    path = tmp_path / "only108.tfrecord"
    write_records(path, [payload(value=v) for v in (0.1, 0.2, 0.3)])
    arrays, summary = convert_file(path, n_jobs=1)
    metrics = arrays["metrics"][0]
    assert np.isnan(metrics[:3]).all()
    np.testing.assert_array_equal(metrics[3, :, 1, 2], np.float32([0.1, 0.2, 0.3]))
    assert summary.cells_per_budget == {4: 0, 12: 0, 36: 0, 108: 1}


def test_partial_file_counts_cells_with_fewer_runs(tmp_path):
    path = tmp_path / "partial.tfrecord"
    records = [payload(HASH_A), payload(HASH_B), payload(HASH_A, epochs=4)]
    records += [payload(HASH_B, value=0.7), payload(HASH_B, value=0.9)]
    write_records(path, records)
    arrays, summary = convert_file(path, n_jobs=1)
    assert summary.incomplete == {4: 1, 12: 0, 36: 0, 108: 1}
    b = list(arrays["hash"]).index(HASH_B.encode())
    np.testing.assert_array_equal(
        arrays["metrics"][b, 3, :, 1, 0], np.float32([0.5, 0.7, 0.9])
    )
    a = list(arrays["hash"]).index(HASH_A.encode())
    assert np.isnan(arrays["metrics"][a, 3, 1:]).all()
    assert "fewer than 3 runs" in "\n".join(summary.lines())


def test_missing_parameter_count_is_minus_one(tmp_path):
    path = tmp_path / "p.tfrecord"
    write_records(path, [payload(parameters=None)])
    arrays, _ = convert_file(path, n_jobs=1)
    assert arrays["trainable_parameters"].tolist() == [-1]


# Records that disagree ----------------------------------------------------


@pytest.mark.parametrize("n_jobs, block_size", [(1, 1 << 20), (2, 400)])
def test_a_fourth_run_names_its_record(tmp_path, n_jobs, block_size):
    path = tmp_path / "four.tfrecord"
    write_records(path, [payload(HASH_B)] + [payload()] * 4)
    offset = 4 * len(frame_record(payload()))
    with pytest.raises(
        RecordError,
        match=rf"record 4, byte offset {offset}: cell a{{32}} has a run number 4 "
        r"at 108 epochs; expected at most 3",
    ):
        convert_file(path, n_jobs=n_jobs, block_size=block_size)


@pytest.mark.parametrize("block_size", [1 << 20, 300])
def test_records_of_a_cell_must_agree_on_the_spec(tmp_path, block_size):
    path = tmp_path / "spec.tfrecord"
    other = ["input", "maxpool3x3", "output"]
    write_records(path, [payload(), payload(HASH_B), payload(ops=other)])
    with pytest.raises(
        RecordError,
        match=r"record 2, .*cell a{32} has a different matrix or ops here",
    ):
        convert_file(path, n_jobs=1, block_size=block_size)


def test_records_of_a_cell_must_agree_on_parameters(tmp_path):
    path = tmp_path / "params.tfrecord"
    write_records(path, [payload(), payload(parameters=None), payload(parameters=7)])
    with pytest.raises(
        RecordError,
        match=r"record 2, .*cell a{32} has 7 trainable parameters here and 1000",
    ):
        convert_file(path, n_jobs=1)


def test_errors_come_in_file_order_across_workers(tmp_path):
    path = tmp_path / "two.tfrecord"
    good = [payload(module_hash=f"{k:032x}") for k in range(200)]
    write_records(path, good[:50] + [b"bad"] + good[50:])
    with open(path, "ab") as handle:
        handle.write(b"\x01\x02")  # and a truncated tail
    with pytest.raises(RecordError, match=r"record 50, .*payload is not JSON"):
        convert_file(path, n_jobs=2, block_size=2000)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tfrecord"
    path.touch()
    with pytest.raises(RecordError, match=r"empty\.tfrecord is empty"):
        convert_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nothing\.tfrecord"):
        convert_file(tmp_path / "nothing.tfrecord")


# The script ---------------------------------------------------------------


def run_script(*args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, str(ROOT / "tfrecord_to_hdf5.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def error_lines(result):
    return [line for line in result.stderr.splitlines() if " ERROR " in line]


def test_script_converts_golden_file_beside_the_input(golden_dir, tmp_path):
    source = tmp_path / "golden.tfrecord"
    source.write_bytes((golden_dir / "golden-4.tfrecord").read_bytes())
    result = run_script(source, "--quiet")
    assert result.returncode == 0, result.stderr
    arrays, attrs = read_hdf5(tmp_path / "golden.hdf5")
    assert len(arrays["hash"]) == 4
    assert attrs["source"] == "golden.tfrecord" and attrs["n_records"] == 48
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "golden.hdf5",
        "golden.tfrecord",
    ]


def test_script_logs_what_it_did(golden_dir, tmp_path):
    result = run_script(golden_dir / "golden-4.tfrecord", tmp_path / "g.h5")
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert "converting" in log and "48 records, 4 cells" in log
    assert "108 epochs: 4 cells, 0 with fewer than 3 runs" in log
    assert "wrote" in log


def corrupt_copy(golden_dir, tmp_path, how):
    data = bytearray((golden_dir / "golden-4.tfrecord").read_bytes())
    if how == "truncated":
        data = data[:-10]
    elif how == "crc":
        data[500] ^= 0xFF
    path = tmp_path / f"{how}.tfrecord"
    path.write_bytes(bytes(data))
    return path


BAD_INPUTS = {
    "truncated": r"RecordError: record 47, byte offset \d+: truncated file",
    "crc": r"RecordError: record 1, byte offset \d+: corrupt record",
    "not_json": r"RecordError: record 0, byte offset 0: payload is not JSON",
    "bad_spec": r"RecordError: record 0, byte offset 0: invalid spec: raw_adjacency",
    "empty": r"RecordError: .*empty\.tfrecord is empty: expected TFRecord records",
    "missing": r"error: INPUT .*missing\.tfrecord does not exist",
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_script_bad_input_gives_one_message_and_no_file(golden_dir, tmp_path, case):
    if case in ("truncated", "crc"):
        source = corrupt_copy(golden_dir, tmp_path, case)
    else:
        source = tmp_path / f"{case}.tfrecord"
        if case == "not_json":
            write_records(source, [b"{oops"])
        elif case == "bad_spec":
            write_records(source, [payload(matrix=np.ones((3, 3), int))])
        elif case == "empty":
            source.touch()

    result = run_script(source, tmp_path / "out.h5")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert re.search(BAD_INPUTS[case], errors[0]), errors[0]
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".h5", ".part")]


def test_script_refuses_existing_output(golden_dir, tmp_path):
    output = tmp_path / "out.h5"
    output.write_bytes(b"precious")
    result = run_script(golden_dir / "golden-4.tfrecord", output)
    assert result.returncode == 1
    assert "out.h5 exists; pass --force to replace it" in error_lines(result)[0]
    assert output.read_bytes() == b"precious"


def test_failed_forced_run_keeps_the_old_file(golden_dir, tmp_path):
    output = tmp_path / "out.h5"
    output.write_bytes(b"precious")
    source = corrupt_copy(golden_dir, tmp_path, "truncated")
    result = run_script(source, output, "--force")
    assert result.returncode == 1
    assert output.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.h5",
        "truncated.tfrecord",
    ]


def test_forced_run_replaces_the_file(golden_dir, tmp_path):
    output = tmp_path / "out.h5"
    output.write_bytes(b"old")
    result = run_script(golden_dir / "golden-4.tfrecord", output, "--force", "--quiet")
    assert result.returncode == 0, result.stderr
    assert len(read_hdf5(output)[0]["hash"]) == 4


def test_script_refuses_an_output_folder_that_does_not_exist(golden_dir, tmp_path):
    result = run_script(golden_dir / "golden-4.tfrecord", tmp_path / "no" / "out.h5")
    assert result.returncode == 1
    assert "cannot write" in error_lines(result)[0]
    assert "no folder" in error_lines(result)[0]


def test_script_refuses_an_unwritable_output(golden_dir, tmp_path):
    # The tests may run as root, whom folder modes do not stop; a folder of
    # the kernel's own file system refuses new files to everyone.
    folder = Path("/sys")
    try:
        (folder / "nb101-probe.h5").touch()
    except OSError:
        pass
    else:
        pytest.skip("/sys accepts new files here; no unwritable folder to use")
    result = run_script(golden_dir / "golden-4.tfrecord", folder / "out.h5")
    assert result.returncode == 1
    assert re.search(
        r"cannot write /sys/out\.h5: folder /sys is not writable",
        error_lines(result)[0],
    )


def test_script_usage_errors():
    result = run_script()
    assert result.returncode == 2
    assert "give an INPUT file, or --download only108|full" in result.stderr
    result = run_script("x.tfrecord", "--jobs", "0")
    assert result.returncode == 2
    assert "--jobs must be at least 1, got 0" in result.stderr


def test_converter_does_not_import_tensorflow(golden_dir, tmp_path):
    code = (
        "import sys, tfrecord_to_hdf5 as t;"
        f"t.main([{str(golden_dir / 'golden-4.tfrecord')!r}, "
        f"{str(tmp_path / 'g.h5')!r}, '--quiet']);"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported';"
        "assert 'pandas' not in sys.modules, 'pandas was imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_main_in_process_returns_status(golden_dir, tmp_path):
    status = tfrecord_to_hdf5.main(
        [str(golden_dir / "golden-4.tfrecord"), str(tmp_path / "g.h5"), "--quiet"]
    )
    assert status == 0
    with pytest.raises(SchemaError):
        read_hdf5(golden_dir / "golden-4.tfrecord")
