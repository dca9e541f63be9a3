"""TFRecord framing and the NAS-Bench-101 payload: round trips and errors."""

import base64
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.schema import OP_LABELS
from utils.tfrecord import (
    RecordError,
    TFRecordWriter,
    decode_metrics,
    decode_payload,
    encode_payload,
    frame_record,
    iter_blocks,
    iter_records,
    masked_crc32c,
    model_metrics_class,
    write_records,
)

HASH = "0123456789abcdef0123456789abcdef"
MATRIX = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
OPS = ["input", "maxpool3x3", "output"]


def test_masked_crc32c_of_the_standard_check_string():
    # CRC-32C("123456789") is 0xE3069283; the mask rotates right by 15 bits
    # and adds 0xA282EAD8.
    crc = 0xE3069283
    expected = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert masked_crc32c(b"123456789") == expected


def test_frame_layout():
    record = frame_record(b"abc")
    assert len(record) == 8 + 4 + 3 + 4
    assert struct.unpack("<Q", record[:8]) == (3,)
    assert struct.unpack("<I", record[8:12]) == (masked_crc32c(record[:8]),)
    assert record[12:15] == b"abc"
    assert struct.unpack("<I", record[15:]) == (masked_crc32c(b"abc"),)


@settings(max_examples=50, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=40),
    block_size=st.integers(min_value=1, max_value=64),
)
def test_records_round_trip(tmp_path_factory, payloads, block_size):
    path = tmp_path_factory.mktemp("rt") / "records.tfrecord"
    assert write_records(path, payloads) == len(payloads)

    read = list(iter_records(path))
    assert [payload for _, _, payload in read] == payloads
    assert [index for index, _, _ in read] == list(range(len(payloads)))
    offsets = np.cumsum([0] + [16 + len(p) for p in payloads])[:-1]
    assert [offset for _, offset, _ in read] == offsets.tolist()

    # Blocks of any size hold whole records, in order, and cover the file.
    blocks = list(iter_blocks(path, block_size=block_size))
    assert b"".join(block for _, _, block in blocks) == path.read_bytes()


def test_tensorflow_reads_the_writer_files(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
    payloads = [encode_payload(HASH, 108, MATRIX, OPS)] + [b"", b"x" * 1000]
    path = tmp_path / "w.tfrecord"
    write_records(path, payloads)
    read = [bytes(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    assert read == payloads


# Payloads -----------------------------------------------------------------


@st.composite
def cells(draw):
    v = draw(st.integers(2, 7))
    upper = np.triu(np.ones((v, v), dtype=int), 1)
    bits = draw(st.lists(st.booleans(), min_size=v * v, max_size=v * v))
    matrix = upper * np.array(bits, dtype=int).reshape(v, v)
    inner = draw(st.lists(st.sampled_from(OP_LABELS), min_size=v - 2, max_size=v - 2))
    return matrix, ["input", *inner, "output"]


values = st.one_of(
    st.just(float("nan")),
    st.floats(0, 1, width=32, allow_subnormal=False),
)


@settings(max_examples=100, deadline=None)
@given(
    cell=cells(),
    epochs=st.sampled_from([4, 12, 36, 108]),
    metrics=st.lists(values, min_size=8, max_size=8),
    parameters=st.one_of(st.none(), st.integers(0, 2**31 - 1)),
    wrap=st.sampled_from([None, 76, 20]),
)
def test_payload_round_trip(cell, epochs, metrics, parameters, wrap):
    matrix, ops = cell
    metrics = np.array(metrics, dtype=np.float32).reshape(2, 4)
    payload = encode_payload(HASH, epochs, matrix, ops, metrics, parameters, wrap=wrap)

    record = decode_payload(payload)
    assert record.module_hash == HASH
    assert record.epochs == epochs
    np.testing.assert_array_equal(record.matrix, matrix)
    assert record.ops == ops
    assert record.trainable_parameters == (-1 if parameters is None else parameters)
    np.testing.assert_array_equal(record.metrics.astype(np.float32), metrics)


def test_wrapped_and_unwrapped_base64_decode_alike():
    metrics = np.arange(8, dtype=np.float32).reshape(2, 4) / 10
    wrapped = encode_payload(HASH, 36, MATRIX, OPS, metrics, 1234, wrap=76)
    flat = encode_payload(HASH, 36, MATRIX, OPS, metrics, 1234, wrap=None)
    assert "\\n" in wrapped.decode() and "\\n" not in flat.decode()
    a, b = decode_payload(wrapped), decode_payload(flat)
    np.testing.assert_array_equal(a.metrics, b.metrics)
    assert a.trainable_parameters == b.trainable_parameters == 1234


def test_unknown_protobuf_fields_are_skipped():
    message = model_metrics_class()()
    for epoch in (0, 54, 108):
        message.evaluation_data.add(current_epoch=epoch, validation_accuracy=0.5)
    message.trainable_parameters = 42
    # Field 8 as a varint and field 9 as a length-delimited string.
    extra = bytes([8 << 3 | 0, 150, 1, 9 << 3 | 2, 3]) + b"abc"
    raw = base64.b64encode(message.SerializeToString() + extra).decode()
    parameters, values = decode_metrics(raw)
    assert parameters == 42
    assert values[2] == values[6] == 0.5
    assert np.isnan(values[0])  # an absent field is not 0


def test_points_are_taken_by_position_not_by_epoch():
    message = model_metrics_class()()
    for epoch, accuracy in ((0, 0.1), (1, 0.2), (36, 0.3)):
        message.evaluation_data.add(current_epoch=epoch, test_accuracy=accuracy)
    raw = base64.b64encode(message.SerializeToString()).decode()
    _, values = decode_metrics(raw)
    assert (values[3], values[7]) == (0.2, 0.3)


def test_a_present_zero_stays_zero():
    message = model_metrics_class()()
    for _ in range(3):
        message.evaluation_data.add(training_time=0.0, train_accuracy=0.5)
    raw = base64.b64encode(message.SerializeToString()).decode()
    _, values = decode_metrics(raw)
    assert values[0] == 0.0 and np.isnan(values[2])


@pytest.mark.parametrize("n_points", [0, 1, 2])
def test_missing_points_are_nan(n_points):
    message = model_metrics_class()()
    for epoch in range(n_points):
        message.evaluation_data.add(current_epoch=epoch, train_accuracy=0.5)
    raw = base64.b64encode(message.SerializeToString()).decode()
    _, values = decode_metrics(raw)
    assert len(values) == 8
    # Only a second point (the halfway one) carries a value here.
    measured = [v == 0.5 for v in values]
    assert measured == [False, n_points == 2] + [False] * 6
    assert sum(np.isnan(values)) == 8 - (n_points == 2)


# Errors -------------------------------------------------------------------


def payload_of(items) -> bytes:
    return json.dumps(items).encode()


def good_items():
    return json.loads(encode_payload(HASH, 108, MATRIX, OPS))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"not json", r"payload is not JSON"),
        (payload_of({"a": 1}), r"expected JSON list .* got dict"),
        (payload_of([1, 2, 3]), r"got \[int, int, int\]"),
        (payload_of([HASH, "108", "0", "a", "b"]), r"got \[str, str, str, str, str\]"),
        (payload_of([HASH, 50, "0110", "input,output", ""]), r"budget of 50 epochs"),
        (payload_of(["xyz", 108, "0110", "input,output", ""]), r"'xyz' is not 32 hex"),
        (payload_of(["A" * 32, 108, "0110", "input,output", ""]), r"'A{32}' is not 32"),
    ],
)
def test_malformed_payloads(payload, message):
    with pytest.raises(RecordError, match=message):
        decode_payload(payload, 7, 700)


def test_error_names_record_and_offset():
    with pytest.raises(RecordError, match=r"^record 7, byte offset 700: payload"):
        decode_payload(b"[", 7, 700)


@pytest.mark.parametrize(
    "adjacency, operations, message",
    [
        ("01001", "input,output", r"has 5 characters, expected V\*V"),
        ("0" * 64, ",".join(["input"] * 8), r"has 64 characters"),
        ("0120", "input,output", r"characters other than 0 and 1"),
        ("0110", "input,output", r"not strictly upper-triangular"),
        ("0100", "input,conv3x3-bn-relu,output", r"3 labels, expected V = 2"),
        ("010001000", "output,maxpool3x3,input", r"start with 'input'"),
        ("010001000", "input,conv5x5,output", r"unknown op label\(s\) \['conv5x5'\]"),
    ],
)
def test_invalid_specs(adjacency, operations, message):
    items = good_items()
    items[2:4] = [adjacency, operations]
    with pytest.raises(RecordError, match="invalid spec: .*" + message):
        decode_payload(payload_of(items))


def test_a_known_op_string_is_still_checked_against_the_matrix():
    items = good_items()
    decode_payload(payload_of(items))  # "input,maxpool3x3,output" is fine here
    items[2] = "0100"
    with pytest.raises(RecordError, match="3 labels, expected V = 2"):
        decode_payload(payload_of(items))


def test_metrics_that_are_not_a_message():
    items = good_items()
    items[4] = base64.b64encode(b"\xff\xff\xff").decode()
    with pytest.raises(RecordError, match="not base64 of a ModelMetrics message"):
        decode_payload(payload_of(items))


def test_truncated_header(tmp_path):
    path = tmp_path / "t.tfrecord"
    path.write_bytes(frame_record(b"abc") + frame_record(b"def")[:5])
    with pytest.raises(
        RecordError,
        match=r"record 1, byte offset 19: truncated file: 5 bytes left where a "
        r"record header needs 12",
    ):
        list(iter_records(path))


def test_truncated_payload(tmp_path):
    path = tmp_path / "t.tfrecord"
    path.write_bytes(frame_record(b"abc") + frame_record(b"defgh")[:-2])
    with pytest.raises(
        RecordError,
        match=r"record 1, byte offset 19: truncated file: the record needs 21 "
        r"bytes, 19 are left",
    ):
        list(iter_records(path))


def test_corrupt_length(tmp_path):
    data = bytearray(frame_record(b"abc") + frame_record(b"def"))
    data[19] ^= 1  # a bit of the second length
    path = tmp_path / "t.tfrecord"
    path.write_bytes(bytes(data))
    with pytest.raises(
        RecordError, match=r"record 1, byte offset 19: corrupt record header"
    ):
        list(iter_records(path))


def test_huge_corrupt_length_is_caught_before_reading_on(tmp_path):
    data = bytearray(frame_record(b"abc") * 3)
    data[19 + 6] = 0x7F  # a length of about 2**55 bytes
    path = tmp_path / "t.tfrecord"
    path.write_bytes(bytes(data))
    with pytest.raises(
        RecordError, match=r"record 1, byte offset 19: corrupt record header"
    ):
        list(iter_blocks(path))


def test_corrupt_payload(tmp_path):
    data = bytearray(frame_record(b"abc") + frame_record(b"def"))
    data[19 + 12] ^= 0x20
    path = tmp_path / "t.tfrecord"
    path.write_bytes(bytes(data))
    with pytest.raises(
        RecordError,
        match=r"record 1, byte offset 19: corrupt record: the CRC-32C of the payload",
    ):
        list(iter_records(path))


def test_writer_counts_and_closes(tmp_path):
    path = tmp_path / "w.tfrecord"
    with TFRecordWriter(path) as writer:
        writer.write(b"a")
        writer.write(b"b")
    assert writer.count == 2
    assert [p for _, _, p in iter_records(path)] == [b"a", b"b"]
