"""Refining a whole TFRecord split with an exported refiner: refined training data.

`refine_split` reads every record of a split folder in file order, runs the refiner
SavedModel (`export.py`) over its images in batches, and writes a new split in the same
schema in which only `image/encoded` changed: the sample key, domain, every label and any
other feature are copied byte for byte from the input record, in the same order. The
refined floats in [-1, 1] go back to pixels with the data folder's `pixel_range`
(`reader.to_uint`), so a refined depth split keeps depth in mm.

The output split is published atomically by `SplitWriter` (a staging folder renamed into
place), and its `dataset.json` entry records the SavedModel and input it came from.
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from simgan_tf.data import reader, schema
from simgan_tf.serving import export
from simgan_tf.data.writer import SplitWriter


def split_location(split_dir: str) -> tuple[str, str]:
    """Splits a split folder path into (data folder, split name)."""
    split_dir = os.path.abspath(split_dir.rstrip(os.sep))
    return os.path.dirname(split_dir), os.path.basename(split_dir)


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
        the input; a record that does not decode (names file and record index).
    """
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: {batch_size}")
    in_data, in_split = split_location(input_dir)
    out_data, out_split = split_location(output_dir)
    if (in_data, in_split) == (out_data, out_split):
        raise ValueError(f"--output_dir must differ from --input_dir. Received both: {input_dir}")
    if not os.path.isdir(saved_model):
        raise FileNotFoundError(f"SavedModel folder does not exist: {saved_model}")
    info = schema.read_dataset_info(in_data)
    if in_split not in info.splits:
        raise ValueError(f"{schema.dataset_info_path(in_data)} has no split {in_split!r}. "
                         f"Available: {sorted(info.splits)}.")
    split_info = info.splits[in_split]
    paths, compression = reader.list_shards(os.path.join(in_data, in_split))

    refine = export.load_refiner(saved_model)
    spec = refine.input_spec
    if tuple(spec.shape[1:]) != tuple(info.image_shape):
        raise ValueError(
            f"The refiner in {saved_model} takes images of shape {tuple(spec.shape[1:])}; "
            f"{in_data} holds {tuple(info.image_shape)}.")
    height, width, channels = info.image_shape
    dtype = info.image_dtype

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def decode(encoded):
        def one(png):
            image = tf.io.decode_png(png, channels=channels, dtype=tf.as_dtype(dtype))
            return tf.ensure_shape(image, [height, width, channels])
        images = tf.map_fn(one, encoded, fn_output_signature=tf.as_dtype(dtype))
        return reader.scale_image(images, dtype, info.pixel_range)

    source = {
        "refined_from": {"data_dir": in_data, "split": in_split,
                         "shards": [s.get("sha256") for s in split_info.shards]},
        "saved_model": os.path.abspath(saved_model),
        "input_source": split_info.source,
    }
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=split_info.count, unit="img", desc=f"refining {in_split}")
    with SplitWriter(out_data, out_split, domain=split_info.domain,
                     image_shape=info.image_shape, image_dtype=dtype,
                     label_fields=split_info.label_fields, compression=compression,
                     source=source, pixel_range=info.pixel_range) as writer:
        for path in paths:
            records = tf.data.TFRecordDataset(path, compression_type=compression or "")
            index = 0
            try:
                for batch in records.batch(batch_size).as_numpy_iterator():
                    examples = [tf.train.Example.FromString(r) for r in batch]
                    encoded = [_image_bytes(e, path, index + i) for i, e in enumerate(examples)]
                    try:
                        images = decode(tf.constant(encoded))
                    except tf.errors.InvalidArgumentError as e:
                        raise ValueError(
                            f"{path}: a record among {index}..{index + len(batch) - 1} does "
                            f"not hold a {height}x{width}x{channels} {dtype} PNG: "
                            f"{e.message.splitlines()[0]}") from None
                    pixels = reader.to_uint(refine(images), dtype, info.pixel_range).numpy()
                    for example, image in zip(examples, pixels):
                        example.features.feature[schema.IMAGE_ENCODED].bytes_list.value[:] = [
                            schema.encode_png(image)]
                        writer.write(example.SerializeToString(deterministic=True))
                    index += len(batch)
                    if bar is not None:
                        bar.update(len(batch))
            except tf.errors.DataLossError as e:
                raise ValueError(f"{path}: corrupt TFRecord after record {index}: "
                                 f"{e.message.splitlines()[0]}") from None
    if bar is not None:
        bar.close()
    written = schema.read_dataset_info(out_data).splits[out_split]
    if written.count != split_info.count:
        logging.warning("%s: dataset.json says %d records but %d were read and refined.",
                        input_dir, split_info.count, written.count)
    return written


def _image_bytes(example: tf.train.Example, path: str, index: int) -> bytes:
    feature = example.features.feature
    if schema.IMAGE_ENCODED not in feature or not feature[schema.IMAGE_ENCODED].bytes_list.value:
        raise ValueError(f"{path}: record {index} has no {schema.IMAGE_ENCODED} feature.")
    return feature[schema.IMAGE_ENCODED].bytes_list.value[0]

