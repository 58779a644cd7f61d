"""Export of the trained refiner as a SavedModel for TensorFlow Serving.

Checkpoints (for resuming) hold everything; the export holds the refiner alone, in TF
Serving's layout `<base>/<version>/saved_model.pb + variables/`, with the signature

  serving_default(images: float32 [batch, H, W, C] in [-1, 1]) -> {"refined": same shape}

It is written to a temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import os
import shutil

import keras
import tensorflow as tf

SIGNATURE_KEY = "serving_default"
INPUT_KEY = "images"
OUTPUT_KEY = "refined"


class RefinerModule(tf.Module):
    """The exported object: the refiner and its serving function.

    Args:
      refiner: the trained refiner `keras.Model`.
      image_shape: `(H, W, C)` the refiner was trained on; fixed in the signature.
    """

    def __init__(self, refiner: keras.Model, image_shape: tuple[int, int, int]):
        super().__init__(name="refiner_export")
        self.refiner = refiner
        self.image_shape = tuple(int(d) for d in image_shape)
        spec = tf.TensorSpec([None, *self.image_shape], tf.float32, name=INPUT_KEY)
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, images):
        refined = self.refiner(images, training=False)
        return {OUTPUT_KEY: tf.cast(refined, tf.float32)}


def export_refiner(refiner: keras.Model, export_base: str, version: int,
                   image_shape: tuple[int, int, int]) -> str:
    """Saves the refiner as `<export_base>/<version>/`, replacing an older export of it.

    Args:
      refiner: the trained refiner.
      export_base: e.g. `<model_dir>/export/refiner`.
      version: positive integer version (we use the training step).
      image_shape: `(H, W, C)`.

    Returns:
      The path of the SavedModel folder.
    """
    if int(version) < 0:
        raise ValueError(f"Expected a version >= 0. Received: {version}")
    os.makedirs(export_base, exist_ok=True)
    final = os.path.join(export_base, str(int(version)))
    tmp = os.path.join(export_base, f".tmp-{int(version)}")
    shutil.rmtree(tmp, ignore_errors=True)
    module = RefinerModule(refiner, image_shape)
    tf.saved_model.save(module, tmp, signatures={SIGNATURE_KEY: module.serve})
    if os.path.exists(final):
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


def load_refiner(path: str):
    """Loads an exported refiner; returns a function from float32 images to refined ones."""
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures[SIGNATURE_KEY]

    def refine(images):
        return serve(**{INPUT_KEY: tf.convert_to_tensor(images, tf.float32)})[OUTPUT_KEY]

    refine.loaded = loaded
    refine.input_spec = serve.structured_input_signature[1][INPUT_KEY]
    return refine
