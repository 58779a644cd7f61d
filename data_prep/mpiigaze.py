r"""Converts MPIIGaze's "Normalized" release into the `real/` and `real_test/` splits.

    python -m data_prep.mpiigaze --input_dir=<MPIIGaze root> --output_dir=<data folder>

Reads `Data/Normalized/pXX/dayNN.mat` (MATLAB v5: struct `data` with `left` and `right`,
each with `gaze` N x 3, `image` N x 36 x 60 uint8, `pose` N x 3; `filenames` N x 1 cell).
Per eye sample (see `data_prep/README.md` for the whole contract):

* Image: uint8 grayscale; right eyes are flipped horizontally so that every image looks
  like a left eye; resized from 60x36 to 55x35 (width x height) with Pillow's
  antialiased bilinear filter (`keep_size=True` keeps 60x36). Shape `[35, 55, 1]` (or
  `[36, 60, 1]`).
* `label/gaze`: `[pitch, yaw]` radians from the normalized gaze vector (OpenCV camera
  axes, y down): `pitch = asin(-y)` (positive = up), `yaw = atan2(-x, -z)`; looking into
  the camera is `(0, 0)`. Same convention as `data_prep.unityeyes`.
* `label/head_pose`: `[pitch, yaw]` radians from the Rodrigues vector `pose`:
  `R = Rodrigues(pose)`, `z = R[:, 2]`, `pitch = asin(z[1])`, `yaw = atan2(z[0], z[2])`.
* Right eyes: yaw of gaze and of head pose negated (with the image flip).
* Key: `pXX/dayNN/NNNN.jpg/left` or `.../right`. Order: participant, day, sample index
  within the day file, then left before right.

Splits: `real/` holds every sample of the participants not in `test_participants`;
`real_test/` holds every sample of the test participants, or, with
`evaluation_subset=True`, exactly the samples listed in
`Evaluation Subset/sample list for eye image/pXX.txt` of the test participants (lines
such as `day08/0069.jpg left`; a duplicate line gives one record).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

import numpy as np
from PIL import Image

from data_prep import common
from simgan_tf.data import schema
from simgan_tf.evaluation import metrics

NATIVE_SHAPE = (36, 60)  # (height, width) of the normalized eye images.
OUTPUT_SIZE = (55, 35)  # (width, height) after resizing.
EYES = ("left", "right")
DEFAULT_TEST_PARTICIPANTS = ("p12", "p13", "p14")
LABEL_HEAD_POSE = "label/head_pose"
LABEL_FIELDS = {schema.LABEL_GAZE: 2, LABEL_HEAD_POSE: 2}
LABEL_NOTES = {
    schema.LABEL_GAZE: "[pitch, yaw] radians: pitch = asin(-y), yaw = atan2(-x, -z) of "
                       "the normalized gaze (OpenCV axes, y down); right eyes: yaw negated",
    LABEL_HEAD_POSE: "[pitch, yaw] radians: z = Rodrigues(pose)[:, 2], pitch = asin(z[1]),"
                     " yaw = atan2(z[0], z[2]); right eyes: yaw negated",
}
EVALUATION_LIST_DIR = os.path.join("Evaluation Subset", "sample list for eye image")

LISTED_SAMPLE_MISSING = "listed_sample_missing"

_PARTICIPANT_RE = re.compile(r"^p\d\d$")
_DAY_RE = re.compile(r"^(day\d+)\.mat$")


def find_normalized_dir(input_dir: str) -> tuple[str, str]:
    """Finds `Data/Normalized` under the MPIIGaze root.

    Args:
      input_dir: the MPIIGaze root (holding `Data/Normalized/`), or `Data/`, or the
        `Normalized/` folder itself.

    Returns:
      `(root, normalized_dir)`; `root` is where `Evaluation Subset/` is looked for.

    Raises:
      FileNotFoundError: if no folder of `pXX/` sub-folders is found.
    """
    root = common.check_input_dir(input_dir, "MPIIGaze root")
    candidates = [(root, os.path.join(root, "Data", "Normalized")),
                  (os.path.dirname(root), os.path.join(root, "Normalized")),
                  (os.path.dirname(os.path.dirname(root)), root)]
    for base, folder in candidates:
        if os.path.isdir(folder) and any(
                _PARTICIPANT_RE.match(n) for n in os.listdir(folder)):
            return base, folder
    raise FileNotFoundError(
        f"No Data/Normalized/pXX/ folders found under {root!r}: expected the MPIIGaze "
        "root (holding Data/Normalized/p00/day01.mat, ...).")


def list_days(normalized_dir: str) -> dict[str, list[str]]:
    """Maps each participant (`p00`, ...) to its sorted day names (`day01`, ...)."""
    days = {}
    for participant in sorted(os.listdir(normalized_dir)):
        folder = os.path.join(normalized_dir, participant)
        if _PARTICIPANT_RE.match(participant) and os.path.isdir(folder):
            names = [m.group(1) for m in map(_DAY_RE.match, os.listdir(folder)) if m]
            days[participant] = sorted(names, key=lambda d: int(d[3:]))
    return days


def read_evaluation_list(path: str) -> tuple[dict, int]:
    """Reads one `Evaluation Subset/sample list for eye image/pXX.txt`.

    Args:
      path: the list file; lines like `day08/0069.jpg left`.

    Returns:
      `(selection, duplicates)`: `selection` maps each day name to the set of
      `(filename, eye)` listed for it; `duplicates` counts repeated lines.

    Raises:
      FileNotFoundError: if the file does not exist.
      ValueError: on a malformed line, naming the file and line number.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Evaluation subset list not found: {path!r}.")
    selection, duplicates = {}, 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            parts = fields[0].replace("\\", "/").split("/")
            if (len(fields) != 2 or fields[1] not in EYES or len(parts) != 2
                    or not re.match(r"^day\d+$", parts[0])):
                raise ValueError(
                    f"{path}:{number}: expected 'dayNN/NNNN.jpg left|right'. "
                    f"Received: {line.strip()!r}")
            entry = (parts[1], fields[1])
            day_set = selection.setdefault(parts[0], set())
            duplicates += entry in day_set
            day_set.add(entry)
    return selection, duplicates


def rodrigues(rotvecs: np.ndarray) -> np.ndarray:
    """Rotation matrices `[N, 3, 3]` from Rodrigues (axis * angle) vectors `[N, 3]`."""
    r = np.asarray(rotvecs, dtype=np.float64).reshape(-1, 3)
    theta = np.linalg.norm(r, axis=1)
    safe = np.where(theta > 1e-12, theta, 1.0)
    k = r / safe[:, None]
    kx, ky, kz = k[:, 0], k[:, 1], k[:, 2]
    zero = np.zeros_like(kx)
    cross = np.stack([np.stack([zero, -kz, ky], 1), np.stack([kz, zero, -kx], 1),
                      np.stack([-ky, kx, zero], 1)], 1)
    sin, cos = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    rotation = np.eye(3) + sin * cross + (1 - cos) * (cross @ cross)
    rotation[theta <= 1e-12] = np.eye(3)
    return rotation


def pose_to_pitch_yaw(rotvecs: np.ndarray) -> np.ndarray:
    """Head pose `[N, 3]` Rodrigues vectors to `[N, 2]` (pitch, yaw) radians.

    `z = R[:, 2]` (the head's forward axis in camera coordinates), `pitch = asin(z[1])`,
    `yaw = atan2(z[0], z[2])`.
    """
    z = rodrigues(rotvecs)[:, :, 2]
    return np.stack([np.arcsin(np.clip(z[:, 1], -1, 1)), np.arctan2(z[:, 0], z[:, 2])],
                    axis=1)


def _strings(value) -> list[str]:
    """Flattens a loadmat cell array (or single collapsed string) to a list of str."""
    if isinstance(value, str):
        return [value]
    out = []
    for item in np.asarray(value, dtype=object).reshape(-1):
        if isinstance(item, np.ndarray):
            out.extend(_strings(item) if item.size != 1 or item.dtype == object
                       else [str(item.reshape(-1)[0])])
        else:
            out.append(str(item))
    return out


def load_day(path: str) -> dict:
    """Reads one `dayNN.mat`.

    Args:
      path: the `.mat` file.

    Returns:
      `{"filenames": [N] list of str, "left": {...}, "right": {...}}`, each eye with
      `gaze` float64 `[N, 3]`, `image` uint8 `[N, 36, 60]`, `pose` float64 `[N, 3]`.
      A day with one sample (which `squeeze_me` collapses) gives N = 1.

    Raises:
      common.SkipSample: `unreadable_file`, `missing_key` or `wrong_shape`.
    """
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as e:  # scipy raises many kinds on corrupt files.
        raise common.SkipSample(common.UNREADABLE_FILE,
                                f"scipy.io.loadmat failed: {e!r}") from None
    for key in ("data", "filenames"):
        if key not in mat:
            raise common.SkipSample(common.MISSING_KEY, f"no '{key}' variable")
    filenames = _strings(mat["filenames"])
    n = len(filenames)
    day = {"filenames": filenames}
    for eye in EYES:
        struct = getattr(mat["data"], eye, None)
        if struct is None:
            raise common.SkipSample(common.MISSING_KEY, f"no data.{eye}")
        arrays = {}
        for field, shape in (("gaze", (3,)), ("pose", (3,)), ("image", NATIVE_SHAPE)):
            value = getattr(struct, field, None)
            if value is None:
                raise common.SkipSample(common.MISSING_KEY, f"no data.{eye}.{field}")
            value = np.asarray(value)
            if value.size != n * math.prod(shape):
                raise common.SkipSample(
                    common.WRONG_SHAPE,
                    f"data.{eye}.{field} has shape {value.shape}, expected "
                    f"({n}, {', '.join(map(str, shape))}) for {n} filenames")
            arrays[field] = value.reshape((n,) + shape)
        if arrays["image"].dtype != np.uint8:
            raise common.SkipSample(
                common.WRONG_SHAPE,
                f"data.{eye}.image has dtype {arrays['image'].dtype}, expected uint8")
        arrays["gaze"] = arrays["gaze"].astype(np.float64)
        arrays["pose"] = arrays["pose"].astype(np.float64)
        day[eye] = arrays
    return day


@dataclasses.dataclass(frozen=True)
class DayItem:
    """Work item: one day file of one participant.

    Attributes:
      participant: `pXX`.
      day: `dayNN`.
      path: the `.mat` file (it may be missing if only listed in the evaluation subset).
      selection: `None` for every sample, or the `(filename, eye)` pairs to keep.
      keep_size: keep 36x60 instead of resizing to 35x55.
    """
    participant: str
    day: str
    path: str
    selection: frozenset | None = None
    keep_size: bool = False


def _eye_image(pixels: np.ndarray, eye: str, keep_size: bool) -> np.ndarray:
    if eye == "right":
        pixels = pixels[:, ::-1]
    if not keep_size:
        pixels = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize(
            OUTPUT_SIZE, Image.Resampling.BILINEAR))
    return np.ascontiguousarray(pixels, dtype=np.uint8)[..., None]


def process_day(item: DayItem) -> list:
    """Converts the samples of one day file.

    Returns:
      A list of `common.Sample` and `common.Skip`, in output order. An unreadable or
      malformed file gives one `Skip` (or, with a selection, one per listed sample).
    """
    name = f"{item.participant}/{item.day}.mat"
    try:
        if not os.path.exists(item.path):
            raise common.SkipSample(common.MISSING_FILE, "file not found")
        day = load_day(item.path)
    except common.SkipSample as e:
        if item.selection is None:
            return [common.Skip(e.reason, name, e.detail)]
        return [common.Skip(e.reason, f"{name} {f} {eye} (listed)", e.detail)
                for f, eye in sorted(item.selection)]

    gazes = {eye: metrics.vector_to_gaze(day[eye]["gaze"]) for eye in EYES}
    poses = {eye: pose_to_pitch_yaw(day[eye]["pose"]) for eye in EYES}
    results, found = [], set()
    for index, filename in enumerate(day["filenames"]):
        for eye in EYES:
            if item.selection is not None:
                if (filename, eye) not in item.selection or (filename, eye) in found:
                    continue
                found.add((filename, eye))
            key = f"{item.participant}/{item.day}/{filename}/{eye}"
            source = f"{name}[{index}] {filename} {eye}"
            sign = np.array([1.0, -1.0 if eye == "right" else 1.0])
            gaze, pose = gazes[eye][index] * sign, poses[eye][index] * sign
            if not (np.all(np.isfinite(gaze)) and np.all(np.isfinite(pose))):
                results.append(common.Skip(
                    common.NON_FINITE_LABEL, source,
                    f"gaze {day[eye]['gaze'][index].tolist()}, "
                    f"pose {day[eye]['pose'][index].tolist()}"))
                continue
            results.append(common.Sample(
                key=key, image=_eye_image(day[eye]["image"][index], eye, item.keep_size),
                labels={schema.LABEL_GAZE: gaze, LABEL_HEAD_POSE: pose}, source=source))
    if item.selection is not None:
        results.extend(common.Skip(LISTED_SAMPLE_MISSING, f"{name} {f} {eye} (listed)",
                                   "listed but not in the day file")
                       for f, eye in sorted(item.selection - found))
    return results


def _parse_participants(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    names = tuple(v.strip() for v in value)
    bad = [n for n in names if not _PARTICIPANT_RE.match(n)]
    if bad:
        raise ValueError(f"Expected participant names like 'p12'. Received: {bad}")
    return names


def convert(input_dir: str, output_dir: str, *,
            test_participants=DEFAULT_TEST_PARTICIPANTS,
            evaluation_subset: bool = False, keep_size: bool = False,
            options: common.ConvertOptions | None = None) -> common.Summary:
    """Writes `<output_dir>/real/` and `<output_dir>/real_test/` from MPIIGaze.

    Args:
      input_dir: the MPIIGaze root (holding `Data/Normalized/` and, for
        `evaluation_subset`, `Evaluation Subset/`).
      output_dir: the data folder; `dataset.json` gains (or replaces) `real` and
        `real_test` and keeps other splits.
      test_participants: participants (`"p12,p13,p14"` or a sequence) whose samples
        form `real_test/` and are excluded from `real/`; empty: no `real_test/`.
      evaluation_subset: if True, `real_test/` holds exactly the samples listed in the
        official evaluation subset lists of the test participants.
      keep_size: keep the native 36x60 images instead of resizing to 35x55.
      options: common converter options.

    Returns:
      The `Summary`.

    Raises:
      FileNotFoundError: if the input has no `Data/Normalized/pXX/`, a test participant
        is absent, or (with `evaluation_subset`) a list file is missing.
      ValueError: on malformed participant names or list lines.
      common.ConversionError: in strict mode, on the first bad sample.
    """
    options = options or common.ConvertOptions()
    test = _parse_participants(test_participants)
    root, normalized = find_normalized_dir(input_dir)
    days = list_days(normalized)
    missing = [p for p in test if p not in days]
    if missing:
        raise FileNotFoundError(
            f"Test participants {missing} not found in {normalized!r} "
            f"(found {sorted(days)}).")
    items = {"real": [], "real_test": []}
    duplicates = 0
    for participant in sorted(days):
        folder = os.path.join(normalized, participant)
        split = "real_test" if participant in test else "real"
        selection = None
        if split == "real_test" and evaluation_subset:
            selection, dups = read_evaluation_list(
                os.path.join(root, EVALUATION_LIST_DIR, f"{participant}.txt"))
            duplicates += dups
        names = days[participant] if selection is None else sorted(
            set(days[participant]) | set(selection), key=lambda d: int(d[3:]))
        for day in names:
            items[split].append(DayItem(
                participant=participant, day=day,
                path=os.path.join(folder, f"{day}.mat"),
                selection=None if selection is None else frozenset(selection.get(day, ())),
                keep_size=keep_size))
    height, width = NATIVE_SHAPE if keep_size else OUTPUT_SIZE[::-1]
    summary = common.Summary(output_dir=output_dir)
    for split, split_items in items.items():
        if split == "real_test" and not test:
            continue
        split_items = [i for i in split_items if i.selection is None or i.selection]
        source = {"command": "data_prep.mpiigaze", "input_dir": normalized,
                  "options": {**options.describe(), "keep_size": keep_size,
                              "test_participants": list(test),
                              "evaluation_subset": evaluation_subset},
                  "participants": sorted({i.participant for i in split_items}),
                  "labels": LABEL_NOTES}
        if split == "real_test" and evaluation_subset:
            source["duplicate_list_lines"] = duplicates
        summary.splits[split] = common.write_split(
            items=split_items, process=process_day, data_dir=output_dir, split=split,
            domain="real", image_shape=(height, width, 1), image_dtype="uint8",
            label_fields=LABEL_FIELDS, options=options, source=source, chunk_size=1,
            unit="day")
    if not test:  # real/ now holds the participants an earlier run held out.
        common.remove_stale_held_out(output_dir, command="data_prep.mpiigaze")
    return summary


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("input_dir", None, "MPIIGaze root (holding Data/Normalized/).",
                        required=True)
    flags.DEFINE_string("output_dir", None, "Data folder to write real/ and real_test/ "
                        "into.", required=True)
    flags.DEFINE_list("test_participants", list(DEFAULT_TEST_PARTICIPANTS),
                      "Participants held out in real_test/ (empty: no real_test/).")
    flags.DEFINE_boolean("evaluation_subset", False,
                         "real_test/ = exactly the samples of the official 'Evaluation "
                         "Subset' lists of the test participants.")
    flags.DEFINE_boolean("keep_size", False, "Keep 36x60 images (default: 35x55).")
    common.define_common_flags()


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    fv = flags.FLAGS
    return common.run_main(lambda: convert(
        fv.input_dir, fv.output_dir, test_participants=fv.test_participants,
        evaluation_subset=fv.evaluation_subset, keep_size=fv.keep_size,
        options=common.options_from_flags()))


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
