"""Tests of the procedural eye simulator: API, determinism, conventions and domain gap."""

import dataclasses
import math

import numpy as np
import pytest

from simgan_tf.simulators import eyes
from simgan_tf.simulators.eyes import SimulatorConfig

# Fixed tones, a wide opening and no render texture, so that regions can be measured by
# thresholds.
MEASURE_CONFIG = SimulatorConfig(
    opening_range=(15.0, 15.0), iris_radius_range=(6.5, 6.5), skin_range=(0.95, 0.95),
    sclera_range=(0.95, 0.95), iris_range=(0.1, 0.1), pupil_range=(0.03, 0.03),
    scale_range=(1.0, 1.0), roll_range=(0.0, 0.0), lash_range=(0.0, 0.0),
    render_texture_amplitude=0.0)
# Iris coverage of a pixel of MEASURE_CONFIG's images: sclera and skin are brighter than
# 0.6, the iris darker than 0.12.


def _iris_fraction(values):
    return np.clip((0.5 - values / 255.0) / (0.5 - 0.12), 0.0, 1.0)


def _constant_gaze(n, pitch, yaw):
    return np.tile(np.array([[pitch, yaw]], np.float32), (n, 1))


def _pupil_centres(images):
    """`[n, 2]` (x, y) pixel centroids of the darkest blob of `[n, H, W, 1]` images."""
    images = images[..., 0].astype(np.float32)
    # Average 3x3 first so that noise does not pick isolated dark pixels.
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = images.shape[1:]
    smooth = sum(padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9
    low = smooth.min(axis=(1, 2), keepdims=True)
    weight = np.clip(low + 12.0 - smooth, 0.0, None)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    total = weight.sum(axis=(1, 2))
    return np.stack([(weight * xs).sum(axis=(1, 2)) / total,
                     (weight * ys).sum(axis=(1, 2)) / total], axis=-1)


def _dark_width(images, rows):
    """Width in pixels of the iris on the given row of each image (soft threshold).

    Only the middle 26 columns count: they hold the iris and sclera, not the skin.
    """
    values = images[np.arange(len(images)), rows, 14:41, 0].astype(np.float32)
    return _iris_fraction(values).sum(axis=-1)


@pytest.mark.parametrize("domain", eyes.DOMAINS)
@pytest.mark.parametrize("n", [0, 1, 7])
def test_render_shape_and_dtype(domain, n):
    gaze = eyes.sample_gaze(n, seed=3)
    images = eyes.render(gaze, domain, seed=3)
    assert images.shape == (n, eyes.HEIGHT, eyes.WIDTH, 1)
    assert images.dtype == np.uint8


def test_simulate_returns_images_and_gaze():
    images, gaze = eyes.simulate(5, "real", seed=0)
    assert images.shape == (5, 35, 55, 1) and images.dtype == np.uint8
    assert gaze.shape == (5, 2) and gaze.dtype == np.float32
    np.testing.assert_array_equal(gaze, eyes.sample_gaze(5, seed=0))


def test_other_image_size():
    config = SimulatorConfig(height=70, width=110)
    images, _ = eyes.simulate(3, "real", seed=1, config=config)
    assert images.shape == (3, 70, 110, 1)


@pytest.mark.parametrize("domain", eyes.DOMAINS)
def test_same_seed_same_bytes_different_seed_different(domain):
    first, gaze = eyes.simulate(20, domain, seed=5)
    again, _ = eyes.simulate(20, domain, seed=5)
    other = eyes.render(gaze, domain, seed=6)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()
    assert np.mean(first != other) > 0.2


@pytest.mark.parametrize("domain", eyes.DOMAINS)
def test_prefix_consistent_across_chunks(domain):
    n = eyes.CHUNK_SIZE + 30
    images, gaze = eyes.simulate(n, domain, seed=9)
    for k in (1, 17, eyes.CHUNK_SIZE + 3):
        prefix_images, prefix_gaze = eyes.simulate(k, domain, seed=9)
        np.testing.assert_array_equal(prefix_gaze, gaze[:k])
        np.testing.assert_array_equal(prefix_images, images[:k])


def test_sample_gaze_is_uniform_in_ranges():
    config = SimulatorConfig()
    gaze = eyes.sample_gaze(20_000, seed=1, config=config)
    for column, (low, high) in enumerate((config.pitch_range, config.yaw_range)):
        values = gaze[:, column]
        assert low <= values.min() and values.max() <= high
        assert values.min() < low + 0.01 and values.max() > high - 0.01
        np.testing.assert_allclose(values.mean(), (low + high) / 2, atol=0.01)
        np.testing.assert_allclose(values.std(), (high - low) / math.sqrt(12), rtol=0.02)
    # Pitch and yaw are independent.
    assert abs(np.corrcoef(gaze.T)[0, 1]) < 0.03


@pytest.mark.parametrize("axis, angle_index, sign_of_move", [
    # yaw > 0 moves the pupil to the image's left (x decreases).
    (0, 1, -1),
    # pitch > 0 moves the pupil up the image (y decreases).
    (1, 0, -1),
])
def test_pupil_moves_with_gaze_as_documented(axis, angle_index, sign_of_move):
    n = 32
    angle = 0.3
    low, high = np.zeros((n, 2), np.float32), np.zeros((n, 2), np.float32)
    low[:, angle_index], high[:, angle_index] = -angle, angle
    centre_low = _pupil_centres(eyes.render(low, "synthetic", seed=2))
    centre_high = _pupil_centres(eyes.render(high, "synthetic", seed=2))
    move = centre_high[:, axis] - centre_low[:, axis]
    assert np.all(np.sign(move) == sign_of_move)
    # The projection: 2 * depth * sin(angle) with depth ~ 11.4 px times head scale.
    assert 4.0 < np.mean(np.abs(move)) < 9.0
    # The other coordinate barely moves.
    assert np.mean(np.abs(centre_high[:, 1 - axis] - centre_low[:, 1 - axis])) < 0.6


def test_pupil_is_centred_at_zero_gaze():
    config = SimulatorConfig(offset_range=(0.0, 0.0))
    images = eyes.render(np.zeros((16, 2)), "synthetic", seed=4, config=config)
    centres = _pupil_centres(images)
    np.testing.assert_allclose(centres.mean(axis=0), [55 / 2, 35 / 2], atol=0.5)


@pytest.mark.parametrize("yaw", [0.5, -0.5])
def test_iris_is_foreshortened_along_the_rotation(yaw):
    n = 8
    straight = eyes.render(_constant_gaze(n, 0.0, 0.0), "synthetic", seed=1,
                                config=MEASURE_CONFIG)
    turned = eyes.render(_constant_gaze(n, 0.0, yaw), "synthetic", seed=1,
                              config=MEASURE_CONFIG)
    rows = _pupil_centres(straight)[:, 1].astype(int)
    width_straight = _dark_width(straight, rows)
    width_turned = _dark_width(turned, rows)
    np.testing.assert_allclose(width_straight, 13.0, atol=1.0)  # 2 x iris radius 6.5
    np.testing.assert_allclose(width_turned / width_straight, math.cos(yaw), atol=0.04)


def _upper_lid_rows(images, column):
    """Row (pixels, subpixel) where the sclera starts below the upper lid at a column."""
    values = images[:, :, column, 0].astype(np.float32) / 255.0
    is_sclera = np.clip((values - 0.6) / (0.8 - 0.6), 0.0, 1.0)  # skin 0.45, sclera ~0.9
    top = images.shape[1] // 2
    # Count non-sclera coverage above the eye centre: the lid's row.
    return np.sum(1.0 - is_sclera[:, :top], axis=1)


def test_upper_lid_rises_when_looking_up():
    n = 8
    config = dataclasses.replace(MEASURE_CONFIG, skin_range=(0.45, 0.45),
                                 offset_range=(0.0, 0.0), lid_skew_range=(0.0, 0.0))
    up = eyes.render(_constant_gaze(n, 0.3, 0.0), "synthetic", seed=1, config=config)
    down = eyes.render(_constant_gaze(n, -0.3, 0.0), "synthetic", seed=1,
                            config=config)
    # 10 pixels left of the centre the sclera, not the iris, is below the lid. The lid
    # moves by 6 px per radian of pitch times the arc (1 - (10 / 21)^2).
    rise = _upper_lid_rows(down, 17) - _upper_lid_rows(up, 17)
    np.testing.assert_allclose(rise, 6.0 * 0.6 * (1 - (10 / 21) ** 2), atol=0.4)


@pytest.mark.parametrize("opening, min_ratio, max_ratio", [
    (9.0, 0.0, 0.8),  # upper lid 0.6 * 9 + 6 * 0.35 = 7.5 px above the eye centre
    (15.0, 0.93, 1.07),  # 11.1 px: the iris top (10 px) stays visible
])
def test_upper_lid_occludes_the_top_of_the_iris(opening, min_ratio, max_ratio):
    n = 8
    pitch = 0.35
    config = dataclasses.replace(MEASURE_CONFIG, opening_range=(opening, opening),
                                 offset_range=(0.0, 0.0))
    images = eyes.render(_constant_gaze(n, pitch, 0.0), "synthetic", seed=1,
                              config=config)
    visible = _iris_fraction(images[..., 0].astype(np.float32))
    # The documented projection: depth sqrt(13^2 - 6.5^2) times sin(pitch), upwards.
    iris_y = 35 / 2 - math.sqrt(13.0 ** 2 - 6.5 ** 2) * math.sin(pitch)
    # Row i spans [i, i + 1): split the row that holds iris_y.
    above_share = np.clip(iris_y - np.arange(eyes.HEIGHT), 0.0, 1.0)[None, :, None]
    above = (visible * above_share).sum(axis=(1, 2))
    below = (visible * (1.0 - above_share)).sum(axis=(1, 2))
    assert np.all(above / below >= min_ratio) and np.all(above / below <= max_ratio)


def test_synthetic_edges_are_antialiased():
    images = eyes.render(np.zeros((8, 2)), "synthetic", seed=0,
                              config=MEASURE_CONFIG)
    values = images[..., 0].astype(int)
    # Intermediate levels between the iris (~29) and the sclera (~230) exist on edges.
    assert np.all(np.sum((values > 80) & (values < 180), axis=(1, 2)) > 10)


def test_real_differs_from_synthetic_in_appearance_only():
    n = 64
    gaze = eyes.sample_gaze(n, seed=11)
    synthetic = eyes.render(gaze, "synthetic", seed=11)
    real = eyes.render(gaze, "real", seed=11)

    # Same geometry: the pupil is at the same place.
    shift = np.linalg.norm(_pupil_centres(real) - _pupil_centres(synthetic), axis=-1)
    assert np.mean(shift) < 1.2 and np.max(shift) < 3.0

    # The camera's grain where the render is flat: without the render texture a flat
    # skin region (top-left corner) is smooth in synthetic and noisy in real.
    def high_frequency(images):
        patch = images[:, :5, :8, 0].astype(np.float32)
        laplacian = (4 * patch[:, 1:-1, 1:-1] - patch[:, :-2, 1:-1] - patch[:, 2:, 1:-1]
                     - patch[:, 1:-1, :-2] - patch[:, 1:-1, 2:])
        return np.mean(laplacian ** 2, axis=(1, 2))
    flat = dataclasses.replace(SimulatorConfig(), render_texture_amplitude=0.0)
    flat_synthetic = eyes.render(gaze, "synthetic", seed=11, config=flat)
    flat_real = eyes.render(gaze, "real", seed=11, config=flat)
    assert np.median(high_frequency(flat_synthetic)) < 5.0
    assert np.median(high_frequency(flat_real)) > 10 * np.median(high_frequency(flat_synthetic)) + 20
    # With it, the camera's blur and the resampling out of the camera frame take much of
    # the render's pixel-scale grain away; the sensor noise puts some back.
    assert np.median(high_frequency(real)) < 0.7 * np.median(high_frequency(synthetic))

    # Lower contrast.
    def spread(images):
        p5, p95 = np.percentile(images[..., 0], [5, 95], axis=(1, 2))
        return p95 - p5
    assert np.mean(spread(real)) < 0.85 * np.mean(spread(synthetic))

    # Blurrier edges inside the eye although noisier: the sharpest step is smaller.
    def sharpest_step(images):
        return np.abs(np.diff(images[..., 0].astype(np.float32), axis=2)).max(axis=(1, 2))
    assert np.mean(sharpest_step(real)) < 0.7 * np.mean(sharpest_step(synthetic))


def test_render_texture_is_pixel_scale_multiplicative_grain():
    gaze = eyes.sample_gaze(32, seed=5)
    textured = eyes.render(gaze, "synthetic", seed=5)[..., 0].astype(np.float64)
    flat = dataclasses.replace(SimulatorConfig(), render_texture_amplitude=0.0)
    clean = eyes.render(gaze, "synthetic", seed=5, config=flat)[..., 0].astype(np.float64)
    bright = clean > 100  # skin and sclera, where 8-bit rounding is small against the grain
    ratio = textured[bright] / clean[bright] - 1.0
    assert abs(np.mean(ratio)) < 0.004
    assert np.std(ratio) == pytest.approx(0.04, rel=0.1)
    # Independent from pixel to pixel: neighbours are uncorrelated.
    grain = textured / np.maximum(clean, 1.0) - 1.0
    both = bright[:, :, 1:] & bright[:, :, :-1]
    correlation = np.corrcoef(grain[:, :, 1:][both], grain[:, :, :-1][both])[0, 1]
    assert abs(correlation) < 0.05
    # It does not move the geometry: the pupil stays where the label puts it.
    shift = np.linalg.norm(_pupil_centres(textured[..., None]) - _pupil_centres(clean[..., None]),
                           axis=-1)
    assert np.max(shift) < 0.5


def test_real_has_a_glint_near_the_pupil():
    # The brightest spot inside the iris region is brighter than anything there in the
    # synthetic render.
    n = 32
    gaze = np.zeros((n, 2), np.float32)
    synthetic = eyes.render(gaze, "synthetic", seed=3, config=MEASURE_CONFIG)
    no_glint = dataclasses.replace(MEASURE_CONFIG, glint_range=(0.0, 0.0))
    with_glint = eyes.render(gaze, "real", seed=3, config=MEASURE_CONFIG)
    without = eyes.render(gaze, "real", seed=3, config=no_glint)
    # Within 4 pixels of the pupil centre (the glint is within 2 of the cornea centre).
    x, y = np.round(_pupil_centres(synthetic)).astype(int).T
    def near_pupil(images):
        return np.stack([image[b - 4:b + 4, a - 4:a + 4, 0]
                         for image, a, b in zip(images, x, y)]).astype(int)
    assert near_pupil(synthetic).max() < 40
    brighter = near_pupil(with_glint).max(axis=(1, 2)) - near_pupil(without).max(axis=(1, 2))
    assert np.mean(brighter) > 20


@pytest.mark.parametrize("kwargs, message", [
    (dict(gaze=np.zeros((2, 2)), domain="fake", seed=0), "domain='fake'"),
    (dict(gaze=np.zeros((3,)), domain="real", seed=0), "gaze.shape=(3,)"),
    (dict(gaze=np.zeros((3, 3)), domain="real", seed=0), "gaze.shape=(3, 3)"),
    (dict(gaze=[[0.0, float("nan")]], domain="real", seed=0), "non-finite"),
    (dict(gaze=[[0.0, 0.1], [0.0, 2.0]], domain="real", seed=0), "rows [1]"),
    (dict(gaze=[["a", "b"]], domain="real", seed=0), "gaze="),
    (dict(gaze=np.zeros((1, 2)), domain="real", seed=-1), "seed=-1"),
    (dict(gaze=np.zeros((1, 2)), domain="real", seed=1.5), "seed=1.5"),
])
def test_render_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match="Received") as error:
        eyes.render(**kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize("function", [
    lambda: eyes.simulate(-1, "real", seed=0),
    lambda: eyes.sample_gaze(2.5, seed=0),
])
def test_counts_are_validated(function):
    with pytest.raises(ValueError, match="Received: n="):
        function()


@pytest.mark.parametrize("kwargs, message", [
    (dict(yaw_range=(0.5, -0.5)), "yaw_range"),
    (dict(pitch_range=(-2.0, 0.0)), "pitch_range"),
    (dict(blur_sigma_range=(1.0,)), "blur_sigma_range"),
    (dict(jpeg_quality_range=(60, 120)), "jpeg_quality_range"),
    (dict(height=4), "height=4"),
    (dict(shot_noise=-1.0), "shot_noise"),
    (dict(camera_scale=0.5), "camera_scale=0.5"),
    (dict(resample_jitter=2.0), "resample_jitter=2.0"),
])
def test_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(**kwargs)


def _period8_share(images):
    """Per image, the share of the column-difference energy profile's variation that
    is periodic with period 8 (JPEG's block grid at some phase): the magnitude of the
    profile's period-8 Fourier coefficient over its total absolute deviation."""
    values = images[..., 0].astype(np.float32)
    profile = np.mean(np.diff(values, axis=2) ** 2, axis=1)  # [n, W - 1]
    profile = profile - profile.mean(axis=1, keepdims=True)
    phase = np.exp(2j * np.pi * np.arange(profile.shape[1]) / 8.0)
    return np.abs(profile @ phase) / np.sum(np.abs(profile), axis=1)


def test_jpeg_offset_moves_the_block_grid():
    # A smooth ramp plus noise, compressed hard: block edges sit where the grid puts them.
    rng = np.random.default_rng(0)
    ramp = np.linspace(40, 200, 48, dtype=np.float32)[None, :] * np.ones((40, 1), np.float32)
    image = np.clip(ramp + rng.normal(0, 12, ramp.shape), 0, 255).astype(np.uint8)
    def boundary_columns(decoded):
        jumps = np.mean(np.abs(np.diff(decoded.astype(np.float32), axis=1)), axis=0)
        return {int(c) % 8 for c in np.argsort(jumps)[-4:]}
    aligned = eyes._jpeg(image, 10)
    shifted = eyes._jpeg(image, 10, offset=(0, 3))
    assert aligned.shape == shifted.shape == image.shape
    # Differences between columns 8k+7 and 8k+8 (index 7 mod 8) with the grid at 0; the
    # grid shifted 3 pixels left of the image puts them between 8k+4 and 8k+5.
    assert boundary_columns(aligned) == {7}
    assert boundary_columns(shifted) == {4}


def test_real_patches_are_resampled_out_of_a_finer_camera_frame():
    # Hard compression (quality 10) makes the 8x8 block grid visible. Applied to the
    # patch itself (camera_scale 1) the column profile of an image is clearly periodic
    # with period 8, beyond what the eye's own content gives (measured at quality 95);
    # resampled out of the default 1.6x finer frame it is not.
    gaze = eyes.sample_gaze(64, seed=2)
    def render(quality, **camera):
        config = dataclasses.replace(SimulatorConfig(), jpeg_quality_range=(quality, quality),
                                     **camera)
        return eyes.render(gaze, "real", seed=2, config=config)
    patch = dict(camera_scale=1.0, resample_jitter=0.0)
    blocky, blocky_floor = render(10, **patch), render(95, **patch)
    resampled, resampled_floor = render(10), render(95)
    assert blocky.shape == resampled.shape == (64, 35, 55, 1)
    share = lambda images: np.median(_period8_share(images))
    assert share(blocky) > 1.6 * share(blocky_floor)
    assert share(resampled) < 1.25 * share(resampled_floor)
    # The eye is where the synthetic render puts it, frame or not.
    synthetic = eyes.render(gaze, "synthetic", seed=2)
    for real in (blocky, resampled):
        shift = np.linalg.norm(_pupil_centres(real) - _pupil_centres(synthetic), axis=-1)
        assert np.mean(shift) < 1.2
