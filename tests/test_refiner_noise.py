"""The refiner's noise channels (`refiner.noise_channels`, modeling/refiner.py)."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling.refiner import NoiseChannels, build_refiner
from simgan_tf.modeling.schedule import Phase
from simgan_tf.serving import export
from simgan_tf.training import train_lib
from test_model import batch
from test_train import tiny_config

SHAPE = (35, 55, 1)
CONFIG = config_lib.RefinerConfig(filters=8, num_blocks=1, noise_channels=2)


def test_noise_channels_are_fresh_standard_normal_noise_beside_the_images():
    layer = NoiseChannels(3, seed=5)
    images = tf.ones([4, 35, 55, 1])
    first, second = layer(images), layer(images)
    assert first.shape == (4, 35, 55, 4)
    np.testing.assert_array_equal(first[..., :1], images)
    noise = first[..., 1:].numpy()
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1) < 0.05
    assert not np.allclose(first[..., 1:], second[..., 1:])  # drawn anew at every call
    with pytest.raises(ValueError, match="channels >= 1"):
        NoiseChannels(0)


def test_a_noisy_refiner_refines_the_same_image_differently_and_zero_channels_is_the_paper():
    keras.utils.set_random_seed(0)
    refiner = build_refiner(SHAPE, CONFIG)
    assert refiner.get_layer("conv_in").kernel.shape == (3, 3, 3, 8)
    x = batch()["synthetic"]
    assert not np.allclose(refiner(x), refiner(x))
    plain = build_refiner(SHAPE, config_lib.RefinerConfig(filters=8, num_blocks=1))
    np.testing.assert_array_equal(plain(x), plain(x))
    assert not any(isinstance(layer, NoiseChannels) for layer in plain.layers)
    with pytest.raises(ValueError, match="noise_channels >= 0"):
        build_refiner(SHAPE, config_lib.RefinerConfig(noise_channels=-1))


def assert_a_restored_refiner_draws_the_same(config, tmp_path):
    """A refiner of `config` restored from a checkpoint draws what the saved one would
    have drawn next (the noise generator's state is in the checkpoint)."""
    keras.utils.set_random_seed(0)
    refiner = build_refiner(SHAPE, config)
    x = batch()["synthetic"]
    refiner(x)
    path = tf.train.Checkpoint(refiner=refiner).save(str(tmp_path / "ckpt"))
    expected = refiner(x).numpy()
    keras.utils.set_random_seed(1)
    restored = build_refiner(SHAPE, config)
    tf.train.Checkpoint(refiner=restored).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(restored(x), expected)


def test_the_generator_state_is_checkpointed_so_a_restored_refiner_draws_the_same(tmp_path):
    assert_a_restored_refiner_draws_the_same(CONFIG, tmp_path)


def test_replicas_draw_different_noise(mirrored_strategy):
    with mirrored_strategy.scope():
        keras.utils.set_random_seed(0)
        layer = NoiseChannels(1, seed=3)
    images = tf.zeros([4, 5, 5, 1])
    dataset = tf.data.Dataset.from_tensors(images)
    distributed = next(iter(mirrored_strategy.experimental_distribute_dataset(dataset)))
    result = tf.function(lambda d: mirrored_strategy.run(layer, args=(d,)))(distributed)
    first, second = mirrored_strategy.experimental_local_results(result)
    assert first.shape == second.shape == (2, 5, 5, 2)
    assert not np.allclose(first[..., 1:], second[..., 1:])


def test_a_run_with_refiner_noise_trains_with_the_ema_and_exports_a_noisy_refiner(
        shifted_data_dir, tmp_path):
    config = config_lib.override(tiny_config(shifted_data_dir, ema_decay=0.9),
                                 {"refiner.noise_channels": 1})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    assert isinstance(result.model.ema.model.get_layer("noise"), NoiseChannels)
    refine = export.load_refiner(result.export_path)
    x = batch(4)["synthetic"].numpy()
    a, b = refine(x), refine(x)
    assert a.shape == (4, 35, 55, 1) and not np.allclose(a, b)
    assert np.all(np.abs(a) <= 1)


def test_noise_is_used_in_every_phase_of_the_model():
    from test_stabilising import build as build_simgan
    model = build_simgan(refiner_config=CONFIG, ema_decay=0.9)
    assert isinstance(model.refiner.get_layer("noise"), NoiseChannels)
    for phase in (Phase.PRETRAIN_REFINER, Phase.REFINER, Phase.DISCRIMINATOR):
        tf.function(functools.partial(model.train_step, phase=phase))(batch())
    assert int(model.step_counter) == 3
