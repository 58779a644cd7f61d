"""Learned highlights at a random offset per image (`refiner.highlights`,
modeling/refiner.py OutputHighlights and shift_images)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling.refiner import (OutputHighlights, build_refiner, clean_view,
                                        shift_images)
from simgan_tf.training import train_lib
from test_model import batch
from test_refiner_grain import (assert_every_phase_runs_and_replicas_stay_in_sync,
                                assert_only_the_adversarial_loss_reaches,
                                assert_the_exported_refiner_draws_anew)
from test_refiner_noise import assert_a_restored_refiner_draws_the_same
from test_train import tiny_config

SHAPE = (35, 55, 1)
CONFIG = config_lib.RefinerConfig(filters=8, num_blocks=1, highlights=0.02)


def test_whole_pixel_shifts_move_the_image_and_repeat_its_edges():
    images = np.arange(2 * 4 * 5 * 2, dtype=np.float32).reshape(2, 4, 5, 2) + 1
    shifted = shift_images(tf.constant(images), tf.constant([1.0, -2.0]),
                           tf.constant([-1.0, 3.0])).numpy()
    # One down and one left; two up and three right; beyond the edge, the edge pixel.
    rows = [np.clip(np.arange(4) - 1, 0, 3), np.clip(np.arange(4) + 2, 0, 3)]
    cols = [np.clip(np.arange(5) + 1, 0, 4), np.clip(np.arange(5) - 3, 0, 4)]
    for i in range(2):
        np.testing.assert_array_equal(shifted[i], images[i][rows[i]][:, cols[i]])
    flat = tf.fill([2, 4, 5, 1], 0.3)
    np.testing.assert_allclose(shift_images(flat, tf.constant([0.4, -1.7]),
                                            tf.constant([2.5, 0.0])), flat, atol=1e-7)


def test_fractional_shifts_interpolate_linearly_and_pass_gradients():
    row = tf.constant([[0.0, 0.0, 4.0, 0.0, 0.0]])[None, :, :, None]  # [1, 1, 5, 1]
    shifted = shift_images(row, tf.constant([0.0]), tf.constant([0.25]))
    np.testing.assert_allclose(shifted[0, 0, :, 0], [0, 0, 3, 1, 0], atol=1e-6)
    shifted = shift_images(row, tf.constant([0.0]), tf.constant([-1.5]))
    np.testing.assert_allclose(shifted[0, 0, :, 0], [2, 2, 0, 0, 0], atol=1e-6)
    shifted = shift_images(row, tf.constant([0.0]), tf.constant([2.5]))
    np.testing.assert_allclose(shifted[0, 0, :, 0], [0, 0, 0, 0, 2], atol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(row)
        total = tf.reduce_sum(shift_images(row, tf.constant([0.0]), tf.constant([0.25]))
                              * tf.constant([1.0, 2.0, 3.0, 4.0, 5.0])[None, None, :, None])
    # out[x] = 0.75 row[x] + 0.25 row[x - 1], so d total / d row[x] = 0.75 w[x] +
    # 0.25 w[x + 1]; the first pixel also stands in for the one before the edge
    # (+ 0.25 w[0]).
    np.testing.assert_allclose(tape.gradient(total, row)[0, 0, :, 0],
                               [1.5, 2.25, 3.25, 4.25, 3.75], atol=1e-6)


def spot_layer(max_shift=2.0, seed=3):
    """A layer whose map is a bright spot where the feature is 1, about 0 elsewhere."""
    layer = OutputHighlights(0.01, max_shift=max_shift, seed=seed)
    features = np.zeros([500, 15, 15, 1], np.float32)
    features[:, 7, 7] = 1.0
    refined = tf.fill([500, 15, 15, 1], -0.5)
    layer([refined, refined, tf.constant(features)])
    # softplus(rate * (W h + b)): softplus(-20), about 2e-9, off the spot and
    # softplus(1), about 1.31, at it.
    layer.map_bias.assign([-20.0 / layer.rate])
    layer.map_kernel.assign([[21.0 / layer.rate]])
    return layer, refined, tf.constant(features)


def test_the_highlight_map_is_added_at_a_random_offset_per_image_within_the_largest_shift():
    layer, refined, features = spot_layer()
    out, clean = layer([refined, refined, features])
    np.testing.assert_array_equal(clean, refined)
    spot = (out - refined).numpy()[..., 0]
    peak = float(tf.nn.softplus(1.0))
    np.testing.assert_allclose(spot.sum(axis=(1, 2)), peak, rtol=1e-3)  # shifted, not lost
    ys, xs = np.mgrid[:15, :15]
    centre_y = (spot * ys).sum(axis=(1, 2)) / spot.sum(axis=(1, 2)) - 7
    centre_x = (spot * xs).sum(axis=(1, 2)) / spot.sum(axis=(1, 2)) - 7
    for offset in (centre_y, centre_x):
        assert np.abs(offset).max() <= 2.0 + 1e-3
        # Uniform on [-2, 2]: mean 0, standard deviation 4 / sqrt(12).
        assert abs(offset.mean()) < 0.15 and abs(offset.std() - 4 / np.sqrt(12)) < 0.1
    assert abs(np.corrcoef(centre_y, centre_x)[0, 1]) < 0.12
    again, _ = layer([refined, refined, features])
    assert not np.allclose(out, again)
    still, _ = spot_layer(max_shift=0.0)[0]([refined, refined, features])
    assert np.all(np.argmax(still.numpy().reshape(500, -1), axis=1) == 7 * 15 + 7)
    # A highlight saturates at white.
    bright, _ = layer([tf.fill([500, 15, 15, 1], 0.5), refined, features])
    assert float(tf.reduce_max(bright)) == 1.0
    for bad in ({"initial": 0.0}, {"initial": 0.1, "max_shift": -1.0},
                {"initial": 0.1, "rate": 0.0}):
        with pytest.raises(ValueError, match="initial > 0, max_shift >= 0 and rate > 0"):
            OutputHighlights(**bad)


def test_a_refiner_with_highlights_starts_at_its_initial_value_and_has_a_clean_view():
    keras.utils.set_random_seed(0)
    refiner = build_refiner(SHAPE, CONFIG)
    assert isinstance(refiner.get_layer("highlights"), OutputHighlights)
    x = batch()["synthetic"]
    refined, clean = clean_view(refiner)(x)
    assert refined.shape == clean.shape == (8, *SHAPE)
    # The map starts at 0.02 everywhere, and a uniform map stays uniform when shifted.
    np.testing.assert_allclose(refined - clean, 0.02, rtol=1e-4)
    with pytest.raises(ValueError, match="highlights >= 0, highlight_shift >= 0"):
        build_refiner(SHAPE, config_lib.RefinerConfig(highlights=-0.1))
    with pytest.raises(ValueError, match="highlight_shift >= 0"):
        config_lib.override(config_lib.get_preset("gaze"),
                            {"refiner.highlight_shift": -1.0}).validate()
    both = build_refiner(SHAPE, config_lib.RefinerConfig(
        filters=8, num_blocks=1, grain=0.03, highlights=0.02, lighting=0.05))
    assert [layer.name for layer in both.layers[-3:]] == ["grain", "highlights", "lighting"]
    np.testing.assert_allclose(clean_view(both)(x)[1], clean_view(both)(x)[1], atol=1e-6)


def test_only_the_adversarial_loss_reaches_the_highlights():
    assert_only_the_adversarial_loss_reaches(CONFIG, "highlights", every_weight_moves=False)


def test_the_offset_generator_is_checkpointed_so_a_restored_refiner_draws_the_same(tmp_path):
    assert_a_restored_refiner_draws_the_same(CONFIG, tmp_path)


def test_every_phase_runs_with_highlights_and_replicas_stay_in_sync(mirrored_strategy):
    assert_every_phase_runs_and_replicas_stay_in_sync(CONFIG, "highlights", OutputHighlights,
                                                      mirrored_strategy)


def test_a_run_with_highlights_trains_and_exports_them(shifted_data_dir, tmp_path):
    config = config_lib.override(tiny_config(shifted_data_dir), {"refiner.highlights": 0.02})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    assert isinstance(result.model.refiner.get_layer("highlights"), OutputHighlights)
    assert_the_exported_refiner_draws_anew(result.export_path)


def test_the_refiner_highlights_flag_sets_the_field():
    overrides = config_lib.command_line_overrides({"refiner_highlights": 0.03}, [])
    assert overrides == {"refiner.highlights": 0.03}
    config = config_lib.override(config_lib.get_preset("gaze"), overrides)
    assert config.refiner.highlights == 0.03
    assert config_lib.get_preset("gaze").refiner.highlights == 0
