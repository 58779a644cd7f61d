r"""Converts folders of PNG/JPEG files into `synthetic/`, `real/` and `real_test/`.

    python -m data_prep.images --synthetic_dir=<folder> --real_dir=<folder> \
        --size=35x55 --grayscale --output_dir=<data folder>

Per file (see `data_prep/README.md` for the whole contract):

* Files: `*.png`, `*.jpg`, `*.jpeg` (any case), searched recursively; other files are
  ignored. Key: the path relative to the input folder with `/` separators
  (`left/0001.png`). Records are written in key order (Python string order).
* Pixels: EXIF orientation applied; `grayscale` converts with Pillow `L` (ITU-R 601-2
  luma), otherwise Pillow `RGB` (alpha dropped). 16-bit grayscale PNGs keep their 16
  bits with `bit_depth=16` and are divided by 257 (rounded) with `bit_depth=8`; 8-bit
  images are multiplied by 257 with `bit_depth=16` (0..255 -> 0..65535).
* Size: `fit` resamples the whole image to `height x width` (the aspect ratio may
  change; nothing is cut off or padded), `crop` resamples the largest centred box of the
  target's aspect ratio (borders are cut), both in one step with Pillow's antialiased
  bilinear filter on float pixels, rounded; an image already of the target size is
  kept as is. `none` keeps pixels unchanged and skips (`wrong_shape`) any image of
  another size.
* Labels (`labels_csv`, for the `labeled_splits`): one row per file, keyed by the
  column `path` (the key above); see `label_columns` for how columns become
  `label/<name>` fields.
* Splits: `synthetic/` from `synthetic_dir`; `real/` from `real_dir`; `real_test/` from
  `real_test_dir`, or the keys of `real_dir` that `common.held_out` puts in
  `real_test_fraction` (a hash of the key: deterministic, and independent of the other
  files).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import posixpath
import re

import numpy as np
from PIL import Image, ImageOps

from data_prep import common
from simgan_tf.data import schema

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_DOMAINS = {"synthetic": "synthetic", "real": "real", "real_test": "real"}
RESIZE_MODES = ("fit", "crop", "none")
BIT_DEPTHS = {8: "uint8", 16: "uint16"}
PATH_COLUMN = "path"
# Label names made only by their own column rule (see `label_columns`).
ANGLE_LABELS = ("gaze", "head_pose")  # <name>_pitch, <name>_yaw -> [pitch, yaw]
JOINTS_LABEL = "joints_uvd"  # joint<i>_u, joint<i>_v, joint<i>_d -> [J, 3]

MISSING_LABEL = "missing_label"

_JOINT_RE = re.compile(r"^joint(\d+)_([uvd])$")
_INDEXED_RE = re.compile(r"^(.+)_(\d+)$")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
_16_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


@dataclasses.dataclass(frozen=True)
class ImageSettings:
    """How every file becomes an image of the output.

    Attributes:
      size: `(height, width)` of every output image.
      resize: `fit`, `crop` or `none` (see the module docstring).
      grayscale: 1 channel (luma) if True, else 3 (RGB).
      bit_depth: 8 (uint8) or 16 (uint16; grayscale only: the schema's 16-bit PNGs have
        one channel).
    """
    size: tuple
    resize: str = "fit"
    grayscale: bool = False
    bit_depth: int = 8

    def __post_init__(self):
        height, width = (int(v) for v in self.size)
        if height <= 0 or width <= 0:
            raise ValueError(f"Expected a size of at least 1x1. Received: size={self.size}")
        object.__setattr__(self, "size", (height, width))
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"Expected resize in {RESIZE_MODES}. Received: "
                             f"resize={self.resize!r}")
        if int(self.bit_depth) not in BIT_DEPTHS:
            raise ValueError(f"Expected bit_depth 8 or 16. Received: "
                             f"bit_depth={self.bit_depth!r}")
        object.__setattr__(self, "bit_depth", int(self.bit_depth))
        if self.bit_depth == 16 and not self.grayscale:
            raise ValueError("bit_depth=16 needs grayscale=True: 16-bit images of the "
                             "schema have one channel. Received: grayscale=False")

    @property
    def dtype(self) -> str:
        return BIT_DEPTHS[self.bit_depth]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (*self.size, 1 if self.grayscale else 3)

    def describe(self) -> dict:
        return {"size": list(self.size), "resize": self.resize,
                "grayscale": self.grayscale, "bit_depth": self.bit_depth}


def parse_size(value) -> tuple[int, int]:
    """`"35x55"` (height x width) or a pair -> `(35, 55)`."""
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise ValueError(f"Expected size as HEIGHTxWIDTH, e.g. 35x55. Received: "
                             f"size={value!r}")
        return int(match.group(1)), int(match.group(2))
    height, width = value
    return int(height), int(width)


def list_images(folder: str) -> list[str]:
    """Keys (relative paths, `/` separators) of the image files below `folder`, sorted.

    Raises:
      FileNotFoundError: if `folder` is not a folder or holds no PNG/JPEG file.
    """
    keys = []
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        relative = os.path.relpath(parent, folder)
        for name in files:
            if name.lower().endswith(IMAGE_SUFFIXES):
                path = name if relative == "." else os.path.join(relative, name)
                keys.append(path.replace(os.sep, "/"))
    if not keys:
        raise FileNotFoundError(
            f"No {'/'.join(IMAGE_SUFFIXES)} files found below {folder!r}.")
    return sorted(keys)


def normalize_key(path: str) -> str:
    """A CSV path as a key: `/` separators, no `./` or doubled separators."""
    return posixpath.normpath(path.strip().replace("\\", "/"))


def label_columns(header: list[str]) -> dict[str, list[str]]:
    """Maps each `label/<name>` to its CSV columns, in value order.

    The rule, applied to every column except `path`:

    * `gaze_pitch`, `gaze_yaw` -> `label/gaze` `[pitch, yaw]` (radians); likewise
      `head_pose_pitch`, `head_pose_yaw` -> `label/head_pose`. Both or neither.
    * `joint<i>_u`, `joint<i>_v`, `joint<i>_d` for i = 0..J-1 -> `label/joints_uvd`, the
      `[J, 3]` values flattened joint by joint (`u, v, d`).
    * `<name>_<k>` for k = 0..n-1 -> `label/<name>` of n values in k order.
    * Any other column `<name>` -> `label/<name>` of one value.

    Args:
      header: the label columns (not `path`), stripped.

    Returns:
      `{"label/<name>": [column, ...]}`, sorted by name.

    Raises:
      ValueError: on an incomplete group (a missing `gaze_yaw`, `joint3_d`, `x_1`, ...),
        or a name that two rules produce or that only its own rule may produce.
    """
    groups, problems = {}, []
    reserved = (*ANGLE_LABELS, JOINTS_LABEL)

    def add(name, columns, own_rule=False):
        if name in groups:
            problems.append(f"label/{name} from both {groups[name]} and {columns}")
        elif name in reserved and not own_rule:
            problems.append(f"label/{name} comes only from its own columns, not from "
                            f"{columns}")
        elif "/" in name:
            problems.append(f"column {columns[0]!r}: a label name has no '/'")
        groups[name] = columns

    angle_columns = {f"{a}_{part}" for a in ANGLE_LABELS for part in ("pitch", "yaw")}
    joints, indexed, singles = {}, {}, []
    for column in header:
        joint, index = _JOINT_RE.match(column), _INDEXED_RE.match(column)
        if joint:
            joints.setdefault(int(joint.group(1)), {})[joint.group(2)] = column
        elif column in angle_columns:
            continue
        elif index:
            indexed.setdefault(index.group(1), {})[int(index.group(2))] = column
        else:
            singles.append(column)
    for angle in ANGLE_LABELS:
        pair = [f"{angle}_pitch", f"{angle}_yaw"]
        present = [c for c in pair if c in header]
        if len(present) == 1:
            problems.append(f"{present[0]} without {(set(pair) - set(present)).pop()}")
        elif present:
            add(angle, pair, own_rule=True)
    if joints:
        expected = [f"joint{i}_{c}" for i in range(max(joints) + 1) for c in "uvd"]
        missing = [c for c in expected if c not in header]
        if missing:
            problems.append(f"joint columns missing: {missing[:6]}")
        add(JOINTS_LABEL, expected, own_rule=True)
    for name, columns in indexed.items():
        missing = [f"{name}_{k}" for k in range(max(columns) + 1) if k not in columns]
        if missing:
            problems.append(f"{name}_<k> columns missing: {missing[:6]}")
        add(name, [columns[k] for k in sorted(columns)])
    for column in singles:
        add(column, [column])
    if problems:
        raise ValueError("Labels CSV columns: " + "; ".join(problems))
    return {f"{schema.LABEL_PREFIX}{name}": groups[name] for name in sorted(groups)}


@dataclasses.dataclass
class LabelTable:
    """The rows of a labels CSV.

    Attributes:
      path: the CSV file.
      columns: `{"label/<name>": [column, ...]}` (see `label_columns`).
      rows: `{key: (line, labels or None, problem)}`: the floats of each label, or
        `None` and what is wrong with the row (a value that is not a number).
      ignored_columns: columns without a single number, left out.
    """
    path: str
    columns: dict
    rows: dict
    ignored_columns: list

    @property
    def fields(self) -> dict:
        return {name: len(columns) for name, columns in self.columns.items()}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_labels_csv(path: str) -> LabelTable:
    """Reads a labels CSV (header row, a `path` column, numeric label columns).

    A column is a label column if at least one of its values is a number; a column
    without any number (a comment, a name) is ignored. A row whose value in a label
    column is not a number (or is empty) is kept as a problem: its file is skipped as
    `malformed_value`.

    Raises:
      FileNotFoundError: if the file does not exist.
      ValueError: no header, no `path` column, no label column, an empty or duplicated
        path (naming both lines), a row of the wrong length, or a column rule broken
        (`label_columns`).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Labels CSV not found: {path!r}.")
    with open(path, newline="", encoding="utf-8-sig") as f:
        lines = list(csv.reader(f))
    numbered = [(n, row) for n, row in enumerate(lines, 1) if any(c.strip() for c in row)]
    if not numbered:
        raise ValueError(f"{path}: empty file; expected a header row with a "
                         f"{PATH_COLUMN!r} column.")
    header = [c.strip() for c in numbered[0][1]]
    if PATH_COLUMN not in header or len(set(header)) != len(header):
        raise ValueError(f"{path}:1: expected a header with one {PATH_COLUMN!r} column "
                         f"and distinct names. Received: {header}")
    records = []
    for number, row in numbered[1:]:
        if len(row) != len(header):
            raise ValueError(f"{path}:{number}: {len(row)} values, expected "
                             f"{len(header)} ({','.join(header)}).")
        records.append((number, dict(zip(header, (c.strip() for c in row)))))
    others = [c for c in header if c != PATH_COLUMN]
    numeric = [c for c in others if any(_number(r[c]) is not None for _, r in records)]
    if not numeric:
        raise ValueError(f"{path}: no label column (a column with numbers) besides "
                         f"{PATH_COLUMN!r}. Received: {header}")
    try:
        columns = label_columns(numeric)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    rows = {}
    for number, record in records:
        if not record[PATH_COLUMN]:
            raise ValueError(f"{path}:{number}: empty {PATH_COLUMN!r}.")
        key = normalize_key(record[PATH_COLUMN])
        if key in rows:
            raise ValueError(f"{path}:{number}: path {key!r} already on line "
                             f"{rows[key][0]}.")
        bad = [c for c in numeric if _number(record[c]) is None]
        if bad:
            rows[key] = (number, None, f"{os.path.basename(path)} line {number}: "
                         f"{bad[0]} = {record[bad[0]]!r} is not a number")
            continue
        labels = {name: tuple(float(record[c]) for c in cols)
                  for name, cols in columns.items()}
        rows[key] = (number, labels, "")
    return LabelTable(path=os.path.abspath(path), columns=columns, rows=rows,
                      ignored_columns=[c for c in others if c not in numeric])


@dataclasses.dataclass(frozen=True)
class FileItem:
    """Work item: one file (or a CSV row whose file is missing).

    Attributes:
      key: the relative path.
      path: the file.
      labels: `{"label/<name>": floats}`, or None for an unlabelled split.
      skip: `(reason, detail)` decided before reading (a label problem), or None.
    """
    key: str
    path: str
    labels: dict | None = None
    skip: tuple | None = None


def read_pixels(path: str, settings: ImageSettings) -> np.ndarray:
    """float64 `[h, w, channels]` pixels of a file, in the output's value scale.

    Raises:
      common.SkipSample: `unreadable_image` if Pillow cannot decode it (not an image,
        truncated, ...).
    """
    scale_16 = settings.bit_depth == 16
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in _16_BIT_MODES:
                values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)[..., None]
                values = values if scale_16 else values / 257.0
                return values if settings.grayscale else np.repeat(values, 3, axis=-1)
            values = np.asarray(image.convert("L" if settings.grayscale else "RGB"),
                                dtype=np.float64)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise common.SkipSample(common.UNREADABLE_IMAGE, str(e)) from None
    values = values[..., None] if values.ndim == 2 else values
    return values * 257.0 if scale_16 else values


def resize_box(width: int, height: int, settings: ImageSettings) -> tuple:
    """The `(left, top, right, bottom)` box of the image resampled to the output size."""
    if settings.resize != "crop":
        return (0.0, 0.0, float(width), float(height))
    target_h, target_w = settings.size
    scale = min(width / target_w, height / target_h)
    box_w, box_h = target_w * scale, target_h * scale
    left, top = (width - box_w) / 2.0, (height - box_h) / 2.0
    return (left, top, left + box_w, top + box_h)


def convert_file(item: FileItem, settings: ImageSettings) -> common.Sample:
    """Converts one file into a `Sample` of `settings.shape` and dtype.

    Raises:
      common.SkipSample: `unreadable_image`, or `wrong_shape` (`resize="none"` and the
        image is not of the output size).
    """
    values = read_pixels(item.path, settings)
    height, width = values.shape[:2]
    target_h, target_w = settings.size
    if (height, width) != settings.size:
        if settings.resize == "none":
            raise common.SkipSample(
                common.WRONG_SHAPE, f"image is {height}x{width} (height x width), "
                f"expected {target_h}x{target_w} (resize=none)")
        box = resize_box(width, height, settings)
        values = np.stack([
            np.asarray(Image.fromarray(np.ascontiguousarray(values[..., c], np.float32))
                       .resize((target_w, target_h), Image.Resampling.BILINEAR, box=box))
            for c in range(values.shape[-1])], axis=-1)
    top = np.iinfo(settings.dtype).max
    image = np.clip(np.rint(values), 0, top).astype(settings.dtype)
    return common.Sample(key=item.key, image=image, labels=item.labels or {},
                         source=item.path)


def _process(settings: ImageSettings, item: FileItem) -> list:
    if item.skip is not None:
        return [common.Skip(item.skip[0], item.path, item.skip[1])]
    return [common.run_sample(item.path, functools.partial(convert_file, item, settings))]


def _items(folder: str, keys: list[str], table: LabelTable | None) -> list[FileItem]:
    """File items of one split; `table` is None for an unlabelled split."""
    items = []
    for key in keys:
        path = os.path.join(folder, *key.split("/"))
        if table is None:
            items.append(FileItem(key=key, path=path))
            continue
        row = table.rows.get(key)
        if row is None:
            items.append(FileItem(key=key, path=path, skip=(
                MISSING_LABEL, f"no row with path {key!r} in "
                f"{os.path.basename(table.path)}")))
        elif row[1] is None:
            items.append(FileItem(key=key, path=path, skip=(common.MALFORMED_VALUE,
                                                            row[2])))
        else:
            items.append(FileItem(key=key, path=path, labels=row[1]))
    return items


def _parse_splits(value) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    splits = [v.strip() for v in value if v.strip()]
    unknown = [s for s in splits if s not in SPLIT_DOMAINS]
    if unknown:
        raise ValueError(f"Expected splits among {list(SPLIT_DOMAINS)}. Received: "
                         f"{splits}")
    return splits


def _label_notes(table: LabelTable) -> dict:
    notes = {name: f"columns {','.join(cols)} of the labels CSV"
             for name, cols in table.columns.items()}
    for angle in ANGLE_LABELS:
        name = schema.LABEL_PREFIX + angle
        if name in notes:
            notes[name] = "[pitch, yaw] radians, " + notes[name]
    return notes


def convert(output_dir: str, *, size, synthetic_dir: str | None = None,
            real_dir: str | None = None, real_test_dir: str | None = None,
            real_test_fraction: float = 0.0, labels_csv: str | None = None,
            labeled_splits=("synthetic",), resize: str = "fit", grayscale: bool = False,
            bit_depth: int = 8,
            options: common.ConvertOptions | None = None) -> common.Summary:
    """Writes the splits of `output_dir` from folders of image files.

    Args:
      output_dir: the data folder; `dataset.json` gains (or replaces) the splits
        written and keeps the others.
      size: `(height, width)` or `"HxW"` of every output image.
      synthetic_dir: folder of the `synthetic/` images (searched recursively), or None.
      real_dir: folder of the `real/` images, or None.
      real_test_dir: folder of the `real_test/` images, or None.
      real_test_fraction: in [0, 1): the fraction of `real_dir`'s keys held out into
        `real_test/` (`common.held_out`); not with `real_test_dir`.
      labels_csv: CSV of labels keyed by relative path (see `read_labels_csv`), or None.
      labeled_splits: the splits the CSV labels (each written); every file of these
        needs a row, others are skipped as `missing_label`. A row naming no file of
        their folders is skipped (`missing_file`) in the first of them.
      resize: `fit`, `crop` or `none`.
      grayscale: one channel (luma) instead of RGB.
      bit_depth: 8 or 16 (grayscale only).
      options: common converter options.

    Returns:
      The `Summary`.

    Raises:
      FileNotFoundError: a folder or the CSV does not exist, or a folder holds no image.
      ValueError: on inconsistent arguments or a malformed CSV (naming the line).
      common.ConversionError: in strict mode, on the first bad file.
    """
    options = options or common.ConvertOptions()
    settings = ImageSettings(size=parse_size(size), resize=resize, grayscale=grayscale,
                             bit_depth=bit_depth)
    fraction = common.check_fraction(real_test_fraction)
    if fraction and (real_test_dir or not real_dir):
        raise ValueError("real_test_fraction splits real_dir: it needs real_dir and no "
                         f"real_test_dir. Received: real_dir={real_dir!r}, "
                         f"real_test_dir={real_test_dir!r}")
    folders = {split: common.check_input_dir(folder, f"{split} image folder")
               for split, folder in (("synthetic", synthetic_dir), ("real", real_dir),
                                     ("real_test", real_test_dir or (
                                         real_dir if fraction else None)))
               if folder}
    if not folders:
        raise ValueError("Expected at least one of synthetic_dir, real_dir, "
                         "real_test_dir.")
    listings = {folder: list_images(folder) for folder in set(folders.values())}
    keys = {split: listings[folder] for split, folder in folders.items()}
    if fraction:
        keys["real"], keys["real_test"] = common.split_held_out(keys["real"], fraction)
    labeled = _parse_splits(labeled_splits) if labels_csv else []
    unwritten = [s for s in labeled if s not in folders]
    if unwritten:
        raise ValueError(f"labeled_splits {unwritten} are not written (written: "
                         f"{list(folders)}); labels_csv labels only written splits.")
    table = read_labels_csv(labels_csv) if labels_csv else None
    known = set().union(*(listings[folders[s]] for s in labeled))
    summary = common.Summary(output_dir=output_dir)
    for split, folder in folders.items():
        split_table = table if split in labeled else None
        items = _items(folder, keys[split], split_table)
        if labeled and split == labeled[0]:
            items += [FileItem(key=key, path=table.path, skip=(
                common.MISSING_FILE, f"line {line} names {key!r}, not found below "
                f"{', '.join(sorted({folders[s] for s in labeled}))}"))
                for key, (line, _, _) in table.rows.items() if key not in known]
        source = {"command": "data_prep.images", "input_dir": folder,
                  "options": {**options.describe(), **settings.describe(),
                              "real_test_fraction": fraction,
                              "labels_csv": table.path if table else None,
                              "labeled_splits": labeled},
                  "files": "*.png, *.jpg, *.jpeg below input_dir, key = relative path",
                  "labels": _label_notes(split_table) if split_table else {}}
        if split_table is not None:
            source["ignored_csv_columns"] = split_table.ignored_columns
        summary.splits[split] = common.write_split(
            items=items, process=functools.partial(_process, settings),
            data_dir=output_dir, split=split, domain=SPLIT_DOMAINS[split],
            image_shape=settings.shape, image_dtype=settings.dtype,
            label_fields=split_table.fields if split_table else {}, options=options,
            source=source, chunk_size=32, unit="img")
    if "real" in folders and "real_test" not in folders:
        # An earlier run's real_test/ held out of real_dir would overlap the new real/.
        common.remove_stale_held_out(output_dir)
    return summary


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("output_dir", None, "Data folder to write the splits into.",
                        required=True)
    flags.DEFINE_string("synthetic_dir", None, "Folder of synthetic images (recursive).")
    flags.DEFINE_string("real_dir", None, "Folder of real images (recursive).")
    flags.DEFINE_string("real_test_dir", None, "Folder of real test images (recursive).")
    common.define_real_test_fraction_flag()
    flags.DEFINE_string("labels_csv", None, "CSV of labels: a 'path' column (relative "
                        "path of the file) and numeric label columns.")
    flags.DEFINE_list("labeled_splits", ["synthetic"],
                      "Splits labelled by --labels_csv; each of their files needs a row.")
    flags.DEFINE_string("size", None, "Output HEIGHTxWIDTH, e.g. 35x55.", required=True)
    flags.DEFINE_enum("resize", "fit", list(RESIZE_MODES),
                      "fit: whole image to the size; crop: centred box of the size's "
                      "aspect ratio; none: every image must have the size.")
    flags.DEFINE_boolean("grayscale", False, "One channel (luma) instead of RGB.")
    flags.DEFINE_enum("bit_depth", "8", ["8", "16"], "Output bits per pixel (16: with "
                      "--grayscale only).")
    common.define_common_flags()


def _convert_from_flags(fv) -> common.Summary:
    return convert(
        fv.output_dir, size=fv.size, synthetic_dir=fv.synthetic_dir,
        real_dir=fv.real_dir, real_test_dir=fv.real_test_dir,
        real_test_fraction=fv.real_test_fraction, labels_csv=fv.labels_csv,
        labeled_splits=fv.labeled_splits, resize=fv.resize, grayscale=fv.grayscale,
        bit_depth=int(fv.bit_depth), options=common.options_from_flags())


main = common.make_main(_convert_from_flags)


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
