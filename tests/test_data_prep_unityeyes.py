"""Tests of data_prep/unityeyes.py on fixtures built from samples/unityeyes/1.json."""

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from data_prep import check, common, unityeyes
from simgan_tf.data import schema

REPO = os.path.join(os.path.dirname(__file__), "..")
SAMPLES = os.path.join(os.path.dirname(__file__), "testdata", "samples")
SAMPLE_JSON = os.path.join(SAMPLES, "unityeyes", "1.json")

# Hand-computed from samples/unityeyes/1.json (an 800x600 render):
# interior_margin_2d x in [364.8002, 489.8072] -> centre x 427.3037;
# y in [275.4666, 357.7870] -> rows 600 - y in [242.2130, 324.5334] -> centre row 283.3732.
# Crop 140x84 * (800/640, 600/480) = 175 x 105 ->
CROP_800 = (339.8037, 230.8732, 514.8037, 335.8732)
# First interior_margin point (371.4855, 296.4230) -> row 303.5770 ->
# x = (371.4855 - 339.8037) * 55 / 175 = 9.95714, y = (303.5770 - 230.8732) * 35 / 105.
FIRST_LANDMARK = (9.95714, 24.23460)
# look_vec (0.3404, 0.3879, -0.8566), norm 1.0000511:
# pitch = asin(0.3879 / 1.0000511) = 0.398331, yaw = atan2(-0.3404, 0.8566) = -0.378250.
GAZE = (0.398331, -0.378250)
# head_pose (355.0770, 203.8451): pitch 355.077 - 360 = -4.923 deg = -0.0859227 rad;
# yaw 203.8451 - 180 = 23.8451 deg = 0.4161755 rad.
HEAD_POSE = (-0.0859227, 0.4161755)


def _sample_json() -> dict:
    if not os.path.exists(SAMPLE_JSON):
        pytest.fail(f"Genuine sample missing: {SAMPLE_JSON} (see tests/testdata/samples/"
                    "PROVENANCE.md); the UnityEyes tests need it.")
    with open(SAMPLE_JSON, encoding="utf-8") as f:
        return json.load(f)


def _points(data, name):
    return np.array([unityeyes.parse_tuple(p, 3, name) for p in data[name]])


def _scaled(data: dict, scale: float, dx: float = 0.0) -> dict:
    """The JSON with every 2D point scaled (and shifted in x), as a smaller render."""
    data = json.loads(json.dumps(data))
    for name in ("interior_margin_2d", "caruncle_2d", "iris_2d"):
        data[name] = ["({:.4f}, {:.4f}, {:.4f})".format(x * scale + dx, y * scale, z)
                      for x, y, z in _points(data, name)]
    return data


def _write_sample(folder, stem, data, size=(800, 600)):
    """Writes <stem>.json and a dark <stem>.jpg with white discs on interior_margin_2d."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{stem}.json"), "w", encoding="utf-8") as f:
        json.dump(data, f)
    width, height = size
    image = Image.new("RGB", size, (20, 30, 40))
    draw = ImageDraw.Draw(image)
    radius = 5.0 * width / 800
    for x, y, _ in _points(data, "interior_margin_2d"):
        row = height - y
        draw.ellipse((x - radius, row - radius, x + radius, row + radius),
                     fill=(255, 255, 255))
    image.save(os.path.join(folder, f"{stem}.jpg"), quality=95)


def _read_split(data_dir, split):
    import tensorflow as tf

    info = schema.read_dataset_info(data_dir)
    split_info = info.splits[split]
    spec = schema.feature_spec(split_info.label_fields)
    out = []
    for shard in split_info.shards:
        path = os.path.join(data_dir, split, shard["file"])
        for raw in tf.data.TFRecordDataset(path,
                                           compression_type=split_info.compression or ""):
            row = {k: v.numpy() for k, v in tf.io.parse_single_example(raw, spec).items()}
            out.append({"key": row[schema.SAMPLE_KEY].decode(),
                        "image": schema.decode_png_numpy(row[schema.IMAGE_ENCODED]),
                        "labels": {k: row[k] for k in split_info.label_fields}})
    return out


def _options(**kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", 1)
    return common.ConvertOptions(**kwargs)


def test_gaze_from_genuine_look_vec_hand_computed():
    data = _sample_json()
    look_vec = unityeyes.parse_tuple(data["eye_details"]["look_vec"], 4, "look_vec")
    np.testing.assert_allclose(unityeyes.gaze_from_look_vec(look_vec), GAZE, atol=1e-6)
    # Conventions: into the camera is (0, 0); up (y > 0) is positive pitch; towards
    # the camera's right (x > 0) is negative yaw.
    np.testing.assert_allclose(unityeyes.gaze_from_look_vec((0, 0, -1, 0)), (0, 0))
    assert unityeyes.gaze_from_look_vec((0, 0.5, -0.8, 0))[0] > 0
    assert unityeyes.gaze_from_look_vec((0.5, 0, -0.8, 0))[1] < 0
    # The vector is normalized first.
    np.testing.assert_allclose(unityeyes.gaze_from_look_vec(2.0 * look_vec), GAZE,
                               atol=1e-6)
    with pytest.raises(ValueError, match="non-zero"):
        unityeyes.gaze_from_look_vec((0, 0, 0, 0))


def test_head_pose_mapping_hand_computed():
    data = _sample_json()
    head_pose = unityeyes.parse_tuple(data["head_pose"], 3, "head_pose")
    np.testing.assert_allclose(unityeyes.head_pose_from_euler(head_pose), HEAD_POSE,
                               atol=1e-6)
    np.testing.assert_allclose(unityeyes.head_pose_from_euler((10, 180, 0)),
                               (math.radians(10), 0.0))


def test_crop_lands_on_the_eye_800x600(tmp_path):
    data = _sample_json()
    _write_sample(str(tmp_path), "1", data)
    sample = unityeyes.convert_sample(str(tmp_path), "1")
    assert sample.key == "1"
    assert sample.image.shape == (35, 55, 1) and sample.image.dtype == np.uint8
    margin = _points(data, "interior_margin_2d")[:, :2]
    margin[:, 1] = 600 - margin[:, 1]
    np.testing.assert_allclose(unityeyes.crop_box(margin, (800, 600)), CROP_800,
                               atol=1e-4)
    landmarks = sample.labels[unityeyes.LABEL_LANDMARKS].reshape(48, 2)
    np.testing.assert_allclose(landmarks[0], FIRST_LANDMARK, atol=1e-4)
    np.testing.assert_allclose(sample.labels[schema.LABEL_GAZE], GAZE, atol=1e-6)
    np.testing.assert_allclose(sample.labels[unityeyes.LABEL_HEAD_POSE], HEAD_POSE,
                               atol=1e-6)
    # Every drawn disc is bright at its mapped landmark; the background stays dark.
    image = sample.image[..., 0].astype(int)
    for x, y in landmarks[:16]:
        assert image[int(y), int(x)] > 120, (x, y, image[int(y), int(x)])
    assert image[:3, :3].max() < 60 and image[-3:, -3:].max() < 60
    # Grayscale is Pillow's luma of the background colour (20, 30, 40).
    assert abs(int(np.median(image)) - round(20 * .299 + 30 * .587 + 40 * .114)) <= 2


def test_crop_scales_with_render_size(tmp_path):
    data = _sample_json()
    _write_sample(str(tmp_path), "1", data)
    _write_sample(str(tmp_path), "2", _scaled(data, 0.8), size=(640, 480))
    big = unityeyes.convert_sample(str(tmp_path), "1")
    small = unityeyes.convert_sample(str(tmp_path), "2")
    # Same eye, crop 140x84 at 640x480: the same landmarks in the 55x35 crop.
    np.testing.assert_allclose(small.labels[unityeyes.LABEL_LANDMARKS],
                               big.labels[unityeyes.LABEL_LANDMARKS], atol=2e-3)
    assert np.abs(small.image.astype(int) - big.image.astype(int)).mean() < 8


def _bad_folder(folder):
    """Good samples 1, 2, 3, 20 and one bad sample per skip reason."""
    data = _sample_json()
    for stem in ("1", "2", "3", "20"):
        _write_sample(folder, stem, data)
    _write_sample(folder, "4", _scaled(data, 1.0, dx=-400))  # Crop leaves the image.
    no_look = json.loads(json.dumps(data))
    del no_look["eye_details"]["look_vec"]
    _write_sample(folder, "5", no_look)
    _write_sample(folder, "6", data)
    with open(os.path.join(folder, "6.jpg"), "wb") as f:
        f.write(b"not a jpeg")
    _write_sample(folder, "7", data)
    os.remove(os.path.join(folder, "7.jpg"))
    infinite = json.loads(json.dumps(data))
    infinite["eye_details"]["look_vec"] = "(1e999, 0.0, -1.0, 0.0)"
    _write_sample(folder, "8", infinite)
    short_iris = json.loads(json.dumps(data))
    short_iris["iris_2d"] = short_iris["iris_2d"][:31]
    _write_sample(folder, "9", short_iris)
    _write_sample(folder, "10", data)
    with open(os.path.join(folder, "10.json"), "w") as f:
        f.write("{ not json")
    _write_sample(folder, "11", data)
    os.remove(os.path.join(folder, "11.json"))
    bad_tuple = json.loads(json.dumps(data))
    bad_tuple["head_pose"] = "(1.0, 2.0)"
    _write_sample(folder, "12", bad_tuple)


EXPECTED_SKIPS = {"crop_outside_image": 1, "malformed_value": 2, "missing_image": 1,
                  "missing_json": 1, "missing_key": 1, "non_finite_label": 1,
                  "unreadable_image": 1, "wrong_shape": 1}


def test_convert_skips_and_counts(tmp_path):
    _bad_folder(str(tmp_path / "imgs"))
    out = str(tmp_path / "data")
    # The folder holding imgs/ works as well as imgs/ itself.
    summary = unityeyes.convert(str(tmp_path), out, options=_options())
    split = summary.splits["synthetic"]
    assert split.written == 4
    assert split.skipped == EXPECTED_SKIPS
    assert split.examples["missing_key"] == ["5.json: missing_key (eye_details/look_vec)"]
    assert split.examples["crop_outside_image"][0].startswith("4.json: crop_outside_image")
    assert "iris_2d has 31 points, expected 32" in split.examples["wrong_shape"][0]
    text = summary.format()
    assert "skipped 1 x unreadable_image" in text and "6.json" in text
    records = _read_split(out, "synthetic")
    assert [r["key"] for r in records] == ["1", "2", "3", "20"]  # Numeric order.
    np.testing.assert_allclose(records[0]["labels"][schema.LABEL_GAZE], GAZE, atol=1e-6)
    np.testing.assert_allclose(
        records[0]["labels"][unityeyes.LABEL_LANDMARKS][:2], FIRST_LANDMARK, atol=1e-4)
    assert records[0]["image"].shape == (35, 55, 1)
    info = schema.read_dataset_info(out)
    assert info.image_shape == (35, 55, 1) and info.image_dtype == "uint8"
    split_info = info.splits["synthetic"]
    assert split_info.label_fields == {"label/gaze": 2, "label/head_pose": 2,
                                       "label/landmarks_2d": 96}
    assert split_info.domain == "synthetic"
    assert split_info.source["command"] == "data_prep.unityeyes"
    assert split_info.source["skipped"] == EXPECTED_SKIPS
    assert "16 interior_margin_2d then 32 iris_2d" in (
        split_info.source["labels"]["label/landmarks_2d"])
    report = check.check(out)
    assert report.ok, report.format()


def test_strict_fails_naming_the_file_and_keeps_previous_output(tmp_path):
    folder = str(tmp_path / "imgs")
    out = str(tmp_path / "data")
    data = _sample_json()
    for stem in ("1", "2"):
        _write_sample(folder, stem, data)
    unityeyes.convert(folder, out, options=_options())
    before = {name: open(os.path.join(out, "synthetic", name), "rb").read()
              for name in os.listdir(os.path.join(out, "synthetic"))}
    before_json = open(os.path.join(out, "dataset.json"), "rb").read()
    _bad_folder(folder)
    with pytest.raises(common.ConversionError,
                       match=r"4\.json: crop_outside_image .*--strict"):
        unityeyes.convert(folder, out, options=_options(strict=True))
    after = {name: open(os.path.join(out, "synthetic", name), "rb").read()
             for name in os.listdir(os.path.join(out, "synthetic"))}
    assert after == before
    assert open(os.path.join(out, "dataset.json"), "rb").read() == before_json
    assert sorted(os.listdir(out)) == ["dataset.json", "synthetic"]  # No staging left.


def test_workers_do_not_change_the_bytes(tmp_path):
    folder = str(tmp_path / "imgs")
    data = _sample_json()
    for i in range(1, 10):
        _write_sample(folder, str(i), _scaled(data, 1.0, dx=4.0 * i))
    outputs = []
    for workers in (1, 2):
        out = str(tmp_path / f"out{workers}")
        unityeyes.convert(folder, out, options=_options(workers=workers, chunk_size=1,
                                                         shard_bytes=4000))
        files = sorted(os.listdir(os.path.join(out, "synthetic")))
        outputs.append({f: open(os.path.join(out, "synthetic", f), "rb").read()
                        for f in files})
        outputs[-1]["dataset.json"] = open(os.path.join(out, "dataset.json"), "rb").read()
    assert len(outputs[0]) > 2  # Several shards.
    assert outputs[0] == outputs[1]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        unityeyes.convert(str(tmp_path / "nope"), str(tmp_path / "out"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="No UnityEyes samples"):
        unityeyes.convert(str(tmp_path / "empty"), str(tmp_path / "out"))


def test_command_line(tmp_path):
    folder = str(tmp_path / "root" / "imgs")
    data = _sample_json()
    for i in range(1, 6):
        _write_sample(folder, str(i), data)
    shutil.copy(SAMPLE_JSON, os.path.join(folder, "6.json"))  # No jpg: skipped.
    out = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.unityeyes", f"--input_dir={tmp_path / 'root'}",
         f"--output_dir={out}", "--workers=2", "--limit=3", "--compression=gzip",
         "--shard_bytes=1500"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    assert "synthetic" in result.stdout and "stopped at --limit" in result.stdout
    info = schema.read_dataset_info(out)
    split = info.splits["synthetic"]
    assert split.count == 3 and split.compression == "GZIP"
    assert len(split.shards) == 2  # 1500-byte target, ~1 KB records.
    assert split.source["options"] == {"shard_bytes": 1500, "compression": "gzip",
                                       "strict": False, "limit": 3}
    assert [r["key"] for r in _read_split(out, "synthetic")] == ["1", "2", "3"]
    # Another process (other string hashing), in-process workers: the same bytes.
    again = str(tmp_path / "again")
    unityeyes.convert(str(tmp_path / "root"), again, options=_options(
        limit=3, compression="gzip", shard_bytes=1500))
    for shard in split.shards:
        assert (open(os.path.join(out, "synthetic", shard["file"]), "rb").read()
                == open(os.path.join(again, "synthetic", shard["file"]), "rb").read())
    assert (open(os.path.join(out, "dataset.json"), "rb").read()
            == open(os.path.join(again, "dataset.json"), "rb").read())
