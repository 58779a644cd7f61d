"""tf.data reader of the simgan-tf TFRecord schema.

`read_split` yields parsed examples (image in [-1, 1], key, domain, labels) of one split;
`training_dataset` zips the synthetic and real splits into the batches SimGAN trains on.

Image scaling: a pixel p maps to 2 (p - lo) / (hi - lo) - 1, clipped to [-1, 1], where
`[lo, hi]` is the data folder's `pixel_range` (`dataset.json`), by default the dtype's full
range: 8-bit PNG pixels [0, 255] map to p / 127.5 - 1, 16-bit ones [0, 65535] to
p / 32767.5 - 1. Depth data sets its range in mm (NYU hand and the hand simulator:
[-1000, 2000], so background 0 is -1/3, 500 mm is 0 and 2 m is +1). `to_uint` inverts the mapping (exactly, for the default ranges).

Bad records: records travel with their file and index in the file, so a record that is
missing a field or whose PNG header (size, channels, bit depth) disagrees with
`dataset.json` fails with an error naming both (worded by
`validation.bad_record_message`; `validation.raise_for_input_error` turns it back into a
`BadRecordError`), or, in `training_dataset(skip_bad_records=True)`, is dropped and
counted. `validation` also holds the validation pass run before training.

Slightly over 400 lines: listing, parsing, decoding and batching are one pipeline whose
stages pass the same (file, index, record) structure along.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from simgan_tf.data import schema, validation

_TF_DTYPE = {"uint8": tf.uint8, "uint16": tf.uint16}


def list_shards(split_dir: str) -> tuple[list[str], str | None]:
    """Lists the TFRecord shards of one split folder (any `tf.io.gfile` path), sorted by name.

    Returns:
      (paths, compression) with compression `None` or `"GZIP"`.

    Raises:
      FileNotFoundError: if the folder is missing or holds no shards.
      ValueError: if it mixes compressed and uncompressed shards.
    """
    if not tf.io.gfile.isdir(split_dir):
        raise FileNotFoundError(f"Split folder does not exist: {split_dir}")
    names = sorted(tf.io.gfile.listdir(split_dir))
    plain = [n for n in names if n.endswith(".tfrecord")]
    gzip = [n for n in names if n.endswith(".tfrecord.gz")]
    if plain and gzip:
        raise ValueError(
            f"{split_dir} mixes .tfrecord and .tfrecord.gz shards; convert it again with "
            "one compression.")
    if not plain and not gzip:
        raise FileNotFoundError(
            f"No *.tfrecord or *.tfrecord.gz shards in {split_dir} (found: {names[:5]}).")
    chosen, compression = (plain, None) if plain else (gzip, "GZIP")
    return [os.path.join(split_dir, n) for n in chosen], compression


def scale_image(image: tf.Tensor, image_dtype: str = "uint8", pixel_range=None) -> tf.Tensor:
    """Maps uint8/uint16 pixels to float32 in [-1, 1] (see the module docstring)."""
    lo, hi = schema.value_range(image_dtype, pixel_range)
    scaled = (tf.cast(image, tf.float32) - lo) * (2.0 / (hi - lo)) - 1.0
    return tf.clip_by_value(scaled, -1.0, 1.0) if pixel_range is not None else scaled


def to_uint(images: tf.Tensor, image_dtype: str = "uint8", pixel_range=None) -> tf.Tensor:
    """Inverse of `scale_image`: float in [-1, 1] (clipped) to uint8/uint16 pixels."""
    lo, hi = schema.value_range(image_dtype, pixel_range)
    pixels = tf.round((tf.clip_by_value(images, -1.0, 1.0) + 1.0) * ((hi - lo) / 2.0) + lo)
    return tf.cast(pixels, _TF_DTYPE[image_dtype])


def decode_image(encoded: tf.Tensor, image_shape: tuple[int, int, int],
                 image_dtype: str = "uint8", pixel_range=None, *, any_format: bool = False,
                 context=None) -> tf.Tensor:
    """Decodes one encoded image and scales it to float32 `[H, W, C]` in [-1, 1].

    The one decoder of the package: the input pipeline, the export's bytes signature (in
    its graph) and the refine clients all call it.

    Args:
      encoded: scalar string tensor, a PNG file (8- or 16-bit as `image_dtype`).
      image_shape: `(H, W, C)`; the image is decoded to C channels (colour converted).
      image_dtype: `uint8` or `uint16`, the pixel type decoded.
      pixel_range: `[lo, hi]` mapped to [-1, 1] (`None`: the dtype's range); see
        `scale_image`.
      any_format: for `uint8`, also decode JPEG, BMP and GIF (first frame).
      context: `None`, or strings and tensors naming the image (e.g. `["image", i, "of
        the batch"]`); an image of another height or width raises `InvalidArgumentError`,
        from `tf.ensure_shape` without `context`, else "<context> decodes to shape
        [h w c] but expected [H, W, C]" (checked when the graph runs, so that a serving
        graph whose input shape is unknown still checks).

    Returns:
      float32 `[H, W, C]`.
    """
    height, width, channels = image_shape
    if any_format and image_dtype == "uint8":
        image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8,
                                   expand_animations=False)
    else:
        image = tf.io.decode_png(encoded, channels=channels, dtype=_TF_DTYPE[image_dtype])
    if context is None:
        image = tf.ensure_shape(image, image_shape)
    else:
        shape = tf.shape(image)
        check = tf.debugging.Assert(
            tf.reduce_all(tf.equal(shape[:2], [height, width])),
            [*context, "decodes to shape", shape,
             f"but expected [{height}, {width}, {channels}]."], summarize=8)
        with tf.control_dependencies([check]):
            image = tf.reshape(tf.identity(image), image_shape)
    return scale_image(image, image_dtype, pixel_range)


def make_parse_fn(info: schema.DatasetInfo, split: str):
    """Returns `(path, index, serialized record) -> dict of decoded features`.

    The dict holds `image` (float32 `[H, W, C]` in [-1, 1]), `key`, `domain` and every
    label field of the split (float32 vectors). A record missing a field, with a label of
    the wrong length, or whose image is not a PNG of the size, channel count and bit
    depth of `dataset.json`, fails with an `InvalidArgumentError` naming the file, the
    record index in the file and the key.
    """
    split_info = info.splits[split]
    spec = {name: tf.io.VarLenFeature(feature.dtype)
            for name, feature in schema.feature_spec(split_info.label_fields).items()}
    lengths = {name: 1 for name in spec}
    lengths.update({name: int(n) for name, n in split_info.label_fields.items()})
    names = sorted(spec)
    image_check = make_image_check_fn(info, split, fail=True)
    dtype = info.image_dtype

    def parse(path, index, serialized):
        sparse = tf.io.parse_single_example(serialized, spec)
        values = {name: sparse[name].values for name in names}
        sizes = tf.stack([tf.size(values[name]) for name in names])
        key = tf.strings.reduce_join(values[schema.SAMPLE_KEY])
        ok = tf.reduce_all(tf.equal(sizes, [lengths[name] for name in names]))
        assertion = tf.debugging.Assert(ok, [validation.bad_record_message(
            path, index, key, split, [
            f"value counts of {', '.join(names)} are ", tf.strings.format("{}", sizes, summarize=-1),
            f", expected {' '.join(str(lengths[n]) for n in names)} (0: field missing)"])])
        with tf.control_dependencies([assertion]):
            encoded, _ = image_check(path, index, serialized, key=key)
        out = {
            "image": decode_image(encoded, info.image_shape, dtype, info.pixel_range),
            "key": key,
            "domain": tf.strings.reduce_join(values[schema.SAMPLE_DOMAIN]),
        }
        for name in split_info.label_fields:
            out[name] = tf.reshape(values[name], [lengths[name]])
        return out

    return parse


def read_split(data_dir: str, split: str, *, info: schema.DatasetInfo | None = None,
               shuffle: bool = False, repeat: bool = False, seed: int | None = None,
               shuffle_buffer: int = 10_000, deterministic: bool = True,
               input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Reads one split as a dataset of parsed, unbatched examples.

    Files are listed, shuffled (when `shuffle`), sharded by `input_context` at file level,
    interleaved in parallel, then records are shuffled, parsed and decoded. Parsing after
    shuffling keeps the shuffle buffer small (it holds encoded records).

    Args:
      data_dir: data folder with `dataset.json`.
      split: split folder name.
      info: `dataset.json` contents (read when `None`).
      shuffle: shuffle files and records.
      repeat: repeat forever (re-shuffling each epoch).
      seed: seed of both shuffles; with `deterministic` the order is a function of it.
      shuffle_buffer: records in the record shuffle buffer.
      deterministic: keep the interleave and map order deterministic.
      input_context: from `strategy.distribute_datasets_from_function`; shards files
        across input pipelines.

    Returns:
      A `tf.data.Dataset` of dicts (see `make_parse_fn`).

    Raises:
      FileNotFoundError, ValueError: missing folder or split, no shards, empty split.
    """
    info = info or schema.read_dataset_info(data_dir)
    info.get_split(split, data_dir)
    paths, compression = list_shards(os.path.join(data_dir, split))
    records = _numbered_records(paths, compression, shuffle=shuffle, repeat=repeat, seed=seed,
                                deterministic=deterministic, input_context=input_context,
                                skip_bad_records=False)
    if shuffle:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return records.map(make_parse_fn(info, split), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=deterministic)


def load_arrays(data_dir: str, split: str, fields: tuple[str, ...] = ("image",), *,
                count: int | None = None, require_count: bool = True,
                info: schema.DatasetInfo | None = None,
                skip_bad_records: bool = False) -> dict[str, np.ndarray]:
    """The first `count` examples of a split (all when `None`), in file order, as arrays.

    For evaluation and inspection, where a split (or its head) fits in memory.

    Args:
      data_dir: data folder with `dataset.json`.
      split: split folder name.
      fields: features of `read_split` to keep, e.g. `("image", schema.LABEL_GAZE)`.
      count: examples wanted.
      require_count: whether a split with fewer than `count` (good) records is an error;
        if not, all it has are returned.
      info: `dataset.json` contents (read when `None`).
      skip_bad_records: drop records that fail to parse instead of raising.

    Returns:
      `{field: [n, ...] array}`; images are float32 in [-1, 1].

    Raises:
      ValueError: the split lacks a field, or holds fewer than `count` (good) records.
    """
    info = info or schema.read_dataset_info(data_dir)
    dataset = read_split(data_dir, split, info=info)
    missing = [f for f in fields if f not in dataset.element_spec]
    if missing:
        raise ValueError(f"Split {split!r} of {data_dir} has no {missing}; it has "
                         f"{sorted(dataset.element_spec)}.")
    if skip_bad_records:
        dataset = dataset.ignore_errors()
    if count is not None:
        dataset = dataset.take(count)

    def keep(example):
        return {f: example[f] for f in fields}

    dataset = dataset.map(keep).batch(1000)
    parts = {f: [] for f in fields}
    for batch in dataset.as_numpy_iterator():
        for f in fields:
            parts[f].append(batch[f])
    arrays = {f: np.concatenate(v) if v else np.zeros([0]) for f, v in parts.items()}
    found = len(arrays[fields[0]])
    if count is not None and found < count and require_count:
        raise ValueError(f"Split {split!r} of {data_dir} has {found} "
                         f"{'good ' if skip_bad_records else ''}records; {count} are needed.")
    return arrays


def check_image_shape(info: schema.DatasetInfo, data_dir: str,
                      image_shape: tuple[int, int, int]) -> None:
    """Raises ValueError if the data folder's images are not what the networks expect."""
    if tuple(info.image_shape) != tuple(image_shape):
        raise ValueError(
            f"{schema.dataset_info_path(data_dir)} holds images of shape "
            f"{info.image_shape}; expected the config's image shape (a preset of another "
            "shape, or the `custom` preset, which takes the data's shape). Received: "
            f"image_shape={tuple(image_shape)}")


def _numbered_records(paths, compression, *, shuffle, repeat, seed, deterministic,
                      input_context, skip_bad_records):
    """`(path, index in file, serialized record)` of the shards, file-sharded, interleaved."""
    files = tf.data.Dataset.from_tensor_slices(paths)
    if input_context is not None and input_context.num_input_pipelines > 1:
        files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        files = files.repeat()

    def read(path):
        records = tf.data.TFRecordDataset(path, compression_type=compression or "")
        if skip_bad_records:
            # A corrupt or truncated shard ends there (TensorFlow logs a warning).
            records = records.ignore_errors(log_warning=True)
        return records.enumerate().map(lambda i, r: (path, i, r))

    return files.interleave(read, cycle_length=min(len(paths), 8) if shuffle else 1,
                            block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=deterministic)


def make_image_check_fn(info: schema.DatasetInfo, split: str, *, fail: bool):
    """Returns `(path, index, record) -> (encoded PNG, ok)`, checking the PNG header.

    Checks, without decoding, that the record has `image/encoded` holding a PNG with the
    height, width, channel count (PNG color type) and bit depth of `dataset.json`. With
    `fail`, a bad record raises `InvalidArgumentError` naming the file and record index;
    otherwise `ok` is False for it.
    """
    height, width, channels = info.image_shape
    spec = {schema.IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string, default_value=""),
            schema.SAMPLE_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")}
    _, _, bit_depth, color_type = info.png_header
    expected = (f"dataset.json says {height}x{width}, {channels} channel(s) (PNG color "
                f"type {color_type}), bit depth {bit_depth}")

    def check(path, index, serialized, key=None):
        parsed = tf.io.parse_single_example(serialized, spec)
        encoded = parsed[schema.IMAGE_ENCODED]
        key = parsed[schema.SAMPLE_KEY] if key is None else key
        header, is_png = schema.png_header_tensor(encoded)
        ok = tf.logical_and(is_png, tf.reduce_all(tf.equal(header, info.png_header)))
        png_height, png_width = header[0], header[1]
        if fail:
            number = tf.strings.as_string
            assertion = tf.debugging.Assert(ok, [validation.bad_record_message(
                path, index, key, split, [
                "image/encoded of ", number(tf.strings.length(encoded)),
                " bytes, PNG header height ", number(png_height), " width ", number(png_width),
                " bit depth ", number(header[2]), " color type ", number(header[3]),
                f" (0 if missing or not a PNG); {expected}"])])
            with tf.control_dependencies([assertion]):
                encoded = tf.identity(encoded)
        return encoded, ok

    return check


def _split_images(data_dir, split, info, *, batch_size, seed, shuffle_buffer, deterministic,
                  input_context, skip_bad_records):
    """Batches `[b, H, W, C]` of one split; with `skip_bad_records` also the skip count."""
    paths, compression = list_shards(os.path.join(data_dir, split))
    records = _numbered_records(paths, compression, shuffle=True, repeat=True, seed=seed,
                                deterministic=deterministic, input_context=input_context,
                                skip_bad_records=skip_bad_records)
    records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    checked = records.map(make_image_check_fn(info, split, fail=not skip_bad_records),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)

    def decode(encoded):
        return decode_image(encoded, info.image_shape, info.image_dtype, info.pixel_range)

    if not skip_bad_records:
        images = checked.map(lambda encoded, ok: decode(encoded),
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        return images.batch(batch_size, drop_remainder=True)
    # Count what is dropped: records seen by the check minus images that came out.
    counted = checked.scan(tf.constant(0, tf.int64),
                           lambda seen, x: (seen + 1, (x[0], x[1], seen + 1)))
    good = counted.filter(lambda encoded, ok, seen: ok)
    images = good.map(lambda encoded, ok, seen: (decode(encoded), seen),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    images = images.ignore_errors(log_warning=True)  # PNG bodies that do not decode
    images = images.scan(tf.constant(0, tf.int64),
                         lambda kept, x: (kept + 1, (x[0], x[1] - (kept + 1))))
    return images.batch(batch_size, drop_remainder=True).map(
        lambda image, skipped: (image, skipped[-1]))


def training_dataset(data_dir: str, *, synthetic_split: str, real_split: str,
                     batch_size: int, image_shape: tuple[int, int, int], seed: int,
                     shuffle_buffer: int = 10_000, deterministic: bool = False,
                     input_context: tf.distribute.InputContext | None = None,
                     skip_bad_records: bool = False) -> tf.data.Dataset:
    """The infinite dataset SimGAN trains on.

    Each element is `{"synthetic": [b, H, W, C], "real": [b, H, W, C]}` float32 in
    [-1, 1], where b is `batch_size`: the global batch when the dataset is distributed
    with `strategy.experimental_distribute_dataset` (it is split across replicas), or the
    per-replica batch when built per input pipeline with `input_context`. Batches drop
    the remainder so every step sees exactly b images of each domain.

    Every record's PNG header is checked (size, channels, bit depth): a bad record fails
    with an error naming its file and index in the file, or, with `skip_bad_records`, is
    dropped and counted, and a corrupt or truncated shard is read up to the damage.
    Then each element also has `"skipped"`: int64 `[b]`, every entry the number of
    records this input pipeline has dropped so far (both splits).

    Sharding: under a multi-worker strategy, `tf.data`'s auto-sharding is set to `FILE`
    (each worker reads its own shards; there must be at least as many shards per split as
    workers), never `DATA` (every worker would read every file and drop most of it).

    The two splits are shuffled with different seeds derived from `seed`.
    """
    info = schema.read_dataset_info(data_dir)
    check_image_shape(info, data_dir, image_shape)
    for split in (synthetic_split, real_split):
        info.get_split(split, data_dir)
    kwargs = dict(batch_size=batch_size, shuffle_buffer=shuffle_buffer,
                  deterministic=deterministic, input_context=input_context,
                  skip_bad_records=skip_bad_records)
    synthetic = _split_images(data_dir, synthetic_split, info, seed=seed, **kwargs)
    real = _split_images(data_dir, real_split, info, seed=seed + 1, **kwargs)
    dataset = tf.data.Dataset.zip({"synthetic": synthetic, "real": real})
    if skip_bad_records:
        dataset = dataset.map(lambda d: {
            "synthetic": d["synthetic"][0], "real": d["real"][0],
            "skipped": tf.fill([batch_size], d["synthetic"][1] + d["real"][1])})
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.FILE)
    dataset = dataset.with_options(options)
    return dataset.prefetch(tf.data.AUTOTUNE)


def use_data_service(dataset: tf.data.Dataset, address: str, *,
                     job_name: str) -> tf.data.Dataset:
    """Runs `dataset` on the workers of a tf.data service and reads it from there.

    The pipeline (reading, checking, decoding, batching) is serialized and executed by
    the service's workers, which must see the data folder at the same path. All training
    processes share one job (`job_name`), so each batch goes to one of them (no
    sharding policy: the dataset is infinite and shuffled). The order is not
    deterministic and the position cannot be checkpointed.

    Args:
      dataset: the training dataset.
      address: `grpc://host:port` of the dispatcher.
      job_name: shared by all consumers of the same run.
    """
    dataset = dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.OFF,
        service=address, job_name=job_name))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
