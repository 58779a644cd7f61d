"""The one TFRecord schema of simgan-tf, shared by every writer and the reader.

A *data folder* holds one sub-folder per split (`synthetic/`, `real/`, optionally
`real_test/` and any other name such as `refined/`), each with TFRecord shards
(`*.tfrecord`, or gzip-compressed `*.tfrecord.gz`), plus `dataset.json` describing them.

Every record is a `tf.train.Example` with these features:

| feature            | type          | meaning                                                 |
|--------------------|---------------|---------------------------------------------------------|
| `image/encoded`    | bytes         | PNG, 8-bit (eyes) or 16-bit (depth)                     |
| `image/height`     | int64         | rows                                                    |
| `image/width`      | int64         | columns                                                 |
| `image/channels`   | int64         | 1 (grayscale, depth) or 3                               |
| `sample/key`       | bytes         | stable unique id of the sample                          |
| `sample/domain`    | bytes         | `synthetic` or `real`                                   |
| `label/gaze`       | float x 2     | [pitch, yaw] in radians (MPIIGaze convention)           |
| `label/joints_uvd` | float x J*3   | joints, flattened [J, 3] (u, v in pixels, d)            |
| `label/<name>`     | float x n     | any other label (e.g. `label/head_pose`)                |

Labels are stored when known; a split's `dataset.json` entry lists which. Fields may be
added, never renamed. `SCHEMA_VERSION` changes only when an existing field changes
meaning.

`image/encoded` is checked without decoding by its PNG header (`png_header` in Python,
`png_header_tensor` in graph, against `DatasetInfo.png_header`). `dataset.json` is read and
written through `tf.io.gfile`, so a data folder may be local, `gs://` or `ram://`.

This module is longer than 400 lines on purpose: the record format, the PNG header of its
images and `dataset.json` are one definition, imported by every writer, reader and check.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import struct
import uuid
from typing import Any, Mapping

import numpy as np
from PIL import Image

SCHEMA_VERSION = 1
DATASET_INFO_FILE = "dataset.json"

IMAGE_ENCODED = "image/encoded"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
SAMPLE_KEY = "sample/key"
SAMPLE_DOMAIN = "sample/domain"
LABEL_PREFIX = "label/"
LABEL_GAZE = "label/gaze"
LABEL_JOINTS_UVD = "label/joints_uvd"

DOMAINS = ("synthetic", "real")
IMAGE_DTYPES = ("uint8", "uint16")
COMPRESSIONS = (None, "GZIP")
SHARD_SUFFIXES = {None: ".tfrecord", "GZIP": ".tfrecord.gz"}

# The PNG header every `image/encoded` starts with: the 8-byte signature, then the IHDR
# chunk (length, "IHDR", width, height, bit depth, color type, ...) up to byte 33.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_HEADER_BYTES = 33
PNG_COLOR_TYPES = {1: 0, 3: 2}  # image channels -> PNG color type (gray, RGB)
PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG color type -> channels
PNG_BIT_DEPTHS = {"uint8": 8, "uint16": 16}  # image dtype -> PNG bit depth

# Label fields with a fixed length. Other `label/*` fields have the length their
# writer records in dataset.json (`label_fields`).
FIXED_LABEL_LENGTHS = {LABEL_GAZE: 2, "label/head_pose": 2}


def _bytes_feature(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _float_feature(values: np.ndarray):
    import tensorflow as tf

    return tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))


def encode_png(image: np.ndarray) -> bytes:
    """Encodes an image as PNG bytes.

    Args:
      image: `[height, width, channels]` array, `uint8` (8-bit PNG) or `uint16`
        (16-bit PNG, single channel only); channels 1 or 3.

    Returns:
      The PNG file bytes.

    Raises:
      ValueError: if the shape or dtype is not one of the above.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(
            "Expected an image of shape [height, width, 1 or 3]. "
            f"Received: shape={image.shape}")
    if image.dtype == np.uint8:
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    elif image.dtype == np.uint16:
        if image.shape[-1] != 1:
            raise ValueError(
                "16-bit images must have 1 channel. "
                f"Received: shape={image.shape}")
        pil = Image.fromarray(np.ascontiguousarray(image[..., 0]).astype("<u2"))
    else:
        raise ValueError(
            f"Expected a uint8 or uint16 image. Received: dtype={image.dtype}")
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def decode_png_numpy(data: bytes, dtype: str = "uint8") -> np.ndarray:
    """Decodes PNG bytes to a `[height, width, channels]` array (for tools and tests)."""
    with Image.open(io.BytesIO(data)) as pil:
        array = np.asarray(pil)
    array = array.astype(dtype, copy=False)
    return array[..., None] if array.ndim == 2 else array


def png_header(encoded: bytes) -> tuple[int, int, int, int] | None:
    """`(height, width, bit_depth, color_type)` of PNG bytes, `None` if not a PNG.

    Reads the signature and the IHDR chunk only (no decoding); `png_header_tensor` is the
    same check in a TensorFlow graph.
    """
    if (len(encoded) < PNG_HEADER_BYTES or not encoded.startswith(PNG_SIGNATURE)
            or encoded[12:16] != b"IHDR"):
        return None
    width, height, bit_depth, color_type = struct.unpack(">IIBB", encoded[16:26])
    return height, width, bit_depth, color_type


def png_header_tensor(encoded):
    """`png_header` of a scalar string tensor, in graph (for input pipelines and exports).

    Returns:
      `(header, is_png)`: int64 `[4]` (height, width, bit_depth, color_type), zeros where
      the bytes are too short, and a bool scalar, whether `encoded` starts with a PNG
      signature and IHDR chunk.
    """
    import tensorflow as tf

    padded = tf.strings.join([encoded, tf.constant(b"\0" * PNG_HEADER_BYTES)])
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 16, 10), tf.uint8), tf.int64)
    width = raw[0] * 2**24 + raw[1] * 2**16 + raw[2] * 2**8 + raw[3]
    height = raw[4] * 2**24 + raw[5] * 2**16 + raw[6] * 2**8 + raw[7]
    is_png = tf.reduce_all(tf.stack([
        tf.strings.length(encoded) >= PNG_HEADER_BYTES,
        tf.equal(tf.strings.substr(padded, 0, 8), PNG_SIGNATURE),
        tf.equal(tf.strings.substr(padded, 12, 4), b"IHDR")]))
    return tf.stack([height, width, raw[8], raw[9]]), is_png


def png_header_problem(encoded: bytes, info: "DatasetInfo") -> str | None:
    """What is wrong with the PNG header of `encoded` for `info`, or `None` if nothing."""
    header = png_header(encoded)
    if header is None:
        return "image/encoded is not a PNG"
    if header == info.png_header:
        return None
    height, width, bit_depth, color_type = header
    return (f"PNG of {height}x{width}, bit depth {bit_depth}, color type {color_type} "
            f"({PNG_CHANNELS.get(color_type, '?')} channels); dataset.json says "
            f"{info.image_height}x{info.image_width}, {info.image_channels} channel(s), "
            f"{info.image_dtype}")


def encode_example(image: np.ndarray, *, key: str, domain: str,
                   labels: Mapping[str, Any] | None = None) -> bytes:
    """Builds one serialized `tf.train.Example` in the simgan-tf schema.

    Args:
      image: `[height, width, channels]` uint8 or uint16 array.
      key: stable unique id of the sample (for example its source file name).
      domain: `"synthetic"` or `"real"`.
      labels: mapping from label feature name (`"label/gaze"`, ...) to float values;
        they are flattened. Values must be finite.

    Returns:
      The serialized example.

    Raises:
      ValueError: on an unknown domain, a label name outside `label/`, a label of the
        wrong length, or a non-finite label; the message names the key.
    """
    import tensorflow as tf

    if domain not in DOMAINS:
        raise ValueError(
            f"Sample {key!r}: expected domain in {DOMAINS}. Received: domain={domain!r}")
    if not key:
        raise ValueError("Expected a non-empty sample key.")
    image = np.asarray(image)
    try:
        encoded = encode_png(image)
    except ValueError as e:
        raise ValueError(f"Sample {key!r}: {e}") from None
    feature = {
        IMAGE_ENCODED: _bytes_feature(encoded),
        IMAGE_HEIGHT: _int_feature(image.shape[0]),
        IMAGE_WIDTH: _int_feature(image.shape[1]),
        IMAGE_CHANNELS: _int_feature(image.shape[2]),
        SAMPLE_KEY: _bytes_feature(key.encode("utf-8")),
        SAMPLE_DOMAIN: _bytes_feature(domain.encode("utf-8")),
    }
    for name, value in (labels or {}).items():
        if not name.startswith(LABEL_PREFIX):
            raise ValueError(
                f"Sample {key!r}: label names start with {LABEL_PREFIX!r}. "
                f"Received: {name!r}")
        value = np.asarray(value, dtype=np.float32).reshape(-1)
        expected = FIXED_LABEL_LENGTHS.get(name)
        if expected is not None and value.size != expected:
            raise ValueError(
                f"Sample {key!r}: {name} has {expected} values. "
                f"Received: {value.size} values {value.tolist()}")
        if name == LABEL_JOINTS_UVD and value.size % 3:
            raise ValueError(
                f"Sample {key!r}: {name} holds J x 3 values. Received: {value.size}")
        if not np.all(np.isfinite(value)):
            raise ValueError(
                f"Sample {key!r}: {name} must be finite. Received: {value.tolist()}")
        feature[name] = _float_feature(value)
    return tf.train.Example(
        features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def feature_spec(label_fields: Mapping[str, int] | None = None) -> dict:
    """The `tf.io.parse_single_example` spec for records with the given labels.

    Args:
      label_fields: mapping from label feature name to its number of float values.

    Returns:
      A dict of `tf.io.FixedLenFeature` specs.
    """
    import tensorflow as tf

    spec = {
        IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
        IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
        IMAGE_CHANNELS: tf.io.FixedLenFeature([], tf.int64),
        SAMPLE_KEY: tf.io.FixedLenFeature([], tf.string),
        SAMPLE_DOMAIN: tf.io.FixedLenFeature([], tf.string),
    }
    for name, length in (label_fields or {}).items():
        spec[name] = tf.io.FixedLenFeature([int(length)], tf.float32)
    return spec


@dataclasses.dataclass
class SplitInfo:
    """What `dataset.json` records about one split.

    Attributes:
      count: number of records.
      domain: `synthetic` or `real`.
      shards: list of `{"file": name, "count": n, "sha256": hex}` in read order.
      label_fields: mapping from label feature name to its number of floats.
      compression: `None` or `"GZIP"`.
      source: free-form description of how the split was made.
    """
    count: int
    domain: str
    shards: list
    label_fields: dict
    compression: str | None = None
    source: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DatasetInfo:
    """Contents of a data folder's `dataset.json`.

    Attributes:
      image_height, image_width, image_channels: shape of every image.
      image_dtype: `uint8` or `uint16` (the PNG bit depth).
      splits: mapping from split name to `SplitInfo`.
      schema_version: `SCHEMA_VERSION` of the writer.
      pixel_range: `[lo, hi]` pixel values the reader maps to -1 and +1 (values outside
        are clipped); `None` means the dtype's full range, `[0, 255]` or `[0, 65535]`.
        lo may be below the dtype's minimum: depth data in mm uses `[-1000, 2000]`, so
        the background (0) maps to -1/3, not to -1, which a tanh refiner output only
        approaches asymptotically.
    """
    image_height: int
    image_width: int
    image_channels: int
    image_dtype: str = "uint8"
    splits: dict = dataclasses.field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    pixel_range: list | None = None

    def __post_init__(self):
        if self.image_dtype not in IMAGE_DTYPES:
            raise ValueError(
                f"Expected image_dtype in {IMAGE_DTYPES}. Received: {self.image_dtype!r}")
        if self.image_channels not in (1, 3):
            raise ValueError(
                f"Expected image_channels 1 or 3. Received: {self.image_channels}")
        if self.pixel_range is not None:
            self.pixel_range = check_pixel_range(self.pixel_range, self.image_dtype)

    @property
    def value_range(self) -> tuple[float, float]:
        """The `(lo, hi)` pixel values mapped to -1 and +1."""
        return value_range(self.image_dtype, self.pixel_range)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_height, self.image_width, self.image_channels)

    def get_split(self, split: str, data_dir: str, *, allow_empty: bool = False) -> SplitInfo:
        """The `SplitInfo` of `split`; `data_dir` (this folder) is named in errors.

        Raises:
          ValueError: if there is no such split, or, unless `allow_empty`, it is empty.
        """
        if split not in self.splits:
            raise ValueError(f"{dataset_info_path(data_dir)} has no split {split!r}. "
                             f"Available: {sorted(self.splits)}.")
        if not allow_empty and self.splits[split].count == 0:
            raise ValueError(f"Split {split!r} of {data_dir} is empty (dataset.json count 0).")
        return self.splits[split]

    @property
    def png_header(self) -> tuple[int, int, int, int]:
        """The `png_header` every image must have: (height, width, bit depth, color type)."""
        return (self.image_height, self.image_width, PNG_BIT_DEPTHS[self.image_dtype],
                PNG_COLOR_TYPES[self.image_channels])

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict, path: str = DATASET_INFO_FILE) -> "DatasetInfo":
        try:
            version = data["schema_version"]
            if version > SCHEMA_VERSION:
                raise ValueError(
                    f"{path}: written with schema version {version}, newer than this "
                    f"simgan-tf ({SCHEMA_VERSION}); upgrade simgan-tf.")
            splits = {name: SplitInfo(**split) for name, split in data["splits"].items()}
            return cls(image_height=int(data["image_height"]),
                       image_width=int(data["image_width"]),
                       image_channels=int(data["image_channels"]),
                       image_dtype=data.get("image_dtype", "uint8"),
                       splits=splits, schema_version=version,
                       pixel_range=data.get("pixel_range"))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: malformed dataset.json ({e!r}).") from None


def check_pixel_range(pixel_range, image_dtype: str) -> list:
    """Validates `[lo, hi]` for `image_dtype`; returns it as a list of two floats."""
    try:
        lo, hi = (float(v) for v in pixel_range)
    except (TypeError, ValueError):
        raise ValueError(f"Expected pixel_range [lo, hi]. Received: {pixel_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi and hi > 0
            and lo < np.iinfo(image_dtype).max):
        raise ValueError(
            f"Expected a finite pixel_range [lo, hi] with lo < hi that overlaps the "
            f"{image_dtype} values. Received: {pixel_range!r}")
    return [lo, hi]


def value_range(image_dtype: str, pixel_range=None) -> tuple[float, float]:
    """The `(lo, hi)` pixel values mapped to -1 and +1: `pixel_range` (validated), or the
    dtype's full range, `(0, 255)` or `(0, 65535)`, when it is `None`."""
    if pixel_range is None:
        return 0.0, float(np.iinfo(image_dtype).max)
    return tuple(check_pixel_range(pixel_range, image_dtype))


def dataset_info_path(data_dir: str) -> str:
    return os.path.join(data_dir, DATASET_INFO_FILE)


def read_dataset_info(data_dir: str) -> DatasetInfo:
    """Reads `<data_dir>/dataset.json` (any `tf.io.gfile` path: local, `gs://`, `ram://`).

    Raises:
      FileNotFoundError: if the folder or its `dataset.json` does not exist.
      ValueError: if the file is not valid JSON or lacks fields.
    """
    import tensorflow as tf

    path = dataset_info_path(data_dir)
    if not tf.io.gfile.isdir(data_dir):
        raise FileNotFoundError(f"Data folder does not exist: {data_dir}")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} not found: a data folder needs a dataset.json (see README, "
            "'TFRecord schema').")
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            data = json.loads(f.read())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e}).") from None
    return DatasetInfo.from_json(data, path)


def write_json_atomic(path: str, data: Any, sort_keys: bool = True) -> None:
    """Writes JSON to `path` (any `tf.io.gfile` path) through a temporary file and a rename.

    The rename is atomic on local disks; on object stores (`gs://`) it is a copy, after
    which the file is complete or absent, never half-written.
    """
    import tensorflow as tf

    tmp = os.path.join(os.path.dirname(path), f".tmp-{uuid.uuid4().hex[:8]}.json")
    try:
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
        raise


def check_compatible(data_dir: str, split: str, image_shape, image_dtype: str,
                     pixel_range=None) -> DatasetInfo | None:
    """Reads the folder's dataset.json (if any) and checks a new split fits in it.

    Raises:
      ValueError: if the folder holds images of another shape, dtype or pixel range.
    """
    import tensorflow as tf

    path = dataset_info_path(data_dir)
    if not tf.io.gfile.exists(path):
        return None
    info = read_dataset_info(data_dir)
    wanted = None if pixel_range is None else check_pixel_range(pixel_range, image_dtype)
    if (info.image_shape != tuple(image_shape) or info.image_dtype != image_dtype
            or info.pixel_range != wanted):
        def ranged(pixel_range):
            return "" if pixel_range is None else f" with pixel_range {pixel_range}"

        raise ValueError(
            f"{path} describes {info.image_dtype} images of shape {info.image_shape}"
            f"{ranged(info.pixel_range)}; cannot add split {split!r} of {image_dtype} "
            f"images of shape {tuple(image_shape)}{ranged(wanted)}. Use another output "
            "folder.")
    return info


def update_dataset_info(data_dir: str, split: str, split_info: SplitInfo, *,
                        image_shape: tuple[int, int, int], image_dtype: str,
                        pixel_range=None) -> DatasetInfo:
    """Adds or replaces one split in `<data_dir>/dataset.json`, keeping the others.

    Raises:
      ValueError: if the folder already holds splits of another image shape, dtype or
        pixel range.
    """
    path = dataset_info_path(data_dir)
    info = check_compatible(data_dir, split, image_shape, image_dtype, pixel_range)
    if info is None:
        height, width, channels = image_shape
        info = DatasetInfo(image_height=height, image_width=width,
                           image_channels=channels, image_dtype=image_dtype,
                           pixel_range=pixel_range)
    info.splits[split] = split_info
    info.schema_version = SCHEMA_VERSION
    write_json_atomic(path, info.to_json())
    return info
