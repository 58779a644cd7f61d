"""Tests of data_prep/kaggle_gaze.py on HDF5 files written by the tests."""

import hashlib
import os

import h5py
import numpy as np
import pytest

from conftest import folder_bytes, run_module
from data_prep import check, common, kaggle_gaze
from simgan_tf.data import reader, schema

# Look vectors (Unity camera axes: x right, y up, z away from the camera); the second is
# not of unit length (normalized by the converter).
LOOK_VECS = np.array([[0.3404, 0.3879, -0.8566],
                      [-0.4, -0.2, -1.8],
                      [0.0, 0.0, -1.0]])


def _options(**kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", 1)
    return common.ConvertOptions(**kwargs)


def _pixels(n, shape=(35, 55), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _write_h5(path, names, images, look_vecs=None):
    with h5py.File(path, "w") as f:
        group = f.create_group("image")
        for name, image in zip(names, images):
            group.create_dataset(name, data=image)
        if look_vecs is not None:
            vectors = f.create_group("look_vec")
            for name, vector in zip(names, look_vecs):
                vectors.create_dataset(name, data=vector)
    return path


def _load(data_dir, split, *labels):
    arrays = reader.load_arrays(data_dir, split, ("image", "key", *labels))
    pixels = np.rint((arrays["image"] + 1.0) * 127.5).astype(np.int64)
    return [k.decode() for k in arrays["key"]], pixels, arrays


def test_gaze_labels_match_a_hand_computation(tmp_path):
    names = ["img10", "img2", "img1"]  # Natural order: img1, img2, img10.
    images = _pixels(3)
    path = _write_h5(str(tmp_path / "gaze.h5"), names, images, LOOK_VECS)
    out = str(tmp_path / "data")
    summary = kaggle_gaze.convert(out, synthetic_h5=path, options=_options())
    assert summary.splits["synthetic"].written == 3
    keys, pixels, arrays = _load(out, "synthetic", "label/gaze")
    assert keys == ["img1", "img2", "img10"]
    order = [names.index(k) for k in keys]
    np.testing.assert_array_equal(pixels[..., 0], images[order])
    # By hand: v / |v|, pitch = arcsin(y), yaw = arctan2(-x, -z).
    unit = LOOK_VECS / np.linalg.norm(LOOK_VECS, axis=1, keepdims=True)
    expected = np.stack([np.arcsin(unit[:, 1]), np.arctan2(-unit[:, 0], -unit[:, 2])], 1)
    np.testing.assert_allclose(arrays["label/gaze"], expected[order], atol=1e-6)
    # The first vector is the genuine UnityEyes sample of data_prep/README.md.
    np.testing.assert_allclose(expected[0], (0.398331, -0.378250), atol=1e-6)
    # img1 looks into the camera: (0, 0); img2 looks down (pitch < 0) and towards the
    # image's left (-x: positive yaw).
    np.testing.assert_allclose(arrays["label/gaze"][0], (0.0, 0.0), atol=1e-7)
    assert arrays["label/gaze"][1][0] < 0 < arrays["label/gaze"][1][1]
    info = schema.read_dataset_info(out)
    assert info.image_shape == (35, 55, 1)
    split = info.splits["synthetic"]
    assert split.label_fields == {"label/gaze": 2} and split.domain == "synthetic"
    assert "asin(y)" in split.source["labels"]["label/gaze"]
    report = check.check(out)
    assert report.ok, report.format()


def _hand_held_out(key, fraction):
    """The documented rule, written out: first 8 bytes of sha256(key) / 2**64 < f."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) / 2**64 < fraction


def test_real_split_is_deterministic_and_disjoint(tmp_path):
    names = [f"{i}" for i in range(40)]
    images = _pixels(40, seed=1)
    # A look_vec group in the real file is ignored.
    path = _write_h5(str(tmp_path / "real_gaze.h5"), names, images, np.ones((40, 3)))
    outputs = []
    for run in range(2):
        out = str(tmp_path / f"data{run}")
        kaggle_gaze.convert(out, real_h5=path, real_test_fraction=0.25,
                            options=_options())
        outputs.append(open(os.path.join(out, "dataset.json"), "rb").read())
    assert outputs[0] == outputs[1]
    out = str(tmp_path / "data0")
    real, real_pixels, _ = _load(out, "real")
    test, test_pixels, _ = _load(out, "real_test")
    assert test == [n for n in names if _hand_held_out(n, 0.25)]
    assert real == [n for n in names if not _hand_held_out(n, 0.25)]
    assert not set(real) & set(test) and len(real) + len(test) == 40
    assert 4 <= len(test) <= 18
    np.testing.assert_array_equal(test_pixels[..., 0], images[[int(k) for k in test]])
    info = schema.read_dataset_info(out)
    assert info.splits["real"].label_fields == {} == info.splits["real_test"].label_fields
    assert info.splits["real_test"].domain == "real"
    assert check.check(out).ok


def test_workers_do_not_change_the_bytes(tmp_path):
    rng = np.random.default_rng(2)
    vectors = np.column_stack([rng.uniform(-0.4, 0.4, (30, 2)), -np.ones(30)])
    synthetic = _write_h5(str(tmp_path / "gaze.h5"), [f"s{i}" for i in range(30)],
                          _pixels(30, seed=2), vectors)
    real = _write_h5(str(tmp_path / "real.h5"), [f"r{i}" for i in range(30)],
                     _pixels(30, seed=3))
    outputs = []
    for workers in (1, 2):
        out = str(tmp_path / f"out{workers}")
        kaggle_gaze.convert(out, synthetic_h5=synthetic, real_h5=real,
                            real_test_fraction=0.2, options=_options(
                                workers=workers, chunk_size=4, shard_bytes=8000))
        outputs.append(open(os.path.join(out, "dataset.json"), "rb").read())
    info = schema.read_dataset_info(str(tmp_path / "out1"))
    assert len(info.splits["synthetic"].shards) > 2
    assert outputs[0] == outputs[1]  # The same shard sha256s.


def _layout_case(tmp_path, case):
    path = str(tmp_path / f"{case}.h5")
    names = ["a", "b", "c"]
    if case == "no_look_vec":
        _write_h5(path, names, _pixels(3))
    elif case == "36x60":
        _write_h5(path, names, _pixels(3, (36, 60)), LOOK_VECS)
    elif case == "look_vec_missing":
        _write_h5(path, names, _pixels(3), LOOK_VECS)
        with h5py.File(path, "a") as f:
            del f["look_vec/c"]
    elif case == "no_image":
        with h5py.File(path, "w") as f:
            f.create_dataset("images", data=_pixels(3))
    elif case == "look_vec_4":
        _write_h5(path, names, _pixels(3), np.ones((3, 4)))
    return path


@pytest.mark.parametrize("case,message", [
    ("no_look_vec", r"no group 'look_vec'\. Expected .* Found: group 'image' \(3 "
                    r"members: 3 x \(35, 55\) uint8\)"),
    ("36x60", r"3 of 3 images are not 35x55 uint8 \('a' \(36, 60\), .*Found: group "
              r"'image' \(3 members: 3 x \(36, 60\) uint8\); group 'look_vec' \(3 "
              r"members: 3 x \(3,\) float64\)"),
    ("look_vec_missing", r"1 of 3 images have no look vector \('c'\).*group "
                         r"'look_vec' \(2 members: 2 x \(3,\) float64\)"),
    ("no_image", r"no non-empty group 'image'.*Found: dataset 'images' \(3, 35, 55\) "
                 "uint8"),
    ("look_vec_4", r"3 look vectors are not 3 values"),
])
def test_layout_errors_list_what_was_found(tmp_path, case, message):
    path = _layout_case(tmp_path, case)
    out = str(tmp_path / "data")
    with pytest.raises(ValueError, match=message) as error:
        kaggle_gaze.convert(out, synthetic_h5=path, options=_options())
    assert path in str(error.value)
    assert not os.path.exists(out)  # Nothing written.


def test_real_file_is_checked_before_the_synthetic_split_is_written(tmp_path):
    synthetic = _write_h5(str(tmp_path / "gaze.h5"), ["a"], _pixels(1), LOOK_VECS[:1])
    real = _layout_case(tmp_path, "36x60")
    out = str(tmp_path / "data")
    with pytest.raises(ValueError, match="36x60.h5: 3 of 3 images are not 35x55"):
        kaggle_gaze.convert(out, synthetic_h5=synthetic, real_h5=real)
    assert not os.path.exists(out)


def test_bad_look_vectors_are_skipped_or_stop_strict_runs(tmp_path):
    vectors = np.array([[0.1, 0.1, -1.0], [np.nan, 0.0, -1.0], [0.0, 0.0, 0.0],
                        [0.0, 0.2, -1.0]])
    path = _write_h5(str(tmp_path / "gaze.h5"), ["0", "1", "2", "3"], _pixels(4),
                     vectors)
    out = str(tmp_path / "data")
    summary = kaggle_gaze.convert(out, synthetic_h5=path, options=_options())
    split = summary.splits["synthetic"]
    assert split.written == 2
    assert split.skipped == {"malformed_value": 1, "non_finite_label": 1}
    assert split.examples["non_finite_label"][0].startswith(
        "gaze.h5:image/1: non_finite_label (look_vec = [nan, 0.0, -1.0])")
    assert split.examples["malformed_value"][0].startswith("gaze.h5:image/2: ")
    assert _load(out, "synthetic")[0] == ["0", "3"]
    before = folder_bytes(out)
    with pytest.raises(common.ConversionError, match=r"gaze\.h5:image/1: non_finite"):
        kaggle_gaze.convert(out, synthetic_h5=path, options=_options(strict=True))
    assert folder_bytes(out) == before  # Split and dataset.json kept, no staging left.


def test_argument_errors(tmp_path):
    out = str(tmp_path / "data")
    with pytest.raises(ValueError, match="Expected synthetic_h5 or real_h5"):
        kaggle_gaze.convert(out)
    with pytest.raises(FileNotFoundError, match="real HDF5 file not found"):
        kaggle_gaze.convert(out, real_h5=str(tmp_path / "nope.h5"))
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        kaggle_gaze.convert(out, real_h5=str(text))
    with pytest.raises(ValueError, match=r"real_test_fraction in \[0, 1\)"):
        kaggle_gaze.convert(out, real_h5=str(text), real_test_fraction=-0.1)


def test_command_line(tmp_path):
    synthetic = _write_h5(str(tmp_path / "gaze.h5"), [f"{i}" for i in range(5)],
                          _pixels(5), np.tile(LOOK_VECS[2], (5, 1)))
    real = _write_h5(str(tmp_path / "real_gaze.h5"), [f"{i}" for i in range(8)],
                     _pixels(8, seed=4))
    out = str(tmp_path / "data")
    result = run_module(
        "data_prep.kaggle_gaze", f"--synthetic_h5={synthetic}", f"--real_h5={real}",
        f"--output_dir={out}", "--real_test_fraction=0.5", "--workers=1")
    assert result.returncode == 0, result.stderr
    assert "synthetic" in result.stdout and "real_test" in result.stdout
    info = schema.read_dataset_info(out)
    assert info.splits["synthetic"].count == 5
    assert info.splits["real"].count + info.splits["real_test"].count == 8
    assert check.check(out).ok
