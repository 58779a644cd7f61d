"""Checks of a data folder before and after training fails on it: errors name the file.

`validate_split` runs before any long work. For each split it checks that the split
exists in `dataset.json` and is not empty, that every shard exists and is not empty, walks
the record headers of every uncompressed shard (12 bytes read per record, so a truncated
shard and the index of its first incomplete record are found without reading the
images), compares the record counts with `dataset.json`, and fully checks the **first
record of every shard**: a `tf.train.Example` with every field of the schema and of the
split's `label_fields`, holding a PNG of the image size, channel count and bit depth of
`dataset.json`.

Records deeper in a shard are checked while training (`reader.training_dataset`, whose
messages name the file and record index); a failure that TensorFlow reports without a
file (a corrupt record's checksum, an undecodable PNG body) is located afterwards by
`find_bad_record`, which reads the splits record by record.

With `skip_bad_records`, a truncated shard is not an error: its readable records are
used and the others counted as skipped (`ShardReport.unreadable`).
"""

from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np
import tensorflow as tf
from absl import logging

from simgan_tf.data import schema

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPE = {1: 0, 3: 2}  # channels -> PNG color type (gray, RGB)
_PNG_BIT_DEPTH = {"uint8": 8, "uint16": 16}
_REQUIRED = (schema.IMAGE_ENCODED, schema.IMAGE_HEIGHT, schema.IMAGE_WIDTH,
             schema.IMAGE_CHANNELS, schema.SAMPLE_KEY, schema.SAMPLE_DOMAIN)


class BadRecordError(ValueError):
    """A record or shard that cannot be used; the message names the file (and record).

    Attributes:
      path: the shard file.
      index: 0-based record index in the shard, or `None` for a whole-file problem.
    """

    def __init__(self, path: str, index: int | None, problem: str):
        where = f"{path}" if index is None else f"{path}, record {index}"
        super().__init__(f"Bad input data in {where}: {problem}")
        self.path = path
        self.index = index

    @classmethod
    def from_message(cls, message: str) -> "BadRecordError":
        """The error raised in the input pipeline, whose message names file and record."""
        error = ValueError.__new__(cls)
        ValueError.__init__(error, message)
        error.path = error.index = None
        return error


@dataclasses.dataclass
class ShardReport:
    """What the validation pass found in one shard.

    Attributes:
      path: shard file.
      records: complete records found (`None` for gzip shards, which are not walked).
      declared: records `dataset.json` declares for the shard (`None` if unknown).
      unreadable: records lost to truncation (skipped with `skip_bad_records`).
    """
    path: str
    records: int | None
    declared: int | None
    unreadable: int = 0


def walk_record_headers(path: str) -> int:
    """Counts the complete records of an uncompressed TFRecord file by their headers.

    A TFRecord is `uint64 length, uint32 crc(length), data[length], uint32 crc(data)`;
    only the 12 header bytes of each record are read.

    Returns:
      The number of complete records.

    Raises:
      BadRecordError: at the first record that extends past the end of the file.
    """
    size = os.path.getsize(path)
    offset, count = 0, 0
    with open(path, "rb") as f:
        while offset < size:
            if size - offset < 12:
                raise BadRecordError(path, count, f"truncated record header at byte {offset} "
                                     f"(file is {size} bytes)")
            f.seek(offset)
            (length,) = struct.unpack("<Q", f.read(8))
            end = offset + 12 + length + 4
            if end > size:
                raise BadRecordError(
                    path, count, f"truncated: the record at byte {offset} needs {length} "
                    f"data bytes, ending at byte {end}, but the file is {size} bytes")
            offset, count = end, count + 1
    return count


def png_header(encoded: bytes) -> tuple[int, int, int, int] | None:
    """`(height, width, bit_depth, color_type)` of PNG bytes, `None` if not a PNG."""
    if len(encoded) < 33 or not encoded.startswith(_PNG_SIGNATURE) or encoded[12:16] != b"IHDR":
        return None
    width, height, bit_depth, color_type = struct.unpack(">IIBB", encoded[16:26])
    return height, width, bit_depth, color_type


def check_record(serialized: bytes, info: schema.DatasetInfo, split: str, path: str,
                 index: int) -> None:
    """Fully checks one serialized record against the schema and `dataset.json`.

    Raises:
      BadRecordError: naming `path` and `index` and saying what was found.
    """
    try:
        example = tf.train.Example.FromString(serialized)
    except Exception:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise BadRecordError(path, index, "not a tf.train.Example") from None
    features = example.features.feature
    label_fields = info.splits[split].label_fields
    missing = [name for name in (*_REQUIRED, *label_fields) if name not in features]
    if missing:
        raise BadRecordError(path, index, f"missing field(s) {missing}; present: "
                             f"{sorted(features)}")
    for name, length in label_fields.items():
        got = len(features[name].float_list.value)
        if got != int(length):
            raise BadRecordError(path, index, f"{name} has {got} values, dataset.json says "
                                 f"{length}")
    encoded = features[schema.IMAGE_ENCODED].bytes_list.value[0]
    check_png(encoded, info, path, index)
    try:
        image = schema.decode_png_numpy(encoded, info.image_dtype)
    except Exception as e:  # noqa: BLE001 - PIL raises several types
        raise BadRecordError(path, index, f"the PNG does not decode ({e})") from None
    if image.shape != tuple(info.image_shape):
        raise BadRecordError(path, index, f"image of shape {list(image.shape)}, dataset.json "
                             f"says {list(info.image_shape)}")


def check_png(encoded: bytes, info: schema.DatasetInfo, path: str, index: int) -> None:
    """Checks the PNG header: size, channel count (color type) and bit depth."""
    header = png_header(encoded)
    if header is None:
        raise BadRecordError(path, index, "image/encoded is not a PNG")
    height, width, bit_depth, color_type = header
    expected = (info.image_height, info.image_width, _PNG_BIT_DEPTH[info.image_dtype],
                _PNG_COLOR_TYPE[info.image_channels])
    if (height, width, bit_depth, color_type) != expected:
        raise BadRecordError(
            path, index,
            f"PNG of {height}x{width}, bit depth {bit_depth}, color type {color_type} "
            f"({ {0: 1, 2: 3, 4: 2, 6: 4}.get(color_type, '?') } channels); dataset.json says "
            f"{info.image_height}x{info.image_width}, {info.image_channels} channel(s), "
            f"{info.image_dtype}")


def _first_record(path: str, compression: str | None) -> bytes:
    dataset = tf.data.TFRecordDataset(path, compression_type=compression or "")
    try:
        for record in dataset.take(1):
            return record.numpy()
    except tf.errors.OpError as e:
        raise BadRecordError(path, 0, f"unreadable ({e.message.strip()[:200]})") from None
    raise BadRecordError(path, None, "no records")


def validate_split(data_dir: str, split: str, info: schema.DatasetInfo, *,
                   skip_bad_records: bool = False) -> list[ShardReport]:
    """The quick validation pass over one split (see the module docstring).

    Returns:
      One `ShardReport` per shard.

    Raises:
      FileNotFoundError, ValueError, BadRecordError: naming the file (and record).
    """
    from simgan_tf.data import reader  # data imports this module

    if split not in info.splits:
        raise ValueError(f"{schema.dataset_info_path(data_dir)} has no split {split!r}. "
                         f"Available: {sorted(info.splits)}.")
    split_info = info.splits[split]
    if split_info.count == 0:
        raise ValueError(f"Split {split!r} of {data_dir} is empty (dataset.json count 0).")
    paths, compression = reader.list_shards(os.path.join(data_dir, split))
    declared = {shard.get("file"): shard.get("count") for shard in split_info.shards
                if isinstance(shard, dict)}
    reports = []
    for path in paths:
        if os.path.getsize(path) == 0:
            if skip_bad_records:
                reports.append(ShardReport(path, 0, declared.get(os.path.basename(path)),
                                           declared.get(os.path.basename(path)) or 0))
                continue
            raise BadRecordError(path, None, "empty file (0 bytes)")
        expected = declared.get(os.path.basename(path))
        report = ShardReport(path, None, expected)
        if compression is None:
            try:
                report.records = walk_record_headers(path)
            except BadRecordError as e:
                if not skip_bad_records:
                    raise
                report.records = e.index
                report.unreadable = max((expected or 0) - e.index, 1)
            if expected is not None and report.records + report.unreadable != expected \
                    and not report.unreadable:
                message = (f"holds {report.records} records but dataset.json declares "
                           f"{expected}")
                if not skip_bad_records:
                    raise BadRecordError(path, None, message)
                logging.warning("%s %s.", path, message)
        if report.records != 0:
            try:
                check_record(_first_record(path, compression), info, split, path, 0)
            except BadRecordError as e:
                if not skip_bad_records:
                    raise
                logging.warning("%s (it will be skipped: --skip_bad_records).", e)
        reports.append(report)
    if all(r.records == 0 for r in reports):
        raise ValueError(f"Split {split!r} of {data_dir} has no readable record "
                         f"(shards: {[r.path for r in reports]}).")
    return reports


def find_bad_record(data_dir: str, splits, info: schema.DatasetInfo | None = None) -> None:
    """Reads the splits record by record; raises `BadRecordError` at the first bad one.

    Slow (reads everything): used to name the file after training failed on the data.
    Returns normally if every record is good.
    """
    from simgan_tf.data import reader

    info = info or schema.read_dataset_info(data_dir)
    for split in splits:
        paths, compression = reader.list_shards(os.path.join(data_dir, split))
        for path in paths:
            index = 0
            iterator = iter(tf.data.TFRecordDataset(path, compression_type=compression or ""))
            while True:
                try:
                    record = next(iterator)
                except StopIteration:
                    break
                except tf.errors.OpError as e:
                    raise BadRecordError(path, index, e.message.strip()[:300]) from None
                check_record(record.numpy(), info, split, path, index)
                index += 1


def total_unreadable(reports) -> int:
    return int(np.sum([r.unreadable for r in reports])) if reports else 0
