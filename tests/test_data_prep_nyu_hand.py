"""Tests of data_prep/nyu_hand.py on fixtures built from the genuine NYU test frame 1."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from data_prep import check, common, nyu_hand
from simgan_tf.data import schema

REPO = os.path.join(os.path.dirname(__file__), "..")
SAMPLES = os.path.join(os.path.dirname(__file__), "testdata", "samples")
DEPTH_PNG = os.path.join(SAMPLES, "nyu_hand", "depth_1_0000001.png")
LABELS_TXT = os.path.join(SAMPLES, "nyu_hand", "test_labels_first3.txt")

# Hand-computed from test_labels_first3.txt line 1 (frame 1's 14 joints):
# mean u = 217.744, mean v = 237.817643, mean d = 760.420857 mm;
# side = 300 mm * 588.036865 / 760.420857 = 231.991348 px.
CENTER = (217.744, 237.8176429, 760.4208571)
SIDE = 231.9913477
# Joint 0 (169.221, 199.638, 736.417), with 224 / side = 0.9655533:
# u' = (169.221 - 217.744 + 115.995674) * 0.9655533 - 0.5 = 67.472674 * 0.9655533 - 0.5
#    = 64.64846;
# v' = (199.638 - 237.817643 + 115.995674) * 0.9655533 - 0.5 = 77.816031 * 0.9655533 - 0.5
#    = 74.63552; d unchanged.
JOINT0_CROP = (64.64846, 74.63552, 736.417)


def _genuine():
    for path in (DEPTH_PNG, LABELS_TXT):
        if not os.path.exists(path):
            pytest.fail(f"Genuine sample missing: {path} (see tests/testdata/samples/"
                        "PROVENANCE.md); the NYU hand tests need it.")
    depth = nyu_hand.decode_depth(DEPTH_PNG)
    joints = np.loadtxt(LABELS_TXT).reshape(3, 14, 3)
    return depth, joints


def _encode(depth):
    """uint16 depth -> NYU RGB8 PNG pixels (R = 0, G = high byte, B = low byte)."""
    rgb = np.zeros(depth.shape + (3,), np.uint8)
    rgb[..., 1] = depth >> 8
    rgb[..., 2] = depth & 0xFF
    return Image.fromarray(rgb)


def _synthetic_from_real(depth, joints):
    """A stand-in synthdepth: real depth within 100 mm of the hand and near the joints."""
    u_min, v_min = joints[:, :2].min(axis=0) - 20
    u_max, v_max = joints[:, :2].max(axis=0) + 20
    rows, cols = np.mgrid[:depth.shape[0], :depth.shape[1]]
    near = ((cols >= u_min) & (cols <= u_max) & (rows >= v_min) & (rows <= v_max)
            & (np.abs(depth.astype(int) - joints[:, 2].mean()) < 100))
    return np.where(near, depth, 0).astype(np.uint16)


def _joint_mat(path, frames):
    """joint_data.mat with joint_uvd (3, N, 36, 3); frames: {(camera, frame): [14, 3]}."""
    n = max(frame for _, frame in frames)
    uvd = np.zeros((3, n, 36, 3))
    for (camera, frame), joints in frames.items():
        uvd[camera - 1, frame - 1, list(nyu_hand.EVAL_JOINTS)] = joints
    scipy.io.savemat(path, {"joint_uvd": uvd, "joint_xyz": np.zeros_like(uvd),
                            "joint_names": np.array(["j"] * 36, dtype=object)})


def _make_root(root):
    """train/: frames 1, 2 (camera 1) with synthdepth. test/: frame 1 of cameras 1 and 2
    with synthdepth, frame 2 of camera 1 without (band mask), frame 3 unreadable,
    frame 9 without annotation."""
    depth, joints = _genuine()
    synth = _synthetic_from_real(depth, joints[0])
    for folder in ("train", "test"):
        os.makedirs(os.path.join(root, folder))
    train = os.path.join(root, "train")
    for frame in (1, 2):
        shutil.copy(DEPTH_PNG, os.path.join(train, f"depth_1_{frame:07d}.png"))
        _encode(synth).save(os.path.join(train, f"synthdepth_1_{frame:07d}.png"))
    _joint_mat(os.path.join(train, "joint_data.mat"),
               {(1, 1): joints[0], (1, 2): joints[0]})
    test = os.path.join(root, "test")
    for camera in (1, 2):
        shutil.copy(DEPTH_PNG, os.path.join(test, f"depth_{camera}_0000001.png"))
        _encode(synth).save(os.path.join(test, f"synthdepth_{camera}_0000001.png"))
    shutil.copy(DEPTH_PNG, os.path.join(test, "depth_1_0000002.png"))
    with open(os.path.join(test, "depth_1_0000003.png"), "wb") as f:
        f.write(b"\x89PNG not really")
    shutil.copy(DEPTH_PNG, os.path.join(test, "depth_1_0000009.png"))
    _joint_mat(os.path.join(test, "joint_data.mat"),
               {(1, 1): joints[0], (2, 1): joints[0], (1, 2): joints[1],
                (1, 3): joints[2]})
    return depth, synth, joints


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
                        "image": schema.decode_png_numpy(row[schema.IMAGE_ENCODED],
                                                         "uint16"),
                        "joints": row[schema.LABEL_JOINTS_UVD].reshape(14, 3)})
    return out


def _options(**kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", 1)
    return common.ConvertOptions(**kwargs)


def test_decode_genuine_depth():
    depth, joints = _genuine()
    assert depth.dtype == np.uint16 and depth.shape == (480, 640)
    assert depth.min() == 731 and depth.max() == 2001  # PROVENANCE.md: 731..2001.
    # The pixel under joint 0 (u 169.2, v 199.6) is the hand, 5 mm in front of the
    # joint centre (736.4 mm).
    assert depth[200, 169] == 731
    assert np.all(np.abs(depth[np.round(joints[0, :, 1]).astype(int),
                               np.round(joints[0, :, 0]).astype(int)]
                         - joints[0, :, 2]) < 40)


def test_crop_geometry_hand_computed():
    _, joints = _genuine()
    center_u, center_v, center_d, side = nyu_hand.hand_crop(joints[0], 300.0)
    np.testing.assert_allclose((center_u, center_v, center_d), CENTER, atol=1e-6)
    assert side == pytest.approx(SIDE, abs=1e-5)
    mapped = nyu_hand.map_joints(joints[0], center_u, center_v, side, 224)
    np.testing.assert_allclose(mapped[0], JOINT0_CROP, atol=1e-4)
    # The crop centre maps to the middle of the 224 x 224 output.
    centre = nyu_hand.map_joints([CENTER], center_u, center_v, side, 224)[0]
    np.testing.assert_allclose(centre[:2], (111.5, 111.5), atol=1e-9)


def test_crop_nearest_samples_and_pads():
    depth = np.arange(48, dtype=np.uint16).reshape(6, 8) + 1
    # A 4-pixel square at (u 2, v 2) sampled to 4 x 4: the frame pixels 0..3 exactly.
    np.testing.assert_array_equal(nyu_hand.crop_nearest(depth, 1.5, 1.5, 4.0, 4),
                                  depth[:4, :4])
    # Shifted by one pixel up and left: samples at -1, 0, 1, 2; the outside is 0.
    out = nyu_hand.crop_nearest(depth, 0.5, 0.5, 4.0, 4)
    np.testing.assert_array_equal(out[0], 0)
    np.testing.assert_array_equal(out[:, 0], 0)
    np.testing.assert_array_equal(out[1:, 1:], depth[:3, :3])
    # Twice the side: every frame pixel is repeated 2 x 2 (nearest, no new values).
    np.testing.assert_array_equal(nyu_hand.crop_nearest(depth, 1.5, 1.5, 4.0, 8),
                                  np.repeat(np.repeat(depth[:4, :4], 2, 0), 2, 1))


def test_convert_real_test_masks_and_maps_joints(tmp_path):
    root = str(tmp_path / "nyu")
    depth, synth, joints = _make_root(root)
    out = str(tmp_path / "data")
    summary = nyu_hand.convert(root, out, splits="real_test", options=_options())
    split = summary.splits["real_test"]
    assert split.written == 2
    assert split.skipped == {"missing_label": 1, "unreadable_image": 1}
    assert split.examples["missing_label"][0].startswith("test/depth_1_0000009.png")
    assert split.notes == {"mask_from_depth_band": 1}  # Frame 2 has no synthdepth.
    records = _read_split(out, "real_test")
    assert [r["key"] for r in records] == ["test/depth_1_0000001", "test/depth_1_0000002"]
    image = records[0]["image"][..., 0]
    assert image.shape == (224, 224) and image.dtype == np.uint16
    np.testing.assert_allclose(records[0]["joints"][0], JOINT0_CROP, atol=1e-3)
    # Every joint lands on hand pixels with a depth close to the joint's.
    mapped = records[0]["joints"]
    assert np.all((mapped[:, :2] > 0) & (mapped[:, :2] < 223))
    under = image[np.round(mapped[:, 1]).astype(int), np.round(mapped[:, 0]).astype(int)]
    assert np.all(np.abs(under.astype(float) - mapped[:, 2]) < 40), under
    # Output pixel (111, 111) samples frame pixel (row 237, col 217): hand centre.
    # u = 217.744 - 115.9957 + 111.5 * 231.9913 / 224 = 217.226 -> col 217.
    assert image[111, 111] == depth[237, 217] and synth[237, 217] > 0
    # Background is exactly 0; the foreground is the synthetic silhouette within the
    # 300 mm cube: nothing farther than 150 mm from the mean joint depth.
    foreground = image[image > 0].astype(float)
    assert 0.1 < foreground.size / image.size < 0.6
    assert np.all(np.abs(foreground - CENTER[2]) <= 150)
    assert np.count_nonzero(image == 2001) == 0  # Kinect background is gone.
    expected_mask = nyu_hand.crop_nearest(synth, *CENTER[:2], SIDE, 224) > 0
    assert not np.any(image[~expected_mask])
    # Frame 2 (no synthdepth): masked by the depth band only, so a superset.
    band = records[1]["image"][..., 0]
    assert np.all(np.abs(band[band > 0].astype(float) - np.loadtxt(LABELS_TXT).reshape(
        3, 14, 3)[1, :, 2].mean()) <= 150)
    info = schema.read_dataset_info(out)
    assert info.image_shape == (224, 224, 1) and info.image_dtype == "uint16"
    assert info.splits["real_test"].label_fields == {"label/joints_uvd": 42}
    assert check.check(out).ok


def test_convert_all_splits_and_cameras(tmp_path):
    root = str(tmp_path / "nyu")
    _make_root(root)
    out = str(tmp_path / "data")
    summary = nyu_hand.convert(root, out, cameras="1,2", size=64, options=_options())
    assert {k: s.written for k, s in summary.splits.items()} == {
        "synthetic": 2, "real": 2, "real_test": 3}
    synthetic = _read_split(out, "synthetic")
    real = _read_split(out, "real")
    test = _read_split(out, "real_test")
    assert [r["key"] for r in synthetic] == ["train/synthdepth_1_0000001",
                                            "train/synthdepth_1_0000002"]
    assert [r["key"] for r in real] == ["train/depth_1_0000001", "train/depth_1_0000002"]
    assert [r["key"] for r in test] == ["test/depth_1_0000001", "test/depth_2_0000001",
                                        "test/depth_1_0000002"]
    assert {r["domain"] for r in synthetic} == {"synthetic"}
    assert {r["domain"] for r in real + test} == {"real"}
    # The synthetic crop and the masked real crop share their silhouette.
    assert np.array_equal(synthetic[0]["image"] > 0, real[0]["image"] > 0)
    assert synthetic[0]["image"].shape == (64, 64, 1)
    np.testing.assert_allclose(test[0]["joints"], test[1]["joints"])
    np.testing.assert_allclose(test[0]["joints"][0, :2],
                               (np.array(JOINT0_CROP[:2]) + 0.5) * 64 / 224 - 0.5,
                               atol=1e-3)
    source = schema.read_dataset_info(out).splits["synthetic"].source
    assert source["options"]["cameras"] == [1, 2]
    assert source["options"]["crop_mm"] == 300.0


def test_strict_names_the_frame(tmp_path):
    root = str(tmp_path / "nyu")
    _make_root(root)
    with pytest.raises(common.ConversionError,
                       match=r"test/depth_1_0000003\.png: unreadable_image"):
        nyu_hand.convert(root, str(tmp_path / "data"), splits=["real_test"],
                         options=_options(strict=True))
    with pytest.raises(ValueError, match=r"cameras among 1, 2, 3. Received: \(4,\)"):
        nyu_hand.convert(root, str(tmp_path / "data"), cameras=[4])
    os.remove(os.path.join(root, "train", "joint_data.mat"))
    with pytest.raises(FileNotFoundError, match="joint_data.mat"):
        nyu_hand.convert(root, str(tmp_path / "data"), splits=["real"])


def test_workers_do_not_change_the_bytes(tmp_path):
    root = str(tmp_path / "nyu")
    _make_root(root)
    outputs = []
    for workers in (1, 2):
        out = str(tmp_path / f"out{workers}")
        nyu_hand.convert(root, out, cameras=[1, 2], splits=["real_test"],
                         options=_options(workers=workers, chunk_size=1, shard_bytes=1))
        folder = os.path.join(out, "real_test")
        outputs.append({name: open(os.path.join(folder, name), "rb").read()
                        for name in sorted(os.listdir(folder))})
    assert len(outputs[0]) == 3  # One record per shard.
    assert outputs[0] == outputs[1]


def test_command_line(tmp_path):
    root = str(tmp_path / "nyu")
    _make_root(root)
    out = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.nyu_hand", f"--input_dir={root}",
         f"--output_dir={out}", "--splits=real_test,synthetic", "--size=32",
         "--cameras=1", "--crop_mm=250", "--workers=1", "--compression=gzip"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    assert "mask_from_depth_band" in result.stdout
    info = schema.read_dataset_info(out)
    assert info.image_shape == (32, 32, 1)
    assert sorted(info.splits) == ["real_test", "synthetic"]
    assert info.splits["real_test"].count == 2
    assert info.splits["synthetic"].compression == "GZIP"
    assert info.splits["synthetic"].source["options"]["crop_mm"] == 250.0
