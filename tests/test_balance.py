"""The adaptive balance of the discriminator's learning rate (modeling/balance.py)."""

import functools
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling.balance import DiscriminatorBalance, ScaledLearningRate
from simgan_tf.modeling.schedule import Phase
from simgan_tf.training import train_lib
from test_model import batch
from test_stabilising import build, mirrored_step
from test_train import event_tags, tiny_config


def test_the_scale_follows_the_accuracy_error_in_log_space_and_stays_bounded():
    balance = DiscriminatorBalance(target=0.6, rate=0.5, max_scale=4.0)
    assert float(balance.next_scale(0.1)) == pytest.approx(math.exp(0.5 * 0.5))
    assert float(balance.next_scale(0.8)) == pytest.approx(math.exp(-0.5 * 0.2))
    balance.scale.assign(3.9)
    assert float(balance.next_scale(0.0)) == pytest.approx(4.0)  # clipped at max_scale
    balance.scale.assign(0.26)
    assert float(balance.next_scale(1.0)) == pytest.approx(0.25)  # and at 1 / max_scale


@pytest.mark.parametrize("target, rate, max_scale", [(0.0, 0.1, 2), (1.0, 0.1, 2),
                                                     (0.5, 0.0, 2), (0.5, 0.1, 0.5)])
def test_settings_are_validated(target, rate, max_scale):
    with pytest.raises(ValueError, match="Expected target in"):
        DiscriminatorBalance(target, rate, max_scale)


def test_the_learning_rate_is_the_base_times_the_scale():
    scale = tf.Variable(2.5)
    rate = ScaledLearningRate(1e-3, scale)
    assert float(rate(0)) == pytest.approx(2.5e-3)
    scale.assign(0.5)
    assert float(rate(7)) == pytest.approx(5e-4)


def balanced(**options):
    """A SimGAN whose discriminator optimizer uses the balance, as `build_simgan` makes."""
    model = build(balance_target=0.5, balance_rate=0.2, **options)
    model.compile(refiner_optimizer=keras.optimizers.SGD(0.05),
                  discriminator_optimizer=keras.optimizers.SGD(
                      ScaledLearningRate(0.05, model.balance.scale)))
    return model


def test_an_adversarial_discriminator_update_moves_the_scale_by_its_fresh_accuracy():
    model = balanced()
    step = tf.function(functools.partial(model.train_step, phase=Phase.DISCRIMINATOR))
    step(batch(seed=1))
    accuracy = float(model.trackers["disc_acc_fresh"].result())
    expected = math.exp(0.2 * (0.5 - accuracy))
    assert float(model.balance.scale.numpy()) == pytest.approx(expected, rel=1e-5)
    assert float(model.trackers["disc_lr_scale"].result()) == pytest.approx(expected, rel=1e-5)
    assert "disc_lr_scale" in model.phase_metrics(Phase.DISCRIMINATOR)


def test_pretraining_and_refiner_updates_leave_the_scale_alone():
    model = balanced()
    for phase in (Phase.PRETRAIN_REFINER, Phase.PRETRAIN_DISCRIMINATOR, Phase.REFINER):
        tf.function(functools.partial(model.train_step, phase=phase))(batch())
    assert float(model.balance.scale.numpy()) == 1.0
    assert "disc_lr_scale" not in model.phase_metrics(Phase.PRETRAIN_DISCRIMINATOR)


def test_the_discriminator_steps_with_the_scaled_learning_rate():
    """SGD's first step is -rate * gradient: with the scale at 3 it is 3 times as long."""
    moves = []
    for scale in (1.0, 3.0):
        model = balanced()
        model.balance.scale.assign(scale)
        before = [v.numpy().copy() for v in model.discriminator.trainable_variables]
        tf.function(functools.partial(model.train_step, phase=Phase.DISCRIMINATOR))(batch())
        moves.append([v.numpy() - b for v, b in
                      zip(model.discriminator.trainable_variables, before)])
    for one, three in zip(*moves):
        np.testing.assert_allclose(three, 3.0 * one, rtol=1e-3, atol=1e-6)


def test_two_replicas_move_the_scale_as_one(mirrored_strategy):
    data = batch(8, seed=5)
    single = balanced()
    tf.function(functools.partial(single.train_step, phase=Phase.DISCRIMINATOR))(data)
    with mirrored_strategy.scope():
        mirrored = balanced()
    mirrored_step(mirrored_strategy, mirrored, Phase.DISCRIMINATOR, data)
    assert float(mirrored.balance.scale.numpy()) == pytest.approx(
        float(single.balance.scale.numpy()), rel=1e-5)
    assert float(single.balance.scale.numpy()) != 1.0
    for a, b in zip(single.trainable_variables, mirrored.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_the_scale_is_saved_in_checkpoints(tmp_path):
    model = balanced()
    model.balance.scale.assign(2.75)
    path = train_lib.make_checkpoint(model).save(str(tmp_path / "ckpt"))
    restored = balanced()
    train_lib.make_checkpoint(restored).restore(path).assert_existing_objects_matched()
    assert float(restored.balance.scale.numpy()) == 2.75


def test_no_balance_means_no_scale_variable():
    model = build()
    assert model.balance is None
    assert not any("scale" in v.name for v in model.variables)
    assert "disc_lr_scale" not in model.metric_names


def test_a_run_with_balance_and_augmentation_logs_the_scale_and_resumes_it(
        shifted_data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    config = tiny_config(shifted_data_dir, balance_target=0.5, balance_rate=0.3, log_every=1,
                         augment="translation,cutout,brightness,contrast", steps=2)
    result = train_lib.train(config, model_dir, verbose=0)
    scale = float(result.model.balance.scale.numpy())
    assert scale != 1.0
    optimizer = result.model.discriminator_optimizer
    assert float(optimizer.learning_rate) == pytest.approx(1e-3 * scale, rel=1e-5)
    tags = event_tags(os.path.join(model_dir, "logs"))
    assert "discriminator/learning_rate_scale" in tags
    # Only adversarial discriminator updates log it: steps 6 and 9 of 2 + 1 + 2 * 3.
    assert sorted(tags["discriminator/learning_rate_scale"]) == [6, 9]
    resumed = train_lib.train(config_lib.override(config, {"train.steps": 2}), model_dir,
                              verbose=0)
    assert float(resumed.model.balance.scale.numpy()) == scale  # restored, nothing to train
