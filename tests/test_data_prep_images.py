"""Tests of data_prep/images.py on image folders and CSVs written by the tests."""

import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import folder_bytes, run_module
from data_prep import check, common, images
from simgan_tf.data import reader, schema


def _options(**kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", 1)
    return common.ConvertOptions(**kwargs)


def _pattern(height, width, channels, seed):
    """Distinct uint8 pixels: a gradient plus seeded noise, `[H, W, C]`."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (3 * xx + 5 * yy + 40 * seed)[..., None] + 60 * np.arange(channels)
    return ((base + rng.integers(0, 30, base.shape)) % 256).astype(np.uint8)


def _save(path, pixels, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels
    Image.fromarray(pixels).save(path, **kwargs)


def _write_csv(path, header, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join(header) + "\n")
        f.writelines(",".join(str(v) for v in row) + "\n" for row in rows)


def _load(data_dir, split, *labels):
    """Keys, uint8 pixels and labels of a split, through the training reader."""
    arrays = reader.load_arrays(data_dir, split, ("image", "key", *labels))
    pixels = np.rint((arrays["image"] + 1.0) * 127.5).astype(np.int64)
    return [k.decode() for k in arrays["key"]], pixels, arrays


def _gaze_folder(root):
    """synthetic/: 5 good 35x55 files, 6 bad ones, and a CSV with 11 data rows."""
    folder = os.path.join(root, "synthetic")
    good = {"a/0.png": 0, "a/1.png": 1, "b/2.png": 2, "b/3.jpg": 3, "c.PNG": 4}
    for key, seed in good.items():
        _save(os.path.join(folder, key), _pattern(35, 55, 1, seed), quality=95)
    _save(os.path.join(folder, "truncated.png"), _pattern(35, 55, 1, 5))
    data = open(os.path.join(folder, "truncated.png"), "rb").read()
    with open(os.path.join(folder, "truncated.png"), "wb") as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(folder, "text.jpg"), "w") as f:
        f.write("this is not a jpeg\n")
    _save(os.path.join(folder, "odd.png"), _pattern(36, 60, 1, 6))
    _save(os.path.join(folder, "unlabelled.png"), _pattern(35, 55, 1, 7))
    _save(os.path.join(folder, "badrow.png"), _pattern(35, 55, 1, 8))
    _save(os.path.join(folder, "nan.png"), _pattern(35, 55, 1, 9))
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not an image: ignored\n")
    rows = {key: (0.01 * seed - 0.2, 0.3 - 0.05 * seed, 10 + seed, 20.5, 700 + seed,
                  11, 21, 710, seed / 4, f"note{seed}")
            for key, seed in good.items()}
    rows.update({"truncated.png": (0, 0, 1, 1, 1, 1, 1, 1, 0, "x"),
                 "text.jpg": (0, 0, 1, 1, 1, 1, 1, 1, 0, "x"),
                 "odd.png": (0, 0, 1, 1, 1, 1, 1, 1, 0, "x"),
                 "badrow.png": (0, "abc", 1, 1, 1, 1, 1, 1, 0, "x"),
                 "./missing/9.png": (0, 0, 1, 1, 1, 1, 1, 1, 0, "x"),
                 "nan.png": ("nan", 0, 1, 1, 1, 1, 1, 1, 0, "x")})
    header = ["path", "gaze_pitch", "gaze_yaw", "joint0_u", "joint0_v", "joint0_d",
              "joint1_u", "joint1_v", "joint1_d", "score", "comment"]
    csv_path = os.path.join(root, "labels.csv")
    _write_csv(csv_path, header, [(key, *values) for key, values in rows.items()])
    return folder, csv_path, good, rows


EXPECTED_SKIPS = {"malformed_value": 1, "missing_file": 1, "missing_label": 1,
                  "non_finite_label": 1, "unreadable_image": 2, "wrong_shape": 1}


def test_skips_counts_and_labels_from_the_csv(tmp_path):
    folder, csv_path, good, rows = _gaze_folder(str(tmp_path))
    out = str(tmp_path / "data")
    summary = images.convert(out, size="35x55", synthetic_dir=folder,
                             labels_csv=csv_path, resize="none", grayscale=True,
                             options=_options())
    split = summary.splits["synthetic"]
    assert split.written == 5
    assert split.skipped == EXPECTED_SKIPS
    examples = {k: " | ".join(v) for k, v in split.examples.items()}
    assert "truncated.png" in examples["unreadable_image"]
    assert "text.jpg" in examples["unreadable_image"]
    assert "odd.png: wrong_shape (image is 36x60 (height x width), expected 35x55" in (
        examples["wrong_shape"])
    assert "unlabelled.png: missing_label" in examples["missing_label"]
    assert "labels.csv line 10: gaze_yaw = 'abc' is not a number" in (
        examples["malformed_value"])
    assert "line 11 names 'missing/9.png', not found below" in examples["missing_file"]
    assert "nan.png: non_finite_label (label/gaze = [nan, 0.0])" in (
        examples["non_finite_label"])

    fields = ("label/gaze", "label/joints_uvd", "label/score")
    keys, pixels, arrays = _load(out, "synthetic", *fields)
    assert keys == sorted(good)  # Key order: a/0.png, a/1.png, b/2.png, b/3.jpg, c.PNG.
    for i, key in enumerate(keys):
        values = np.array(rows[key][:9], dtype=np.float32)
        np.testing.assert_array_equal(arrays["label/gaze"][i], values[:2])
        np.testing.assert_array_equal(arrays["label/joints_uvd"][i], values[2:8])
        np.testing.assert_array_equal(arrays["label/score"][i], values[8:])
        if key.endswith(".png") or key.endswith(".PNG"):  # Lossless: pixels unchanged.
            np.testing.assert_array_equal(pixels[i], _pattern(35, 55, 1, good[key]))
    info = schema.read_dataset_info(out)
    split_info = info.splits["synthetic"]
    assert info.image_shape == (35, 55, 1) and info.image_dtype == "uint8"
    assert split_info.label_fields == {"label/gaze": 2, "label/joints_uvd": 6,
                                       "label/score": 1}
    assert split_info.source["skipped"] == EXPECTED_SKIPS
    assert split_info.source["ignored_csv_columns"] == ["comment"]
    assert "gaze_pitch,gaze_yaw" in split_info.source["labels"]["label/gaze"]
    report = check.check(out)
    assert report.ok, report.format()


def test_strict_names_the_odd_file_and_keeps_previous_output(tmp_path):
    folder = str(tmp_path / "real")
    for i in range(3):
        _save(os.path.join(folder, f"{i}.png"), _pattern(35, 55, 1, i))
    out = str(tmp_path / "data")
    images.convert(out, size=(35, 55), real_dir=folder, resize="none", grayscale=True,
                   options=_options())
    before = folder_bytes(out)
    _save(os.path.join(folder, "sub", "odd.png"), _pattern(35, 54, 1, 9))
    with pytest.raises(common.ConversionError,
                       match=r"sub/odd\.png: wrong_shape \(image is 35x54 .*--strict"):
        images.convert(out, size=(35, 55), real_dir=folder, resize="none",
                       grayscale=True, options=_options(strict=True))
    assert folder_bytes(out) == before  # Split and dataset.json kept, no staging left.


def test_workers_do_not_change_the_bytes(tmp_path):
    folder, csv_path, _, _ = _gaze_folder(str(tmp_path))
    for i in range(12):  # More files than a chunk, of other sizes: resized by "crop".
        _save(os.path.join(folder, "more", f"{i:02d}.png"), _pattern(40 + i, 70, 1, i))
    outputs = []
    for workers in (1, 2):
        out = str(tmp_path / f"out{workers}")
        images.convert(out, size="35x55", synthetic_dir=folder, resize="crop",
                       grayscale=True, options=_options(workers=workers, chunk_size=2,
                                                        shard_bytes=5000))
        with open(os.path.join(out, "dataset.json"), "rb") as f:
            outputs.append(f.read())
    shards = json.loads(outputs[0])["splits"]["synthetic"]["shards"]
    assert len(shards) > 2  # Several shards, each with its sha256.
    assert outputs[0] == outputs[1]  # Same shard sha256s, counts and source.


def _hand_held_out(key, fraction):
    """The documented rule, written out: first 8 bytes of sha256(key) / 2**64 < f."""
    value = int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) / 2**64
    return value < fraction


def test_real_test_fraction_split_is_deterministic_and_disjoint(tmp_path):
    folder = str(tmp_path / "real")
    for i in range(30):
        _save(os.path.join(folder, f"{i:03d}.png"), _pattern(8, 8, 1, i))
    out = str(tmp_path / "data")
    summary = images.convert(out, size="8x8", real_dir=folder, real_test_fraction=0.3,
                             grayscale=True, options=_options())
    real, _, _ = _load(out, "real")
    test, _, _ = _load(out, "real_test")
    all_keys = [f"{i:03d}.png" for i in range(30)]
    assert test == [k for k in all_keys if _hand_held_out(k, 0.3)]
    assert real == [k for k in all_keys if not _hand_held_out(k, 0.3)]
    assert 3 <= len(test) <= 15 and not set(real) & set(test)
    assert summary.splits["real_test"].written == len(test)
    assert schema.read_dataset_info(out).splits["real_test"].domain == "real"
    # More files: no existing key changes side.
    for i in range(30, 40):
        _save(os.path.join(folder, f"{i:03d}.png"), _pattern(8, 8, 1, i))
    again = str(tmp_path / "again")
    images.convert(again, size="8x8", real_dir=folder, real_test_fraction=0.3,
                   grayscale=True, options=_options())
    assert set(test) <= set(_load(again, "real_test")[0])
    assert set(real) <= set(_load(again, "real")[0])
    assert check.check(out).ok


@pytest.mark.parametrize("shape,grayscale", [((64, 64, 3), False), ((48, 80, 1), True)])
def test_round_trip_through_the_reader(tmp_path, shape, grayscale):
    folder = str(tmp_path / "synthetic")
    originals = {f"{i}.png": _pattern(*shape, i) for i in range(4)}
    for key, pixels in originals.items():
        _save(os.path.join(folder, key), pixels)
    out = str(tmp_path / "data")
    images.convert(out, size=shape[:2], synthetic_dir=folder, resize="none",
                   grayscale=grayscale, options=_options())
    keys, pixels, _ = _load(out, "synthetic")
    assert keys == sorted(originals) and pixels.shape == (4, *shape)
    for i, key in enumerate(keys):
        np.testing.assert_array_equal(pixels[i], originals[key])
    assert schema.read_dataset_info(out).image_shape == shape
    assert check.check(out).ok


def test_modes_are_converted(tmp_path):
    folder = str(tmp_path / "real")
    colour = _pattern(16, 24, 3, 7)
    _save(os.path.join(folder, "rgb.png"), colour)
    _save(os.path.join(folder, "rgba.png"), np.dstack(
        [colour, np.full((16, 24), 128, np.uint8)]))
    Image.fromarray(colour).quantize(64).save(os.path.join(folder, "p.png"))
    palette = np.asarray(Image.open(os.path.join(folder, "p.png")).convert("RGB"))
    rgb, gray = str(tmp_path / "rgb"), str(tmp_path / "gray")
    images.convert(rgb, size="16x24", real_dir=folder, options=_options())
    images.convert(gray, size="16x24", real_dir=folder, grayscale=True,
                   options=_options())
    keys, pixels, _ = _load(rgb, "real")
    assert keys == ["p.png", "rgb.png", "rgba.png"]
    np.testing.assert_array_equal(pixels[0], palette)
    np.testing.assert_array_equal(pixels[1], colour)
    np.testing.assert_array_equal(pixels[2], colour)  # Alpha dropped.
    # ITU-R 601-2 luma, L = R * 299/1000 + G * 587/1000 + B * 114/1000 (rounded).
    luma = colour.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(_load(gray, "real")[1][1][..., 0] - luma).max() <= 1


def test_16_bit_grayscale(tmp_path):
    folder = str(tmp_path / "real")
    depth = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 541).astype(np.uint16)
    os.makedirs(folder)
    Image.fromarray(depth).save(os.path.join(folder, "depth.png"))
    _save(os.path.join(folder, "eight.png"), _pattern(12, 10, 1, 1))
    out = str(tmp_path / "data")
    images.convert(out, size="12x10", real_dir=folder, grayscale=True, bit_depth=16,
                   resize="none", options=_options())
    arrays = reader.load_arrays(out, "real", ("image", "key"))
    values = np.rint((arrays["image"] + 1.0) * 65535 / 2).astype(np.int64)
    np.testing.assert_array_equal(values[0][..., 0], depth)
    np.testing.assert_array_equal(values[1], _pattern(12, 10, 1, 1).astype(int) * 257)
    assert schema.read_dataset_info(out).image_dtype == "uint16"
    # The same 16-bit file at 8 bits: divided by 257, rounded.
    out8 = str(tmp_path / "data8")
    images.convert(out8, size="12x10", real_dir=folder, grayscale=True,
                   resize="none", options=_options())
    _, pixels, _ = _load(out8, "real")
    np.testing.assert_array_equal(pixels[0][..., 0], np.rint(depth / 257.0))
    with pytest.raises(ValueError, match="bit_depth=16 needs grayscale=True"):
        images.convert(out, size="12x10", real_dir=folder, bit_depth=16)


def test_fit_and_crop(tmp_path):
    # 40x80 (height x width): black left quarter, white middle half, black right quarter.
    pixels = np.zeros((40, 80, 1), np.uint8)
    pixels[:, 20:60] = 255
    folder = str(tmp_path / "real")
    _save(os.path.join(folder, "x.png"), pixels)
    crop, fit = str(tmp_path / "crop"), str(tmp_path / "fit")
    images.convert(crop, size="20x20", real_dir=folder, resize="crop", grayscale=True,
                   options=_options())
    images.convert(fit, size="20x20", real_dir=folder, resize="fit", grayscale=True,
                   options=_options())
    # crop: the centred 40x40 box (columns 20..60) is white (the filter's support
    # reaches one source pixel past the box into the black at the edge columns only).
    cropped = _load(crop, "real")[1][0]
    np.testing.assert_array_equal(cropped[:, 1:19], 255)
    assert cropped[:, [0, 19]].min() >= 191
    # fit: the whole width squeezed into 20 columns: 5 black, 10 white, 5 black.
    row = _load(fit, "real")[1][0][10, :, 0]
    np.testing.assert_array_equal(row[6:14], 255)
    np.testing.assert_array_equal(row[[0, 1, 2, 3, 16, 17, 18, 19]], 0)


@pytest.mark.parametrize("header,rows,message", [
    (["path", "gaze_pitch"], [("a.png", 0.1)], "gaze_pitch without gaze_yaw"),
    (["path", "joint0_u", "joint0_v"], [("a.png", 1, 2)], r"missing: \['joint0_d'\]"),
    (["path", "gaze"], [("a.png", 1)], "label/gaze comes only from its own columns"),
    (["path", "x"], [("a.png", 1), ("./a.png", 2)], r"labels\.csv:3: path 'a\.png' "
                                                    "already on line 2"),
    (["name", "x"], [("a.png", 1)], "expected a header with one 'path' column"),
    (["path", "x"], [("a.png", 1, 2)], r"labels\.csv:2: 3 values, expected 2"),
    (["path", "x"], [("", 1)], r"labels\.csv:2: empty 'path'"),
    (["path", "comment"], [("a.png", "hello")], "no label column"),
])
def test_malformed_csv_is_a_clear_error(tmp_path, header, rows, message):
    folder = str(tmp_path / "synthetic")
    _save(os.path.join(folder, "a.png"), _pattern(4, 4, 1, 0))
    csv_path = str(tmp_path / "labels.csv")
    _write_csv(csv_path, header, rows)
    with pytest.raises(ValueError, match=message):
        images.convert(str(tmp_path / "out"), size="4x4", synthetic_dir=folder,
                       labels_csv=csv_path, options=_options())
    assert not os.path.exists(tmp_path / "out")


def test_argument_errors(tmp_path):
    folder = str(tmp_path / "real")
    _save(os.path.join(folder, "a.png"), _pattern(4, 4, 1, 0))
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        images.convert(out, size="4by4", real_dir=folder)
    with pytest.raises(ValueError, match=r"real_test_fraction in \[0, 1\)"):
        images.convert(out, size="4x4", real_dir=folder, real_test_fraction=1.0)
    with pytest.raises(ValueError, match="needs real_dir and no real_test_dir"):
        images.convert(out, size="4x4", real_dir=folder, real_test_dir=folder,
                       real_test_fraction=0.5)
    with pytest.raises(ValueError, match=r"labeled_splits \['synthetic'\] are not"):
        images.convert(out, size="4x4", real_dir=folder, labels_csv="x.csv")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        images.convert(out, size="4x4", real_dir=str(tmp_path / "nope"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="No .png/.jpg/.jpeg files"):
        images.convert(out, size="4x4", real_dir=str(tmp_path / "empty"))


def test_command_line(tmp_path):
    folder, csv_path, good, _ = _gaze_folder(str(tmp_path))
    real = str(tmp_path / "real")
    for i in range(6):
        _save(os.path.join(real, f"{i}.jpg"), _pattern(70, 110, 3, i), quality=90)
    out = str(tmp_path / "data")
    result = run_module(
        "data_prep.images", f"--output_dir={out}", f"--synthetic_dir={folder}",
        f"--real_dir={real}", "--real_test_fraction=0.5", f"--labels_csv={csv_path}",
        "--size=35x55", "--resize=crop", "--grayscale", "--workers=2",
        "--compression=gzip")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 x missing_label" in result.stdout
    info = schema.read_dataset_info(out)
    # odd.png (36x60) is cropped and resized, not skipped, with --resize=crop.
    assert info.splits["synthetic"].count == len(good) + 1
    assert info.splits["real"].count + info.splits["real_test"].count == 6
    assert info.splits["real"].label_fields == {}
    assert info.splits["synthetic"].compression == "GZIP"
    assert info.splits["synthetic"].source["options"]["resize"] == "crop"
    assert check.check(out).ok
