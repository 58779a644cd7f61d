"""Random per-image lighting at the refiner's output (`refiner.lighting`,
modeling/refiner.py OutputLighting)."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling import losses
from simgan_tf.modeling.refiner import (LIGHTING_TERMS, OutputLighting, build_refiner,
                                        clean_view, light, lighting_field)
from simgan_tf.modeling.schedule import Phase
from simgan_tf.training import callbacks, train_lib
from test_model import batch
from test_refiner_grain import (assert_every_phase_runs_and_replicas_stay_in_sync,
                                assert_the_exported_refiner_draws_anew)
from test_refiner_noise import assert_a_restored_refiner_draws_the_same
from test_stabilising import build as build_simgan
from test_train import event_tags, tiny_config

SHAPE = (35, 55, 1)
CONFIG = config_lib.RefinerConfig(filters=8, num_blocks=1, lighting=0.05)


def test_the_field_basis_is_degree_two_polynomials_that_average_to_zero():
    field = lighting_field(4, 6)
    assert field.shape == (4, 6, 5) and field.dtype == np.float32
    np.testing.assert_allclose(field.mean(axis=(0, 1)), 0.0, atol=1e-6)
    u = (np.arange(6) + 0.5) / 6 * 2 - 1
    v = (np.arange(4) + 0.5) / 4 * 2 - 1
    np.testing.assert_allclose(field[2, :, 0], u, atol=1e-6)  # u varies across
    np.testing.assert_allclose(field[:, 3, 1], v, atol=1e-6)  # v varies down
    np.testing.assert_allclose(field[1, 4, 2], u[4] ** 2 - np.mean(u ** 2), atol=1e-6)
    np.testing.assert_allclose(field[3, 0, 3], v[3] ** 2 - np.mean(v ** 2), atol=1e-6)
    np.testing.assert_allclose(field[0, 5, 4], u[5] * v[0], atol=1e-6)


def test_light_against_a_hand_computation():
    images = np.array([[[-0.5, 0.2], [0.6, 1.0]]], np.float32)[..., None]  # [1, 2, 2, 1]
    field = lighting_field(2, 2)
    codes = np.array([[0.03, -0.2, 0.1, -0.05, 0.02, 0.04, 0.3]], np.float32)
    lit = light(tf.constant(images), tf.constant(codes), tf.constant(field)).numpy()
    for y in range(2):
        for x in range(2):
            i = (images[0, y, x, 0] + 1) / 2
            f = 1 + sum(codes[0, 2 + k] * field[y, x, k] for k in range(5))
            expected = 2 * ((0.5 + 0.8 * (i - 0.5) + 0.03) * f) - 1
            np.testing.assert_allclose(lit[0, y, x, 0], min(expected, 1.0), rtol=1e-5)
    # A zero code is the identity; a bright code saturates at 1 like a camera.
    np.testing.assert_allclose(light(images, tf.zeros([1, 7]), field), images, atol=1e-6)
    bright = light(images, tf.constant([[0.6, 0, 0, 0, 0, 0, 0]]), field).numpy()
    assert bright.max() == 1.0 and np.all(bright >= images)


def fitted_codes(lit: np.ndarray) -> np.ndarray:
    """Per image, least-squares coefficients of `(lit + 1) / 2` of a flat mid-grey image
    on the basis `[1, P_1 .. P_5]`."""
    _, h, w, _ = lit.shape
    basis = np.concatenate([np.ones([h * w, 1]), lighting_field(h, w).reshape(h * w, 5)], 1)
    intensity = ((lit + 1) / 2).reshape(len(lit), h * w).T
    return np.linalg.lstsq(basis, intensity, rcond=None)[0].T  # [b, 6]


def test_every_image_gets_its_own_lighting_at_the_initial_std_drawn_anew_at_every_call():
    layer = OutputLighting(0.05, seed=3)
    grey = tf.zeros([4000, 12, 16, 1])  # intensity 0.5: the contrast gain has no effect
    lit, clean = layer([grey, grey])
    np.testing.assert_array_equal(clean, grey)
    coefficients = fitted_codes(lit.numpy())
    # i' = (0.5 + s z_b) (1 + sum s z_k P_k): the mean is 0.5 + s z_b, and the field's
    # coefficients are (0.5 + s z_b) s z_k, about 0.5 s z_k.
    assert abs(coefficients[:, 0].std() - 0.05) < 0.003
    assert abs(coefficients[:, 0].mean() - 0.5) < 0.003
    np.testing.assert_allclose(coefficients[:, 1:].std(axis=0), 0.025, rtol=0.06)
    np.testing.assert_allclose(coefficients[:, 1:].mean(axis=0), 0.0, atol=0.002)
    # Independent terms: the fitted coefficients are uncorrelated across images.
    correlation = np.corrcoef(coefficients.T)
    assert np.abs(correlation - np.eye(6)).max() < 0.06
    again, _ = layer([grey, grey])
    assert not np.allclose(lit, again)
    np.testing.assert_allclose(layer.strengths, [0.05] * len(LIGHTING_TERMS), rtol=1e-5)
    for bad in ({"initial_std": 0.0}, {"initial_std": 0.1, "rate": 0.0}):
        with pytest.raises(ValueError, match="initial_std > 0 and rate > 0"):
            OutputLighting(**bad)


def test_the_contrast_term_scales_the_image_about_mid_grey():
    layer = OutputLighting(0.05, seed=4)
    grey = tf.zeros([2000, 12, 16, 1])
    layer([grey, grey])
    # Only the contrast term left (the others about 1e-9).
    weights = np.full(len(LIGHTING_TERMS), -2.0, np.float32)
    weights[LIGHTING_TERMS.index("contrast")] = layer.strength_weights.numpy()[1]
    layer.strength_weights.assign(weights)
    stripes = np.where(np.arange(16) % 2 == 0, 0.5, -0.5).astype(np.float32)
    images = tf.broadcast_to(tf.constant(stripes)[None, None, :, None], [2000, 12, 16, 1])
    lit, _ = layer([images, images])
    # Intensities 0.75 and 0.25 become 0.5 +- 0.25 (1 + c): the stripes' difference in
    # [-1, 1] units is 1 + c, with c ~ N(0, 0.05^2) per image.
    gain = (lit.numpy()[:, :, 0::2] - lit.numpy()[:, :, 1::2]).mean(axis=(1, 2, 3))
    assert abs(gain.mean() - 1.0) < 0.005 and abs(gain.std() - 0.05) < 0.004
    np.testing.assert_allclose(lit.numpy().mean(axis=(1, 2, 3)), 0.0, atol=1e-4)


@pytest.mark.parametrize("rate", [1.0, 10.0])
def test_the_strengths_learn_rate_times_faster_than_a_plain_weight_under_adam(rate):
    layer = OutputLighting(0.05, rate=rate, seed=3)
    images = tf.random.stateless_uniform([4, 8, 8, 1], seed=[1, 2], minval=-0.8, maxval=0.8)
    layer([images, images])
    before = layer.rate * layer.strength_weights.numpy()
    optimizer = keras.optimizers.Adam(1e-3)
    with tf.GradientTape() as tape:
        lit, _ = layer([images, images])
        loss = tf.reduce_sum(tf.square(lit - images))  # wants less lighting
    variables = [layer.strength_weights]
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    np.testing.assert_allclose(layer.rate * layer.strength_weights.numpy() - before,
                               -rate * 1e-3, rtol=1e-3)


@pytest.mark.parametrize("grain", [0.0, 0.05])
def test_a_refiner_with_lighting_has_a_clean_view_without_it(grain):
    keras.utils.set_random_seed(0)
    config = config_lib.RefinerConfig(filters=8, num_blocks=1, lighting=0.05, grain=grain)
    refiner = build_refiner(SHAPE, config)
    assert isinstance(refiner.get_layer("lighting"), OutputLighting)
    x = batch()["synthetic"]
    view = clean_view(refiner)
    refined, clean = view(x)
    assert refined.shape == clean.shape == (8, *SHAPE)
    np.testing.assert_allclose(clean, view(x)[1], atol=1e-6)  # no randomness
    # Lighting changes whole images: each image's mean moves, by a different amount.
    shift = (refined - clean).numpy().mean(axis=(1, 2, 3))
    assert np.abs(shift).max() > 0.01 and shift.std() > 0.005
    assert np.all(np.abs(refined) <= 1)
    with pytest.raises(ValueError, match="lighting >= 0"):
        build_refiner(SHAPE, config_lib.RefinerConfig(lighting=-0.1))
    with pytest.raises(ValueError, match="lighting_rate > 0"):
        config_lib.override(config_lib.get_preset("gaze"),
                            {"refiner.lighting_rate": 0.0}).validate()


def test_the_self_regularization_sees_the_unlit_image_and_only_the_adversarial_loss_the_lighting():
    model = build_simgan(refiner_config=CONFIG)
    lighting = model.refiner.get_layer("lighting")
    data = batch()
    before = lighting.strength_weights.numpy().copy()
    clean = clean_view(model.refiner)(data["synthetic"])[1].numpy()
    logs = tf.function(functools.partial(model.train_step, phase=Phase.PRETRAIN_REFINER))(data)
    expected = np.abs(clean - data["synthetic"].numpy()).mean()
    np.testing.assert_allclose(float(logs["refiner_l1_per_pixel"]), expected, rtol=1e-5)
    np.testing.assert_array_equal(lighting.strength_weights, before)
    variables = [lighting.strength_weights]
    with tf.GradientTape() as tape:
        refined, clean = clean_view(model.refiner)(data["synthetic"], training=True)
        adversarial = losses.local_adversarial_loss(model.discriminator(refined), losses.REAL)
    gradient = tape.gradient(adversarial, variables)[0]
    assert gradient is not None and np.count_nonzero(gradient.numpy()) == len(LIGHTING_TERMS)
    with tf.GradientTape() as tape:
        _, clean = clean_view(model.refiner)(data["synthetic"], training=True)
        regularization = losses.self_regularization_loss(clean, data["synthetic"])
    assert tape.gradient(regularization, variables)[0] is None
    tf.function(functools.partial(model.train_step, phase=Phase.REFINER))(data)
    assert not np.array_equal(lighting.strength_weights, before)


def test_the_lighting_generator_is_checkpointed_so_a_restored_refiner_draws_the_same(tmp_path):
    assert_a_restored_refiner_draws_the_same(CONFIG, tmp_path)


def test_every_phase_runs_with_lighting_and_the_ema_and_replicas_stay_in_sync(mirrored_strategy):
    assert_every_phase_runs_and_replicas_stay_in_sync(CONFIG, "lighting", OutputLighting,
                                                      mirrored_strategy)


def test_a_run_with_lighting_logs_its_strengths_and_exports_a_randomly_lit_refiner(
        shifted_data_dir, tmp_path):
    config = config_lib.override(tiny_config(shifted_data_dir), {"refiner.lighting": 0.05})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    strengths = callbacks.lighting_strengths(result.model.refiner)
    assert list(strengths) == list(LIGHTING_TERMS)
    assert all(0.02 < s < 0.2 for s in strengths.values())
    assert callbacks.lighting_strengths(build_refiner(SHAPE)) == {}
    tags = event_tags(str(tmp_path / "run" / "logs" / "train"))
    assert {callbacks.LIGHTING_TAG.format(term) for term in LIGHTING_TERMS} <= set(tags)
    assert_the_exported_refiner_draws_anew(result.export_path)


def test_the_refiner_lighting_flag_sets_the_field():
    overrides = config_lib.command_line_overrides({"refiner_lighting": 0.04}, [])
    assert overrides == {"refiner.lighting": 0.04}
    config = config_lib.override(config_lib.get_preset("gaze"), overrides)
    assert config.refiner.lighting == 0.04
    assert config_lib.get_preset("gaze").refiner.lighting == 0.05
