"""Export of the trained refiner as a SavedModel for TensorFlow Serving.

Checkpoints (for resuming) hold everything; the export holds the refiner alone, in TF
Serving's layout `<base>/<version>/saved_model.pb + variables/ + assets/`, with two
signatures:

  serving_default(images: float32 [batch, H, W, C] in [-1, 1])
      -> {"refined": float32 [batch, H, W, C] in [-1, 1]}
  serving_bytes(images_bytes: string [batch], encoded PNG or JPEG files)
      -> {"refined_bytes": string [batch], PNG files}

The input shape is fixed to the image shape the refiner was trained on. Both signatures
check it when they run and fail with an `InvalidArgumentError` that says which shape was
expected and which was received (the refiner is fully convolutional, so without the check
an image of another size would be refined silently, and one of the wrong rank can crash
the process).

The bytes signature maps pixels to [-1, 1] and back with the training data's convention
(`reader.scale_image` / `reader.to_uint`: the dtype's full range, or `pixel_range` of
`dataset.json`). For 8-bit data it decodes PNG, JPEG, BMP or GIF (first frame) and
converts colour to the trained channel count; for 16-bit data (depth) it decodes PNG only,
8- or 16-bit. Its tensor names end in `_bytes`, so TF Serving's REST API accepts and
returns them base64-encoded as `{"b64": "..."}`.

The model card (`assets/model_card.json`, and a readable `assets/model_card.md`) records
the config, training steps, data, pixel convention and, when given, evaluation figures.

The export is written to a temporary folder and renamed into place when complete; a
write that fails (no space, no permission) raises `RunWriteError` naming the export
folder. Files go through `tf.io.gfile`: the export folder may be local, `gs://` or `ram://`.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile

import keras
import tensorflow as tf

import simgan_tf
from simgan_tf.data import reader, schema
from simgan_tf.data.writer import remove_folder, rename_folder
from simgan_tf.write_errors import writing

SIGNATURE_KEY = "serving_default"
INPUT_KEY = "images"
OUTPUT_KEY = "refined"
BYTES_SIGNATURE_KEY = "serving_bytes"
BYTES_INPUT_KEY = "images_bytes"
BYTES_OUTPUT_KEY = "refined_bytes"
MODEL_CARD_JSON = "model_card.json"
MODEL_CARD_MARKDOWN = "model_card.md"
MODEL_CARD_VERSION = 1


def _assert_shape(images, expected, what: str):
    """Returns `images` after a runtime check that its shape is `[batch, *expected]`.

    The check uses raw ops so that neither tracing nor Grappler folds it away on the
    strength of the signature's static shape: the shape fed at serving time is what counts.
    """
    shape = tf.raw_ops.Shape(input=images, out_type=tf.int32)
    rank = tf.raw_ops.Size(input=shape, out_type=tf.int32)
    padded = tf.concat([shape, tf.zeros([len(expected) + 1], tf.int32)], 0)
    ok = tf.logical_and(tf.equal(rank, len(expected) + 1),
                        tf.reduce_all(tf.equal(padded[1:len(expected) + 1], expected)))
    dims = ", ".join(str(d) for d in expected)
    check = tf.debugging.Assert(
        ok, [f"{what}: expected shape [batch, {dims}]. Received shape:", shape], summarize=8)
    with tf.control_dependencies([check]):
        return tf.identity(images)


class RefinerModule(tf.Module):
    """The exported object: the refiner and its serving functions.

    Args:
      refiner: the trained refiner `keras.Model`.
      image_shape: `(H, W, C)` the refiner was trained on; fixed in the signatures.
      image_dtype: `uint8` or `uint16`, the pixel type of the training data (decides how
        the bytes signature decodes and encodes).
      pixel_range: `[lo, hi]` of the training data's `dataset.json`, or `None` for the
        dtype's full range.
      model_card_dir: folder holding `model_card.json` and `model_card.md` to ship in
        `assets/`, or `None`.
    """

    def __init__(self, refiner: keras.Model, image_shape: tuple[int, int, int],
                 image_dtype: str = "uint8", pixel_range=None,
                 model_card_dir: str | None = None):
        super().__init__(name="refiner_export")
        if image_dtype not in schema.IMAGE_DTYPES:
            raise ValueError(
                f"Expected image_dtype in {schema.IMAGE_DTYPES}. Received: {image_dtype!r}")
        self.refiner = refiner
        self.image_shape = tuple(int(d) for d in image_shape)
        self.image_dtype = image_dtype
        self.pixel_range = (None if pixel_range is None
                            else schema.check_pixel_range(pixel_range, image_dtype))
        if model_card_dir is not None:
            self.model_card = tf.saved_model.Asset(os.path.join(model_card_dir, MODEL_CARD_JSON))
            self.model_card_markdown = tf.saved_model.Asset(
                os.path.join(model_card_dir, MODEL_CARD_MARKDOWN))
        spec = tf.TensorSpec([None, *self.image_shape], tf.float32, name=INPUT_KEY)
        self.serve = tf.function(self._serve, input_signature=[spec])
        bytes_spec = tf.TensorSpec([None], tf.string, name=BYTES_INPUT_KEY)
        self.serve_bytes = tf.function(self._serve_bytes, input_signature=[bytes_spec])

    def _refine(self, images):
        # TensorFlow's CPU convolutions mishandle an empty batch (wrong output channels,
        # then an error), so an empty batch skips the refiner.
        return tf.cond(
            tf.shape(images)[0] > 0,
            lambda: tf.cast(self.refiner(images, training=False), tf.float32),
            lambda: tf.zeros_like(images))

    def _serve(self, images):
        images = _assert_shape(images, self.image_shape,
                               f"{SIGNATURE_KEY} input {INPUT_KEY!r} (float32 in [-1, 1])")
        return {OUTPUT_KEY: self._refine(images)}

    def _decode(self, args):
        encoded, index = args
        return reader.decode_image(
            encoded, self.image_shape, self.image_dtype, self.pixel_range, any_format=True,
            context=[f"{BYTES_SIGNATURE_KEY}: image", index, "of the batch"])

    def _serve_bytes(self, images_bytes):
        count = tf.shape(images_bytes)[0]
        images = tf.map_fn(
            self._decode, (images_bytes, tf.range(count)),
            fn_output_signature=tf.TensorSpec(self.image_shape, tf.float32))
        images = tf.reshape(images, [-1, *self.image_shape])  # also for an empty batch
        refined = self._refine(images)
        pixels = reader.to_uint(refined, self.image_dtype, self.pixel_range)
        encoded = tf.map_fn(tf.io.encode_png, pixels,
                            fn_output_signature=tf.TensorSpec([], tf.string))
        return {BYTES_OUTPUT_KEY: encoded}


def make_model_card(*, step: int, image_shape, image_dtype: str = "uint8",
                    pixel_range=None, config: dict | None = None,
                    data_info: schema.DatasetInfo | None = None, data_dir: str | None = None,
                    evaluation: dict | None = None) -> dict:
    """The model card of an export, as a JSON-serializable dict.

    Args:
      step: training updates the refiner received (the export's version).
      image_shape: `(H, W, C)`.
      image_dtype, pixel_range: the pixel convention of the training data.
      config: the run's resolved config (`SimGANConfig.to_json()`).
      data_info: the training data folder's `dataset.json` contents.
      data_dir: the training data folder.
      evaluation: evaluation figures (any JSON-serializable dict), e.g. gaze error of an
        estimator trained on refined images; `None` when not evaluated (yet).

    Returns:
      The card; `write_model_card` stores it.
    """
    lo, hi = (int(v) if v.is_integer() else v  # 0, 255 rather than 0.0, 255.0
              for v in schema.value_range(image_dtype, pixel_range))
    splits = {}
    if data_info is not None:
        splits = {name: {"count": s.count, "domain": s.domain,
                         "label_fields": dict(s.label_fields), "source": s.source}
                  for name, s in data_info.splits.items()}
    dims = ", ".join(str(int(d)) for d in image_shape)
    card = {
        "model_card_version": MODEL_CARD_VERSION,
        "model": "SimGAN refiner (Shrivastava et al., CVPR 2017): synthetic image -> "
                 "refined image of the same shape",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "training_steps": int(step),
        "image_shape": [int(d) for d in image_shape],
        "pixels": {"image_dtype": image_dtype, "pixel_range": [lo, hi],
                   "to_model": f"x = 2 (p - {lo}) / ({hi} - {lo}) - 1"
                               + (", clipped to [-1, 1]" if pixel_range is not None else ""),
                   "from_model": f"p = round((x + 1) ({hi} - {lo}) / 2 + {lo})"},
        "signatures": {
            SIGNATURE_KEY: {"inputs": {INPUT_KEY: f"float32 [batch, {dims}] in [-1, 1]"},
                            "outputs": {OUTPUT_KEY: "float32, same shape, in [-1, 1]"}},
            BYTES_SIGNATURE_KEY: {"inputs": {BYTES_INPUT_KEY: "string [batch], PNG/JPEG files"},
                                  "outputs": {BYTES_OUTPUT_KEY: "string [batch], PNG files"}},
        },
        "config": config,
        "data": {"data_dir": data_dir, "splits": splits},
        "evaluation": evaluation,
        "software": {"simgan_tf": simgan_tf.__version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__},
    }
    json.dumps(card)  # fails early, here, on values JSON cannot hold
    return card


def model_card_markdown(card: dict) -> str:
    """Renders a model card as Markdown for people."""
    def block(value):
        return "```json\n" + json.dumps(value, indent=2, sort_keys=True) + "\n```\n"

    lines = [
        "# Model card: SimGAN refiner\n",
        f"{card['model']}.\n",
        f"- Training steps: {card['training_steps']}",
        f"- Image shape: {card['image_shape']}",
        f"- Pixels ({card['pixels']['image_dtype']}): {card['pixels']['to_model']}; "
        f"back: {card['pixels']['from_model']}",
        f"- Created: {card['created']} with TensorFlow {card['software']['tensorflow']}, "
        f"Keras {card['software']['keras']}\n",
        "## Signatures\n", block(card["signatures"]),
        "## Data\n", block(card["data"]),
        "## Evaluation\n",
        block(card["evaluation"]) if card.get("evaluation") else "Not evaluated.\n",
        "## Config\n", block(card["config"]),
    ]
    return "\n".join(lines)


def write_model_card(card: dict, folder: str) -> str:
    """Writes `model_card.json` and `model_card.md` into `folder`; returns the JSON path."""
    path = os.path.join(folder, MODEL_CARD_JSON)
    schema.write_json_atomic(path, card)
    with tf.io.gfile.GFile(os.path.join(folder, MODEL_CARD_MARKDOWN), "w") as f:
        f.write(model_card_markdown(card))
    return path


def read_model_card(export_path: str) -> dict:
    """Reads the model card of an export folder (`<export>/assets/model_card.json`)."""
    path = os.path.join(export_path, "assets", MODEL_CARD_JSON)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {export_path} is not a simgan-tf refiner export with a "
            "model card.")
    with tf.io.gfile.GFile(path, "r") as f:
        return json.loads(f.read())


def update_model_card(export_path: str, *, evaluation: dict) -> dict:
    """Adds (or replaces) the evaluation figures in an export's model card.

    Args:
      export_path: the SavedModel folder.
      evaluation: JSON-serializable figures.

    Returns:
      The updated card.
    """
    card = read_model_card(export_path)
    card["evaluation"] = evaluation
    json.dumps(card)
    write_model_card(card, os.path.join(export_path, "assets"))
    return card


def export_refiner(refiner: keras.Model, export_base: str, version: int,
                   image_shape: tuple[int, int, int], *,
                   data_info: schema.DatasetInfo | None = None, data_dir: str | None = None,
                   config: dict | None = None, evaluation: dict | None = None) -> str:
    """Saves the refiner as `<export_base>/<version>/`, replacing an older export of it.

    Args:
      refiner: the trained refiner.
      export_base: e.g. `<model_dir>/export/refiner`.
      version: integer version >= 0 (we use the training step).
      image_shape: `(H, W, C)`.
      data_info: `dataset.json` of the training data: its `image_dtype` and `pixel_range`
        decide how the bytes signature maps pixels (default 8-bit, [0, 255]); its splits
        go into the model card.
      data_dir: the training data folder (model card).
      config: the run's resolved config, `SimGANConfig.to_json()` (model card).
      evaluation: evaluation figures for the model card (`None`: not evaluated; add them
        later with `update_model_card`).

    Returns:
      The path of the SavedModel folder.

    Raises:
      RunWriteError: if the export cannot be written, naming its folder.
    """
    if int(version) < 0:
        raise ValueError(f"Expected a version >= 0. Received: {version}")
    image_dtype = data_info.image_dtype if data_info is not None else "uint8"
    pixel_range = data_info.pixel_range if data_info is not None else None
    card = make_model_card(step=version, image_shape=image_shape, image_dtype=image_dtype,
                           pixel_range=pixel_range, config=config, data_info=data_info,
                           data_dir=data_dir, evaluation=evaluation)
    final = os.path.join(export_base, str(int(version)))
    tmp = os.path.join(export_base, f".tmp-{int(version)}")
    with writing(final, "Checkpoints are not affected; an older export of this version, "
                 "if any, is kept unless the failure came while replacing it."):
        tf.io.gfile.makedirs(export_base)
        remove_folder(tmp)
        with tempfile.TemporaryDirectory() as card_dir:  # local: the assets' source files
            write_model_card(card, card_dir)
            module = RefinerModule(refiner, image_shape, image_dtype, pixel_range,
                                   model_card_dir=card_dir)
            tf.saved_model.save(module, tmp, signatures={
                SIGNATURE_KEY: module.serve, BYTES_SIGNATURE_KEY: module.serve_bytes})
        remove_folder(final)
        rename_folder(tmp, final)
    return final


def load_refiner(path: str):
    """Loads an exported refiner; returns a function from float32 images to refined ones.

    The function takes `[batch, H, W, C]` images in [-1, 1] (NumPy or tensors) and
    returns a float32 tensor of the same shape; `refine.loaded` is the loaded object,
    `refine.input_spec` the `TensorSpec` of the images, and `refine.encoded` the bytes
    signature (a batch of PNG/JPEG bytes -> PNG bytes).
    """
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures[SIGNATURE_KEY]
    serve_bytes = loaded.signatures.get(BYTES_SIGNATURE_KEY)

    def refine(images):
        return serve(**{INPUT_KEY: tf.convert_to_tensor(images, tf.float32)})[OUTPUT_KEY]

    def encoded(images_bytes):
        if serve_bytes is None:
            raise ValueError(f"{path} has no {BYTES_SIGNATURE_KEY!r} signature (exported "
                             "by an older simgan-tf); export the refiner again.")
        return serve_bytes(**{BYTES_INPUT_KEY: tf.convert_to_tensor(images_bytes, tf.string)})[
            BYTES_OUTPUT_KEY]

    refine.loaded = loaded
    refine.input_spec = serve.structured_input_signature[1][INPUT_KEY]
    refine.encoded = encoded
    return refine
