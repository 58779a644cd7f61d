r"""Converts UnityEyes renders (`N.jpg` + `N.json`) into the `synthetic/` split.

    python -m data_prep.unityeyes --input_dir=<imgs folder> --output_dir=<data folder>

Per sample (see `data_prep/README.md` for the whole contract):

* Landmarks: the JSON's 2D points are screen coordinates with the origin at the
  bottom-left; the image row is `H - y`. Coordinates are continuous, pixel edges at
  integers (pixel `(col, row)` covers `[col, col + 1) x [row, row + 1)`).
* Crop: a box of `140 x 84` pixels (width x height) for a 640x480 render, scaled by
  `W / 640` and `H / 480` for other sizes (read from the jpg), centred on the centre of
  the bounding box of `interior_margin_2d`. A crop that leaves the image is skipped
  (`crop_outside_image`).
* Image: grayscale (ITU-R 601-2 luma, Pillow `L`), the crop box resampled to 55x35
  (width x height) with Pillow's antialiased bilinear filter, uint8 `[35, 55, 1]`.
* `label/gaze`: `[pitch, yaw]` radians in the MPIIGaze convention, from the unit
  `look_vec` `(x, y, z)` in Unity camera axes (x right, y up, z away from the camera):
  `pitch = asin(y)` (positive = looking up), `yaw = atan2(-x, -z)` (positive = looking
  towards the image's left). Looking into the camera is `(0, 0)`.
* `label/head_pose`: `[pitch, yaw]` radians from the JSON `head_pose` Euler angles in
  degrees, with the common mapping `pitch - 360 if pitch > 180` and `yaw - 180`. These
  are the renderer's camera angles; their signs were not checked against MPIIGaze's
  head pose convention.
* `label/landmarks_2d`: 96 floats, the 16 `interior_margin_2d` points then the 32
  `iris_2d` points, each `(x, y)` in pixels of the 55x35 crop (same continuous
  convention: `(0, 0)` is the top-left corner of the crop).
* Key: the file stem (`"1"`, `"2"`, ...). Samples are written in numeric stem order.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
import re

import numpy as np
from PIL import Image

from data_prep import common
from simgan_tf.data import schema
from simgan_tf.evaluation import metrics

SPLIT = "synthetic"
# Crop (width, height) for a render of REFERENCE_SIZE (width, height); scaled otherwise.
CROP_SIZE = (140.0, 84.0)
REFERENCE_SIZE = (640.0, 480.0)
# Output (width, height).
OUTPUT_SIZE = (55, 35)
IMAGE_SHAPE = (OUTPUT_SIZE[1], OUTPUT_SIZE[0], 1)
NUM_INTERIOR_MARGIN = 16
NUM_IRIS = 32
LABEL_LANDMARKS = "label/landmarks_2d"
LABEL_HEAD_POSE = "label/head_pose"
LABEL_FIELDS = {
    schema.LABEL_GAZE: 2,
    LABEL_HEAD_POSE: 2,
    LABEL_LANDMARKS: 2 * (NUM_INTERIOR_MARGIN + NUM_IRIS),
}
LABEL_NOTES = {
    schema.LABEL_GAZE: "[pitch, yaw] radians, MPIIGaze convention: pitch = asin(y), "
                       "yaw = atan2(-x, -z) of look_vec (Unity camera axes, y up)",
    LABEL_HEAD_POSE: "[pitch, yaw] radians from head_pose degrees: pitch - 360 if "
                     "pitch > 180, yaw - 180 (renderer camera angles)",
    LABEL_LANDMARKS: "16 interior_margin_2d then 32 iris_2d points, (x, y) pairs in "
                     "pixels of the 55x35 crop, origin at its top-left corner",
}

CROP_OUTSIDE_IMAGE = "crop_outside_image"
MISSING_JSON = "missing_json"
MISSING_IMAGE = "missing_image"

_STEM_RE = re.compile(r"^(\d+)$")


def find_samples(input_dir: str) -> tuple[str, list[str]]:
    """Finds the folder of `N.jpg`/`N.json` files and their stems.

    Args:
      input_dir: the folder holding `N.jpg` and `N.json`, or a folder with an `imgs/`
        sub-folder holding them (the layout the UnityEyes launcher writes).

    Returns:
      `(folder, stems)`: stems of every `N.json` or `N.jpg` (numeric names only), sorted
      numerically.

    Raises:
      FileNotFoundError: if the folder does not exist or holds no `N.json`/`N.jpg`.
    """
    folder = common.check_input_dir(input_dir, "UnityEyes input folder")
    if os.path.isdir(os.path.join(folder, "imgs")):
        folder = os.path.join(folder, "imgs")
    stems = set()
    for name in os.listdir(folder):
        stem, ext = os.path.splitext(name)
        if ext.lower() in (".json", ".jpg") and _STEM_RE.match(stem):
            stems.add(stem)
    if not stems:
        raise FileNotFoundError(
            f"No UnityEyes samples (N.jpg + N.json) found in {folder!r}.")
    return folder, sorted(stems, key=int)


def parse_tuple(text, length: int, what: str) -> np.ndarray:
    """Parses a UnityEyes string such as `"(371.4855, 296.4230, 8.8595)"`.

    Args:
      text: the JSON string value.
      length: expected number of values.
      what: name of the JSON field, for messages.

    Returns:
      float64 array of shape `[length]`.

    Raises:
      common.SkipSample: `malformed_value` if it does not parse as a tuple of `length`
        numbers, `non_finite_label` if a value is NaN or infinite.
    """
    try:
        value = ast.literal_eval(text) if isinstance(text, str) else text
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise common.SkipSample(common.MALFORMED_VALUE,
                                f"{what} = {str(text)[:60]!r}") from None
    if array.size != length:
        raise common.SkipSample(common.MALFORMED_VALUE,
                                f"{what} has {array.size} values, expected {length}")
    if not np.all(np.isfinite(array)):
        raise common.SkipSample(common.NON_FINITE_LABEL, f"{what} = {array.tolist()}")
    return array


def parse_points(values, count: int, what: str) -> np.ndarray:
    """Parses a list of `"(x, y, z)"` strings into a `[count, 3]` float64 array.

    Raises:
      common.SkipSample: `wrong_shape` if the list does not hold `count` points; see
        `parse_tuple` for the rest.
    """
    if not isinstance(values, list) or len(values) != count:
        received = len(values) if isinstance(values, list) else type(values).__name__
        raise common.SkipSample(common.WRONG_SHAPE,
                                f"{what} has {received} points, expected {count}")
    return np.stack([parse_tuple(v, 3, f"{what}[{i}]") for i, v in enumerate(values)])


def gaze_from_look_vec(look_vec) -> np.ndarray:
    """Gaze `[pitch, yaw]` in radians (MPIIGaze convention) from a UnityEyes `look_vec`.

    Args:
      look_vec: `(x, y, z[, w])` in Unity camera axes (x right, y up, z pointing away
        from the camera); normalized here. Only x, y, z are used.

    Returns:
      float64 `[pitch, yaw]`, `pitch = asin(y)` in [-pi/2, pi/2] (positive = up),
      `yaw = atan2(-x, -z)` in (-pi, pi] (0 = towards the camera).

    Raises:
      ValueError: if the vector has zero length or is not finite.
    """
    x, y, z = (float(v) for v in np.asarray(look_vec, dtype=np.float64)[:3])
    norm = math.sqrt(x * x + y * y + z * z)
    if not math.isfinite(norm) or norm == 0.0:
        raise ValueError(f"Expected a non-zero finite look_vec. Received: {look_vec}")
    return metrics.vector_to_gaze([x, -y, z])  # y up -> the camera's y down


def head_pose_from_euler(head_pose_deg) -> np.ndarray:
    """Head `[pitch, yaw]` in radians from UnityEyes' `head_pose` Euler angles.

    Args:
      head_pose_deg: `(pitch, yaw, roll)` in degrees, each in [0, 360).

    Returns:
      float64 `[pitch, yaw]` radians: `pitch - 360` if `pitch > 180` else `pitch`, and
      `yaw - 180` (so that a frontal view is near 0), converted to radians.
    """
    pitch, yaw = float(head_pose_deg[0]), float(head_pose_deg[1])
    if pitch > 180.0:
        pitch -= 360.0
    return np.radians([pitch, yaw - 180.0])


def crop_box(interior_margin_xy: np.ndarray, image_size: tuple[int, int]) -> tuple:
    """The crop box around the eye, in image pixels.

    Args:
      interior_margin_xy: `[16, 2]` (x, row) points, row measured from the top.
      image_size: `(width, height)` of the render.

    Returns:
      `(left, top, right, bottom)` floats: a `140 * W / 640` x `84 * H / 480` box centred
      on the centre of the points' bounding box. It may extend outside the image.
    """
    width, height = image_size
    crop_w = CROP_SIZE[0] * width / REFERENCE_SIZE[0]
    crop_h = CROP_SIZE[1] * height / REFERENCE_SIZE[1]
    lo = interior_margin_xy.min(axis=0)
    hi = interior_margin_xy.max(axis=0)
    cx, cy = (lo + hi) / 2.0
    return (cx - crop_w / 2.0, cy - crop_h / 2.0, cx + crop_w / 2.0, cy + crop_h / 2.0)


def _load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise common.SkipSample(common.MALFORMED_VALUE, f"not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise common.SkipSample(common.MALFORMED_VALUE,
                                f"expected a JSON object, got {type(data).__name__}")
    return data


def _get(data: dict, *keys: str):
    value = data
    for i, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise common.SkipSample(common.MISSING_KEY, "/".join(keys[:i + 1]))
        value = value[key]
    return value


def _load_gray(path: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("L")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise common.SkipSample(common.UNREADABLE_IMAGE, str(e)) from None


def convert_sample(folder: str, stem: str) -> common.Sample:
    """Converts one UnityEyes sample.

    Args:
      folder: folder holding `<stem>.jpg` and `<stem>.json`.
      stem: the sample number as a string.

    Returns:
      The `Sample`: uint8 image `[35, 55, 1]` and `LABEL_FIELDS` labels.

    Raises:
      common.SkipSample: on a missing file, malformed or missing JSON field, unreadable
        image or a crop leaving the image.
    """
    json_path = os.path.join(folder, stem + ".json")
    jpg_path = os.path.join(folder, stem + ".jpg")
    if not os.path.exists(json_path):
        raise common.SkipSample(MISSING_JSON, f"no {stem}.json beside {stem}.jpg")
    if not os.path.exists(jpg_path):
        raise common.SkipSample(MISSING_IMAGE, f"no {stem}.jpg beside {stem}.json")
    data = _load_json(json_path)
    margin = parse_points(_get(data, "interior_margin_2d"), NUM_INTERIOR_MARGIN,
                          "interior_margin_2d")
    iris = parse_points(_get(data, "iris_2d"), NUM_IRIS, "iris_2d")
    look_vec = parse_tuple(_get(data, "eye_details", "look_vec"), 4, "look_vec")
    head_pose = parse_tuple(_get(data, "head_pose"), 3, "head_pose")
    try:
        gaze = gaze_from_look_vec(look_vec)
    except ValueError as e:
        raise common.SkipSample(common.MALFORMED_VALUE, str(e)) from None

    gray = _load_gray(jpg_path)
    width, height = gray.size
    # Screen y (origin bottom-left) to image row (origin top-left).
    points = np.concatenate([margin[:, :2], iris[:, :2]])
    points[:, 1] = height - points[:, 1]
    left, top, right, bottom = crop_box(points[:NUM_INTERIOR_MARGIN], (width, height))
    if left < 0 or top < 0 or right > width or bottom > height:
        raise common.SkipSample(
            CROP_OUTSIDE_IMAGE,
            f"crop box ({left:.1f}, {top:.1f}, {right:.1f}, {bottom:.1f}) leaves the "
            f"{width}x{height} image")
    crop = gray.resize(OUTPUT_SIZE, Image.Resampling.BILINEAR,
                       box=(left, top, right, bottom))
    image = np.asarray(crop, dtype=np.uint8)[..., None]
    scale = np.array([OUTPUT_SIZE[0] / (right - left), OUTPUT_SIZE[1] / (bottom - top)])
    landmarks = (points - np.array([left, top])) * scale
    return common.Sample(
        key=stem, image=image, source=f"{stem}.json",
        labels={schema.LABEL_GAZE: gaze,
                LABEL_HEAD_POSE: head_pose_from_euler(head_pose),
                LABEL_LANDMARKS: landmarks.reshape(-1)})


def _process(folder: str, stem: str) -> list:
    return [common.run_sample(f"{stem}.json",
                              functools.partial(convert_sample, folder, stem))]


def convert(input_dir: str, output_dir: str, *,
            options: common.ConvertOptions | None = None) -> common.Summary:
    """Writes `<output_dir>/synthetic/` from a folder of UnityEyes renders.

    Args:
      input_dir: folder with `N.jpg` + `N.json` (or with an `imgs/` sub-folder).
      output_dir: the data folder; its `dataset.json` gains (or replaces) the
        `synthetic` split and keeps the others.
      options: common converter options.

    Returns:
      The `Summary` (counts, skips per reason with the first file names).

    Raises:
      FileNotFoundError: if `input_dir` holds no samples.
      common.ConversionError: in strict mode, on the first bad sample.
    """
    options = options or common.ConvertOptions()
    folder, stems = find_samples(input_dir)
    source = {"command": "data_prep.unityeyes", "input_dir": folder,
              "options": options.describe(), "labels": LABEL_NOTES}
    summary = common.Summary(output_dir=output_dir)
    summary.splits[SPLIT] = common.write_split(
        items=stems, process=functools.partial(_process, folder), data_dir=output_dir,
        split=SPLIT, domain="synthetic", image_shape=IMAGE_SHAPE, image_dtype="uint8",
        label_fields=LABEL_FIELDS, options=options, source=source, chunk_size=64,
        unit="img")
    return summary


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("input_dir", None, "Folder of UnityEyes N.jpg + N.json files "
                        "(or holding imgs/).", required=True)
    flags.DEFINE_string("output_dir", None, "Data folder to write synthetic/ into.",
                        required=True)
    common.define_common_flags()


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    fv = flags.FLAGS
    return common.run_main(lambda: convert(
        fv.input_dir, fv.output_dir, options=common.options_from_flags()))


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
