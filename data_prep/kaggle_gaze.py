r"""Converts the Kaggle "eye-gaze" HDF5 files into `synthetic/`, `real/`, `real_test/`.

    python -m data_prep.kaggle_gaze --synthetic_h5=gaze.h5 --real_h5=real_gaze.h5 \
        --output_dir=<data folder> [--real_test_fraction=0.1]

The layout most public SimGAN code trains on (see `data_prep/README.md`):

* `gaze.h5` (synthetic, UnityEyes): a group `image` with one 35x55 uint8 dataset per
  sample, and a group `look_vec` with the sample's UnityEyes look vector (3 floats)
  under the same name.
* `real_gaze.h5` (real, MPIIGaze): a group `image` only (other groups are ignored).

Per sample:

* Image: the 35x55 uint8 pixels unchanged (a `[35, 55]` or `[35, 55, 1]` dataset),
  `[35, 55, 1]`: the shape of `data_prep.unityeyes` and `data_prep.mpiigaze`, so the
  splits may share a data folder with theirs.
* `label/gaze` (synthetic only): `unityeyes.gaze_from_look_vec`, the convention of
  `data_prep.unityeyes`: `pitch = asin(y)`, `yaw = atan2(-x, -z)` of the normalized look
  vector (Unity camera axes, y up).
* Key: the dataset's name in `image`. Order: natural name order (`img2` before `img10`).
* `real/` and `real_test/`: the real samples split by `common.held_out(key,
  real_test_fraction)` (a hash of the key; deterministic).

A file whose layout differs (no `image` group, images that are not 35x55 uint8, look
vectors missing or not 3 floats) is an error before anything is written, listing the
groups and the shapes found.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from typing import Sequence

import numpy as np

from data_prep import common, unityeyes
from simgan_tf.data import schema

IMAGE_GROUP = "image"
LOOK_VEC_GROUP = "look_vec"
IMAGE_SHAPE = (35, 55, 1)
LOOK_VEC_SIZE = 3
LABEL_FIELDS = {schema.LABEL_GAZE: 2}
LABEL_NOTES = {schema.LABEL_GAZE: unityeyes.LABEL_NOTES[schema.LABEL_GAZE]}
# How many odd names an error lists.
MAX_LISTED = 5

_DIGITS_RE = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key putting `img2` before `img10` (digit runs compare as numbers)."""
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part)
                 for part in _DIGITS_RE.split(name))


def _shape_counts(group) -> str:
    """`"100 x (35, 55) uint8, 2 x (36, 60) uint8"` for the datasets of a group."""
    counts = collections.Counter(
        f"{tuple(v.shape)} {v.dtype}" if hasattr(v, "shape") else "group"
        for v in group.values())
    return ", ".join(f"{n} x {kind}" for kind, n in counts.most_common())


def describe_layout(h5file) -> str:
    """The top-level members of an open HDF5 file, with the shapes each group holds."""
    parts = []
    for name, member in h5file.items():
        if hasattr(member, "keys"):
            parts.append(f"group {name!r} ({len(member)} members: "
                         f"{_shape_counts(member) or 'none'})")
        else:
            parts.append(f"dataset {name!r} {tuple(member.shape)} {member.dtype}")
    return "; ".join(parts) or "nothing"


def _image_ok(dataset) -> bool:
    return (hasattr(dataset, "shape") and dataset.dtype == np.uint8
            and tuple(dataset.shape) in (IMAGE_SHAPE[:2], IMAGE_SHAPE))


def check_layout(h5file, path: str, *, with_look_vec: bool) -> list[str]:
    """Checks an open Kaggle gaze file; returns its image names in natural order.

    Raises:
      ValueError: naming the file, what is wrong and the groups and shapes found (no
        `image` group or an empty one, images not 35x55 uint8, look vectors missing or
        not of 3 values).
    """
    def fail(problem):
        raise ValueError(
            f"{path}: {problem}. Expected a group {IMAGE_GROUP!r} of 35x55 uint8 "
            "datasets" + (f" and a group {LOOK_VEC_GROUP!r} with a 3-float dataset of "
                          "the same name for each" if with_look_vec else "")
            + f". Found: {describe_layout(h5file)}.")

    images = h5file.get(IMAGE_GROUP)
    if images is None or not hasattr(images, "keys") or not len(images):
        fail(f"no non-empty group {IMAGE_GROUP!r}")
    names = sorted(images.keys(), key=natural_key)
    odd = [n for n in names if not _image_ok(images[n])]
    if odd:
        listed = ", ".join(f"{n!r} {getattr(images[n], 'shape', 'group')}"
                           for n in odd[:MAX_LISTED])
        fail(f"{len(odd)} of {len(names)} images are not 35x55 uint8 ({listed})")
    if with_look_vec:
        vectors = h5file.get(LOOK_VEC_GROUP)
        if vectors is None or not hasattr(vectors, "keys"):
            fail(f"no group {LOOK_VEC_GROUP!r}")
        missing = [n for n in names if n not in vectors]
        if missing:
            fail(f"{len(missing)} of {len(names)} images have no look vector "
                 f"({', '.join(map(repr, missing[:MAX_LISTED]))})")
        odd = [n for n in names if getattr(vectors[n], "size", 0) != LOOK_VEC_SIZE]
        if odd:
            fail(f"{len(odd)} look vectors are not 3 values "
                 f"({', '.join(map(repr, odd[:MAX_LISTED]))})")
    return names


@dataclasses.dataclass(frozen=True)
class GazeItem:
    """Work item: one sample read from the file.

    Attributes:
      name: the dataset name (the key).
      source: `<file>:image/<name>`, for messages.
      image: uint8 `[35, 55]` pixels, or None if reading failed.
      look_vec: the 3 floats, or None for a real sample.
      error: why reading failed, if it did.
    """
    name: str
    source: str
    image: np.ndarray | None
    look_vec: np.ndarray | None = None
    error: str = ""


class _Items(Sequence):
    """The samples of an open file as a lazy sequence: read one by one while written."""

    def __init__(self, h5file, path: str, names: list[str], with_look_vec: bool):
        self._file, self._names, self._with_look_vec = h5file, names, with_look_vec
        self._base = os.path.basename(path)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index: int) -> GazeItem:
        name = self._names[index]
        source = f"{self._base}:{IMAGE_GROUP}/{name}"
        try:
            image = np.asarray(self._file[IMAGE_GROUP][name], dtype=np.uint8)
            look_vec = (np.asarray(self._file[LOOK_VEC_GROUP][name], np.float64).ravel()
                        if self._with_look_vec else None)
        except (OSError, KeyError, ValueError) as e:  # A corrupt chunk of the file.
            return GazeItem(name, source, None, error=str(e))
        return GazeItem(name, source, image, look_vec)


def _process(item: GazeItem) -> list:
    if item.image is None:
        return [common.Skip(common.UNREADABLE_FILE, item.source, item.error)]
    labels = {}
    if item.look_vec is not None:
        if not np.all(np.isfinite(item.look_vec)):
            return [common.Skip(common.NON_FINITE_LABEL, item.source,
                                f"look_vec = {item.look_vec.tolist()}")]
        try:
            labels[schema.LABEL_GAZE] = unityeyes.gaze_from_look_vec(item.look_vec)
        except ValueError as e:
            return [common.Skip(common.MALFORMED_VALUE, item.source, str(e))]
    return [common.Sample(key=item.name, image=item.image.reshape(IMAGE_SHAPE),
                          labels=labels, source=item.source)]


def _open(path: str, what: str):
    import h5py

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path!r} is not a file.")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e}).") from None


def convert(output_dir: str, *, synthetic_h5: str | None = None,
            real_h5: str | None = None, real_test_fraction: float = 0.0,
            options: common.ConvertOptions | None = None) -> common.Summary:
    """Writes `synthetic/` from `synthetic_h5` and `real/` (+ `real_test/`) from `real_h5`.

    Args:
      output_dir: the data folder; `dataset.json` gains (or replaces) the splits
        written and keeps the others.
      synthetic_h5: the synthetic file (`gaze.h5`: `image` and `look_vec`), or None.
      real_h5: the real file (`real_gaze.h5`: `image`), or None.
      real_test_fraction: in [0, 1): the fraction of real samples written to
        `real_test/` instead of `real/` (`common.held_out` of the key); 0: no
        `real_test/`.
      options: common converter options.

    Returns:
      The `Summary`.

    Raises:
      FileNotFoundError: if a file does not exist.
      ValueError: if neither file is given, a fraction is out of range, or a file's
        layout differs (listing the groups and shapes found). Both files are checked
        before anything is written.
      common.ConversionError: in strict mode, on the first bad sample.
    """
    options = options or common.ConvertOptions()
    fraction = common.check_fraction(real_test_fraction)
    if not synthetic_h5 and not real_h5:
        raise ValueError("Expected synthetic_h5 or real_h5 (or both).")
    files = {}
    try:
        for domain, path in (("synthetic", synthetic_h5), ("real", real_h5)):
            if path:
                h5file = _open(path, f"{domain} HDF5 file")
                files[domain] = (os.path.abspath(path), h5file, [])  # Closed in finally.
                names = check_layout(h5file, path, with_look_vec=domain == "synthetic")
                files[domain] = (os.path.abspath(path), h5file, names)
        plan = []  # (split, domain, names)
        if "synthetic" in files:
            plan.append(("synthetic", "synthetic", files["synthetic"][2]))
        if "real" in files:
            real, test = common.split_held_out(files["real"][2], fraction)
            plan.append(("real", "real", real))
            if fraction:
                plan.append(("real_test", "real", test))
        summary = common.Summary(output_dir=output_dir)
        for split, domain, names in plan:
            path, h5file, _ = files[domain]
            labelled = domain == "synthetic"
            source = {"command": "data_prep.kaggle_gaze", "input_file": path,
                      "options": {**options.describe(), "real_test_fraction": fraction},
                      "labels": LABEL_NOTES if labelled else {}}
            summary.splits[split] = common.write_split(
                items=_Items(h5file, path, names, labelled), process=_process,
                data_dir=output_dir, split=split, domain=domain, image_shape=IMAGE_SHAPE,
                image_dtype="uint8", label_fields=LABEL_FIELDS if labelled else {},
                options=options, source=source, chunk_size=256, unit="img",
                inputs={"file": path, "names": list(names)})
        if "real" in files and not fraction:
            # An earlier run's real_test/ held out of real_h5 would overlap real/.
            common.remove_stale_held_out(output_dir)
    finally:
        for _, h5file, _ in files.values():
            h5file.close()
    return summary


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("synthetic_h5", None, "gaze.h5: groups image and look_vec.")
    flags.DEFINE_string("real_h5", None, "real_gaze.h5: group image.")
    flags.DEFINE_string("output_dir", None, "Data folder to write the splits into.",
                        required=True)
    common.define_real_test_fraction_flag()
    common.define_common_flags()


def _convert_from_flags(fv) -> common.Summary:
    return convert(
        fv.output_dir, synthetic_h5=fv.synthetic_h5, real_h5=fv.real_h5,
        real_test_fraction=fv.real_test_fraction, options=common.options_from_flags())


main = common.make_main(_convert_from_flags)


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
