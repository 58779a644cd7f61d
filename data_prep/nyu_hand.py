r"""Converts the NYU hand pose dataset into `synthetic/`, `real/` and `real_test/`.

    python -m data_prep.nyu_hand --input_dir=<NYU root> --output_dir=<data folder>

The root holds `train/` and `test/`, each with `depth_K_NNNNNNN.png` (real Kinect),
`synthdepth_K_NNNNNNN.png` (rendered) and `joint_data.mat` (`joint_uvd` of shape
`(3 cameras, N, 36, 3)`). Splits: `synthetic/` = train synthdepth, `real/` = train
depth, `real_test/` = test depth. Per frame (see `data_prep/README.md`):

* Depth decoding: `depth_mm = (G << 8) | B` of the 640x480 RGB8 PNG.
* Crop: a square centred at the mean `(u, v)` of the 14 evaluation joints, of side
  `crop_mm * fx / d_c` pixels where `d_c` is the joints' mean depth in mm,
  `fx = 588.036865` and `crop_mm = 300` by default (a 300 mm cube projected at the hand's
  depth). Parts of the square outside the frame are background.
* Foreground: a pixel is kept if its depth lies in the cube's depth band,
  `|depth - d_c| <= crop_mm / 2`, and, for real frames, the synthetic frame of the same
  index and camera is > 0 there (the paper masks real depth with the synthetic
  foreground). A real frame without its synthdepth file is masked by the depth band
  alone (counted as the note `mask_from_depth_band`). Everything else is 0.
* Resampling to `size x size` (224 by default) is nearest-neighbour, so no depth value is
  invented at the hand's edges and the background stays exactly 0.
* Image: uint16 `[size, size, 1]`, foreground = depth in mm (> 0), background = 0.
  `dataset.json` records `pixel_range: [-1000, 2000]`, so the reader maps depth d (mm)
  to (d - 500) / 1500: background -1/3, a hand at 800 mm 0.2.
* `label/joints_uvd`: the 14 evaluation joints `[0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27,
  30, 31, 32]` of `joint_uvd`, flattened `[14, 3]`: `u, v` in pixels of the output crop
  (pixel centres at integers, as in NYU's uvd), `d` in mm (unchanged).
* Key: `train/synthdepth_1_0000001`, `train/depth_1_0000001`, `test/depth_1_0000001`,
  ...; order: frame number, then camera.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
from PIL import Image

from data_prep import common
from simgan_tf.data import schema

EVAL_JOINTS = (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)
NUM_JOINTS = 36
FX = 588.036865  # Focal length in pixels (fy = 587.075073 differs by 0.2%).
FRAME_SIZE = (640, 480)  # (width, height)
DEFAULT_CROP_MM = 300.0
# The reader maps depth -1000 .. 2000 mm to [-1, 1] (dataset.json pixel_range): the
# background (0) becomes -1/3, away from the refiner's tanh saturation at -1, and hands
# (about 500-1200 mm) lie in 0 .. 0.47.
PIXEL_RANGE = (-1000, 2000)
DEFAULT_SIZE = 224
DEFAULT_CAMERAS = (1,)
SPLITS = {  # split -> (input folder, file prefix, domain)
    "synthetic": ("train", "synthdepth", "synthetic"),
    "real": ("train", "depth", "real"),
    "real_test": ("test", "depth", "real"),
}
LABEL_FIELDS = {schema.LABEL_JOINTS_UVD: 3 * len(EVAL_JOINTS)}
JOINT_FILE = "joint_data.mat"

MISSING_LABEL = "missing_label"
MASK_FROM_DEPTH_BAND = "mask_from_depth_band"

_FILE_RE = re.compile(r"^(depth|synthdepth)_(\d)_(\d{7})\.png$")


def decode_depth(path: str) -> np.ndarray:
    """Reads an NYU depth PNG.

    Args:
      path: a 640x480 RGB8 `depth_*` or `synthdepth_*` PNG.

    Returns:
      uint16 `[480, 640]` depth in mm, `(G << 8) | B`; 0 where nothing was measured or
      rendered.

    Raises:
      common.SkipSample: `missing_file`, `unreadable_image` or `wrong_shape`.
    """
    if not os.path.exists(path):
        raise common.SkipSample(common.MISSING_FILE, f"{os.path.basename(path)} not found")
    try:
        with Image.open(path) as image:
            image.load()
            mode, size = image.mode, image.size
            pixels = np.asarray(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise common.SkipSample(common.UNREADABLE_IMAGE,
                                f"{os.path.basename(path)}: {e}") from None
    if mode != "RGB" or size != FRAME_SIZE:
        raise common.SkipSample(
            common.WRONG_SHAPE,
            f"{os.path.basename(path)} is {mode} {size[0]}x{size[1]}, expected RGB "
            f"{FRAME_SIZE[0]}x{FRAME_SIZE[1]}")
    return (pixels[..., 1].astype(np.uint16) << 8) | pixels[..., 2].astype(np.uint16)


def load_joints(folder: str) -> np.ndarray:
    """Reads the 14 evaluation joints of `<folder>/joint_data.mat`.

    Returns:
      float64 `[cameras, N, 14, 3]` (u, v in frame pixels, d in mm).

    Raises:
      FileNotFoundError: if the file is missing.
      ValueError: if it cannot be read or `joint_uvd` is not `(cameras, N, 36, 3)`.
    """
    import scipy.io

    path = os.path.join(folder, JOINT_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Joint annotations not found: {path!r}.")
    try:
        uvd = scipy.io.loadmat(path, variable_names=["joint_uvd"]).get("joint_uvd")
    except Exception as e:  # scipy raises many kinds on corrupt files.
        raise ValueError(f"{path}: cannot read ({e!r}).") from None
    if uvd is None:
        raise ValueError(f"{path}: no 'joint_uvd' variable.")
    if uvd.ndim != 4 or uvd.shape[2] != NUM_JOINTS or uvd.shape[3] != 3:
        raise ValueError(f"{path}: joint_uvd has shape {uvd.shape}, expected "
                         f"(cameras, N, {NUM_JOINTS}, 3).")
    return np.asarray(uvd[:, :, EVAL_JOINTS, :], dtype=np.float64)


def hand_crop(joints: np.ndarray, crop_mm: float) -> tuple[float, float, float, float]:
    """The crop square of a frame.

    Args:
      joints: `[14, 3]` (u, v, d) of the evaluation joints, d in mm.
      crop_mm: metric side of the crop cube in mm.

    Returns:
      `(center_u, center_v, center_d, side)`: mean u, v (pixels) and d (mm) of the
      joints, and the square's side in pixels, `crop_mm * FX / center_d`.
    """
    center_u, center_v, center_d = (float(c) for c in joints.mean(axis=0))
    return center_u, center_v, center_d, crop_mm * FX / center_d


def crop_nearest(depth: np.ndarray, center_u: float, center_v: float, side: float,
                 size: int) -> np.ndarray:
    """Samples a `side`-pixel square of `depth` into `size x size`, nearest-neighbour.

    Pixel centres are at integer coordinates (pixel `c` covers `[c - 0.5, c + 0.5)`).
    Output pixel `j` takes the frame pixel nearest to
    `center - side / 2 + (j + 0.5) * side / size`; outside the frame it is 0.

    Args:
      depth: `[H, W]` depth.
      center_u, center_v: square centre in frame pixels.
      side: square side in frame pixels.
      size: output side in pixels.

    Returns:
      `[size, size]` array of `depth.dtype`.
    """
    steps = (np.arange(size) + 0.5) * (side / size) - side / 2.0
    cols = np.floor(center_u + steps + 0.5).astype(np.int64)
    rows = np.floor(center_v + steps + 0.5).astype(np.int64)
    height, width = depth.shape
    valid_c = (cols >= 0) & (cols < width)
    valid_r = (rows >= 0) & (rows < height)
    out = depth[np.clip(rows, 0, height - 1)[:, None], np.clip(cols, 0, width - 1)[None]]
    return np.where(valid_r[:, None] & valid_c[None], out, 0).astype(depth.dtype)


def map_joints(joints: np.ndarray, center_u: float, center_v: float, side: float,
               size: int) -> np.ndarray:
    """Maps `[J, 3]` frame uvd into the crop's pixels (inverse of `crop_nearest`).

    Returns:
      `[J, 3]`: `u' = (u - center_u + side / 2) * size / side - 0.5`, same for v, and
      d unchanged (mm).
    """
    out = np.array(joints, dtype=np.float64)
    scale = size / side
    out[:, 0] = (out[:, 0] - center_u + side / 2.0) * scale - 0.5
    out[:, 1] = (out[:, 1] - center_v + side / 2.0) * scale - 0.5
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class FrameItem:
    """Work item: one frame of one camera.

    Attributes:
      folder: `train/` or `test/` folder.
      prefix: `depth` (real) or `synthdepth` (synthetic).
      camera: 1, 2 or 3.
      frame: frame number from 1.
      joints: `[14, 3]` uvd, or None if the annotations do not cover the frame.
      crop_mm: metric side of the crop cube.
      size: output side in pixels.
    """
    folder: str
    prefix: str
    camera: int
    frame: int
    joints: np.ndarray | None
    crop_mm: float
    size: int

    def path(self, prefix: str) -> str:
        return os.path.join(self.folder, f"{prefix}_{self.camera}_{self.frame:07d}.png")


def convert_frame(item: FrameItem) -> common.Sample:
    """Converts one frame (see the module docstring for the rules).

    Returns:
      The `Sample`: uint16 `[size, size, 1]` and `label/joints_uvd`.

    Raises:
      common.SkipSample: on missing labels or files, unreadable images, bad depth.
    """
    name = f"{os.path.basename(item.folder)}/{item.prefix}_{item.camera}_{item.frame:07d}"
    if item.joints is None:
        raise common.SkipSample(
            MISSING_LABEL, f"{JOINT_FILE} has no frame {item.frame} for camera "
            f"{item.camera}")
    if not np.all(np.isfinite(item.joints)):
        raise common.SkipSample(common.NON_FINITE_LABEL,
                                f"joints {item.joints.tolist()}")
    center_u, center_v, center_d, side = hand_crop(item.joints, item.crop_mm)
    if center_d <= 0:
        raise common.SkipSample(common.MALFORMED_VALUE,
                                f"mean joint depth {center_d} mm, expected > 0")
    band = item.crop_mm / 2.0

    def in_band(d):
        return (d > 0) & (np.abs(d.astype(np.float64) - center_d) <= band)

    depth = crop_nearest(decode_depth(item.path(item.prefix)), center_u, center_v, side,
                         item.size)
    notes = ()
    mask = in_band(depth)
    if item.prefix == "depth":
        synth_path = item.path("synthdepth")
        if os.path.exists(synth_path):
            synth = crop_nearest(decode_depth(synth_path), center_u, center_v, side,
                                 item.size)
            mask &= synth > 0
        else:
            notes = (MASK_FROM_DEPTH_BAND,)
    image = np.where(mask, depth, 0).astype(np.uint16)[..., None]
    joints = map_joints(item.joints, center_u, center_v, side, item.size)
    return common.Sample(key=name, image=image, source=f"{name}.png", notes=notes,
                         labels={schema.LABEL_JOINTS_UVD: joints.reshape(-1)})


def _process(item: FrameItem) -> list:
    source = f"{os.path.basename(item.folder)}/{os.path.basename(item.path(item.prefix))}"
    return [common.run_sample(source, lambda: convert_frame(item))]


def list_frames(folder: str, prefix: str, cameras) -> list[tuple[int, int]]:
    """`(frame, camera)` of every `<prefix>_K_NNNNNNN.png` in `folder`, sorted."""
    frames = []
    for name in os.listdir(folder):
        match = _FILE_RE.match(name)
        if match and match.group(1) == prefix and int(match.group(2)) in cameras:
            frames.append((int(match.group(3)), int(match.group(2))))
    return sorted(frames)


def _parse_ints(value, what: str) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"Expected a list of integers for {what}. "
                         f"Received: {value!r}") from None


def convert(input_dir: str, output_dir: str, *, cameras=DEFAULT_CAMERAS,
            size: int = DEFAULT_SIZE, crop_mm: float = DEFAULT_CROP_MM,
            splits=tuple(SPLITS), options: common.ConvertOptions | None = None,
            ) -> common.Summary:
    """Writes `synthetic/`, `real/` and `real_test/` from the NYU hand dataset.

    Args:
      input_dir: the NYU root holding `train/` and `test/`.
      output_dir: the data folder; `dataset.json` gains (or replaces) these splits.
      cameras: cameras to use (1, 2, 3), e.g. `(1,)` or `"1,2,3"`.
      size: output side in pixels.
      crop_mm: metric side of the crop cube in mm.
      splits: which of `synthetic`, `real`, `real_test` to write.
      options: common converter options.

    Returns:
      The `Summary`.

    Raises:
      FileNotFoundError: if a needed folder or `joint_data.mat` is missing, or a folder
        holds no frame of the requested cameras.
      ValueError: on bad arguments or a malformed `joint_data.mat`.
      common.ConversionError: in strict mode, on the first bad sample.
    """
    options = options or common.ConvertOptions()
    cameras = _parse_ints(cameras, "cameras")
    if not cameras or any(c not in (1, 2, 3) for c in cameras):
        raise ValueError(f"Expected cameras among 1, 2, 3. Received: {cameras}")
    if int(size) <= 0 or not float(crop_mm) > 0:
        raise ValueError(f"Expected size > 0 and crop_mm > 0. Received: size={size}, "
                         f"crop_mm={crop_mm}")
    splits = [splits] if isinstance(splits, str) else list(splits)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"Expected splits among {list(SPLITS)}. Received: {splits}")
    root = common.check_input_dir(input_dir, "NYU hand root")
    joints_by_folder = {}
    summary = common.Summary(output_dir=output_dir)
    for split in [s for s in SPLITS if s in splits]:
        folder_name, prefix, domain = SPLITS[split]
        folder = common.check_input_dir(os.path.join(root, folder_name),
                                        f"NYU {folder_name}/ folder")
        if folder not in joints_by_folder:
            joints_by_folder[folder] = load_joints(folder)
        joints = joints_by_folder[folder]
        frames = list_frames(folder, prefix, cameras)
        if not frames:
            raise FileNotFoundError(
                f"No {prefix}_K_NNNNNNN.png files for cameras {list(cameras)} in "
                f"{folder!r}.")
        items = [FrameItem(folder=folder, prefix=prefix, camera=camera, frame=frame,
                           joints=(joints[camera - 1, frame - 1]
                                   if camera <= joints.shape[0]
                                   and 1 <= frame <= joints.shape[1] else None),
                           crop_mm=float(crop_mm), size=int(size))
                 for frame, camera in frames]
        source = {"command": "data_prep.nyu_hand", "input_dir": folder,
                  "options": {**options.describe(), "cameras": list(cameras),
                              "size": int(size), "crop_mm": float(crop_mm)},
                  "files": f"{prefix}_K_NNNNNNN.png",
                  "image": "uint16 depth in mm inside the hand mask, 0 = background",
                  "labels": {schema.LABEL_JOINTS_UVD: (
                      f"joints {list(EVAL_JOINTS)} of joint_uvd as [14, 3]: u, v in "
                      "crop pixels (pixel centres at integers), d in mm")}}
        summary.splits[split] = common.write_split(
            items=items, process=_process, data_dir=output_dir, split=split,
            domain=domain, image_shape=(int(size), int(size), 1), image_dtype="uint16",
            label_fields=LABEL_FIELDS, options=options, source=source, chunk_size=8,
            unit="frame", pixel_range=PIXEL_RANGE)
    return summary


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("input_dir", None, "NYU hand root holding train/ and test/.",
                        required=True)
    flags.DEFINE_string("output_dir", None, "Data folder to write the splits into.",
                        required=True)
    flags.DEFINE_list("cameras", [str(c) for c in DEFAULT_CAMERAS],
                      "Cameras to use, among 1,2,3.")
    flags.DEFINE_integer("size", DEFAULT_SIZE, "Output side in pixels.", lower_bound=1)
    flags.DEFINE_float("crop_mm", DEFAULT_CROP_MM,
                       "Metric side (mm) of the crop cube around the hand.")
    flags.DEFINE_list("splits", list(SPLITS), "Splits to write.")
    common.define_common_flags()


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    fv = flags.FLAGS
    return common.run_main(lambda: convert(
        fv.input_dir, fv.output_dir, cameras=fv.cameras, size=fv.size,
        crop_mm=fv.crop_mm, splits=fv.splits, options=common.options_from_flags()))


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
