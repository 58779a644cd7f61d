"""A procedural eye-image simulator with a synthetic and a "real" domain.

Renders `[n, 35, 55, 1]` uint8 grayscale eye images (height x width, as MPIIGaze's eye
patches in the SimGAN paper) from a known gaze direction, in two domains that share the
label distribution and the label -> geometry mapping and differ only in appearance:

  * `synthetic`: flat-shaded renders with analytically antialiased edges and a fine,
    pixel-scale surface texture (the role UnityEyes plays in the paper: its renders carry
    the skin, sclera and iris texture maps' grain, but no camera).
  * `real`: the same geometry plus what a real camera adds and the renderer lacks: skin
    texture, a specular glint on the cornea, uneven illumination, optical blur, lower
    contrast and shifted brightness, shot and read noise, and JPEG compression, all in
    a camera frame `camera_scale` times finer than the eye patch, which is then
    resampled out of the decoded frame (MPIIGaze's eye patches are warped out of JPEG
    webcam frames by its normalization, so their noise and compression blocks are not
    on the patch's pixel grid).

It stands in for UnityEyes -> MPIIGaze when no data folder is given: a gaze estimator
trained on `synthetic` does measurably worse on `real` (see `experiments/simulator_gap.py`),
while a fully convolutional refiner can close the gap because no geometry differs.

Conventions:
  * Gaze is `(pitch, yaw)` in radians, as in MPIIGaze. Its 3D unit vector in camera
    coordinates (x to the image's right, y down the image, z away from the camera) is
    `evaluation.metrics.gaze_to_vector`: `(-cos(pitch) sin(yaw), -sin(pitch),
    -cos(pitch) cos(yaw))`;
    `(0, 0)` looks straight into the camera.
  * Pitch > 0 looks up: the pupil moves up the image (to smaller row indices).
  * Yaw > 0 moves the pupil to the image's LEFT (smaller column indices), as the x
    component of the vector above says.
  * Geometry (lengths in pixels of a 35x55 image, times the per-image head scale): the
    eyeball (radius 13) is centred on the image centre plus the head offset. The iris
    and pupil centre is the orthographic projection of the gaze vector times the iris
    plane's depth `sqrt(13^2 - iris_radius^2)`, so about 11.4 px per unit of vector. The
    iris and pupil are discs perpendicular to the gaze: ellipses whose axis along the
    displacement is foreshortened by `cos(pitch) cos(yaw)` (the cosine of the angle
    between gaze and camera axis). Head roll rotates eyelids and skin, not the gaze
    projection, which depends on the label only.
  * The eye opening spans 21 px to each side of the centre; at the centre 60% of its
    height is above it. The upper eyelid follows the pitch, rising 6 px per radian
    (times `1 - (u / 21)^2` at horizontal offset u) when looking up, and hides the top of
    the iris when the opening is narrow.
  * Labels are sampled uniformly and independently in `pitch_range` x `yaw_range`.

Randomness and determinism: `render(gaze, domain, seed)` draws every per-sample nuisance
value from generators keyed by `(seed, stream, chunk index)` with a fixed chunk size of
`CHUNK_SIZE` samples, always drawing full chunks. Hence outputs are byte-identical for the
same arguments, the first k samples of n agree with a render of the first k gazes, and
the geometry nuisances (eye opening, iris and pupil size, head offset, scale and roll,
skin, sclera and iris tones) are the same in both domains for the same seed, so the
same `(gaze, seed)` puts the pupil at the same place in `synthetic` and `real`. Callers
should use different seeds per split.

This module is over 400 lines: one renderer, whose geometry, shading and camera model
share their constants and were tuned together against the gap they must produce; split
across modules, a change to one would hide its effect on the others.
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np

from simgan_tf.simulators import common
from PIL import Image

HEIGHT = 35
WIDTH = 55
DOMAINS = ("synthetic", "real")

# Samples drawn per random generator. Fixed: changing it changes every image.
CHUNK_SIZE = 256

# Independent random streams of one seed.
_STREAM_GAZE = 0
_STREAM_GEOMETRY = 1
_STREAM_CAMERA = 2
_STREAM_TEXTURE = 3

# Eye model in reference pixels (a 35x55 image, scale 1).
_EYEBALL_RADIUS = 13.0
_EYE_HALF_WIDTH = 21.0
_SOCKET_RADII = (25.0, 15.0)
# Fraction of the eye opening above the eye centre, and upper-lid rise per radian of pitch.
_UPPER_LID_SHARE = 0.6
_LID_PER_PITCH = 6.0


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    """Ranges of the gaze and nuisance parameters and strengths of the camera effects.

    Every `*_range` is a `(low, high)` pair sampled uniformly per image (`low == high`
    fixes the value). Lengths are in pixels of a 35x55 image and scale with
    `min(height / 35, width / 55)`; intensities are in [0, 1] (0 black, 1 white).

    Attributes:
      height, width: image size in pixels.
      pitch_range: gaze pitch labels, radians (> 0 looks up).
      yaw_range: gaze yaw labels, radians (> 0 moves the pupil to the image's left).
      offset_range: head-induced shift of the eye centre from the image centre, pixels,
        in each of x and y.
      scale_range: head-induced scale of the whole eye region.
      roll_range: head-induced in-plane rotation of the eyelids and skin, radians
        (the gaze projection itself is not rotated: it is a function of the label).
      opening_range: eye opening height (upper to lower lid at the eye centre), pixels.
      lid_skew_range: asymmetry of each eyelid's arc (0 is a symmetric parabola).
      iris_radius_range: iris radius, pixels.
      pupil_ratio_range: pupil radius as a fraction of the iris radius.
      skin_range: skin intensity.
      sclera_range: sclera intensity at the eyeball's centre.
      iris_range: iris intensity (the iris darkness).
      pupil_range: pupil intensity.
      lash_range: darkening of the upper-lid margin (eyelashes), as a fraction of skin.
      blur_sigma_range: real domain: Gaussian blur, pixels.
      contrast_range: real domain: contrast factor around mid-gray 0.5.
      brightness_range: real domain: brightness offset added after the contrast factor.
      illumination_strength: real domain: strength s of the multiplicative illumination
        field `1 + s (a x + b y + c (x^2 + y^2 - 1/2))`, with x, y in [-1, 1] across the
        image and a, b, c uniform in [-1, 1] per image.
      skin_texture_amplitude: real domain: relative standard deviation of the
        multiplicative multi-scale noise (cells of 1.5, 3 and 7 pixels) on skin.
      glint_range: real domain: peak intensity added by the corneal glint (before blur),
        drawn on the visible iris only.
      glint_sigma_range: real domain: glint radius (Gaussian sigma), pixels.
      glint_offset: real domain: maximum offset of the glint from the cornea centre's
        projection (the light source's direction), pixels in each of x and y.
      read_noise_range: real domain: standard deviation of Gaussian sensor noise.
      shot_noise: real domain: variance of Poisson-like noise per unit of intensity
        (noise standard deviation `sqrt(shot_noise * intensity)`).
      jpeg_quality_range: real domain: JPEG quality, integers, inclusive.
      camera_scale: real domain: camera frame pixels per eye-patch pixel. Texture,
        glint, illumination, blur, noise and JPEG (its 8x8 block grid at a random
        offset) are applied to the frame, which is then resampled to the patch with
        an antialiasing bilinear filter. 1 applies them to the patch itself, JPEG
        blocks aligned to the patch grid.
      resample_jitter: real domain: the patch's sub-pixel offset in the frame, uniform
        in [-jitter, jitter] frame pixels in each of x and y (the normalization's warp
        does not land on the frame's pixel grid).
      render_texture_amplitude: both domains: relative standard deviation of the
        renderer's pixel-scale surface texture (independent per pixel, multiplicative, so
        bright surfaces carry more of it). It is the detail a refiner can turn into
        camera grain: without it a synthetic image is flat where a real one is noisy,
        and no deterministic refiner (the paper's R has no noise input) can make
        noise out of a flat region (README, "Table 2 on the built-in eye simulator").
    """
    height: int = HEIGHT
    width: int = WIDTH
    pitch_range: tuple = (-0.35, 0.35)
    yaw_range: tuple = (-0.6, 0.6)
    offset_range: tuple = (-2.0, 2.0)
    scale_range: tuple = (0.92, 1.08)
    roll_range: tuple = (-0.1, 0.1)
    opening_range: tuple = (10.0, 15.0)
    lid_skew_range: tuple = (-0.25, 0.25)
    iris_radius_range: tuple = (5.6, 7.0)
    pupil_ratio_range: tuple = (0.35, 0.55)
    skin_range: tuple = (0.45, 0.75)
    sclera_range: tuple = (0.78, 0.95)
    iris_range: tuple = (0.2, 0.42)
    pupil_range: tuple = (0.03, 0.08)
    lash_range: tuple = (0.35, 0.6)
    blur_sigma_range: tuple = (0.6, 1.2)
    contrast_range: tuple = (0.8, 0.95)
    brightness_range: tuple = (-0.03, 0.03)
    illumination_strength: float = 0.12
    skin_texture_amplitude: float = 0.03
    glint_range: tuple = (0.7, 1.2)
    glint_sigma_range: tuple = (0.6, 0.9)
    glint_offset: float = 2.0
    read_noise_range: tuple = (0.015, 0.04)
    shot_noise: float = 0.0025
    jpeg_quality_range: tuple = (60, 85)
    camera_scale: float = 1.6
    resample_jitter: float = 0.5
    render_texture_amplitude: float = 0.04

    def __post_init__(self):
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 8:
                raise ValueError(
                    f"Expected an integer {name} >= 8. Received: {name}={value!r}")
        common.check_ranges(self)
        for name in ("pitch_range", "yaw_range"):
            if max(abs(v) for v in getattr(self, name)) >= math.pi / 2:
                raise ValueError(f"Expected a range inside (-pi/2, pi/2). Received: "
                                 f"{name}={getattr(self, name)!r}")
        low, high = self.jpeg_quality_range
        if not (1 <= low <= high <= 95) or int(low) != low or int(high) != high:
            raise ValueError(f"Expected integers 1 <= low <= high <= 95. Received: "
                             f"jpeg_quality_range={self.jpeg_quality_range!r}")
        if not (isinstance(self.camera_scale, (int, float))
                and 1.0 <= self.camera_scale <= 4.0):
            raise ValueError(f"Expected 1 <= camera_scale <= 4. Received: "
                             f"camera_scale={self.camera_scale!r}")
        if not (isinstance(self.resample_jitter, (int, float))
                and 0.0 <= self.resample_jitter <= 1.0):
            raise ValueError(f"Expected 0 <= resample_jitter <= 1. Received: "
                             f"resample_jitter={self.resample_jitter!r}")
        for name in ("illumination_strength", "skin_texture_amplitude", "glint_offset",
                     "shot_noise", "render_texture_amplitude"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < math.inf):
                raise ValueError(
                    f"Expected a finite number >= 0. Received: {name}={value!r}")


def _uniform(rng: np.random.Generator, value_range, size=CHUNK_SIZE) -> np.ndarray:
    low, high = value_range
    return rng.uniform(low, high, size=size).astype(np.float32)


def sample_gaze(n: int, seed: int,
                config: SimulatorConfig = SimulatorConfig()) -> np.ndarray:
    """Samples gaze labels uniformly in `config.pitch_range` x `config.yaw_range`.

    Sample i depends only on `(seed, i)`: the first k of n samples equal `sample_gaze(k,
    seed)`.

    Args:
      n: number of labels, >= 0.
      seed: non-negative integer.
      config: the simulator configuration.

    Returns:
      `[n, 2]` float32 (pitch, yaw), radians.
    """
    n = common.check_n(n)
    seed = common.check_seed(seed)
    chunks = []
    for chunk, start in enumerate(range(0, n, CHUNK_SIZE)):
        rng = common.generator(seed, _STREAM_GAZE, chunk)
        pitch = rng.uniform(*config.pitch_range, size=CHUNK_SIZE)
        yaw = rng.uniform(*config.yaw_range, size=CHUNK_SIZE)
        chunks.append(np.stack([pitch, yaw], axis=-1)[:n - start])
    if not chunks:
        return np.zeros((0, 2), np.float32)
    return np.concatenate(chunks).astype(np.float32)


def _soft(signed_distance: np.ndarray) -> np.ndarray:
    """Pixel coverage of a region from its signed distance (pixels, > 0 inside)."""
    return np.clip(0.5 + signed_distance, 0.0, 1.0)


def _ellipse_distance(px, py, radius_along, radius_across, ex, ey):
    """Approximate signed distance (> 0 inside) to an ellipse, and its normalized radius.

    Args:
      px, py: `[n, H, W]` pixel offsets from the ellipse centre.
      radius_along, radius_across: `[n, 1, 1]` semi-axes along and across the unit
        direction `(ex, ey)`.
      ex, ey: `[n, 1, 1]` unit direction of the first axis.

    Returns:
      `(distance, rho)`, each `[n, H, W]`: distance in pixels, and rho = 1 on the
      boundary, 0 at the centre.
    """
    along = px * ex + py * ey
    across = py * ex - px * ey
    a2, b2 = radius_along ** 2, radius_across ** 2
    rho = np.sqrt((along ** 2 / a2 + across ** 2 / b2) + 1e-12)
    gradient = np.sqrt((along / a2) ** 2 + (across / b2) ** 2) / rho + 1e-6
    return (1.0 - rho) / gradient, rho


def _draw_geometry(rng: np.random.Generator, config: SimulatorConfig) -> dict:
    """Draws the per-sample geometry and tone nuisances of one full chunk."""
    names = ("offset_x", "offset_y", "scale", "roll", "opening", "skew_upper",
             "skew_lower", "iris_radius", "pupil_ratio", "skin", "sclera", "iris",
             "pupil", "lash", "crease_gap")
    ranges = (config.offset_range, config.offset_range, config.scale_range,
              config.roll_range, config.opening_range, config.lid_skew_range,
              config.lid_skew_range, config.iris_radius_range, config.pupil_ratio_range,
              config.skin_range, config.sclera_range, config.iris_range,
              config.pupil_range, config.lash_range, (2.5, 4.5))
    return {name: _uniform(rng, r)[:, None, None] for name, r in zip(names, ranges)}


def _render_clean(gaze: np.ndarray, params: dict, config: SimulatorConfig,
                  frame: tuple | None = None) -> dict:
    """Renders the clean (synthetic) images of one chunk and the layers `real` needs.

    Args:
      gaze: `[m, 2]` (pitch, yaw), radians.
      params: per-sample nuisances, each `[m, 1, 1]` float32.
      config: the simulator configuration.
      frame: `(height, width, unit)` to render into a canvas of that size with `unit`
        pixels per reference pixel, the eye centred as in the patch (default: the
        patch itself, `config.height x config.width`).

    Returns:
      dict with `image` `[m, H, W]` float32 in [0, 1], `opening` and `iris` coverages
      `[m, H, W]` in [0, 1], and the `cornea_x`, `cornea_y` pixel position of the
      cornea centre's projection `[m, 1, 1]`.
    """
    h, w, base_unit = frame or (config.height, config.width, _patch_unit(config))
    unit = base_unit * params["scale"]  # pixels per reference pixel
    cx = w / 2 + params["offset_x"] * unit / params["scale"]
    cy = h / 2 + params["offset_y"] * unit / params["scale"]
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5,
                         np.arange(w, dtype=np.float32) + 0.5, indexing="ij")
    pitch = gaze[:, 0, None, None].astype(np.float32)
    yaw = gaze[:, 1, None, None].astype(np.float32)
    lids = _eyelids(xs[None] - cx, ys[None] - cy, pitch, params, unit)
    skin = _skin(lids, params)
    # Eyeball: sclera shaded darker towards the corners and under the upper lid.
    u, v = lids["u"], lids["v"]
    rho2 = (u ** 2 + v ** 2) / _EYE_HALF_WIDTH ** 2
    sclera = params["sclera"] * (0.65 + 0.35 * np.sqrt(np.clip(1.0 - 0.8 * rho2, 0, 1)))
    lid_shadow = 1.0 - 0.3 * np.exp(-np.maximum(lids["below_upper"] / unit, 0.0) / 2.0)
    iris = _iris(xs, ys, cx, cy, pitch, yaw, params, unit)

    eye = sclera + iris["iris_cover"] * (iris["iris"] - sclera)
    eye = eye + iris["pupil_cover"] * (params["pupil"] - eye)
    eye = eye * lid_shadow
    opening = lids["opening"]
    image = skin + opening * (eye - skin)
    gx, gy, depth = iris["gx"], iris["gy"], iris["depth"]
    iris_cover = iris["iris_cover"]
    cornea_depth = 0.55 * depth
    return {"image": image.astype(np.float32), "opening": opening,
            "iris": iris_cover * opening,
            "cornea_x": cx + cornea_depth * gx, "cornea_y": cy + cornea_depth * gy}


def _eyelids(px, py, pitch, params: dict, unit) -> dict:
    """The eyelids in the head's frame (rotated by roll), from pixel offsets `px`, `py`
    `[m, H, W]` to the eye centre.

    Returns:
      dict with the head-frame coordinates `u`, `v` (reference pixels; `v` down the
      head), the lid curve `arc` and upper lid `upper`, the pixel distances
      `below_upper` and `above_lower` inside each lid, and the `opening` coverage.
    """
    cos_r, sin_r = np.cos(params["roll"]), np.sin(params["roll"])
    u = (cos_r * px + sin_r * py) / unit
    v = (-sin_r * px + cos_r * py) / unit  # down the head
    t = u / _EYE_HALF_WIDTH
    arc = 1.0 - t ** 2
    darc = -2.0 * t
    upper_height = np.maximum(
        params["opening"] * _UPPER_LID_SHARE + _LID_PER_PITCH * pitch, 1.5)
    lower_height = params["opening"] * (1.0 - _UPPER_LID_SHARE)
    su, sl = params["skew_upper"], params["skew_lower"]
    upper = -upper_height * arc * (1.0 + su * t)
    lower = lower_height * arc * (1.0 + sl * t)
    upper_slope = -upper_height * (darc * (1.0 + su * t) + arc * su) / _EYE_HALF_WIDTH
    lower_slope = lower_height * (darc * (1.0 + sl * t) + arc * sl) / _EYE_HALF_WIDTH
    below_upper = (v - upper) / np.sqrt(1.0 + upper_slope ** 2) * unit  # pixels
    above_lower = (lower - v) / np.sqrt(1.0 + lower_slope ** 2) * unit
    return {"u": u, "v": v, "arc": arc, "upper": upper, "below_upper": below_upper,
            "above_lower": above_lower,
            "opening": _soft(np.minimum(below_upper, above_lower)), "unit": unit}


def _skin(lids: dict, params: dict) -> np.ndarray:
    """Skin: darker in the eye socket, a lid crease above the upper lid, eyelashes on
    the upper lid margin and a faint shadow under the lower lid."""
    u, v, arc, unit = lids["u"], lids["v"], lids["arc"], lids["unit"]
    socket = np.exp(-(u / _SOCKET_RADII[0]) ** 2 - ((v + 1.0) / _SOCKET_RADII[1]) ** 2)
    skin = params["skin"] * (1.0 - 0.15 * socket)
    inner_arc = np.clip(arc, 0.0, 1.0)
    crease = lids["upper"] - params["crease_gap"] * np.sqrt(inner_arc)
    skin = skin * (1.0 - 0.15 * inner_arc * np.exp(-((v - crease) / 1.0) ** 2))
    lash_profile = np.exp(-((lids["below_upper"] / unit + 0.6) / 1.0) ** 2)
    skin = skin * (1.0 - params["lash"] * np.sqrt(inner_arc) * lash_profile)
    return skin * (1.0 - 0.08 * inner_arc
                   * np.exp(-((lids["above_lower"] / unit + 1.5) / 1.5) ** 2))


def _iris(xs, ys, cx, cy, pitch, yaw, params: dict, unit) -> dict:
    """Iris and pupil: discs perpendicular to the gaze, projected orthographically.

    Returns:
      dict with the `iris_cover` and `pupil_cover` coverages, the iris shade `iris`, the
      gaze's image-plane direction `gx`, `gy` and the iris plane's `depth` (pixels).
    """
    cos_p, sin_p = np.cos(pitch), np.sin(pitch)
    gx, gy = -cos_p * np.sin(yaw), -sin_p
    foreshortening = cos_p * np.cos(yaw)
    norm = np.sqrt(gx ** 2 + gy ** 2)
    safe = norm > 1e-6
    ex = np.where(safe, gx / np.where(safe, norm, 1.0), 1.0)
    ey = np.where(safe, gy / np.where(safe, norm, 1.0), 0.0)
    iris_radius = params["iris_radius"] * unit  # pixels
    depth = np.sqrt(_EYEBALL_RADIUS ** 2 - params["iris_radius"] ** 2) * unit
    ix, iy = xs[None] - (cx + depth * gx), ys[None] - (cy + depth * gy)
    iris_distance, iris_rho = _ellipse_distance(
        ix, iy, iris_radius * foreshortening, iris_radius, ex, ey)
    pupil_radius = iris_radius * params["pupil_ratio"]
    pupil_distance, _ = _ellipse_distance(
        ix, iy, pupil_radius * foreshortening, pupil_radius, ex, ey)
    return {"iris_cover": _soft(iris_distance), "pupil_cover": _soft(pupil_distance),
            "iris": params["iris"] * (1.15 - 0.4 * np.clip(iris_rho, 0, 1) ** 4),
            "gx": gx, "gy": gy, "depth": depth}


def _patch_unit(config: SimulatorConfig) -> float:
    """Pixels of the eye patch per reference pixel (of a 35x55 patch)."""
    return min(config.height / HEIGHT, config.width / WIDTH)


def _camera_frame(config: SimulatorConfig) -> tuple[int, int, float]:
    """`(height, width, unit)` of the camera frame a real patch is resampled from.

    The frame holds the patch at `camera_scale` times its resolution plus a margin
    for the resampling filter and the jitter, the eye centred as in the patch.
    """
    unit = _patch_unit(config) * config.camera_scale
    scale = config.camera_scale
    if scale == 1.0 and config.resample_jitter == 0.0:
        return config.height, config.width, unit
    margin = int(math.ceil(scale + config.resample_jitter)) + 1
    return (int(math.ceil(config.height * scale)) + 2 * margin,
            int(math.ceil(config.width * scale)) + 2 * margin, unit)


def _resample_patches(frames: np.ndarray, config: SimulatorConfig, jitter: np.ndarray
                      ) -> np.ndarray:
    """Resamples `[m, FH, FW]` uint8 frames to `[m, height, width]` uint8 patches.

    Each patch covers `camera_scale` frame pixels per pixel, centred on the frame
    centre plus `jitter[i]` `(dx, dy)` frame pixels; the bilinear filter is widened by
    the scale (Pillow's antialiasing), as a warp that reduces resolution must be.
    """
    m, fh, fw = frames.shape
    h, w = config.height, config.width
    scale = config.camera_scale
    patches = np.empty((m, h, w), np.uint8)
    for i in range(m):
        left = fw / 2 - w * scale / 2 + float(jitter[i, 0])
        top = fh / 2 - h * scale / 2 + float(jitter[i, 1])
        patch = Image.fromarray(frames[i].astype(np.float32), mode="F").resize(
            (w, h), Image.BILINEAR, box=(left, top, left + w * scale, top + h * scale))
        patches[i] = np.clip(np.round(np.asarray(patch)), 0, 255).astype(np.uint8)
    return patches


def _add_render_texture(image: np.ndarray, rng: np.random.Generator,
                        config: SimulatorConfig) -> np.ndarray:
    """Multiplies `[m, H, W]` renders by `1 + amplitude * N(0, 1)` per pixel."""
    m, h, w = image.shape
    grain = rng.standard_normal((CHUNK_SIZE, h, w), dtype=np.float32)[:m]
    return image * (1.0 + config.render_texture_amplitude * grain)


def _interpolation_matrix(size: int, cells: int, cell: float) -> np.ndarray:
    """`[size, cells]` linear interpolation weights from cell centres to pixel centres."""
    position = (np.arange(size, dtype=np.float32) + 0.5) / cell + 0.5
    index = position.astype(np.int64)
    fraction = position - index
    weights = np.zeros((size, cells), np.float32)
    weights[np.arange(size), index] = 1.0 - fraction
    weights[np.arange(size), index + 1] = fraction
    return weights


def _upsampled_noise(rng: np.random.Generator, cell: float, h: int, w: int) -> np.ndarray:
    """`[CHUNK_SIZE, h, w]` unit-variance-ish noise, smooth over `cell` pixels."""
    gh, gw = int(math.ceil(h / cell)) + 2, int(math.ceil(w / cell)) + 2
    grid = rng.standard_normal((CHUNK_SIZE, gh, gw), dtype=np.float32)
    rows = _interpolation_matrix(h, gh, cell)
    columns = _interpolation_matrix(w, gw, cell)
    # Bilinear interpolation of unit-variance cells has variance ~(2/3)^2 mid-cell.
    return (rows[None] @ grid @ columns.T) * 1.5


def _gaussian_blur(images: np.ndarray, sigma: np.ndarray, radius: int) -> np.ndarray:
    """Separable Gaussian blur with a per-image sigma, edges replicated.

    Args:
      images: `[m, H, W]` float32.
      sigma: `[m]` pixels, > 0.
      radius: kernel radius in pixels; fixed by the config (not by the batch's sigmas)
        so that an image does not depend on the others in its chunk.
    """
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernel /= kernel.sum(axis=1, keepdims=True)
    h, w = images.shape[1:]
    padded = np.pad(images, ((0, 0), (0, 0), (radius, radius)), mode="edge")
    rows = sum(kernel[:, k, None, None] * padded[:, :, k:k + w]
               for k in range(2 * radius + 1))
    padded = np.pad(rows, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    return sum(kernel[:, k, None, None] * padded[:, k:k + h]
               for k in range(2 * radius + 1)).astype(np.float32)


def _jpeg(image: np.ndarray, quality: int, offset: tuple = (0, 0)) -> np.ndarray:
    """JPEG round trip of a 2D uint8 image whose 8x8 block grid starts `offset`
    `(dy, dx)` pixels before the image (the image sits inside a larger frame)."""
    dy, dx = int(offset[0]) % 8, int(offset[1]) % 8
    framed = np.pad(image, ((dy, 0), (dx, 0)), mode="edge") if dy or dx else image
    buffer = io.BytesIO()
    # A 2D uint8 array becomes a mode "L" (8-bit grayscale) image.
    Image.fromarray(framed).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("L"), dtype=np.uint8)[dy:, dx:]


def _apply_camera(layers: dict, rng: np.random.Generator, m: int,
                  config: SimulatorConfig, frame: tuple) -> np.ndarray:
    """Adds the real-camera effects to one chunk of frames; returns `[m, H, W]` uint8
    patches (`frame` as in `_render_clean`, which rendered `layers` into it)."""
    h, w, unit = frame
    # Draw every random quantity for a full chunk, in a fixed order, then slice to m.
    texture = sum(amplitude * _upsampled_noise(rng, cell * unit, h, w)
                  for cell, amplitude in ((1.5, 0.5), (3.0, 0.7), (7.0, 0.6)))
    glint_dx = _uniform(rng, (-config.glint_offset, config.glint_offset))
    glint_dy = _uniform(rng, (-config.glint_offset, config.glint_offset))
    glint_peak = _uniform(rng, config.glint_range)
    glint_sigma = _uniform(rng, config.glint_sigma_range)
    light = rng.uniform(-1.0, 1.0, size=(CHUNK_SIZE, 3)).astype(np.float32)
    blur_sigma = _uniform(rng, config.blur_sigma_range)
    contrast = _uniform(rng, config.contrast_range)
    brightness = _uniform(rng, config.brightness_range)
    read_noise = _uniform(rng, config.read_noise_range)
    noise = rng.standard_normal((2, CHUNK_SIZE, h, w), dtype=np.float32)
    low, high = config.jpeg_quality_range
    quality = rng.integers(int(low), int(high), size=CHUNK_SIZE, endpoint=True)
    block_offset = rng.integers(0, 8, size=(CHUNK_SIZE, 2))
    jitter = rng.uniform(-config.resample_jitter, config.resample_jitter,
                         size=(CHUNK_SIZE, 2))

    def per_sample(values):
        return values[:m, None, None] if values.ndim == 1 else values[:m]

    image = layers["image"]
    skin = 1.0 - layers["opening"]
    image = image * (1.0 + config.skin_texture_amplitude * skin * texture[:m])

    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5,
                         np.arange(w, dtype=np.float32) + 0.5, indexing="ij")
    gx = layers["cornea_x"] + per_sample(glint_dx) * unit
    gy = layers["cornea_y"] + per_sample(glint_dy) * unit
    sigma = per_sample(glint_sigma) * unit
    glint = np.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2.0 * sigma ** 2))
    image = image + per_sample(glint_peak) * glint * layers["iris"]

    xn, yn = xs / w * 2.0 - 1.0, ys / h * 2.0 - 1.0
    strength = config.illumination_strength
    field = (light[:m, 0, None, None] * xn + light[:m, 1, None, None] * yn
             + light[:m, 2, None, None] * (xn ** 2 + yn ** 2 - 0.5))
    image = image * (1.0 + strength * field)

    radius = max(1, int(math.ceil(3.0 * config.blur_sigma_range[1] * unit)))
    image = _gaussian_blur(image, np.maximum(blur_sigma[:m] * unit, 1e-3), radius)
    image = 0.5 + per_sample(contrast) * (image - 0.5) + per_sample(brightness)
    shot = np.sqrt(config.shot_noise * np.clip(image, 0.0, None)) * noise[0, :m]
    image = image + shot + per_sample(read_noise) * noise[1, :m]
    image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    image = np.stack([_jpeg(img, q, offset)
                      for img, q, offset in zip(image, quality[:m], block_offset[:m])])
    if config.camera_scale == 1.0 and config.resample_jitter == 0.0:
        return image  # the frame is the patch
    return _resample_patches(image, config, jitter[:m])


def render(gaze: np.ndarray, domain: str, seed: int,
           config: SimulatorConfig = SimulatorConfig()) -> np.ndarray:
    """Renders eyes looking in the given directions.

    Args:
      gaze: `[n, 2]` (pitch, yaw), radians, each in (-pi/2, pi/2); see the module
        docstring for the sign conventions. `n == 0` is allowed.
      domain: `'synthetic'` (clean renders) or `'real'` (with camera effects).
      seed: non-negative integer driving every nuisance; the same `(gaze[i], seed, i)`
        gives the same geometry in both domains.
      config: the simulator configuration.

    Returns:
      `[n, height, width, 1]` uint8 images, 0 black, 255 white.

    Raises:
      ValueError: on an unknown domain, a gaze that is not a finite `[n, 2]` array inside
        (-pi/2, pi/2), or a negative or non-integer seed.
    """
    if domain not in DOMAINS:
        raise ValueError(
            f"Expected domain 'synthetic' or 'real'. Received: domain={domain!r}")
    seed = common.check_seed(seed)
    try:
        gaze = np.asarray(gaze, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"Expected gaze as an [n, 2] array of numbers. Received: "
                         f"gaze={gaze!r}") from None
    if gaze.ndim != 2 or gaze.shape[1] != 2:
        raise ValueError(f"Expected gaze of shape [n, 2] (pitch, yaw). Received: "
                         f"gaze.shape={gaze.shape}")
    if not np.all(np.isfinite(gaze)):
        bad = np.flatnonzero(~np.all(np.isfinite(gaze), axis=1))
        raise ValueError(f"Expected finite gaze. Received non-finite values at rows "
                         f"{bad[:10].tolist()}: {gaze[bad[:3]].tolist()}")
    if np.any(np.abs(gaze) >= math.pi / 2):
        bad = np.flatnonzero(np.any(np.abs(gaze) >= math.pi / 2, axis=1))
        raise ValueError(f"Expected gaze angles inside (-pi/2, pi/2) radians. Received "
                         f"at rows {bad[:10].tolist()}: {gaze[bad[:3]].tolist()}")
    n = gaze.shape[0]
    images = np.zeros((n, config.height, config.width), np.uint8)
    for chunk, start in enumerate(range(0, n, CHUNK_SIZE)):
        stop = min(start + CHUNK_SIZE, n)
        params = _draw_geometry(common.generator(seed, _STREAM_GEOMETRY, chunk), config)
        params = {name: value[:stop - start] for name, value in params.items()}
        frame = None if domain == "synthetic" else _camera_frame(config)
        layers = _render_clean(gaze[start:stop], params, config, frame)
        layers["image"] = _add_render_texture(
            layers["image"], common.generator(seed, _STREAM_TEXTURE, chunk), config)
        if domain == "synthetic":
            images[start:stop] = np.round(
                np.clip(layers["image"], 0.0, 1.0) * 255.0).astype(np.uint8)
        else:
            images[start:stop] = _apply_camera(
                layers, common.generator(seed, _STREAM_CAMERA, chunk), stop - start,
                config, frame)
    return images[..., None]


def simulate(n: int, domain: str, seed: int,
             config: SimulatorConfig = SimulatorConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Samples gaze labels and renders them.

    Args:
      n: number of images, >= 0.
      domain: `'synthetic'` or `'real'`.
      seed: non-negative integer; drives labels and nuisances (independent streams).
      config: the simulator configuration.

    Returns:
      `(images, gaze)`: `[n, height, width, 1]` uint8 and `[n, 2]` float32 (pitch, yaw)
      radians. The first k of n samples equal `simulate(k, domain, seed)`.
    """
    gaze = sample_gaze(n, seed, config)
    return render(gaze, domain, seed, config), gaze
