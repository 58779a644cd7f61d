import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling.discriminator import build_discriminator
from simgan_tf.modeling.history import HistoryBuffer
from simgan_tf.modeling.simgan import METRIC_NAMES, SimGAN
from simgan_tf.modeling.refiner import build_refiner
from simgan_tf.modeling.schedule import Phase, Schedule

SHAPE = (35, 55, 1)


def build(history_size=16, optimizer=lambda: keras.optimizers.SGD(0.01), seed=0):
    keras.utils.set_random_seed(seed)
    model = SimGAN(
        build_refiner(SHAPE, config_lib.RefinerConfig(filters=8, num_blocks=1)),
        build_discriminator(SHAPE),
        HistoryBuffer(history_size, SHAPE),
        schedule=Schedule(2, 2, k_g=2, k_d=1, iterations=2), reg_weight=0.05, seed=seed)
    model.compile(refiner_optimizer=optimizer(), discriminator_optimizer=optimizer())
    model(tf.zeros([1, *SHAPE]))
    return model


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {"synthetic": tf.constant(rng.uniform(-1, 1, (n, *SHAPE)), tf.float32),
            "real": tf.constant(rng.uniform(-1, 1, (n, *SHAPE)) * 0.5 - 0.3, tf.float32)}


def snapshot(model):
    return ([v.numpy().copy() for v in model.refiner.trainable_variables],
            [v.numpy().copy() for v in model.discriminator.trainable_variables])


def changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("phase, refiner_moves, discriminator_moves, buffer_fills", [
    (Phase.PRETRAIN_REFINER, True, False, False),
    (Phase.REFINER, True, False, False),
    (Phase.PRETRAIN_DISCRIMINATOR, False, True, True),
    (Phase.DISCRIMINATOR, False, True, True),
])
def test_each_phase_updates_only_its_network(phase, refiner_moves, discriminator_moves,
                                             buffer_fills):
    model = build()
    r0, d0 = snapshot(model)
    logs = tf.function(functools.partial(model.train_step, phase=phase))(batch())
    r1, d1 = snapshot(model)
    assert changed(r0, r1) == refiner_moves
    assert changed(d0, d1) == discriminator_moves
    assert int(model.history_buffer.fill) == (4 if buffer_fills else 0)
    assert int(model.step_counter) == 1
    assert set(logs) == set(METRIC_NAMES)
    assert all(np.isfinite(float(v)) for v in logs.values())


def test_train_step_reads_phase_from_step_counter_eagerly():
    model = build()
    model.train_step(batch())  # step 0: refiner pretraining
    assert float(model.trackers["refiner_reg_loss"].result()) > 0
    assert float(model.trackers["disc_loss"].result()) == 0
    model.step_counter.assign(2)  # discriminator pretraining
    model.train_step(batch())
    assert float(model.trackers["disc_loss"].result()) > 0


def test_refiner_pretraining_ignores_the_discriminator_and_adversarial_uses_it():
    model = build(optimizer=lambda: keras.optimizers.SGD(0.0))  # nothing moves
    data = batch()
    tf.function(functools.partial(model.train_step, phase=Phase.PRETRAIN_REFINER))(data)
    assert float(model.trackers["refiner_adv_loss"].result()) == 0.0
    tf.function(functools.partial(model.train_step, phase=Phase.REFINER))(data)
    refined = model.refiner(data["synthetic"])
    expected = tf.reduce_mean(tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.ones([8, 9, 14], tf.int32), logits=model.discriminator(refined)), [1, 2]))
    np.testing.assert_allclose(float(model.trackers["refiner_adv_loss"].result()),
                               float(expected), rtol=1e-5)
    l1 = tf.reduce_mean(tf.abs(refined - data["synthetic"]))
    np.testing.assert_allclose(float(model.trackers["refiner_l1_per_pixel"].result()),
                               float(l1), rtol=1e-5)


@pytest.mark.parametrize("history_size", [16, 0])
def test_fresh_accuracy_reads_only_the_current_refiners_images(history_size):
    model = build(history_size=history_size,
                  optimizer=lambda: keras.optimizers.SGD(0.0))  # nothing moves
    if history_size:  # a full buffer of random images, unlike the refiner's output
        model.history_buffer.images.assign(tf.random.stateless_uniform(
            [history_size, *SHAPE], seed=[3, 4], minval=-1, maxval=1))
        model.history_buffer.fill.assign(history_size)
    data = batch()
    tf.function(functools.partial(model.train_step, phase=Phase.DISCRIMINATOR))(data)
    refined = model.refiner(data["synthetic"])
    predicted = tf.argmax(model.discriminator(refined), axis=-1)
    per_image = tf.reduce_mean(tf.cast(tf.equal(predicted, 0), tf.float32), axis=[1, 2])
    fresh = 4 if history_size else 8
    np.testing.assert_allclose(float(model.trackers["disc_acc_fresh"].result()),
                               float(tf.reduce_mean(per_image[:fresh])), rtol=1e-6)
    refined_all = float(model.trackers["disc_acc_refined"].result())
    fresh_only = float(model.trackers["disc_acc_fresh"].result())
    if history_size:  # the history half changes the mixed figure, not the fresh one
        assert refined_all != fresh_only
    else:  # every refined image is fresh
        np.testing.assert_allclose(refined_all, fresh_only, rtol=1e-6)


def _mirrored_step(strategy, model, phase, data):
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(8)
    distributed = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def run(d):
        strategy.run(functools.partial(model.train_step, phase=phase), args=(d,))
    run(distributed)


@pytest.mark.parametrize("phase", [Phase.PRETRAIN_REFINER, Phase.REFINER,
                                   Phase.PRETRAIN_DISCRIMINATOR])
def test_two_replicas_give_the_same_update_as_one(phase, mirrored_strategy):
    data = batch(8, seed=5)
    single = build(history_size=0)
    tf.function(functools.partial(single.train_step, phase=phase))(data)
    strategy = mirrored_strategy
    with strategy.scope():
        mirrored = build(history_size=0)
    _mirrored_step(strategy, mirrored, phase, data)
    for a, b in zip(single.trainable_variables, mirrored.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    # Metrics aggregate over both replicas: the same means as one replica.
    for name in METRIC_NAMES:
        np.testing.assert_allclose(float(single.trackers[name].result()),
                                   float(mirrored.trackers[name].result()), rtol=1e-4)
    assert mirrored.step == 1


def test_mirrored_discriminator_step_fills_buffer_from_all_replicas(mirrored_strategy):
    strategy = mirrored_strategy
    with strategy.scope():
        model = build(history_size=16)
    data = batch(8, seed=2)
    _mirrored_step(strategy, model, Phase.DISCRIMINATOR, data)
    copies = strategy.experimental_local_results(model.history_buffer.images)
    np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())
    assert int(model.history_buffer.fill.numpy()) == 4  # b/2 of the global batch of 8
    refined = model.refiner(data["synthetic"]).numpy()
    # Slots 0-1 hold replica 0's first two fresh images, 2-3 replica 1's (images 4, 5).
    np.testing.assert_allclose(copies[0].numpy()[:4], refined[[0, 1, 4, 5]], atol=1e-5)


def test_split_across_replicas_gives_each_replica_its_rows(mirrored_strategy):
    from simgan_tf.modeling.simgan import split_across_replicas

    data = {"synthetic": tf.reshape(tf.range(8.0), [8, 1]), "skipped": tf.fill([8], 3)}
    split = split_across_replicas(mirrored_strategy, data)
    rows = mirrored_strategy.experimental_local_results(split["synthetic"])
    assert [r.numpy().ravel().tolist() for r in rows] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    skipped = mirrored_strategy.experimental_local_results(split["skipped"])
    assert [s.numpy().tolist() for s in skipped] == [[3, 3, 3, 3], [3, 3, 3, 3]]
