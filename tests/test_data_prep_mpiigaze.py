"""Tests of data_prep/mpiigaze.py on .mat fixtures built around genuine MPIIGaze pixels."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image
from scipy.spatial.transform import Rotation

from data_prep import check, common, mpiigaze
from simgan_tf.data import schema
from simgan_tf.evaluation import metrics

REPO = os.path.join(os.path.dirname(__file__), "..")
SAMPLES = os.path.join(os.path.dirname(__file__), "testdata", "samples")
EYE_DIR = os.path.join(SAMPLES, "mpiigaze_36x60")

# participant -> day -> number of samples; p00/day02 has one sample (squeeze_me
# collapses its arrays).
LAYOUT = {"p00": {"day01": 3, "day02": 1}, "p12": {"day01": 2}}


def _eyes() -> list:
    """The 10 genuine 36x60 MPIIGaze eye images as uint8 arrays."""
    names = [f"p00_row{i:04d}.jpg" for i in range(10)]
    missing = [n for n in names if not os.path.exists(os.path.join(EYE_DIR, n))]
    if missing:
        pytest.fail(f"Genuine samples missing in {EYE_DIR}: {missing} (see "
                    "tests/testdata/samples/PROVENANCE.md).")
    eyes = [np.asarray(Image.open(os.path.join(EYE_DIR, n)).convert("L")) for n in names]
    assert all(e.shape == (36, 60) for e in eyes)
    return eyes


def _gaze_vector(pitch, yaw):
    """Unit gaze (OpenCV axes, y down) with the given MPIIGaze pitch and yaw."""
    return np.array([-math.cos(pitch) * math.sin(yaw), -math.sin(pitch),
                     -math.cos(pitch) * math.cos(yaw)])


def _angles(participant, day, index, eye):
    """Distinct, known gaze angles and head rotation vector per sample."""
    seed = int(participant[1:]) * 100 + int(day[3:]) * 10 + index
    pitch = 0.02 * (seed % 17) - 0.15
    yaw = 0.03 * (seed % 13) - 0.2 + (0.05 if eye == "right" else 0.0)
    pose = np.array([0.01 * (seed % 7), 0.1 + 0.02 * (seed % 5), 0.03])
    return pitch, yaw, pose


def _image_index(participant, day, index, eye):
    return (int(day[3:]) * 3 + index * 2 + (eye == "right") + int(participant[1:])) % 10


def _write_day(path, participant, day, n, eyes, gaze_override=None, image_shape=(36, 60),
               drop=None):
    data = {}
    for eye in mpiigaze.EYES:
        gaze, pose, image = [], [], []
        for i in range(n):
            pitch, yaw, rotvec = _angles(participant, day, i, eye)
            gaze.append(_gaze_vector(pitch, yaw))
            pose.append(rotvec)
            pixels = eyes[_image_index(participant, day, i, eye)]
            image.append(pixels[:image_shape[0], :image_shape[1]])
        data[eye] = {"gaze": np.array(gaze), "pose": np.array(pose),
                     "image": np.array(image, dtype=np.uint8)}
    if gaze_override:
        eye, i, vector = gaze_override
        data[eye]["gaze"][i] = vector
    filenames = np.empty((n, 1), dtype=object)
    for i in range(n):
        filenames[i, 0] = f"{i + 1:04d}.jpg"
    variables = {"data": data, "filenames": filenames}
    if drop:
        del variables[drop]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, variables)


def _make_root(root, layout=LAYOUT):
    eyes = _eyes()
    for participant, days in layout.items():
        for day, n in days.items():
            _write_day(os.path.join(root, "Data", "Normalized", participant, f"{day}.mat"),
                       participant, day, n, eyes)
    return eyes


def _read_split(data_dir, split):
    import tensorflow as tf

    split_info = schema.read_dataset_info(data_dir).splits[split]
    spec = schema.feature_spec(split_info.label_fields)
    out = []
    for shard in split_info.shards:
        path = os.path.join(data_dir, split, shard["file"])
        for raw in tf.data.TFRecordDataset(path,
                                           compression_type=split_info.compression or ""):
            row = {k: v.numpy() for k, v in tf.io.parse_single_example(raw, spec).items()}
            out.append({"key": row[schema.SAMPLE_KEY].decode(),
                        "domain": row[schema.SAMPLE_DOMAIN].decode(),
                        "image": schema.decode_png_numpy(row[schema.IMAGE_ENCODED]),
                        "labels": {k: row[k] for k in split_info.label_fields}})
    return out


def _options(**kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", 1)
    return common.ConvertOptions(**kwargs)


def _keys(layout):
    return [f"{p}/{d}/{i + 1:04d}.jpg/{eye}" for p, days in layout.items()
            for d, n in days.items() for i in range(n) for eye in ("left", "right")]


def test_gaze_angles_hand_computed():
    root3 = math.sqrt(0.75)
    got = metrics.vector_to_gaze([[0, 0, -1], [0, -0.5, -root3], [-0.5, 0, -root3],
                                  [0, 1, -1]])
    # Into the camera; 30 deg up (y < 0 is up in OpenCV axes); 30 deg yaw towards -x;
    # a non-unit vector 45 deg down.
    np.testing.assert_allclose(got, [[0, 0], [math.pi / 6, 0], [0, math.pi / 6],
                                     [-math.pi / 4, 0]], atol=1e-12)
    pitch, yaw = metrics.vector_to_gaze(_gaze_vector(0.3, -0.2))
    assert pitch == pytest.approx(0.3) and yaw == pytest.approx(-0.2)


def test_head_pose_angles_hand_computed():
    a = 0.4
    got = mpiigaze.pose_to_pitch_yaw([[0, 0, 0], [0, a, 0], [a, 0, 0]])
    # Identity: z = (0, 0, 1). About y: z = (sin a, 0, cos a) -> yaw a.
    # About x: z = (0, -sin a, cos a) -> pitch -a.
    np.testing.assert_allclose(got, [[0, 0], [0, a], [-a, 0]], atol=1e-12)
    rotvecs = np.random.default_rng(0).normal(scale=0.5, size=(20, 3))
    np.testing.assert_allclose(mpiigaze.rodrigues(rotvecs),
                               Rotation.from_rotvec(rotvecs).as_matrix(), atol=1e-12)


def test_load_day_single_sample(tmp_path):
    eyes = _eyes()
    path = str(tmp_path / "day02.mat")
    _write_day(path, "p00", "day02", 1, eyes)
    raw = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    assert raw["data"].left.image.shape == (36, 60)  # Collapsed by squeeze_me.
    day = mpiigaze.load_day(path)
    assert day["filenames"] == ["0001.jpg"]
    assert day["left"]["image"].shape == (1, 36, 60)
    assert day["right"]["gaze"].shape == (1, 3)
    np.testing.assert_array_equal(day["left"]["image"][0],
                                  eyes[_image_index("p00", "day02", 0, "left")])


@pytest.mark.parametrize("keep_size", [False, True])
def test_convert_splits_keys_labels_and_flip(tmp_path, keep_size):
    eyes = _make_root(str(tmp_path / "MPIIGaze"))
    out = str(tmp_path / "data")
    summary = mpiigaze.convert(str(tmp_path / "MPIIGaze"), out, test_participants="p12",
                               keep_size=keep_size, options=_options())
    assert summary.splits["real"].written == 8
    assert summary.splits["real_test"].written == 4
    real = _read_split(out, "real")
    test = _read_split(out, "real_test")
    assert [r["key"] for r in real] == _keys({"p00": LAYOUT["p00"]})
    assert [r["key"] for r in test] == _keys({"p12": LAYOUT["p12"]})
    assert {r["domain"] for r in real + test} == {"real"}
    info = schema.read_dataset_info(out)
    assert info.image_shape == ((36, 60, 1) if keep_size else (35, 55, 1))
    for record in real + test:
        participant, day, filename, eye = record["key"].split("/")
        index = int(filename[:4]) - 1
        pitch, yaw, rotvec = _angles(participant, day, index, eye)
        head = mpiigaze.pose_to_pitch_yaw(rotvec)[0]
        sign = -1.0 if eye == "right" else 1.0  # Right eyes: yaw negated.
        np.testing.assert_allclose(record["labels"]["label/gaze"], [pitch, sign * yaw],
                                   atol=1e-6)
        np.testing.assert_allclose(record["labels"]["label/head_pose"],
                                   [head[0], sign * head[1]], atol=1e-6)
        pixels = eyes[_image_index(participant, day, index, eye)]
        if eye == "right":
            pixels = pixels[:, ::-1]  # Flipped to look like a left eye.
        if keep_size:
            np.testing.assert_array_equal(record["image"][..., 0], pixels)
        else:
            reference = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize(
                (55, 35), Image.Resampling.BILINEAR))
            np.testing.assert_array_equal(record["image"][..., 0], reference)
            # And the resize is faithful: close to a 60x36 -> 55x35 area average.
            assert np.abs(record["image"][..., 0].astype(float).mean()
                          - pixels.astype(float).mean()) < 2
    source = info.splits["real_test"].source
    assert source["participants"] == ["p12"]
    assert source["options"]["test_participants"] == ["p12"]
    assert check.check(out).ok


def test_evaluation_subset(tmp_path):
    root = str(tmp_path / "MPIIGaze")
    _make_root(root)
    list_dir = os.path.join(root, "Evaluation Subset", "sample list for eye image")
    os.makedirs(list_dir)
    with open(os.path.join(list_dir, "p12.txt"), "w") as f:
        f.write("day01/0002.jpg right\n"
                "day01/0001.jpg left\n"
                "day01/0001.jpg left\n"  # Duplicate line: one record.
                "day01/0009.jpg left\n"  # Not in the day file.
                "day03/0001.jpg left\n")  # No such day file.
    out = str(tmp_path / "data")
    summary = mpiigaze.convert(root, out, test_participants=["p12"],
                               evaluation_subset=True, options=_options())
    assert [r["key"] for r in _read_split(out, "real_test")] == [
        "p12/day01/0001.jpg/left", "p12/day01/0002.jpg/right"]
    assert summary.splits["real_test"].skipped == {"listed_sample_missing": 1,
                                                   "missing_file": 1}
    assert summary.splits["real_test"].examples["missing_file"] == [
        "p12/day03.mat 0001.jpg left (listed): missing_file (file not found)"]
    assert summary.splits["real"].written == 8  # Every sample of the others.
    source = schema.read_dataset_info(out).splits["real_test"].source
    assert source["duplicate_list_lines"] == 1
    assert source["options"]["evaluation_subset"] is True
    with open(os.path.join(list_dir, "p12.txt"), "a") as f:
        f.write("day01/0001.jpg both\n")
    with pytest.raises(ValueError, match=r"p12\.txt:6: expected"):
        mpiigaze.convert(root, out, test_participants=["p12"], evaluation_subset=True,
                         options=_options())


def _bad_root(root):
    eyes = _make_root(root)
    folder = os.path.join(root, "Data", "Normalized", "p00")
    _write_day(os.path.join(folder, "day05.mat"), "p00", "day05", 2, eyes,
               gaze_override=("left", 1, [np.nan, 0.0, -1.0]))
    with open(os.path.join(folder, "day06.mat"), "wb") as f:
        f.write(b"MATLAB 5.0 MAT-file, truncated garbage")
    _write_day(os.path.join(folder, "day07.mat"), "p00", "day07", 2, eyes,
               image_shape=(36, 59))
    _write_day(os.path.join(folder, "day08.mat"), "p00", "day08", 2, eyes,
               drop="filenames")


def test_bad_days_are_skipped_and_counted(tmp_path):
    root = str(tmp_path / "MPIIGaze")
    _bad_root(root)
    out = str(tmp_path / "data")
    summary = mpiigaze.convert(root, out, test_participants="p12", options=_options())
    real = summary.splits["real"]
    assert real.skipped == {"missing_key": 1, "non_finite_label": 1,
                            "unreadable_file": 1, "wrong_shape": 1}
    assert real.written == 8 + 3  # day05: 2 samples x 2 eyes, minus one NaN gaze.
    assert real.examples["non_finite_label"][0].startswith(
        "p00/day05.mat[1] 0002.jpg left: non_finite_label")
    assert "data.left.image has shape (2, 36, 59)" in real.examples["wrong_shape"][0]
    assert real.examples["missing_key"] == [
        "p00/day08.mat: missing_key (no 'filenames' variable)"]
    with pytest.raises(common.ConversionError,
                       match=r"p00/day05\.mat\[1\] 0002\.jpg left: non_finite_label"):
        mpiigaze.convert(root, str(tmp_path / "strict"), test_participants="p12",
                         options=_options(strict=True))
    assert not os.path.exists(tmp_path / "strict" / "real")


def test_splits_merge_into_one_data_folder(tmp_path):
    root = str(tmp_path / "MPIIGaze")
    _make_root(root)
    out = str(tmp_path / "data")
    # A synthetic split written before (by data_prep.unityeyes, say) is kept.
    from simgan_tf.data.writer import SplitWriter
    with SplitWriter(out, "synthetic", domain="synthetic", image_shape=(35, 55, 1),
                     label_fields={"label/gaze": 2}) as writer:
        writer.write(schema.encode_example(np.zeros((35, 55, 1), np.uint8), key="1",
                                           domain="synthetic",
                                           labels={"label/gaze": [0.1, 0.2]}))
    mpiigaze.convert(root, out, test_participants="p12", options=_options())
    info = schema.read_dataset_info(out)
    assert sorted(info.splits) == ["real", "real_test", "synthetic"]
    assert info.splits["synthetic"].count == 1 and info.splits["real"].count == 8
    assert check.check(out).ok
    # 36x60 images cannot join a folder of 35x55 images: a clear error, nothing written.
    with pytest.raises(ValueError, match=r"shape \(35, 55, 1\); cannot add split 'real'"):
        mpiigaze.convert(root, out, test_participants="p12", keep_size=True,
                         options=_options())
    assert schema.read_dataset_info(out).splits["real"].count == 8


def test_missing_participant_or_root(tmp_path):
    root = str(tmp_path / "MPIIGaze")
    _make_root(root)
    with pytest.raises(FileNotFoundError, match=r"\['p13', 'p14'\] not found"):
        mpiigaze.convert(root, str(tmp_path / "out"), options=_options())
    with pytest.raises(FileNotFoundError, match="No Data/Normalized/pXX/"):
        mpiigaze.convert(str(tmp_path), str(tmp_path / "out"), options=_options())
    with pytest.raises(ValueError, match="participant names like 'p12'"):
        mpiigaze.convert(root, str(tmp_path / "out"), test_participants="12",
                         options=_options())


def test_workers_do_not_change_the_bytes(tmp_path):
    root = str(tmp_path / "MPIIGaze")
    _bad_root(root)
    shards = []
    for workers in (1, 2):
        out = str(tmp_path / f"out{workers}")
        mpiigaze.convert(root, out, test_participants="p12",
                         options=_options(workers=workers, shard_bytes=3000))
        files = {}
        for split in ("real", "real_test"):
            for name in sorted(os.listdir(os.path.join(out, split))):
                files[name] = open(os.path.join(out, split, name), "rb").read()
        files["dataset.json"] = open(os.path.join(out, "dataset.json"), "rb").read()
        shards.append(files)
    assert len(shards[0]) > 4
    assert shards[0] == shards[1]


def test_command_line(tmp_path):
    root = str(tmp_path / "MPIIGaze")
    _make_root(root)
    out = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.mpiigaze", f"--input_dir={root}",
         f"--output_dir={out}", "--test_participants=p12", "--keep_size", "--workers=1",
         "--shard_bytes=3000"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    assert "real_test" in result.stdout
    info = schema.read_dataset_info(out)
    assert info.image_shape == (36, 60, 1)
    assert info.splits["real"].count == 8 and info.splits["real_test"].count == 4
    assert len(info.splits["real"].shards) > 1
    assert info.splits["real"].source["options"]["keep_size"] is True
    # A missing test participant fails with a clear message and exit code 1.
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.mpiigaze", f"--input_dir={root}",
         f"--output_dir={out}"], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 1
    assert "error: Test participants ['p13', 'p14'] not found" in result.stderr
