"""Writes one split of a data folder as TFRecord shards, atomically.

Used by the built-in simulator, the `data_prep/` converters and the refine step. A split is
written into a hidden staging folder beside its final place; each shard is closed, hashed
and counted; only when the whole split is complete does the staging folder replace
`<data_dir>/<split>/` and `dataset.json` gain the split's entry. An interrupted run
therefore leaves the previous split (if any) untouched and no half-written shard in it; a
rerun starts clean.

Every file access goes through `tf.io.gfile`, so the data folder may be local, `gs://` or
`ram://`. Only a local rename of a folder is atomic: elsewhere `rename_folder` moves the
staged shards one by one before `dataset.json` is updated.
"""

from __future__ import annotations

import hashlib
import os
import uuid

import tensorflow as tf

from simgan_tf.data import schema

DEFAULT_SHARD_BYTES = 64 * 2**20


def sha256_file(path: str) -> str:
    """Hex sha256 of a file, as recorded per shard in `dataset.json`."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def rename_folder(source: str, target: str) -> None:
    """Renames folder `source` to `target`, which must not exist.

    One atomic rename on a local disk; on other file systems (`gs://`, `ram://`, whose
    folders are name prefixes) every file is renamed, then `source` is removed.
    """
    if "://" not in source:
        tf.io.gfile.rename(source, target)
        return
    for folder, _, files in tf.io.gfile.walk(source):
        destination = target + folder[len(source):]
        tf.io.gfile.makedirs(destination)
        for name in files:
            tf.io.gfile.rename(os.path.join(folder, name), os.path.join(destination, name))
    tf.io.gfile.rmtree(source)


def remove_folder(path: str) -> None:
    """Removes folder `path` and everything in it, if it exists."""
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


class SplitWriter:
    """Writes serialized examples of one split into sharded TFRecord files.

    Use as a context manager; the split is published on a clean exit and discarded on
    an exception:

        with SplitWriter(data_dir, "synthetic", domain="synthetic",
                         image_shape=(35, 55, 1)) as writer:
            writer.write(schema.encode_example(image, key=..., domain="synthetic"))

    Args:
      data_dir: the data folder (created if missing).
      split: split name, e.g. `synthetic`, `real`, `real_test`, `refined`.
      domain: `synthetic` or `real`: the domain of every record.
      image_shape: `(height, width, channels)` of every image.
      image_dtype: `uint8` or `uint16`.
      label_fields: mapping from label feature name to its number of floats; every
        record is expected to carry them.
      shard_bytes: a new shard starts once the current one holds this many bytes of
        serialized records (before compression).
      compression: `None` or `"GZIP"`.
      pixel_range: `[lo, hi]` pixel values the reader maps to [-1, 1] (`None`: the
        dtype's full range); see `schema.DatasetInfo`.
      source: free-form JSON-serializable description stored in dataset.json. The
        `source` attribute may be updated (e.g. with skip counts) until the `with`
        block exits.

    Attributes:
      count: records written so far.
      shards: `{"file", "count", "sha256"}` of the shards completed so far (all of them
        after the `with` block).
    """

    def __init__(self, data_dir: str, split: str, *, domain: str,
                 image_shape: tuple[int, int, int], image_dtype: str = "uint8",
                 label_fields: dict | None = None,
                 shard_bytes: int = DEFAULT_SHARD_BYTES,
                 compression: str | None = None, source: dict | None = None,
                 pixel_range=None):
        if domain not in schema.DOMAINS:
            raise ValueError(f"Expected domain in {schema.DOMAINS}. Received: {domain!r}")
        if compression not in schema.COMPRESSIONS:
            raise ValueError(
                f"Expected compression in {schema.COMPRESSIONS}. Received: {compression!r}")
        if shard_bytes <= 0:
            raise ValueError(f"Expected shard_bytes > 0. Received: {shard_bytes}")
        if not split or os.sep in split or split.startswith("."):
            raise ValueError(f"Expected a plain split folder name. Received: {split!r}")
        self.data_dir = data_dir
        self.split = split
        self.domain = domain
        self.image_shape = tuple(int(d) for d in image_shape)
        self.image_dtype = image_dtype
        self.label_fields = dict(label_fields or {})
        self.shard_bytes = shard_bytes
        self.compression = compression
        self.source = dict(source or {})
        self.pixel_range = (None if pixel_range is None
                            else schema.check_pixel_range(pixel_range, image_dtype))
        self._staging = None
        self._writer = None
        self._shard_path = None
        self._shard_count = 0
        self._shard_size = 0
        self._shards = []
        self.count = 0

    @property
    def shards(self) -> list:
        return [dict(shard) for shard in self._shards]

    def __enter__(self) -> "SplitWriter":
        tf.io.gfile.makedirs(self.data_dir)
        # Fail before any long work if the folder holds images of another kind.
        schema.check_compatible(self.data_dir, self.split, self.image_shape,
                                self.image_dtype, self.pixel_range)
        self._staging = os.path.join(
            self.data_dir, f".staging-{self.split}-{uuid.uuid4().hex[:8]}")
        tf.io.gfile.makedirs(self._staging)
        return self

    def write(self, serialized: bytes) -> None:
        """Appends one serialized `tf.train.Example` (see `schema.encode_example`)."""
        if self._staging is None:
            raise RuntimeError("SplitWriter.write called outside its `with` block.")
        if self._writer is None:
            self._open_shard()
        self._writer.write(serialized)
        self._shard_count += 1
        self._shard_size += len(serialized)
        self.count += 1
        if self._shard_size >= self.shard_bytes:
            self._close_shard()

    def _open_shard(self):
        name = f"{self.split}-{len(self._shards):05d}{schema.SHARD_SUFFIXES[self.compression]}"
        self._shard_path = os.path.join(self._staging, name)
        options = tf.io.TFRecordOptions(compression_type=self.compression or "")
        self._writer = tf.io.TFRecordWriter(self._shard_path, options)
        self._shard_count = 0
        self._shard_size = 0

    def _close_shard(self):
        self._writer.close()
        self._writer = None
        self._shards.append({
            "file": os.path.basename(self._shard_path),
            "count": self._shard_count,
            "sha256": sha256_file(self._shard_path),
        })

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            if self._writer is not None:
                self._writer.close()
            remove_folder(self._staging)
            return False
        if self._writer is not None:
            self._close_shard()
        self._publish()
        return False

    def _publish(self):
        final = os.path.join(self.data_dir, self.split)
        old = None
        if tf.io.gfile.exists(final):
            old = os.path.join(self.data_dir, f".old-{self.split}-{uuid.uuid4().hex[:8]}")
            rename_folder(final, old)
        rename_folder(self._staging, final)
        info = schema.SplitInfo(
            count=self.count, domain=self.domain, shards=self._shards,
            label_fields=self.label_fields, compression=self.compression,
            source=self.source)
        try:
            schema.update_dataset_info(
                self.data_dir, self.split, info,
                image_shape=self.image_shape, image_dtype=self.image_dtype,
                pixel_range=self.pixel_range)
        except BaseException:
            # Put the previous split back: nothing already written is lost.
            remove_folder(final)
            if old is not None:
                rename_folder(old, final)
            raise
        if old is not None:
            remove_folder(old)
