"""Refining a whole TFRecord split with an exported refiner: refined training data.

`refine_split` reads every record of a split folder in file order, refines its images in
batches through `refiner_client.RefinerClient` (the SavedModel of `export.py`), and writes a
new split in the same schema in which only `image/encoded` changed: the sample key,
domain, every label and any other feature are copied byte for byte from the input record,
in the same order. The refined floats in [-1, 1] go back to pixels with the input data
folder's `pixel_range`, so a refined depth split keeps depth in mm.

The output split is published by `SplitWriter` (a staging folder renamed into place), and
its `dataset.json` entry records the SavedModel and input it came from. Folders may be
local, `gs://` or `ram://` (`tf.io.gfile`).
"""

from __future__ import annotations

import os

import tensorflow as tf
import tqdm
from absl import logging

from simgan_tf.data import reader, schema
from simgan_tf.data.writer import SplitWriter
from simgan_tf.serving.refiner_client import RefinerClient


def split_location(split_dir: str) -> tuple[str, str]:
    """Splits a split folder path into (data folder, split name); local paths made absolute."""
    split_dir = _absolute(split_dir.rstrip("/"))
    return os.path.dirname(split_dir), os.path.basename(split_dir)


def _absolute(path: str) -> str:
    """`path` made absolute, unless it is a URL (`gs://...`)."""
    return path if "://" in path else os.path.abspath(path)


def refine_split(saved_model: str, input_dir: str, output_dir: str, *,
                 batch_size: int = 256, progress: bool = False) -> schema.SplitInfo:
    """Writes the refined copy of one split.

    Args:
      saved_model: exported refiner folder (`<model_dir>/export/refiner/<step>`).
      input_dir: split folder to refine, e.g. `<data>/synthetic` (its parent holds
        `dataset.json`).
      output_dir: split folder to write, e.g. `<data>/refined`; its parent gets or updates
        a `dataset.json`. Must differ from `input_dir`. An existing split there is
        replaced only once the new one is complete.
      batch_size: images per refiner call.
      progress: show a tqdm progress bar.

    Returns:
      The `SplitInfo` of the written split.

    Raises:
      FileNotFoundError: missing SavedModel, data folder, split or shards.
      ValueError: image shape of the data differs from the refiner's input; output is
        the input; a record that does not decode or a corrupt shard (names the file and
        record index).
    """
    in_data, in_split = split_location(input_dir)
    out_data, out_split = split_location(output_dir)
    if (in_data, in_split) == (out_data, out_split):
        raise ValueError("Expected output_dir to differ from input_dir. Received: "
                         f"input_dir={input_dir!r}, output_dir={output_dir!r}")
    info = schema.read_dataset_info(in_data)
    split_info = info.get_split(in_split, in_data, allow_empty=True)
    paths, compression = reader.list_shards(os.path.join(in_data, in_split))
    client = RefinerClient(saved_model, batch_size=batch_size, image_dtype=info.image_dtype,
                           pixel_range=info.pixel_range)
    if client.image_shape != tuple(info.image_shape):
        raise ValueError(
            f"The refiner in {saved_model} takes images of shape {client.image_shape}; "
            f"{in_data} holds {tuple(info.image_shape)}.")
    source = {
        "refined_from": {"data_dir": in_data, "split": in_split,
                         "shards": [s.get("sha256") for s in split_info.shards]},
        "saved_model": _absolute(saved_model),
        "input_source": split_info.source,
    }
    bar = tqdm.tqdm(total=split_info.count, unit="img", desc=f"refining {in_split}",
                    disable=not progress)
    with SplitWriter(out_data, out_split, domain=split_info.domain,
                     image_shape=info.image_shape, image_dtype=info.image_dtype,
                     label_fields=split_info.label_fields, compression=compression,
                     source=source, pixel_range=info.pixel_range) as writer:
        for path in paths:
            # Batches never span two shards.
            for example, pixels in client.refine_all(_examples(path, compression)):
                example.features.feature[schema.IMAGE_ENCODED].bytes_list.value[:] = [
                    schema.encode_png(pixels)]
                writer.write(example.SerializeToString(deterministic=True))
                bar.update(1)
    bar.close()
    written = schema.read_dataset_info(out_data).splits[out_split]
    if written.count != split_info.count:
        logging.warning("%s: dataset.json says %d records but %d were read and refined.",
                        input_dir, split_info.count, written.count)
    return written


def _read_records(path: str, compression: str | None) -> list:
    """Every serialized record of one shard, in order, read before any is refined.

    The whole shard is read first (a shard `SplitWriter` made holds at most
    `writer.DEFAULT_SHARD_BYTES`), so that the `tf.data` iterator has ended before the
    refiner runs: kept open across the refiner's calls, its last call (the end of the
    shard) waited 3.9 to 33.8 s in 5 of 10 runs of `bench/refine_speed.py` on a loaded
    2-core machine, against 0.05 s for reading the whole shard at once.

    Raises:
      ValueError: a corrupt shard (names the last good record).
    """
    records = []
    dataset = tf.data.TFRecordDataset(path, compression_type=compression or "")
    try:
        for batch in dataset.batch(1024).as_numpy_iterator():
            records.extend(batch)
    except tf.errors.DataLossError as e:
        raise ValueError(f"{path}: corrupt TFRecord after record {len(records)}: "
                         f"{e.message.splitlines()[0]}") from None
    return records


def _examples(path: str, compression: str | None):
    """`(name, encoded image, tf.train.Example)` of every record of one shard, in order.

    Raises:
      ValueError: a record without an image, or a corrupt shard (names the record).
    """
    for index, record in enumerate(_read_records(path, compression)):
        example = tf.train.Example.FromString(record)
        feature = example.features.feature
        if (schema.IMAGE_ENCODED not in feature
                or not feature[schema.IMAGE_ENCODED].bytes_list.value):
            raise ValueError(f"{path}: record {index} has no {schema.IMAGE_ENCODED} feature.")
        yield (f"{path}, record {index}", feature[schema.IMAGE_ENCODED].bytes_list.value[0],
               example)
