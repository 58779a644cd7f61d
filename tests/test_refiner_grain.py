"""Learned output grain of the refiner (`refiner.grain`, modeling/refiner.py OutputGrain)."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling import losses
from simgan_tf.modeling.refiner import OutputGrain, build_refiner, clean_view
from simgan_tf.modeling.schedule import Phase
from simgan_tf.serving import export
from simgan_tf.training import train_lib
from test_model import batch
from test_refiner_noise import assert_a_restored_refiner_draws_the_same
from test_stabilising import build as build_simgan
from test_stabilising import mirrored_step
from test_train import tiny_config

SHAPE = (35, 55, 1)
CONFIG = config_lib.RefinerConfig(filters=8, num_blocks=1, grain=0.05)


def grain_of(refined, clean):
    """The grain added before the tanh: atanh(refined) - atanh(clean)."""
    clip = functools.partial(np.clip, a_min=-0.999999, a_max=0.999999)
    return np.arctanh(clip(np.float64(refined))) - np.arctanh(clip(np.float64(clean)))


def test_grain_starts_white_at_its_initial_std_and_is_drawn_anew_at_every_call():
    layer = OutputGrain(0.05, seed=3)
    pre = tf.random.stateless_uniform([8, 35, 55, 1], seed=[1, 2], minval=-1, maxval=1)
    features = tf.random.stateless_normal([8, 35, 55, 4], seed=[3, 4])
    refined, clean = layer([pre, features])
    np.testing.assert_allclose(clean, np.tanh(pre), atol=1e-6)
    grain = grain_of(refined, clean)
    assert abs(grain.std() - 0.05) < 0.002 and abs(grain.mean()) < 0.002
    # White: neighbouring pixels are uncorrelated while the filter is the identity.
    assert abs(np.corrcoef(grain[:, :, 1:].ravel(), grain[:, :, :-1].ravel())[0, 1]) < 0.03
    again, _ = layer([pre, features])
    assert not np.allclose(refined, again)
    identity = np.zeros((3, 3, 1, 1), np.float32)
    identity[1, 1] = 1.0
    np.testing.assert_array_equal(layer.filter, identity)
    assert layer.scale_kernel.shape == (4, 1)
    for bad in ({"initial_std": 0.0}, {"initial_std": 0.1, "kernel_size": 2},
                {"initial_std": 0.1, "rate": 0.0}):
        with pytest.raises(ValueError, match="initial_std > 0, an odd kernel_size, rate > 0"):
            OutputGrain(**bad)


def test_the_grain_amplitude_follows_the_features_and_the_filter_correlates_it():
    layer = OutputGrain(0.05, seed=3)
    pre = tf.zeros([16, 70, 55, 1])
    # The top half's feature is 0, the bottom half's 1.
    features = tf.concat([tf.zeros([16, 35, 55, 1]), tf.ones([16, 35, 55, 1])], axis=1)
    layer([pre, features])
    layer.scale_kernel.assign([[1.0 / layer.rate]])
    refined, clean = layer([pre, features])
    grain = grain_of(refined, clean)
    top, bottom = grain[:, :35].std(), grain[:, 35:].std()
    # softplus(b) = 0.05 where the feature is 0; softplus(b + 1) where it is 1.
    bias = layer.rate * float(layer.scale_bias[0])
    assert abs(top - 0.05) < 0.003
    assert abs(bottom - np.log1p(np.exp(bias + 1.0))) < 0.005 and bottom > 2 * top
    box = np.zeros((3, 3, 1, 1), np.float32)
    box[1, :, 0, 0] = 1.0 / 3  # a horizontal box filter
    layer.scale_kernel.assign([[0.0]])
    layer.filter_offset.assign((box - layer.filter.numpy()) / layer.rate)
    np.testing.assert_allclose(layer.filter, box, atol=1e-7)
    refined, clean = layer([pre[:, :35], features[:, :35]])
    grain = grain_of(refined, clean)[:, :, 1:-1]
    assert abs(grain.std() - 0.05 / np.sqrt(3)) < 0.002
    # Neighbours share two of three noise values: correlation 2/3.
    assert abs(np.corrcoef(grain[:, :, 1:].ravel(), grain[:, :, :-1].ravel())[0, 1]
               - 2 / 3) < 0.03


@pytest.mark.parametrize("rate", [1.0, 10.0])
def test_the_grain_learns_rate_times_faster_than_a_plain_weight_under_adam(rate):
    layer = OutputGrain(0.05, rate=rate, seed=3)
    pre, features = tf.zeros([2, 8, 8, 1]), tf.ones([2, 8, 8, 3])
    layer([pre, features])
    before = layer.rate * layer.scale_bias.numpy()
    optimizer = keras.optimizers.Adam(1e-3)
    with tf.GradientTape() as tape:
        refined, _ = layer([pre, features])
        loss = tf.reduce_mean(tf.square(refined))  # wants less grain
    variables = [layer.scale_bias, layer.scale_kernel, layer.filter_offset]
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    # Adam's first step moves each weight by its learning rate (against the gradient's
    # sign): the softplus argument, rate * b, moves by rate * 1e-3.
    np.testing.assert_allclose(layer.rate * layer.scale_bias.numpy() - before, -rate * 1e-3,
                               rtol=1e-3)


def test_a_refiner_with_grain_has_a_clean_view_and_zero_grain_is_the_paper():
    keras.utils.set_random_seed(0)
    refiner = build_refiner(SHAPE, CONFIG)
    assert isinstance(refiner.get_layer("grain"), OutputGrain)
    x = batch()["synthetic"]
    assert not np.allclose(refiner(x), refiner(x))
    refined, clean = clean_view(refiner)(x)
    assert refined.shape == clean.shape == (8, *SHAPE)
    np.testing.assert_allclose(clean, clean_view(refiner)(x)[1], atol=1e-6)  # no noise
    assert abs(grain_of(refined, clean).std() - 0.05) < 0.005
    plain = build_refiner(SHAPE, config_lib.RefinerConfig(filters=8, num_blocks=1))
    assert clean_view(plain) is None
    with pytest.raises(ValueError, match="grain >= 0"):
        build_refiner(SHAPE, config_lib.RefinerConfig(grain=-0.1))
    with pytest.raises(ValueError, match="grain >= 0"):
        config_lib.override(config_lib.get_preset("gaze"), {"refiner.grain": -0.1}).validate()


def test_the_self_regularization_sees_the_clean_image_and_only_the_adversarial_loss_the_grain():
    model = build_simgan(refiner_config=CONFIG)
    grain = model.refiner.get_layer("grain")
    data = batch()
    before = [v.numpy().copy() for v in grain.trainable_weights]
    clean = clean_view(model.refiner)(data["synthetic"])[1].numpy()
    logs = tf.function(functools.partial(model.train_step, phase=Phase.PRETRAIN_REFINER))(data)
    # Pretraining: the loss is lambda * L1 of the clean image; the grain is untouched.
    expected = np.abs(clean - data["synthetic"].numpy()).mean()
    np.testing.assert_allclose(float(logs["refiner_l1_per_pixel"]), expected, rtol=1e-5)
    for b, v in zip(before, grain.trainable_weights):
        np.testing.assert_array_equal(b, v)
    # The adversarial loss reaches the grain: its amplitude and filter get gradients.
    variables = grain.trainable_weights
    with tf.GradientTape() as tape:
        refined, clean = clean_view(model.refiner)(data["synthetic"], training=True)
        adversarial = losses.local_adversarial_loss(model.discriminator(refined), losses.REAL)
        regularization = losses.self_regularization_loss(clean, data["synthetic"])
    gradients = tape.gradient([adversarial, regularization], variables)
    assert all(g is not None and np.any(g.numpy() != 0) for g in gradients)
    with tf.GradientTape() as tape:
        _, clean = clean_view(model.refiner)(data["synthetic"], training=True)
        regularization = losses.self_regularization_loss(clean, data["synthetic"])
    assert all(g is None for g in tape.gradient(regularization, variables))
    tf.function(functools.partial(model.train_step, phase=Phase.REFINER))(data)
    assert any(not np.array_equal(b, v) for b, v in zip(before, grain.trainable_weights))


def test_the_grain_generator_is_checkpointed_so_a_restored_refiner_draws_the_same(tmp_path):
    assert_a_restored_refiner_draws_the_same(CONFIG, tmp_path)


def assert_every_phase_runs_and_replicas_stay_in_sync(config, name, layer_type, strategy):
    """A SimGAN whose refiner has output layer `name` (of `layer_type`) runs every phase
    with an EMA refiner, and one 2-replica refiner update moves that layer's weights
    identically on both replicas."""
    model = build_simgan(refiner_config=config, ema_decay=0.9)
    for phase in (Phase.PRETRAIN_REFINER, Phase.REFINER, Phase.DISCRIMINATOR):
        tf.function(functools.partial(model.train_step, phase=phase))(batch())
    assert int(model.step_counter) == 3
    assert isinstance(model.ema.model.get_layer(name), layer_type)
    with strategy.scope():
        mirrored = build_simgan(refiner_config=config)
    layer = mirrored.refiner.get_layer(name)
    before = [v.numpy().copy() for v in layer.trainable_weights]
    mirrored_step(strategy, mirrored, Phase.REFINER, batch())
    for variable in layer.trainable_weights:
        first, second = strategy.experimental_local_results(variable.value)
        np.testing.assert_array_equal(first, second)
    assert any(not np.array_equal(b, v) for b, v in zip(before, layer.trainable_weights))
    assert mirrored.step == 1


def assert_only_the_adversarial_loss_reaches(config, name, *, every_weight_moves):
    """The refiner's output layer `name` is untouched by a pretraining (L1-only) update,
    gets a nonzero gradient in every weight from the adversarial loss and none from the
    self-regularization, and moves in a refiner update (every weight if
    `every_weight_moves`, else at least one). Returns the adversarial gradients."""
    model = build_simgan(refiner_config=config)
    layer = model.refiner.get_layer(name)
    data = batch()
    before = [v.numpy().copy() for v in layer.trainable_weights]
    tf.function(functools.partial(model.train_step, phase=Phase.PRETRAIN_REFINER))(data)
    for b, v in zip(before, layer.trainable_weights):
        np.testing.assert_array_equal(b, v)
    with tf.GradientTape() as tape:
        refined, _ = clean_view(model.refiner)(data["synthetic"], training=True)
        adversarial = losses.local_adversarial_loss(model.discriminator(refined), losses.REAL)
    gradients = tape.gradient(adversarial, layer.trainable_weights)
    assert all(g is not None and np.any(g.numpy() != 0) for g in gradients)
    with tf.GradientTape() as tape:
        _, clean = clean_view(model.refiner)(data["synthetic"], training=True)
        regularization = losses.self_regularization_loss(clean, data["synthetic"])
    assert all(g is None for g in tape.gradient(regularization, layer.trainable_weights))
    tf.function(functools.partial(model.train_step, phase=Phase.REFINER))(data)
    moved = [not np.array_equal(b, v) for b, v in zip(before, layer.trainable_weights)]
    assert all(moved) if every_weight_moves else any(moved)
    return gradients


def assert_the_exported_refiner_draws_anew(export_path):
    """The exported refiner maps 4 synthetic eyes to 4 images in [-1, 1], different at
    every call (its output layers draw fresh randomness)."""
    refine = export.load_refiner(export_path)
    x = batch(4)["synthetic"].numpy()
    a, b = refine(x), refine(x)
    assert a.shape == (4, *SHAPE) and not np.allclose(a, b)
    assert np.all(np.abs(a) <= 1)


def test_every_phase_runs_with_grain_and_the_ema_and_replicas_stay_in_sync(mirrored_strategy):
    assert_every_phase_runs_and_replicas_stay_in_sync(CONFIG, "grain", OutputGrain,
                                                      mirrored_strategy)


def test_a_run_with_grain_trains_and_exports_a_grainy_refiner(shifted_data_dir, tmp_path):
    config = config_lib.override(tiny_config(shifted_data_dir), {"refiner.grain": 0.05})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    assert isinstance(result.model.refiner.get_layer("grain"), OutputGrain)
    assert_the_exported_refiner_draws_anew(result.export_path)


def test_the_refiner_grain_flag_sets_the_field():
    overrides = config_lib.command_line_overrides({"refiner_grain": 0.04}, [])
    assert overrides == {"refiner.grain": 0.04}
    config = config_lib.override(config_lib.get_preset("gaze"), overrides)
    assert config.refiner.grain == 0.04 and config_lib.get_preset("gaze").refiner.grain == 0.03
