"""A learned glint per image at the refiner's output (`refiner.glint`,
modeling/refiner.py OutputGlint)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling.refiner import OutputGlint, build_refiner, clean_view
from simgan_tf.training import callbacks, train_lib
from test_model import batch
from test_refiner_grain import (assert_every_phase_runs_and_replicas_stay_in_sync,
                                assert_only_the_adversarial_loss_reaches,
                                assert_the_exported_refiner_draws_anew)
from test_refiner_noise import assert_a_restored_refiner_draws_the_same
from test_train import event_tags, tiny_config

SHAPE = (35, 55, 1)
CONFIG = config_lib.RefinerConfig(filters=8, num_blocks=1, glint=0.5)


def glint_of(layer, features, refined=None):
    """What the layer adds to a dark image: `[b, H, W]`."""
    shape = features.shape[:3] + (1,)
    refined = tf.fill(shape, -0.9) if refined is None else refined
    out, clean = layer([refined, refined, tf.constant(features)])
    np.testing.assert_array_equal(clean, refined)
    return (out - refined).numpy()[..., 0]


def test_without_offsets_the_spot_is_a_gaussian_of_the_starting_peak_at_the_centre():
    layer = OutputGlint(0.5, sigma=1.5, max_shift=0.0, seed=1)
    spot = glint_of(layer, np.random.default_rng(0).normal(size=(3, 9, 12, 4)).astype("f4"))
    # With the location kernel at zero the softmax is uniform: the image's centre.
    ys, xs = np.mgrid[:9, :12]
    expected = 0.5 * np.exp(-((ys - 4.0) ** 2 + (xs - 5.5) ** 2) / (2 * 1.5 ** 2))
    for image in spot:
        np.testing.assert_allclose(image, expected, rtol=1e-4, atol=1e-6)
    peak, sigma = layer.peak_and_sigma()
    np.testing.assert_allclose([peak.numpy()[0], sigma.numpy()[0]], [0.5, 1.5], rtol=1e-5)


def test_the_spot_goes_where_the_features_point():
    layer = OutputGlint(0.5, max_shift=0.0, seed=1)
    features = np.zeros((2, 9, 12, 1), "f4")
    features[0, 2, 3] = 1.0
    features[1, 6, 10] = 1.0
    glint_of(layer, features)  # builds the layer
    layer.location_kernel.assign([30.0 / layer.rate])  # logit 30 at the marked pixel
    spot = glint_of(layer, features)
    assert [np.unravel_index(s.argmax(), s.shape) for s in spot] == [(2, 3), (6, 10)]
    np.testing.assert_allclose(spot.max(axis=(1, 2)), 0.5, rtol=1e-4)


def test_the_pupil_placement_starts_at_the_corneal_reflection():
    layer = OutputGlint(0.5, max_shift=0.0, placement="pupil", seed=1)
    images = np.full((2, 9, 13, 1), 0.6, "f4")  # bright, with a dark 2x2 "pupil"
    images[0, 1:3, 2:4] = -0.9   # centre (1.5, 2.5); the image's centre is (4, 6)
    images[1, 6:8, 9:11] = -0.9  # centre (6.5, 9.5)
    features = np.random.default_rng(0).normal(size=(2, 9, 13, 3)).astype("f4")
    out, _ = layer([tf.fill(images.shape, -0.9), tf.fill(images.shape, -0.9),
                    tf.constant(features), tf.constant(images)])
    row, col = layer.location(tf.constant(features), tf.constant(images))
    # 0.6 of the way from the image's centre to the pupil's; the bright pixels weigh
    # exp(-20 * 1.5) each, too little to move it.
    np.testing.assert_allclose(row, [4 + 0.6 * (1.5 - 4), 4 + 0.6 * (6.5 - 4)], atol=1e-4)
    np.testing.assert_allclose(col, [6 + 0.6 * (2.5 - 6), 6 + 0.6 * (9.5 - 6)], atol=1e-4)
    ys, xs = np.mgrid[:9, :13]
    for image, r, c in zip((out + 0.9).numpy()[..., 0], row.numpy(), col.numpy()):
        np.testing.assert_allclose(
            image, 0.5 * np.exp(-((ys - r) ** 2 + (xs - c) ** 2) / 2.0), rtol=1e-4, atol=1e-6)
    # The fraction is learned: at 1 the spot sits on the pupil.
    layer.pupil_ratio_weight.assign(1.0 / layer.rate)
    row, col = layer.location(tf.constant(features), tf.constant(images))
    np.testing.assert_allclose(np.stack([row, col], 1), [[1.5, 2.5], [6.5, 9.5]], atol=1e-4)
    with pytest.raises(ValueError, match="placement='pupil'"):
        layer([images, images, features])
    with pytest.raises(ValueError, match="placement in"):
        OutputGlint(0.5, placement="iris")


def test_a_refiner_with_a_pupil_placed_glint_puts_it_on_the_dark_pupil():
    images = np.full((4, *SHAPE), 0.4, "f4")
    centres = [(10, 15), (20, 40), (25, 20), (12, 35)]
    for image, (r, c) in zip(images, centres):
        image[r - 1:r + 2, c - 1:c + 2] = -0.95
    refiner = build_refiner(SHAPE, config_lib.RefinerConfig(
        filters=8, num_blocks=1, glint=0.5, glint_shift=0.0, glint_placement="pupil"))
    assert refiner.get_layer("glint").placement == "pupil"
    refined, clean = clean_view(refiner)(images)
    glint = (refined - clean).numpy()[..., 0]
    for spot, (r, c) in zip(glint, centres):
        expected = (17 + 0.6 * (r - 17), 27 + 0.6 * (c - 27))
        peak = np.unravel_index(spot.argmax(), spot.shape)
        assert np.hypot(peak[0] - expected[0], peak[1] - expected[1]) <= 1.0
    names = {v.name for v in refiner.trainable_weights}
    assert "pupil_ratio_weight" in names
    gradients = assert_only_the_adversarial_loss_reaches(
        config_lib.RefinerConfig(filters=8, num_blocks=1, glint=0.5,
                                 glint_placement="pupil"), "glint", every_weight_moves=True)
    assert len(gradients) == 4  # location kernel, peak, radius, the pupil's fraction


def test_offsets_are_uniform_within_the_largest_shift_and_fresh_at_every_call():
    layer = OutputGlint(0.5, sigma=0.8, max_shift=2.0, seed=3)
    features = np.zeros((500, 21, 21, 1), "f4")
    spot = glint_of(layer, features)
    ys, xs = np.mgrid[:21, :21]
    total = spot.sum(axis=(1, 2))
    np.testing.assert_allclose(total, 0.5 * 2 * np.pi * 0.8 ** 2, rtol=1e-3)  # not clipped
    for grid in (ys, xs):
        offset = (spot * grid).sum(axis=(1, 2)) / total - 10
        assert np.abs(offset).max() <= 2.0 + 1e-3
        # Uniform on [-2, 2]: mean 0, standard deviation 4 / sqrt(12).
        assert abs(offset.mean()) < 0.15 and abs(offset.std() - 4 / np.sqrt(12)) < 0.1
    assert not np.allclose(spot, glint_of(layer, features))
    # A glint saturates at white.
    bright = layer([tf.fill([500, 21, 21, 1], 0.8), tf.zeros([500, 21, 21, 1]),
                    tf.constant(features)])[0]
    assert float(tf.reduce_max(bright)) == 1.0
    for bad in ({"peak": 0.0}, {"peak": 0.5, "sigma": 0.0},
                {"peak": 0.5, "max_shift": -1.0}, {"peak": 0.5, "rate": 0.0}):
        with pytest.raises(ValueError, match="peak > 0, sigma > 0, max_shift >= 0"):
            OutputGlint(**bad)


def test_a_refiner_with_a_glint_has_a_clean_view_without_it():
    refiner = build_refiner(SHAPE, CONFIG)
    assert isinstance(refiner.get_layer("glint"), OutputGlint)
    refined, clean = clean_view(refiner)(batch()["synthetic"])
    glint = (refined - clean).numpy()
    assert glint.shape == (8, *SHAPE) and glint.min() >= 0
    assert 0.45 < glint.max() <= 0.5 + 1e-5  # a peak of 0.5 within a pixel of its centre
    assert (glint > 0.05).sum(axis=(1, 2, 3)).max() < 40  # one spot, not a map
    with pytest.raises(ValueError, match="glint >= 0, glint_shift >= 0"):
        build_refiner(SHAPE, config_lib.RefinerConfig(glint=-0.1))
    for bad in (build_refiner,
                lambda shape, refiner: config_lib.override(
                    config_lib.get_preset("gaze"),
                    {"refiner.glint_placement": refiner.glint_placement}).validate()):
        with pytest.raises(ValueError, match=r"glint_placement in \('features', 'pupil'\)"):
            bad(SHAPE, config_lib.RefinerConfig(glint=0.5, glint_placement="iris"))
    with pytest.raises(ValueError, match="glint_shift >= 0"):
        config_lib.override(config_lib.get_preset("gaze"),
                            {"refiner.glint_shift": -1.0}).validate()
    every = build_refiner(SHAPE, config_lib.RefinerConfig(
        filters=8, num_blocks=1, grain=0.03, highlights=0.02, glint=0.5, lighting=0.05))
    assert [layer.name for layer in every.layers[-4:]] == [
        "grain", "highlights", "glint", "lighting"]


def test_only_the_adversarial_loss_reaches_the_glint():
    gradients = assert_only_the_adversarial_loss_reaches(CONFIG, "glint",
                                                         every_weight_moves=True)
    assert len(gradients) == 3  # location kernel, peak, radius


def test_the_offset_generator_is_checkpointed_so_a_restored_refiner_draws_the_same(tmp_path):
    assert_a_restored_refiner_draws_the_same(CONFIG, tmp_path)


@pytest.mark.parametrize("placement", config_lib.GLINT_PLACEMENTS)
def test_every_phase_runs_with_a_glint_and_replicas_stay_in_sync(mirrored_strategy,
                                                                  placement):
    config = dataclasses.replace(CONFIG, glint_placement=placement)
    assert_every_phase_runs_and_replicas_stay_in_sync(config, "glint", OutputGlint,
                                                      mirrored_strategy)


@pytest.mark.parametrize("placement", config_lib.GLINT_PLACEMENTS)
def test_a_run_with_a_glint_logs_its_shape_and_exports_it(shifted_data_dir, tmp_path,
                                                          placement):
    config = config_lib.override(tiny_config(shifted_data_dir), {
        "refiner.glint": 0.5, "refiner.glint_placement": placement})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    shape = callbacks.glint_shape(result.model.refiner)
    assert list(shape) == ["peak", "sigma"]
    assert 0.2 < shape["peak"] < 1.0 and 0.5 < shape["sigma"] < 2.0
    assert callbacks.glint_shape(build_refiner(SHAPE)) == {}
    tags = event_tags(str(tmp_path / "run" / "logs" / "train"))
    assert {callbacks.GLINT_TAG.format(name) for name in ("peak", "sigma")} <= set(tags)
    assert_the_exported_refiner_draws_anew(result.export_path)


def test_the_refiner_glint_flag_sets_the_field():
    overrides = config_lib.command_line_overrides({"refiner_glint": 0.4}, [])
    assert overrides == {"refiner.glint": 0.4}
    assert config_lib.command_line_overrides({"glint_placement": "pupil"}, []) == {
        "refiner.glint_placement": "pupil"}
    config = config_lib.override(config_lib.get_preset("gaze"), overrides)
    assert config.refiner.glint == 0.4 and config_lib.get_preset("gaze").refiner.glint == 1.0
