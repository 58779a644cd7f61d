import math

import numpy as np
import pytest
import tensorflow as tf

from simgan_tf.modeling import losses
from simgan_tf.modeling.losses import REAL, REFINED


def test_local_adversarial_loss_sums_patch_cross_entropy():
    # Two examples, 1x2 patches. Hand computation: CE = -log softmax(logits)[target].
    logits = np.array([[[[0.0, 0.0], [2.0, 0.0]]],
                       [[[0.0, 3.0], [1.0, 1.0]]]], np.float32)  # [2, 1, 2, 2]
    def ce(l, t):
        return -math.log(math.exp(l[t]) / (math.exp(l[0]) + math.exp(l[1])))
    expected_real = [ce([0, 0], 1) + ce([2, 0], 1), ce([0, 3], 1) + ce([1, 1], 1)]
    expected_refined = [ce([0, 0], 0) + ce([2, 0], 0), ce([0, 3], 0) + ce([1, 1], 0)]
    np.testing.assert_allclose(losses.local_adversarial_loss(logits, REAL), expected_real,
                               rtol=1e-6)
    np.testing.assert_allclose(losses.local_adversarial_loss(logits, REFINED),
                               expected_refined, rtol=1e-6)
    # log(2) per patch for uninformative logits: 126 patches of the gaze discriminator.
    flat = tf.zeros([3, 9, 14, 2])
    np.testing.assert_allclose(losses.local_adversarial_loss(flat, REAL), [126 * math.log(2)] * 3,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="Received: 2"):
        losses.local_adversarial_loss(logits, 2)


def test_self_regularization_is_l1_summed_over_pixels():
    synthetic = np.zeros([2, 2, 3, 1], np.float32)
    refined = synthetic.copy()
    refined[0, 0, 0, 0] = 0.5
    refined[0, 1, 2, 0] = -0.25
    refined[1] = 0.1
    np.testing.assert_allclose(losses.self_regularization_loss(refined, synthetic),
                               [0.75, 0.6], rtol=1e-6)
    # A feature transform psi is applied to both images first.
    doubled = losses.self_regularization_loss(refined, synthetic, lambda x: 2 * x)
    np.testing.assert_allclose(doubled, [1.5, 1.2], rtol=1e-6)


def test_refiner_and_discriminator_losses_combine_terms():
    logits = tf.zeros([2, 3, 3, 2])
    refined = tf.fill([2, 4, 4, 1], 0.5)
    synthetic = tf.zeros([2, 4, 4, 1])
    adversarial, regularization = losses.refiner_loss(logits, refined, synthetic, 0.1)
    np.testing.assert_allclose(adversarial, [9 * math.log(2)] * 2, rtol=1e-6)
    np.testing.assert_allclose(regularization, [0.1 * 16 * 0.5] * 2, rtol=1e-6)
    # Pretraining (no discriminator logits): the regularization term alone.
    pretrain_adversarial, pretrain_regularization = losses.refiner_loss(
        None, refined, synthetic, 0.1)
    np.testing.assert_array_equal(pretrain_adversarial, [0.0, 0.0])
    np.testing.assert_array_equal(pretrain_regularization, regularization)
    refined_logits = tf.constant([[[[5.0, 0.0]]]])  # confident "refined": small loss
    real_logits = tf.constant([[[[0.0, 5.0]]]])     # confident "real": small loss
    small = losses.discriminator_loss(refined_logits, real_logits)
    large = losses.discriminator_loss(real_logits, refined_logits)
    np.testing.assert_allclose(small, [2 * math.log(1 + math.exp(-5))], rtol=1e-5)
    np.testing.assert_allclose(large, [2 * math.log(1 + math.exp(5))], rtol=1e-5)


def test_average_over_global_batch_scales_for_replicas():
    per_example = tf.constant([1.0, 2.0, 3.0, 6.0])
    assert float(losses.average_over_global_batch(per_example, 4)) == pytest.approx(3.0)
    # One of two replicas holding half of a global batch of 8.
    assert float(losses.average_over_global_batch(per_example, 8)) == pytest.approx(1.5)


def test_patch_accuracy():
    logits = tf.constant([[[[1.0, 0.0], [0.0, 1.0]]]])  # patch 0 -> refined, patch 1 -> real
    np.testing.assert_allclose(losses.patch_accuracy(logits, REAL), [0.5])
    np.testing.assert_allclose(losses.patch_accuracy(logits, REFINED), [0.5])
