"""A procedural hand depth simulator with a synthetic and a "real" domain.

Renders `[n, size, size, 1]` uint16 depth images (millimetres, background 0) of a simple
articulated hand, with the value convention of the NYU hand converter
(`data_prep/nyu_hand.py`): foreground = depth in mm, background 0, and the reader maps
[0, 2000] mm to [-1, 1]. Two domains share the pose distribution and the pose -> geometry
mapping and differ only in sensor effects:

  * `synthetic`: exact depth of the model's surfaces, rounded to 1 mm, background 0.
  * `real`: the same surfaces plus what a Kinect adds: depth-dependent Gaussian noise,
    disparity-like quantization whose step grows with depth squared, mixed ("flying")
    pixels just outside the silhouette, missing pixels and a far bias along the
    silhouette's edge, small holes and isolated dropouts inside the hand.

Conventions:
  * Camera coordinates: x to the image's right, y down the image, z away from the camera,
    in mm. The projection is orthographic inside a metric crop of side `config.crop_mm`
    (as NYU's crops of a `crop_mm` cube): `u = (size - 1) / 2 + (x - x_c) * size / crop_mm`,
    likewise v with y, where `(x_c, y_c)` is the mean of the 14 joints' x, y (the crop is
    centred on the joints' mean, as in the NYU converter) minus the pose's shift. Pixel
    centres are at integer u, v.
  * Hand model (a right hand seen palm-first, fingers pointing up the image at zero roll,
    thumb to the image's right, lengths in mm times the per-sample hand scale): a palm of
    6 capsules (sphere-swept segments, radius 12-15 mm) from the wrist to the knuckles,
    and 5 fingers, each a chain of 3 capsules (radius 7-12 mm) whose joints flex towards
    the camera. The thumb's chain starts at its CMC joint inside the palm. The palm
    centre is the origin of the hand frame; its depth is the pose's `depth_mm`.
  * Pose vector (`POSE_SIZE` = 26 values, `POSE_NAMES`): `roll` (in-plane rotation,
    radians, > 0 turns the fingers towards the image's right), `tilt_x`, `tilt_y`
    (out-of-plane rotations about the image's x and y axes, radians), `depth_mm` (palm
    centre depth), `shift_x_mm`, `shift_y_mm` (offset of the hand from the crop centre),
    5 abductions (thumb, index, middle, ring, pinky; radians, > 0 spreads towards the
    thumb side) and 15 flexions (per finger from its base: thumb CMC, MCP, IP; other
    fingers MCP, PIP, DIP; radians, > 0 bends towards the camera).
  * Joints (`JOINT_NAMES`, the order of NYU's 14 evaluation joints): 0 pinky tip, 1 pinky
    PIP, 2 ring tip, 3 ring PIP, 4 middle tip, 5 middle PIP, 6 index tip, 7 index PIP,
    8 thumb tip, 9 thumb IP, 10 thumb MCP, 11 wrist (pinky side), 12 wrist (thumb side),
    13 palm centre. Tips are the centres of the last capsule's end sphere; `d` is the
    depth of the joint centre (inside the finger, about one radius behind its surface).

Randomness and determinism: sample `i` of `sample_pose(n, seed)` and the per-sample
geometry (hand scale, finger lengths) and sensor effects of `render(pose, domain, seed)`
are drawn from generators keyed by `(seed, stream, chunk index)` with a fixed chunk size
of `CHUNK_SIZE` samples, always drawing full chunks; kinematics are computed on full,
zero-padded chunks. Hence outputs are byte-identical for the same arguments, the first k
samples of n agree with a run of k, and the geometry is the same in both domains for the
same `(pose, seed)`. Callers should use different seeds per split.

This module is over 400 lines: one renderer (pose sampling, kinematics, ray casting and
the Kinect model share the hand's constants and the chunked random streams), kept
together for the same reason as `eyes.py`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from simgan_tf.simulators import common

DOMAINS = ("synthetic", "real")
NUM_JOINTS = 14
JOINT_NAMES = ("pinky_tip", "pinky_pip", "ring_tip", "ring_pip", "middle_tip",
               "middle_pip", "index_tip", "index_pip", "thumb_tip", "thumb_ip",
               "thumb_mcp", "wrist_pinky", "wrist_thumb", "palm_center")
FINGERS = ("thumb", "index", "middle", "ring", "pinky")
POSE_NAMES = (("roll", "tilt_x", "tilt_y", "depth_mm", "shift_x_mm", "shift_y_mm")
              + tuple(f"abduction_{f}" for f in FINGERS)
              + tuple(f"flexion_{f}_{k}" for f in FINGERS for k in range(3)))
POSE_SIZE = len(POSE_NAMES)  # 26
_POSE_DEPTH = 3
_POSE_ABDUCTION = 6
_POSE_FLEXION = 11

# Samples drawn per random generator. Fixed: changing it changes every image.
CHUNK_SIZE = 256
# Images rendered together (a cache-sized batch); does not affect the output.
_RENDER_BATCH = 16

# Independent random streams of one seed.
_STREAM_POSE = 0
_STREAM_GEOMETRY = 1
_STREAM_SENSOR = 2

# Hand model in mm at scale 1, hand frame as camera frame at zero pose (palm centre at 0).
# Per finger: base point (thumb CMC, other fingers MCP), base direction angle from -y
# towards +x, preferred bending direction, segment lengths and radii.
_FINGER_BASE = np.array([[20.0, 28.0, -4.0], [25.0, -43.0, 0.0], [8.0, -46.0, 0.0],
                         [-9.0, -43.0, 0.0], [-26.0, -37.0, 0.0]])
_FINGER_ANGLE = np.array([0.8, 0.1, 0.0, -0.08, -0.2])
_FINGER_BEND = np.array([[-0.6, 0.0, -0.8]] + [[0.0, 0.0, -1.0]] * 4)
_FINGER_LENGTH = np.array([[42.0, 32.0, 28.0], [42.0, 25.0, 20.0], [46.0, 28.0, 22.0],
                           [43.0, 27.0, 21.0], [34.0, 20.0, 19.0]])
_FINGER_RADIUS = np.array([[12.0, 10.5, 9.5], [9.5, 8.5, 7.5], [9.5, 8.5, 7.5],
                           [9.0, 8.0, 7.2], [8.5, 7.5, 6.8]])
_WRIST_PINKY = np.array([-25.0, 45.0, 0.0])
_WRIST_THUMB = np.array([22.0, 45.0, 0.0])
# Palm capsules: (start, end, radius); the knuckles are the finger bases.
_PALM = ((_WRIST_PINKY, _WRIST_THUMB, 15.0),
         (_WRIST_PINKY, _FINGER_BASE[4], 13.0),
         (np.array([-9.0, 45.0, 0.0]), _FINGER_BASE[3], 14.0),
         (np.array([8.0, 45.0, 0.0]), _FINGER_BASE[2], 14.0),
         (_WRIST_THUMB, _FINGER_BASE[1], 14.0),
         (_FINGER_BASE[4], _FINGER_BASE[1], 12.0))


@dataclasses.dataclass(frozen=True)
class HandSimulatorConfig:
    """Ranges of the pose and nuisance parameters and strengths of the sensor effects.

    Every `*_range` is a `(low, high)` pair sampled uniformly per image (`low == high`
    fixes the value). Lengths are in mm unless said otherwise.

    Attributes:
      size: image side in pixels, >= 16.
      crop_mm: metric side of the square crop (the image spans `crop_mm` at any depth).
      roll_range: in-plane rotation, radians.
      tilt_range: each of the two out-of-plane rotations (about x and y), radians.
      depth_range: depth of the palm centre, mm.
      shift_range: offset of the hand from the crop centre in each of x and y, mm.
      abduction_range: spread of each finger at its base, radians.
      flexion_range: flexion of each joint of the four fingers, radians.
      thumb_flexion_range: flexion of each thumb joint, radians.
      scale_range: per-sample hand scale (every length and radius).
      finger_length_jitter: relative half-width of a uniform per-finger length factor.
      noise_range: real domain: depth noise standard deviation at 1 m, mm; scales with
        (depth / 1 m)^2 as a Kinect's does.
      quantization_mm: real domain: depth step at 1 m, mm; scales with (depth / 1 m)^2
        (disparity quantization). 0 disables.
      edge_drop_range: real domain: probability that a foreground pixel on the
        silhouette's edge is missing (0).
      edge_bias_mm: real domain: kept edge pixels move away from the camera by up to this
        (uniform), as mixed foreground/background measurements do.
      flying_range: real domain: probability that a background pixel next to the hand
        gets a "flying pixel": its farthest hand neighbour's depth plus up to
        `flying_depth_mm` (uniform).
      flying_depth_mm: real domain: see `flying_range`.
      holes_range: real domain: number of small holes per image, integers, inclusive;
        each is a disc centred on a random hand pixel.
      hole_radius_range: real domain: hole radius, pixels of the output image.
      dropout_range: real domain: probability that any hand pixel is missing.
    """
    size: int = 64
    crop_mm: float = 260.0
    roll_range: tuple = (-0.6, 0.6)
    tilt_range: tuple = (-0.35, 0.35)
    depth_range: tuple = (600.0, 900.0)
    shift_range: tuple = (-8.0, 8.0)
    abduction_range: tuple = (-0.15, 0.15)
    flexion_range: tuple = (-0.1, 1.3)
    thumb_flexion_range: tuple = (0.0, 0.7)
    scale_range: tuple = (0.9, 1.1)
    finger_length_jitter: float = 0.05
    noise_range: tuple = (2.5, 4.5)
    quantization_mm: float = 2.85
    edge_drop_range: tuple = (0.1, 0.35)
    edge_bias_mm: float = 10.0
    flying_range: tuple = (0.05, 0.2)
    flying_depth_mm: float = 60.0
    holes_range: tuple = (0, 4)
    hole_radius_range: tuple = (0.6, 1.5)
    dropout_range: tuple = (0.0, 0.01)

    def __post_init__(self):
        if (isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer))
                or self.size < 16):
            raise ValueError(f"Expected an integer size >= 16. Received: size={self.size!r}")
        common.check_ranges(self)
        for name in ("crop_mm", "finger_length_jitter", "quantization_mm", "edge_bias_mm",
                     "flying_depth_mm"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                    or not 0 <= value < math.inf):
                raise ValueError(
                    f"Expected a finite number >= 0. Received: {name}={value!r}")
        if self.crop_mm <= 0:
            raise ValueError(f"Expected crop_mm > 0. Received: crop_mm={self.crop_mm!r}")
        if self.finger_length_jitter >= 0.5:
            raise ValueError(f"Expected finger_length_jitter < 0.5. Received: "
                             f"finger_length_jitter={self.finger_length_jitter!r}")
        low, high = self.depth_range
        if not 300 <= low <= high <= 60000:
            raise ValueError(f"Expected 300 <= low <= high <= 60000 mm. Received: "
                             f"depth_range={self.depth_range!r}")
        if not 0 < self.scale_range[0]:
            raise ValueError(f"Expected a positive scale. Received: "
                             f"scale_range={self.scale_range!r}")
        for name in ("roll_range", "tilt_range", "abduction_range", "flexion_range",
                     "thumb_flexion_range"):
            if max(abs(v) for v in getattr(self, name)) > math.pi:
                raise ValueError(f"Expected angles in [-pi, pi] radians. Received: "
                                 f"{name}={getattr(self, name)!r}")
        for name in ("noise_range", "hole_radius_range"):
            if getattr(self, name)[0] < 0:
                raise ValueError(f"Expected a range of values >= 0. Received: "
                                 f"{name}={getattr(self, name)!r}")
        for name in ("edge_drop_range", "flying_range", "dropout_range"):
            low, high = getattr(self, name)
            if not 0 <= low <= high <= 1:
                raise ValueError(f"Expected probabilities 0 <= low <= high <= 1. "
                                 f"Received: {name}={getattr(self, name)!r}")
        low, high = self.holes_range
        if not (0 <= low <= high <= 64 and int(low) == low and int(high) == high):
            raise ValueError(f"Expected integers 0 <= low <= high <= 64. Received: "
                             f"holes_range={self.holes_range!r}")


def _check_config(config) -> HandSimulatorConfig:
    if not isinstance(config, HandSimulatorConfig):
        raise ValueError(f"Expected a HandSimulatorConfig. Received: config={config!r}")
    return config


def sample_pose(n: int, seed: int,
                config: HandSimulatorConfig = HandSimulatorConfig()) -> np.ndarray:
    """Samples hand poses uniformly and independently in the config's ranges.

    Sample i depends only on `(seed, i)`: the first k of n samples equal
    `sample_pose(k, seed)`.

    Args:
      n: number of poses, >= 0.
      seed: non-negative integer.
      config: the simulator configuration.

    Returns:
      `[n, POSE_SIZE]` float32 poses; see `POSE_NAMES` and the module docstring (angles in
      radians, lengths in mm).

    Raises:
      ValueError: on a negative or non-integer n or seed.
    """
    n = common.check_n(n)
    seed = common.check_seed(seed)
    config = _check_config(config)
    ranges = ([config.roll_range, config.tilt_range, config.tilt_range,
               config.depth_range, config.shift_range, config.shift_range]
              + [config.abduction_range] * 5 + [config.thumb_flexion_range] * 3
              + [config.flexion_range] * 12)
    low = np.array([r[0] for r in ranges], np.float64)
    high = np.array([r[1] for r in ranges], np.float64)
    chunks = []
    for chunk, start in enumerate(range(0, n, CHUNK_SIZE)):
        rng = common.generator(seed, _STREAM_POSE, chunk)
        unit = rng.random((CHUNK_SIZE, POSE_SIZE))
        chunks.append((low + unit * (high - low))[:n - start])
    if not chunks:
        return np.zeros((0, POSE_SIZE), np.float32)
    return np.concatenate(chunks).astype(np.float32)


def _kinematics(pose: np.ndarray, scale: np.ndarray, finger_scale: np.ndarray,
                config: HandSimulatorConfig):
    """Capsules and joints of one full chunk, in image coordinates.

    Args:
      pose: `[C, POSE_SIZE]` float64.
      scale: `[C]` hand scale.
      finger_scale: `[C, 5]` per-finger length factors.
      config: the simulator configuration.

    Returns:
      `(starts, ends, radii, joints)`: `[C, K, 3]`, `[C, K, 3]`, `[C, K]` capsules and
      `[C, 14, 3]` joints, with x, y in pixels (u, v) and z in mm (depth).
    """
    c = pose.shape[0]
    s = scale[:, None]
    starts, ends, radii = [], [], []
    for a, b, r in _PALM:
        starts.append(a[None] * s)
        ends.append(b[None] * s)
        radii.append(np.full(c, r) * scale)
    tips, mids, thumb_mcp = {}, {}, None
    for f in range(5):
        angle = _FINGER_ANGLE[f] + pose[:, _POSE_ABDUCTION + f]
        zero = np.zeros(c)
        d0 = np.stack([np.sin(angle), -np.cos(angle), zero], axis=-1)
        bend = _FINGER_BEND[f][None] - (d0 @ _FINGER_BEND[f])[:, None] * d0
        bend = bend / np.sqrt((bend ** 2).sum(axis=-1, keepdims=True))
        point = _FINGER_BASE[f][None] * s
        theta = np.zeros(c)
        chain = []
        for k in range(3):
            theta = theta + pose[:, _POSE_FLEXION + 3 * f + k]
            direction = np.cos(theta)[:, None] * d0 + np.sin(theta)[:, None] * bend
            length = _FINGER_LENGTH[f, k] * scale * finger_scale[:, f]
            end = point + length[:, None] * direction
            starts.append(point)
            ends.append(end)
            radii.append(_FINGER_RADIUS[f, k] * scale)
            chain.append(end)
            point = end
        tips[f] = chain[2]
        if f == 0:
            mids[f], thumb_mcp = chain[1], chain[0]
        else:
            mids[f] = chain[0]
    joints = [tips[4], mids[4], tips[3], mids[3], tips[2], mids[2], tips[1], mids[1],
              tips[0], mids[0], thumb_mcp, _WRIST_PINKY[None] * s, _WRIST_THUMB[None] * s,
              np.zeros((c, 3))]
    points = np.stack(starts + ends + joints, axis=1)  # [C, 2K + 14, 3]

    k = len(starts)
    points = _to_image(points, pose, k, config)
    return (points[:, :k], points[:, k:2 * k], np.stack(radii, axis=1),
            points[:, 2 * k:])


def _to_image(points: np.ndarray, pose: np.ndarray, k: int,
              config: HandSimulatorConfig) -> np.ndarray:
    """Rotates hand-frame `points` `[C, 2k + 14, 3]` (k capsules' starts and ends, then
    the 14 joints) by the pose and projects them into the crop centred on the joints.

    Returns:
      `[C, 2k + 14, 3]` with x, y in pixels (u, v) and z in mm (depth).
    """
    # Rotation R = Rz(roll) Rx(tilt_x) Ry(tilt_y), written out elementwise.
    cr, sr = np.cos(pose[:, 0])[:, None], np.sin(pose[:, 0])[:, None]
    cx, sx = np.cos(pose[:, 1])[:, None], np.sin(pose[:, 1])[:, None]
    cy, sy = np.cos(pose[:, 2])[:, None], np.sin(pose[:, 2])[:, None]
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    x, z = cy * x + sy * z, -sy * x + cy * z
    y, z = cx * y - sx * z, sx * y + cx * z
    x, y = cr * x - sr * y, sr * x + cr * y

    centre_x = x[:, 2 * k:].mean(axis=1, keepdims=True) - pose[:, 4, None]
    centre_y = y[:, 2 * k:].mean(axis=1, keepdims=True) - pose[:, 5, None]
    ppm = config.size / config.crop_mm
    middle = (config.size - 1) / 2.0
    return np.stack([middle + (x - centre_x) * ppm, middle + (y - centre_y) * ppm,
                     z + pose[:, _POSE_DEPTH, None]], axis=-1)


def _raycast(starts: np.ndarray, ends: np.ndarray, radii: np.ndarray,
             config: HandSimulatorConfig) -> np.ndarray:
    """Nearest depth of a union of capsules along orthographic rays, one per pixel.

    Args:
      starts, ends: `[m, K, 3]` capsule end points, (u, v) in pixels and depth in mm.
      radii: `[m, K]` radii in mm.
      config: the simulator configuration.

    Returns:
      `[m, size, size]` float32 depth in mm, 0 where no capsule is hit.
    """
    size = config.size
    ppm = size / config.crop_mm
    m = starts.shape[0]
    # Pixel positions in mm (x, y), z along the ray.
    grid = np.arange(size, dtype=np.float32) / np.float32(ppm)
    px = np.tile(grid, size)[None]
    py = np.repeat(grid, size)[None]
    mm = np.array([1.0 / ppm, 1.0 / ppm, 1.0])
    a_all = (starts * mm).astype(np.float32)
    b_all = (ends * mm).astype(np.float32)
    r_all = radii.astype(np.float32)
    out = np.zeros((m, size * size), np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        for lo in range(0, m, _RENDER_BATCH):
            hi = min(lo + _RENDER_BATCH, m)
            depth = np.full((hi - lo, size * size), np.inf, np.float32)
            for k in range(a_all.shape[1]):
                a = a_all[lo:hi, k, :, None]  # [b, 3, 1]
                b = b_all[lo:hi, k, :, None]
                r2 = r_all[lo:hi, k, None] ** 2
                axis = b - a
                length = np.sqrt((axis ** 2).sum(axis=1))  # [b, 1]
                axis = axis / np.maximum(length, 1e-6)[:, None]
                ax, ay, az = axis[:, 0], axis[:, 1], axis[:, 2]
                wx = px - a[:, 0]
                wy = py - a[:, 1]
                dxy2 = wx * wx + wy * wy
                # Sphere at the start.
                disc = r2 - dxy2
                hit = np.where(disc >= 0, a[:, 2] - np.sqrt(disc), np.inf)
                np.minimum(depth, hit, out=depth)
                # Infinite cylinder, nearest root, kept where it projects inside.
                qq = 1.0 - az * az
                wa = wx * ax + wy * ay
                disc = (wa * az) ** 2 - qq * (dxy2 - wa * wa - r2)
                sol = (wa * az - np.sqrt(disc)) / qq
                along = wa + sol * az
                ok = (disc >= 0) & (along >= 0) & (along <= length) & (qq > 1e-6)
                np.minimum(depth, np.where(ok, a[:, 2] + sol, np.inf), out=depth)
                # Sphere at the end.
                wx = px - b[:, 0]
                wy = py - b[:, 1]
                disc = r2 - (wx * wx + wy * wy)
                hit = np.where(disc >= 0, b[:, 2] - np.sqrt(disc), np.inf)
                np.minimum(depth, hit, out=depth)
            out[lo:hi] = np.where(np.isfinite(depth), depth, 0.0)
    return out.reshape(m, size, size)


def _neighbours(values: np.ndarray, combine) -> np.ndarray:
    """Combines the 4-neighbours of `[m, H, W]` values (edges replicated)."""
    p = np.pad(values, ((0, 0), (1, 1), (1, 1)), mode="edge")
    return combine(combine(p[:, :-2, 1:-1], p[:, 2:, 1:-1]),
                   combine(p[:, 1:-1, :-2], p[:, 1:-1, 2:]))


def _apply_sensor(depth: np.ndarray, rng: np.random.Generator,
                  config: HandSimulatorConfig) -> np.ndarray:
    """Adds Kinect-like effects to one chunk of clean depth `[m, H, W]` float32 mm."""
    m, h, w = depth.shape
    # Draw every random quantity for a full chunk, in a fixed order, then slice to m.
    shape = (CHUNK_SIZE, h, w)
    noise_sigma = rng.uniform(*config.noise_range, size=CHUNK_SIZE)[:m, None, None]
    edge_drop = rng.uniform(*config.edge_drop_range, size=CHUNK_SIZE)[:m, None, None]
    flying = rng.uniform(*config.flying_range, size=CHUNK_SIZE)[:m, None, None]
    dropout = rng.uniform(*config.dropout_range, size=CHUNK_SIZE)[:m, None, None]
    low, high = (int(v) for v in config.holes_range)
    hole_count = rng.integers(low, high, size=CHUNK_SIZE, endpoint=True)[:m]
    hole_pick = rng.random((CHUNK_SIZE, max(high, 1)))[:m]
    hole_radius = rng.uniform(*config.hole_radius_range,
                              size=(CHUNK_SIZE, max(high, 1)))[:m]
    gauss = rng.standard_normal(shape, dtype=np.float32)[:m]
    edge_u = rng.random(shape, dtype=np.float32)[:m]
    offset_u = rng.random(shape, dtype=np.float32)[:m]
    drop_u = rng.random(shape, dtype=np.float32)[:m]

    fg = depth > 0
    bg_near = _neighbours(~fg, np.logical_or)
    fg_edge = fg & bg_near
    bg_edge = ~fg & _neighbours(fg, np.logical_or)
    far_neighbour = _neighbours(depth, np.maximum)

    out = depth.astype(np.float64)
    metres2 = (out / 1000.0) ** 2
    out = out + np.where(fg_edge, offset_u * config.edge_bias_mm, 0.0)
    out = out + np.where(fg, gauss * noise_sigma * metres2, 0.0)
    flies = bg_edge & (edge_u < flying)
    out = np.where(flies, far_neighbour + offset_u * config.flying_depth_mm, out)
    if config.quantization_mm > 0:
        step = config.quantization_mm * (out / 1000.0) ** 2
        out = np.where(out > 0, np.round(out / np.where(out > 0, step, 1.0)) * step, 0.0)
    missing = (fg_edge & (edge_u < edge_drop)) | (fg & (drop_u < dropout))

    # Small holes centred on random hand pixels.
    rows = np.arange(h, dtype=np.float64)[:, None]
    cols = np.arange(w, dtype=np.float64)[None]
    for i in range(m):
        hand = np.flatnonzero(fg[i])
        if hand.size == 0:
            continue
        for j in range(hole_count[i]):
            centre = hand[min(int(hole_pick[i, j] * hand.size), hand.size - 1)]
            cy, cx = divmod(int(centre), w)
            missing[i] |= (rows - cy) ** 2 + (cols - cx) ** 2 <= hole_radius[i, j] ** 2
    out = np.where(missing, 0.0, out)
    positive = out > 0
    return np.where(positive, np.clip(np.round(out), 1, 65535), 0).astype(np.uint16)


def _check_pose(pose) -> np.ndarray:
    try:
        pose = np.asarray(pose, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"Expected pose as an [n, {POSE_SIZE}] array of numbers. "
                         f"Received: pose={pose!r}") from None
    if pose.ndim != 2 or pose.shape[1] != POSE_SIZE:
        raise ValueError(f"Expected pose of shape [n, {POSE_SIZE}]. Received: "
                         f"pose.shape={pose.shape}")
    if not np.all(np.isfinite(pose)):
        bad = np.flatnonzero(~np.all(np.isfinite(pose), axis=1))
        raise ValueError(f"Expected a finite pose. Received non-finite values at rows "
                         f"{bad[:10].tolist()}")
    depth = pose[:, _POSE_DEPTH]
    if np.any((depth < 300) | (depth > 60000)):
        bad = np.flatnonzero((depth < 300) | (depth > 60000))
        raise ValueError(f"Expected depth_mm (pose column {_POSE_DEPTH}) in [300, 60000]. "
                         f"Received at rows {bad[:10].tolist()}: {depth[bad[:3]].tolist()}")
    return pose


def render(pose: np.ndarray, domain: str, seed: int,
           config: HandSimulatorConfig = HandSimulatorConfig()
           ) -> tuple[np.ndarray, np.ndarray]:
    """Renders depth images of hands in the given poses.

    Args:
      pose: `[n, POSE_SIZE]` poses (see `POSE_NAMES`; angles in radians, lengths in mm,
        depth_mm in [300, 60000]). `n == 0` is allowed.
      domain: `'synthetic'` (exact depth) or `'real'` (with Kinect-like effects).
      seed: non-negative integer driving the per-sample geometry and sensor effects; the
        same `(pose[i], seed, i)` gives the same geometry in both domains.
      config: the simulator configuration.

    Returns:
      `(depth, joints_uvd)`: `[n, size, size, 1]` uint16 depth in mm with background 0,
      and `[n, 14, 3]` float32 joints (`JOINT_NAMES` order): u, v in pixels of the image
      (pixel centres at integers), d in mm (depth of the joint centre).

    Raises:
      ValueError: on an unknown domain, a pose that is not a finite `[n, POSE_SIZE]`
        array with depth_mm in [300, 60000], or a negative or non-integer seed.
    """
    if domain not in DOMAINS:
        raise ValueError(
            f"Expected domain 'synthetic' or 'real'. Received: domain={domain!r}")
    seed = common.check_seed(seed)
    config = _check_config(config)
    pose = _check_pose(pose)
    n, size = pose.shape[0], config.size
    depth = np.zeros((n, size, size), np.uint16)
    joints = np.zeros((n, NUM_JOINTS, 3), np.float32)
    jitter = config.finger_length_jitter
    for chunk, start in enumerate(range(0, n, CHUNK_SIZE)):
        stop = min(start + CHUNK_SIZE, n)
        m = stop - start
        rng = common.generator(seed, _STREAM_GEOMETRY, chunk)
        scale = rng.uniform(*config.scale_range, size=CHUNK_SIZE)
        finger_scale = rng.uniform(1.0 - jitter, 1.0 + jitter, size=(CHUNK_SIZE, 5))
        # Kinematics on a full, zero-padded chunk (depth of the padding: 1 m), so that a
        # sample's arithmetic does not depend on n.
        padded = np.zeros((CHUNK_SIZE, POSE_SIZE))
        padded[:, _POSE_DEPTH] = 1000.0
        padded[:m] = pose[start:stop]
        starts, ends, radii, uvd = _kinematics(padded, scale, finger_scale, config)
        joints[start:stop] = uvd[:m]
        clean = _raycast(starts[:m], ends[:m], radii[:m], config)
        if domain == "synthetic":
            depth[start:stop] = np.where(
                clean > 0, np.clip(np.round(clean), 1, 65535), 0).astype(np.uint16)
        else:
            depth[start:stop] = _apply_sensor(
                clean, common.generator(seed, _STREAM_SENSOR, chunk), config)
    return depth[..., None], joints


def simulate(n: int, domain: str, seed: int,
             config: HandSimulatorConfig = HandSimulatorConfig()
             ) -> tuple[np.ndarray, np.ndarray]:
    """Samples hand poses and renders them.

    Args:
      n: number of images, >= 0.
      domain: `'synthetic'` or `'real'`.
      seed: non-negative integer; drives poses, geometry and sensor effects (independent
        streams).
      config: the simulator configuration.

    Returns:
      `(depth, joints_uvd)`: `[n, size, size, 1]` uint16 mm (background 0) and
      `[n, 14, 3]` float32 (u, v pixels, d mm). The first k of n samples equal
      `simulate(k, domain, seed)`.

    Raises:
      ValueError: on an unknown domain or a negative or non-integer n or seed.
    """
    if domain not in DOMAINS:
        raise ValueError(
            f"Expected domain 'synthetic' or 'real'. Received: domain={domain!r}")
    pose = sample_pose(n, seed, config)
    return render(pose, domain, seed, config)
