"""The wire formats of the train and test topics: key = the label(s), value = the feature row(s). The predictor's
input topic takes the same values with an opaque id as the key (`decode_unlabelled`).

One module a format (`csv`, `f32`, `f32_block`), each with its encoders and its per-record decoder; `batch`
decodes a micro-batch of any mix of them; `base` holds what they share (the header, limits, typed bad records).
"""

from streamtrain.wire.base import F32, FORMAT_HEADER, MAX_VALUE_BYTES, BadKind, BadRecord, BadRecordError, Decoded
from streamtrain.wire.batch import CSV_FORMAT, FORMATS, decode_batch, decode_unlabelled, record_format
from streamtrain.wire.csv import decode_record, encode_rows
from streamtrain.wire.f32 import decode_f32_record, encode_f32
from streamtrain.wire.f32_block import MAX_BLOCK_BYTES, block_label, block_rows, decode_f32_block, encode_f32_blocks
from streamtrain.wire.labels import decode_label, encode_labels

F32_FORMAT = b"f32"  # the streamtrain.format header values (WireFormat.header of f32 and f32_block)
F32_BLOCK_FORMAT = b"f32-block"

__all__ = [
    "CSV_FORMAT",
    "F32",
    "F32_BLOCK_FORMAT",
    "F32_FORMAT",
    "FORMATS",
    "FORMAT_HEADER",
    "MAX_BLOCK_BYTES",
    "MAX_VALUE_BYTES",
    "BadKind",
    "BadRecord",
    "BadRecordError",
    "Decoded",
    "block_label",
    "block_rows",
    "decode_batch",
    "decode_f32_block",
    "decode_f32_record",
    "decode_label",
    "decode_record",
    "decode_unlabelled",
    "encode_f32",
    "encode_f32_blocks",
    "encode_labels",
    "encode_rows",
    "record_format",
]
