"""Tests of the procedural hand depth simulator: API, determinism, labels, domain gap."""

import numpy as np
import pytest

from simgan_tf.simulators import hand
from simgan_tf.simulators.hand import HandSimulatorConfig

CONFIG = HandSimulatorConfig()
TIPS = [hand.JOINT_NAMES.index(f"{f}_tip")
        for f in ("pinky", "ring", "middle", "index", "thumb")]


@pytest.fixture(scope="module")
def pair():
    """The same 64 samples in both domains."""
    synthetic, joints = hand.simulate(64, "synthetic", seed=5)
    real, real_joints = hand.simulate(64, "real", seed=5)
    return synthetic[..., 0], real[..., 0], joints, real_joints


def _interior(mask):
    """Pixels whose 4-neighbours are all in `[n, H, W]` mask (edges not interior)."""
    p = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    return (mask & p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:])


@pytest.mark.parametrize("domain", hand.DOMAINS)
@pytest.mark.parametrize("n", [0, 1, 7])
def test_shapes_and_dtypes(domain, n):
    pose = hand.sample_pose(n, seed=3)
    assert pose.shape == (n, hand.POSE_SIZE) and pose.dtype == np.float32
    depth, joints = hand.render(pose, domain, seed=3)
    assert depth.shape == (n, 64, 64, 1) and depth.dtype == np.uint16
    assert joints.shape == (n, hand.NUM_JOINTS, 3) and joints.dtype == np.float32
    assert len(hand.JOINT_NAMES) == hand.NUM_JOINTS == 14


def test_configurable_size():
    depth, joints = hand.simulate(3, "real", seed=0,
                                            config=HandSimulatorConfig(size=32))
    assert depth.shape == (3, 32, 32, 1)
    assert np.all((joints[..., :2] >= 0) & (joints[..., :2] <= 31))


def test_synthetic_background_and_depth_range(pair):
    synthetic, real, _, _ = pair
    low, high = CONFIG.depth_range
    for depth in (synthetic, real):
        fg = depth > 0
        # The hand covers a good share of the crop, but far from all of it.
        assert 0.05 < fg.mean() < 0.4
        assert np.all(fg.any(axis=(1, 2)))
        assert low - 200 <= depth[fg].min() and depth[fg].max() <= high + 200
    # Background exactly 0, and every image corner is background.
    assert np.all(synthetic[:, [0, 0, -1, -1], [0, -1, 0, -1]] == 0)


@pytest.mark.parametrize("domain", hand.DOMAINS)
def test_determinism_and_prefix(domain):
    first = hand.simulate(260, domain, seed=11)
    again = hand.simulate(260, domain, seed=11)
    prefix = hand.simulate(5, domain, seed=11)
    for a, b, p in zip(first, again, prefix):
        assert a.tobytes() == b.tobytes()
        assert p.tobytes() == a[:5].tobytes()
    # A prefix that crosses the chunk boundary (CHUNK_SIZE = 256) also agrees.
    longer = hand.simulate(300, domain, seed=11)
    assert longer[0][:260].tobytes() == first[0].tobytes()
    other = hand.simulate(5, domain, seed=12)
    assert other[0].tobytes() != prefix[0].tobytes()


def test_sample_pose_prefix_and_ranges():
    pose = hand.sample_pose(300, seed=2)
    assert np.array_equal(pose[:7], hand.sample_pose(7, seed=2))
    depth = pose[:, hand.POSE_NAMES.index("depth_mm")]
    assert depth.min() >= 600 and depth.max() <= 900
    assert not np.array_equal(pose, hand.sample_pose(300, seed=3))


def test_joints_inside_and_on_surface(pair):
    synthetic, _, joints, real_joints = pair
    # Labels are a function of (pose, seed) only: the same in both domains.
    assert np.array_equal(joints, real_joints)
    assert np.all((joints[..., :2] >= 0) & (joints[..., :2] <= 63))
    pose = hand.sample_pose(64, seed=5)
    palm = joints[:, hand.JOINT_NAMES.index("palm_center"), 2]
    np.testing.assert_allclose(palm, pose[:, 3], rtol=1e-6)
    u = np.round(joints[:, TIPS, 0]).astype(int)
    v = np.round(joints[:, TIPS, 1]).astype(int)
    observed = synthetic[np.arange(64)[:, None], v, u].astype(np.float32)
    assert np.all(observed > 0)  # every fingertip is on the hand's silhouette
    # The surface is in front of (or at most a rounding behind) the tip's centre, and
    # near it unless another part of the hand occludes it.
    assert np.all(observed <= joints[:, TIPS, 2] + 2)
    near = np.abs(observed - joints[:, TIPS, 2]) < 20
    assert near.mean() > 0.9


def test_roll_turns_fingers_to_the_right():
    pose = np.tile(hand.sample_pose(1, seed=0), (2, 1))
    pose[:, 0] = [-0.5, 0.5]
    pose[:, 1:3] = 0.0
    _, joints = hand.render(pose, "synthetic", seed=0)
    middle = hand.JOINT_NAMES.index("middle_tip")
    palm = hand.JOINT_NAMES.index("palm_center")
    offset = joints[:, middle, 0] - joints[:, palm, 0]
    assert offset[0] < -5 and offset[1] > 5
    # Fingers point up the image (smaller v than the palm centre).
    assert np.all(joints[:, middle, 1] < joints[:, palm, 1])


def test_real_matches_silhouette_with_holes_and_noise(pair):
    synthetic, real, _, _ = pair
    fg_s, fg_r = synthetic > 0, real > 0
    iou = (fg_s & fg_r).sum(axis=(1, 2)) / (fg_s | fg_r).sum(axis=(1, 2))
    assert iou.mean() > 0.8 and iou.min() > 0.6
    # Real frames miss pixels inside the silhouette; synthetic ones never do.
    inside = _interior(fg_s)
    assert np.all(synthetic[inside] > 0)
    assert (real[inside] == 0).sum() > 0.005 * inside.sum()
    # Neighbour differences on the interior are noisier in the real domain.
    flat = inside[:, :, 1:] & inside[:, :, :-1]
    flat &= (real[:, :, 1:] > 0) & (real[:, :, :-1] > 0)
    diff_s = np.diff(synthetic.astype(np.float32), axis=2)[flat]
    diff_r = np.diff(real.astype(np.float32), axis=2)[flat]
    # Restrict to smooth regions (not occlusion steps) of the synthetic image.
    smooth = np.abs(diff_s) < 10
    assert diff_r[smooth].std() > 1.3 * diff_s[smooth].std()
    # Flying pixels: some real foreground outside the synthetic silhouette.
    assert (fg_r & ~fg_s).sum() > 0


def test_different_poses_give_different_images():
    pose = hand.sample_pose(8, seed=4)
    depth, joints = hand.render(pose, "synthetic", seed=4)
    flat = depth.reshape(8, -1)
    for i in range(8):
        for j in range(i + 1, 8):
            assert not np.array_equal(flat[i], flat[j])
    same_first = pose.copy()
    same_first[1:] = pose[0]
    depth2, _ = hand.render(same_first, "synthetic", seed=4)
    assert np.array_equal(depth2[0], depth[0])
    # Bending one finger changes the image.
    bent = pose[:1].copy()
    bent[0, hand.POSE_NAMES.index("flexion_index_0")] += 1.0
    depth3, _ = hand.render(bent, "synthetic", seed=4)
    assert not np.array_equal(depth3[0], depth[0])


@pytest.mark.parametrize("call, match", [
    (lambda: hand.simulate(2, "fake", 0), "domain='fake'"),
    (lambda: hand.render(np.zeros((2, 5)), "real", 0), r"pose.shape=\(2, 5\)"),
    (lambda: hand.render(np.zeros(26), "real", 0), r"pose.shape=\(26,\)"),
    (lambda: hand.render(
        np.where(np.arange(26) == 3, np.nan, 700.0)[None], "real", 0), "non-finite"),
    (lambda: hand.render(np.zeros((1, 26)), "real", 0), "depth_mm"),
    (lambda: hand.simulate(2, "real", -1), "seed=-1"),
    (lambda: hand.simulate(2, "real", 1.5), "seed=1.5"),
    (lambda: hand.sample_pose(2, True), "seed=True"),
    (lambda: hand.sample_pose(-3, 0), "n=-3"),
    (lambda: HandSimulatorConfig(size=8), "size=8"),
    (lambda: HandSimulatorConfig(depth_range=(900.0, 600.0)), "depth_range"),
    (lambda: HandSimulatorConfig(edge_drop_range=(0.0, 2.0)), "edge_drop_range"),
    (lambda: HandSimulatorConfig(holes_range=(0, 2.5)), "holes_range"),
    (lambda: HandSimulatorConfig(crop_mm=-1.0), "crop_mm"),
])
def test_validation_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
