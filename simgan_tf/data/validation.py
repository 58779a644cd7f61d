"""Checks of a data folder before and after training fails on it: errors name the file.

`validate_split` runs before any long work. For each split it checks that the split
exists in `dataset.json` and is not empty, that every shard exists and is not empty, walks
the record headers of every uncompressed shard (12 bytes read per record, so a truncated
shard and the index of its first incomplete record are found without reading the
images), compares the record counts with `dataset.json`, and fully checks the **first
record of every shard**: a `tf.train.Example` with every field of the schema and of the
split's `label_fields`, holding a PNG of the image size, channel count and bit depth of
`dataset.json`.

Records deeper in a shard are checked while training (`reader.training_dataset`). This
module owns how such a failure becomes a `BadRecordError`: tf.data errors carry only
text, so the pipeline words a bad record with `bad_record_message` ("Bad input data in
<file>, record <i>: ... <end>") and `raise_for_input_error`, the training loop's input
error hook, parses it back into a `BadRecordError` with `path` and `index`. A failure that
TensorFlow reports without a file (a corrupt record's checksum, an undecodable PNG body)
is located by `find_bad_record`, which reads the splits record by record.

With `skip_bad_records`, a truncated shard is not an error: its readable records are
used and the others counted as skipped (`ShardReport.unreadable`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct

import numpy as np
import tensorflow as tf
from absl import logging

from simgan_tf.data import schema

_REQUIRED = (schema.IMAGE_ENCODED, schema.IMAGE_HEIGHT, schema.IMAGE_WIDTH,
             schema.IMAGE_CHANNELS, schema.SAMPLE_KEY, schema.SAMPLE_DOMAIN)


# The one wording of a bad record, in Python (`BadRecordError`) and in the input
# pipeline's graph (`bad_record_message`), parsed back by `parse_input_error`.
_MESSAGE_START = "Bad input data in "
_MESSAGE_END = " <end>"  # ends the in-graph message; TensorFlow appends its own text
_MESSAGE = re.compile(r"Bad input data in (?P<path>.+?), record (?P<index>\d+): (?P<problem>.*)",
                      re.DOTALL)
_INPUT_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError)


class BadRecordError(ValueError):
    """A record or shard that cannot be used; the message names the file (and record).

    Attributes:
      path: the shard file.
      index: 0-based record index in the shard, or `None` for a whole-file problem.
      problem: what is wrong with it.
    """

    def __init__(self, path: str, index: int | None, problem: str):
        where = f"{path}" if index is None else f"{path}, record {index}"
        super().__init__(f"{_MESSAGE_START}{where}: {problem}")
        self.path = path
        self.index = index
        self.problem = problem


def bad_record_message(path: tf.Tensor, index: tf.Tensor, key: tf.Tensor, split: str,
                       details) -> tf.Tensor:
    """The message of a bad record inside the input pipeline: a scalar string tensor.

    For `tf.debugging.Assert` in the pipeline's graph; `parse_input_error` turns the
    error it raises into the `BadRecordError` of the same record.

    Args:
      path: scalar string, the shard file.
      index: scalar int64, the record's 0-based index in the shard.
      key: scalar string, the record's `sample/key`.
      split: the split's name.
      details: strings and scalar string tensors saying what is wrong (joined as is).
    """
    return tf.strings.join([
        _MESSAGE_START, path, ", record ", tf.strings.as_string(index), ": (key ", key,
        f", split {split}) ", *details, _MESSAGE_END])


def parse_input_error(error: Exception) -> BadRecordError | None:
    """The `BadRecordError` named by an input pipeline error's message, or `None`."""
    message = getattr(error, "message", str(error))
    start = message.find(_MESSAGE_START)
    if start < 0:
        return None
    match = _MESSAGE.fullmatch(message[start:].split(_MESSAGE_END)[0])
    if match is None:
        return None
    return BadRecordError(match["path"], int(match["index"]), match["problem"])


def raise_for_input_error(error: Exception, *, data_dir: str, splits,
                          info: schema.DatasetInfo | None = None) -> None:
    """Raises the `BadRecordError` behind an input pipeline error, if there is one.

    The training loop's input error hook: bind the data with `functools.partial` and the
    loop calls it with any TensorFlow error of a step. The file and record come from the
    error's message (`bad_record_message`) or, for a failure that TensorFlow reports
    without a file, from reading `splits` record by record (slow: `find_bad_record`).

    Args:
      error: the exception a step (or a read of the data) raised.
      data_dir: the data folder.
      splits: names of the splits the failing pipeline read.
      info: the folder's `dataset.json` (read if `None`).

    Returns:
      Normally if `error` is not about the data or no bad record was found: the caller
      then re-raises `error`.

    Raises:
      BadRecordError: naming the file and record.
    """
    if not isinstance(error, _INPUT_ERRORS):
        return
    bad = parse_input_error(error)
    if bad is not None:
        raise bad from None
    message = " ".join(getattr(error, "message", str(error)).split())[:200]
    logging.error("Training failed on the input data (%s); reading %s record by record to "
                  "find the bad record.", message, data_dir)
    find_bad_record(data_dir, splits, info)


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
    size = tf.io.gfile.stat(path).length
    offset, count = 0, 0
    with tf.io.gfile.GFile(path, "rb") as f:
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
    problem = schema.png_header_problem(encoded, info)
    if problem is not None:
        raise BadRecordError(path, index, problem)


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

    split_info = info.get_split(split, data_dir)
    paths, compression = reader.list_shards(os.path.join(data_dir, split))
    declared = {shard.get("file"): shard.get("count") for shard in split_info.shards
                if isinstance(shard, dict)}
    reports = []
    for path in paths:
        if tf.io.gfile.stat(path).length == 0:
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
                logging.warning("%s (skipped: skip_bad_records is on).", e)
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
