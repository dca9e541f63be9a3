"""TFRecord files in the layout of NAS-Bench-101: framing, payload, writer.

A TFRecord file is records back to back. Each record is framed as::

    8 bytes   payload length, unsigned little-endian
    4 bytes   masked CRC-32C of the 8 length bytes
    n bytes   payload
    4 bytes   masked CRC-32C of the payload

and a NAS-Bench-101 payload is the UTF-8 JSON of a five-item list::

    [module_hash, epochs, raw_adjacency, raw_operations, raw_metrics]

where ``raw_adjacency`` is the V x V matrix as a string of ``0``/``1`` row by
row, ``raw_operations`` the V op labels joined by commas and ``raw_metrics``
the base64 text (wrapped or not) of a serialized ``nasbench.ModelMetrics``
protobuf. The message is declared here at run time, so no generated code and
no TensorFlow is needed; unknown fields are skipped by protobuf itself.

Reading checks both CRCs of every record with the ``crc32c`` package and
raises :class:`RecordError`, which names the record and its byte offset, on
a truncated file, a corrupt record or a payload that is not the layout above.

Example::

    for index, offset, payload in iter_records("golden-4.tfrecord"):
        record = decode_payload(payload)
        record.epochs, record.ops, record.metrics.shape   # 108, [...], (2, 4)

    with TFRecordWriter("fixture.tfrecord") as writer:
        writer.write(encode_payload(module_hash, 108, matrix, ops, metrics))
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import string
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import orjson
from crc32c import crc32c as _crc32c
from google.protobuf.message import DecodeError

from .schema import EPOCHS, EVALUATION_POINTS, MAX_VERTICES, METRIC_NAMES, OP_LABELS

__all__ = [
    "RecordError",
    "HEADER_SIZE",
    "FOOTER_SIZE",
    "masked_crc32c",
    "iter_blocks",
    "iter_frames",
    "iter_records",
    "frame_record",
    "TFRecordWriter",
    "write_records",
    "model_metrics_class",
    "Record",
    "parse_payload",
    "check_cell",
    "decode_metrics",
    "decode_payload",
    "encode_payload",
]

HEADER_SIZE = 12  # length (8) + its masked CRC (4)
MAX_PAYLOAD = 1 << 26  # NAS-Bench-101 payloads are well under 1 KB
FOOTER_SIZE = 4  # masked CRC of the payload

_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_VALID_LABELS = frozenset(OP_LABELS)
_HEX = string.hexdigits.lower()[:16]


class RecordError(ValueError):
    """A record that cannot be read: truncated, corrupt or malformed.

    Attributes
    ----------
    index : int or None
        Number of the record in its file, counting from 0.
    offset : int or None
        Byte offset of the record's first byte in its file.
    """

    def __init__(self, message: str, index: int | None = None, offset=None):
        where = []
        if index is not None:
            where.append(f"record {index}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message)
        self.index = index
        self.offset = offset
        self.message = message

    def __reduce__(self):
        # Keep index and offset when the error crosses a process boundary.
        return type(self), (self.message, self.index, self.offset)


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C that TFRecord stores after length and payload."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# Reading ------------------------------------------------------------------


def iter_blocks(
    path: str | os.PathLike, block_size: int = 1 << 22
) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(first_index, first_offset, block)`` of whole records.

    Each block holds one or more complete records as they lie in the file,
    about `block_size` bytes at a time. Only the lengths are read here, so
    that blocks can be handed to other processes quickly; the CRCs are
    checked by :func:`iter_frames`, which every block goes through. A length
    too large to be real is checked here at once, so that a corrupt header
    cannot make this read the rest of the file into one block.

    Raises
    ------
    RecordError
        On a corrupt, implausible length or a file that ends inside a record.
    """
    with open(path, "rb") as handle:
        index, offset, buffer = 0, 0, b""
        while True:
            chunk = handle.read(block_size)
            buffer = buffer + chunk if buffer else chunk

            # Walk the lengths to the last complete record in the buffer.
            position, count, end = 0, 0, len(buffer)
            while position + HEADER_SIZE <= end:
                (length,) = _LENGTH.unpack_from(buffer, position)
                if length > MAX_PAYLOAD:
                    _check_header(buffer, position, index + count, offset + position)
                size = HEADER_SIZE + length + FOOTER_SIZE
                if position + size > end:
                    break
                position += size
                count += 1

            if count:
                yield index, offset, buffer[:position]
                buffer = buffer[position:]
                index += count
                offset += position

            if not chunk:
                if buffer:
                    _check_header(buffer, 0, index, offset)
                    raise RecordError(_truncation(buffer), index, offset)
                return


def _check_header(buffer: bytes, position: int, index: int, offset: int) -> None:
    """Raise :class:`RecordError` if the length at `position` is corrupt."""
    if len(buffer) - position < HEADER_SIZE:
        return
    (crc,) = _CRC.unpack_from(buffer, position + 8)
    if masked_crc32c(buffer[position : position + 8]) != crc:
        raise RecordError(
            "corrupt record header: the CRC-32C of the length does not match "
            "(not a TFRecord file, or a damaged one)",
            index,
            offset,
        )
    (length,) = _LENGTH.unpack_from(buffer, position)
    if length > MAX_PAYLOAD:
        raise RecordError(
            f"record of {length:,} bytes; this reader takes at most "
            f"{MAX_PAYLOAD:,} bytes a record",
            index,
            offset,
        )


def _truncation(rest: bytes) -> str:
    """Describe the incomplete record `rest` that ends a file."""
    if len(rest) < HEADER_SIZE:
        return (
            f"truncated file: {len(rest)} bytes left where a record header "
            f"needs {HEADER_SIZE}"
        )
    size = HEADER_SIZE + _LENGTH.unpack_from(rest)[0] + FOOTER_SIZE
    return f"truncated file: the record needs {size} bytes, {len(rest)} are left"


def iter_frames(
    block: bytes, first_index: int = 0, first_offset: int = 0
) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(index, offset, payload)`` from a block of whole records.

    Checks both CRCs of every record; `first_index` and `first_offset` place
    the block in its file for error messages.
    """
    position, end = 0, len(block)
    index = first_index
    unpack_length, unpack_crc, crc32 = _LENGTH.unpack_from, _CRC.unpack_from, _crc32c
    while position < end:
        # Both checks compare the stored, masked CRC with the computed one.
        start = position + HEADER_SIZE
        crc = crc32(block[position : position + 8])
        if (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF != unpack_crc(
            block, position + 8
        )[0]:
            _check_header(block, position, index, first_offset + position)
        stop = start + unpack_length(block, position)[0]
        payload = block[start:stop]
        crc = crc32(payload)
        if (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF != unpack_crc(
            block, stop
        )[0]:
            raise RecordError(
                "corrupt record: the CRC-32C of the payload does not match",
                index,
                first_offset + position,
            )
        yield index, first_offset + position, payload
        position = stop + FOOTER_SIZE
        index += 1


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(index, offset, payload)`` for every record of a file.

    Both CRCs of every record are checked.

    Raises
    ------
    RecordError
        On a truncated file or a CRC mismatch, naming the record and its
        byte offset.
    """
    for first_index, first_offset, block in iter_blocks(path):
        yield from iter_frames(block, first_index, first_offset)


# Writing ------------------------------------------------------------------


def frame_record(payload: bytes) -> bytes:
    """One record, framed: length, its CRC, payload, its CRC."""
    length = _LENGTH.pack(len(payload))
    return b"".join(
        (
            length,
            _CRC.pack(masked_crc32c(length)),
            payload,
            _CRC.pack(masked_crc32c(payload)),
        )
    )


class TFRecordWriter:
    """Write records to a TFRecord file; a context manager.

    The files it writes are what TensorFlow's ``TFRecordWriter`` writes
    without compression. Tests and benchmarks use it to build fixture files
    in the official layout.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = path
        self._handle = open(path, "wb")
        self.count = 0

    def write(self, payload: bytes) -> None:
        self._handle.write(frame_record(payload))
        self.count += 1

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def write_records(path: str | os.PathLike, payloads) -> int:
    """Write an iterable of payloads as a TFRecord file; return the count."""
    with TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    return writer.count


# Payload ------------------------------------------------------------------


@lru_cache(maxsize=1)
def model_metrics_class() -> type:
    """The ``nasbench.ModelMetrics`` protobuf class, declared at run time."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="nasbench101_model_metrics.proto",
        package="nasbench",
        syntax="proto2",
    )
    fields = {
        "EvaluationData": [
            ("current_epoch", 1, proto.TYPE_DOUBLE),
            ("training_time", 2, proto.TYPE_DOUBLE),
            ("train_accuracy", 3, proto.TYPE_DOUBLE),
            ("validation_accuracy", 4, proto.TYPE_DOUBLE),
            ("test_accuracy", 5, proto.TYPE_DOUBLE),
            ("checkpoint_path", 6, proto.TYPE_STRING),
        ],
        "ModelMetrics": [
            ("trainable_parameters", 2, proto.TYPE_INT32),
            ("total_time", 3, proto.TYPE_DOUBLE),
        ],
    }
    for message_name, message_fields in fields.items():
        message = file.message_type.add(name=message_name)
        for name, number, kind in message_fields:
            message.field.add(
                name=name, number=number, type=kind, label=proto.LABEL_OPTIONAL
            )
    metrics = file.message_type[1]
    metrics.field.add(
        name="evaluation_data",
        number=1,
        type=proto.TYPE_MESSAGE,
        type_name=".nasbench.EvaluationData",
        label=proto.LABEL_REPEATED,
    )

    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    descriptor = pool.FindMessageTypeByName("nasbench.ModelMetrics")
    return message_factory.GetMessageClass(descriptor)


_NAN_POINT = (float("nan"),) * len(METRIC_NAMES)
_TYPES = (str, int, str, str, str)


def parse_payload(payload: bytes, index=None, offset=None) -> list:
    """The five JSON items of a payload, with their types checked.

    Returns ``[module_hash, epochs, raw_adjacency, raw_operations,
    raw_metrics]``; the spec itself is checked by :func:`check_spec`.
    """
    try:
        item = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise RecordError(f"payload is not JSON ({error})", index, offset) from None
    if type(item) is not list or len(item) != 5 or _TYPES != tuple(map(type, item)):
        got = type(item).__name__
        if type(item) is list:
            got = "[" + ", ".join(type(value).__name__ for value in item) + "]"
        raise RecordError(
            "payload is not the expected JSON list [module_hash, epochs, "
            "raw_adjacency, raw_operations, raw_metrics] of types "
            f"[str, int, str, str, str]; got {got}",
            index,
            offset,
        )
    if item[1] not in EPOCHS:
        raise RecordError(
            f"budget of {item[1]} epochs, expected one of {list(EPOCHS)}",
            index,
            offset,
        )
    return item


# V for each possible length of raw_adjacency, and for each V the bits that
# must be 0 (diagonal and below) when the string is read as a binary number.
_VERTICES = {v * v: v for v in range(2, MAX_VERTICES + 1)}
_LOWER_BITS = {
    v: sum(
        1 << (v * v - 1 - (row * v + column))
        for row in range(v)
        for column in range(row + 1)
    )
    for v in _VERTICES.values()
}
_CHECKED_OPS: set[str] = set()  # raw_operations already found well-formed


def check_cell(
    module_hash: str, raw_adjacency: str, raw_operations: str, index=None, offset=None
):
    """Raise :class:`RecordError` unless a record's cell fields are well-formed.

    Well-formed: a hash of 32 lowercase hex digits; a V*V string of 0/1
    (2 <= V <= 7), strictly upper-triangular; and V labels, ``input`` first,
    ``output`` last and OP_LABELS between. A reader of many records checks
    each cell once, since all records of a cell must agree.
    """
    if len(module_hash) != 32 or module_hash.strip(_HEX):
        raise RecordError(
            f"module_hash {module_hash!r} is not 32 hex characters", index, offset
        )

    problem = None
    v = _VERTICES.get(len(raw_adjacency))
    if v is None:
        problem = (
            f"raw_adjacency has {len(raw_adjacency)} characters, expected V*V "
            f"with 2 <= V <= {MAX_VERTICES}"
        )
    elif not (raw_adjacency.isascii() and raw_adjacency.isdigit()):
        problem = "raw_adjacency holds characters other than 0 and 1"
    else:
        try:
            bits = int(raw_adjacency, 2)
        except ValueError:
            problem = "raw_adjacency holds characters other than 0 and 1"
        else:
            if bits & _LOWER_BITS[v]:
                problem = "raw_adjacency is not strictly upper-triangular"

    # There are few distinct op strings: each is checked once (but for V).
    if problem is None and raw_operations.count(",") + 1 != v:
        labels = raw_operations.count(",") + 1
        problem = f"raw_operations has {labels} labels, expected V = {v}"
    elif problem is None and raw_operations not in _CHECKED_OPS:
        ops = raw_operations.split(",")
        if ops[0] != "input" or ops[-1] != "output":
            problem = "raw_operations must start with 'input' and end with 'output'"
        elif not _VALID_LABELS.issuperset(ops[1:-1]):
            unknown = sorted(set(ops[1:-1]) - _VALID_LABELS)
            problem = f"unknown op label(s) {unknown}, expected {list(OP_LABELS)}"
        elif len(_CHECKED_OPS) < 100_000:
            _CHECKED_OPS.add(raw_operations)
    if problem:
        raise RecordError(f"invalid spec: {problem}", index, offset)


def decode_metrics(raw_metrics: str, index=None, offset=None) -> tuple:
    """Decode the base64 ``ModelMetrics`` text of a record.

    Returns
    -------
    trainable_parameters : int
        -1 if the message does not carry it.
    values : tuple of 8 float
        The METRIC_NAMES of the halfway point, then of the final point, NaN
        where a field or a point is absent.

    Notes
    -----
    As in NAS-Bench-101's own API, the halfway and final points are the
    second and third ``evaluation_data`` entries (the first is epoch 0).
    Their ``current_epoch`` is not consulted: trainings written in this
    layout by others put other epochs there.
    """
    try:
        # a2b_base64 skips the line breaks of wrapped text, as b64decode does.
        message = model_metrics_class().FromString(binascii.a2b_base64(raw_metrics))
    except (binascii.Error, ValueError, DecodeError) as error:
        raise RecordError(
            f"raw_metrics is not base64 of a ModelMetrics message ({error})",
            index,
            offset,
        ) from None

    points = message.evaluation_data
    if len(points) >= 3:
        halfway, final = points[1], points[2]
        values = (
            halfway.training_time,
            halfway.train_accuracy,
            halfway.validation_accuracy,
            halfway.test_accuracy,
            final.training_time,
            final.train_accuracy,
            final.validation_accuracy,
            final.test_accuracy,
        )
        # An absent field reads as 0.0; only then is presence worth asking.
        if 0.0 in values:
            values = _present(halfway) + _present(final)
    else:
        values = sum((_present(points[k]) for k in (1, 2) if k < len(points)), ())
        values += _NAN_POINT * (2 - max(0, len(points) - 1))

    parameters = message.trainable_parameters
    if parameters == 0 and not message.HasField("trainable_parameters"):
        parameters = -1
    return parameters, values


def _present(point) -> tuple:
    """The METRIC_NAMES of an evaluation point, NaN where a field is absent."""
    return tuple(
        getattr(point, name) if point.HasField(name) else float("nan")
        for name in METRIC_NAMES
    )


@dataclass
class Record:
    """One decoded record: one training run of one cell at one budget.

    ``metrics`` has shape (2, 4): [point (halfway, final), metric
    (training_time, train_accuracy, validation_accuracy, test_accuracy)],
    NaN where the record lacks a value; ``trainable_parameters`` is -1 where
    it lacks that.
    """

    module_hash: str
    epochs: int
    raw_adjacency: str
    raw_operations: str
    trainable_parameters: int
    metrics: np.ndarray

    @property
    def num_vertices(self) -> int:
        return round(len(self.raw_adjacency) ** 0.5)

    @property
    def matrix(self) -> np.ndarray:
        """The (V, V) module matrix as int8."""
        flat = np.frombuffer(self.raw_adjacency.encode(), np.uint8) - ord("0")
        return flat.astype(np.int8).reshape(self.num_vertices, self.num_vertices)

    @property
    def ops(self) -> list[str]:
        return self.raw_operations.split(",")


def decode_payload(payload: bytes, index=None, offset=None) -> Record:
    """Decode and check one NAS-Bench-101 record payload.

    Raises
    ------
    RecordError
        If the payload is not the five-item JSON list, the budget is not one
        of 4/12/36/108, the spec is malformed, or the metrics do not decode.
    """
    module_hash, epochs, raw_adjacency, raw_operations, raw_metrics = parse_payload(
        payload, index, offset
    )
    check_cell(module_hash, raw_adjacency, raw_operations, index, offset)
    parameters, values = decode_metrics(raw_metrics, index, offset)
    return Record(
        module_hash,
        epochs,
        raw_adjacency,
        raw_operations,
        parameters,
        np.array(values).reshape(2, 4),
    )


def encode_payload(
    module_hash: str,
    epochs: int,
    matrix,
    ops,
    metrics=None,
    trainable_parameters: int | None = None,
    total_time: float | None = None,
    wrap: int | None = 76,
) -> bytes:
    """Build one record payload in the official layout.

    Parameters
    ----------
    module_hash : str
        32 hex characters.
    epochs : int
        The budget: 4, 12, 36 or 108.
    matrix : array-like of shape (V, V)
        0/1 upper-triangular module matrix.
    ops : list of str
        V labels, ``input`` first and ``output`` last.
    metrics : array-like of shape (2, 4), optional
        [halfway, final] x METRIC_NAMES; NaN leaves a field out. The epoch-0
        point is written with zeros, as the official files have it.
    wrap : int or None
        Insert a newline every `wrap` base64 characters (the official files
        use 76); None writes one line.
    """
    message = model_metrics_class()()
    if metrics is None:
        metrics = np.full((len(EVALUATION_POINTS), len(METRIC_NAMES)), np.nan)
    metrics = np.asarray(metrics, dtype=float)
    zeros = np.zeros(len(METRIC_NAMES))
    for epoch, values in ((0, zeros), (epochs / 2, metrics[0]), (epochs, metrics[1])):
        point = message.evaluation_data.add(current_epoch=epoch)
        for name, value in zip(METRIC_NAMES, values, strict=True):
            if not np.isnan(value):
                setattr(point, name, float(value))
    if trainable_parameters is not None:
        message.trainable_parameters = int(trainable_parameters)
    if total_time is not None:
        message.total_time = float(total_time)

    if wrap:
        raw_metrics = base64.encodebytes(message.SerializeToString()).decode()
        if wrap != 76:
            flat = raw_metrics.replace("\n", "")
            raw_metrics = "\n".join(
                flat[i : i + wrap] for i in range(0, len(flat), wrap)
            )
    else:
        raw_metrics = base64.b64encode(message.SerializeToString()).decode()

    matrix = np.asarray(matrix)
    raw_adjacency = "".join(str(int(v)) for v in matrix.ravel())
    item = [module_hash, int(epochs), raw_adjacency, ",".join(ops), raw_metrics]
    return json.dumps(item).encode()
