"""Refining encoded images with an exported refiner on this host: the one client path.

`refine_split` (the records of a TFRecord split, `refine.py`) and `image_files` (PNG and
JPEG files, `refine_images.py`) both refine through `RefinerClient`. It loads the
SavedModel once, groups the images in batches, decodes each batch with the data layer's
decoder (`reader.decode_image`, the function the export's bytes signature runs in its
graph), calls the float signature (`export.SIGNATURE_KEY`) and maps the refined floats back
to pixels (`reader.to_uint`). Encoding the pixels is the caller's (`schema.encode_png`).

The pixel convention (how pixels map to [-1, 1] and back) is the caller's choice: the data
folder's `dataset.json` for a split, so that a refined depth split keeps depth in mm; by
default the export's, from its model card (that of the data it was trained on).
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from simgan_tf.data import reader, schema
from simgan_tf.serving import export


class RefinerClient:
    """An exported refiner, loaded to refine batches of encoded images.

    Args:
      saved_model: export folder (`<model_dir>/export/refiner/<step>`), any
        `tf.io.gfile` path.
      batch_size: images per call of the refiner (>= 1).
      image_dtype: `uint8` or `uint16`, the pixels decoded and returned; `None` for the
        export's (its model card's), which also sets `pixel_range`.
      pixel_range: `[lo, hi]` mapped to [-1, 1] (`None`: the dtype's full range); used
        only with an explicit `image_dtype`.
      any_format: for 8-bit pixels, also decode JPEG, BMP and GIF; else PNG only.

    Attributes:
      image_shape: `(H, W, C)` the refiner takes.
      image_dtype, pixel_range: the pixel convention in use.

    Raises:
      FileNotFoundError: no SavedModel folder, or (with `image_dtype=None`) no model card.
      ValueError: `batch_size` < 1.
    """

    def __init__(self, saved_model: str, *, batch_size: int, image_dtype: str | None = None,
                 pixel_range=None, any_format: bool = False):
        if batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size}")
        if not tf.io.gfile.isdir(saved_model):
            raise FileNotFoundError(f"SavedModel folder does not exist: {saved_model}")
        if image_dtype is None:
            pixels = export.read_model_card(saved_model)["pixels"]
            image_dtype, pixel_range = pixels["image_dtype"], pixels["pixel_range"]
        self.saved_model = saved_model
        self.batch_size = int(batch_size)
        self.image_dtype = image_dtype
        self.pixel_range = (None if pixel_range is None
                            else schema.check_pixel_range(pixel_range, image_dtype))
        self.any_format = any_format
        self._refine = export.load_refiner(saved_model)
        self.image_shape = tuple(int(d) for d in self._refine.input_spec.shape[1:])
        self._decode = tf.function(self._decode_batch,
                                   input_signature=[tf.TensorSpec([None], tf.string)])

    def _decode_one(self, encoded):
        return reader.decode_image(encoded, self.image_shape, self.image_dtype,
                                   self.pixel_range, any_format=self.any_format,
                                   context=["image"])

    def _decode_batch(self, encoded):
        return tf.map_fn(self._decode_one, encoded,
                         fn_output_signature=tf.TensorSpec(self.image_shape, tf.float32))

    def refine(self, encoded: Sequence[bytes], names: Sequence[str]) -> np.ndarray:
        """Refines one batch of encoded images.

        Args:
          encoded: the image files' bytes.
          names: what to call each image in errors (a file, or a file and record).

        Returns:
          `[n, H, W, C]` uint8 or uint16 pixels (`image_dtype`).

        Raises:
          ValueError: naming the first image that does not decode to `image_shape`.
        """
        try:
            images = self._decode(tf.constant(list(encoded), tf.string))
        except tf.errors.InvalidArgumentError:
            for name, one in zip(names, encoded):
                self._check_decodes(name, one)
            raise
        refined = self._refine(images)
        return reader.to_uint(refined, self.image_dtype, self.pixel_range).numpy()

    def _check_decodes(self, name: str, encoded: bytes) -> None:
        try:
            self._decode(tf.constant([encoded], tf.string))
        except tf.errors.InvalidArgumentError as e:
            message = e.message.strip().splitlines()
            detail = next((line for line in message if "assertion failed" in line
                           or "image file format" in line), message[-1])
            raise ValueError(f"{name}: cannot be refined: {detail.strip()}") from None

    def refine_all(self, items: Iterable[tuple[str, bytes, Any]]
                   ) -> Iterator[tuple[Any, np.ndarray]]:
        """Refines a stream of images, `batch_size` at a time, in order.

        Args:
          items: `(name, encoded image, payload)`: the name for errors (see `refine`), the
            image file's bytes, and anything the caller wants back with the result.

        Yields:
          `(payload, pixels)`, pixels `[H, W, C]` as `refine` returns them.
        """
        items = iter(items)
        while batch := list(itertools.islice(items, self.batch_size)):
            names, encoded, payloads = zip(*batch)
            yield from zip(payloads, self.refine(encoded, names))
