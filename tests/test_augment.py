"""Differentiable augmentation of the discriminator's inputs (modeling/augment.py)."""

import functools

import numpy as np
import pytest
import tensorflow as tf

from simgan_tf.modeling import augment
from simgan_tf.modeling.schedule import Phase
from test_model import batch
from test_stabilising import build, mirrored_step

SEED = tf.constant([3, 7], tf.int64)


def images(n=16, shape=(35, 55, 1), seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (n, *shape)), tf.float32)


def test_policy_names_are_checked():
    assert augment.parse_policy("translation, cutout") == ("translation", "cutout")
    assert augment.parse_policy("") == ()
    for bad in ("flip", "cutout,cutout"):
        with pytest.raises(ValueError, match="Expected augmentations from"):
            augment.parse_policy(bad)


def test_an_empty_policy_is_the_identity():
    x = images()
    assert augment.augment(x, (), SEED) is x


def test_translation_shifts_each_image_by_whole_pixels_within_an_eighth():
    x = images(32)
    y = augment.translation(x, SEED).numpy()
    x = x.numpy()
    shifts = []
    for a, b in zip(x, y):
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-7, 8)
                 if np.array_equal(b[max(dy, 0):35 + min(dy, 0), max(dx, 0):55 + min(dx, 0)],
                                   a[max(-dy, 0):35 - max(dy, 0), max(-dx, 0):55 - max(dx, 0)])]
        assert len(found) == 1
        dy, dx = found[0]
        shifted_in = np.ones((35, 55), bool)
        shifted_in[max(dy, 0):35 + min(dy, 0), max(dx, 0):55 + min(dx, 0)] = False
        assert np.all(b[shifted_in] == 0)  # zero (mid-gray) where nothing was
        shifts.append(found[0])
    assert len(set(shifts)) > 8  # drawn per image, round(35/8) = 4 and round(55/8) = 7 at most


def test_cutout_zeroes_one_rectangle_of_at_most_half_each_side():
    x = images(32)
    y = augment.cutout(x, SEED).numpy()
    x = x.numpy()
    for a, b in zip(x, y):
        cut = b[..., 0] != a[..., 0]
        assert np.all(b[..., 0][cut] == 0)
        rows, cols = np.nonzero(cut)
        assert 0 < len(rows) <= 18 * 28
        assert len(rows) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # a filled rectangle
        assert np.ptp(rows) + 1 <= 18 and np.ptp(cols) + 1 <= 28


def test_brightness_adds_one_offset_per_image_and_contrast_scales_about_the_mean():
    x = images(32).numpy()
    offset = augment.brightness(tf.constant(x), SEED).numpy() - x
    per_image = offset.reshape(32, -1)
    np.testing.assert_allclose(per_image, per_image[:, :1].repeat(per_image.shape[1], 1),
                               atol=1e-6)
    assert np.all(np.abs(per_image[:, 0]) <= 0.5) and per_image[:, 0].std() > 0.1
    y = augment.contrast(tf.constant(x), SEED).numpy()
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    factor = ((y - mean) / (x - mean)).reshape(32, -1)
    np.testing.assert_allclose(factor, factor[:, :1].repeat(factor.shape[1], 1), rtol=1e-3)
    assert np.all((factor[:, 0] >= 0.5) & (factor[:, 0] <= 1.5))
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=1e-5)


def test_draws_depend_on_the_seed_only_and_probability_gates_each_image():
    x = images(64)
    first = augment.augment(x, augment.TRANSFORMS, SEED)
    np.testing.assert_array_equal(first, augment.augment(x, augment.TRANSFORMS, SEED))
    assert not np.array_equal(first, augment.augment(x, augment.TRANSFORMS, SEED + 1))
    np.testing.assert_allclose(augment.augment(x, augment.TRANSFORMS, SEED, 0.0), x,
                               atol=1e-6)
    half = augment.augment(x, ["brightness"], SEED, 0.5).numpy()
    moved = np.abs(half - x.numpy()).reshape(64, -1).max(axis=1) > 0
    assert 16 < moved.sum() < 48


def test_a_slice_of_the_global_batch_gets_the_draws_of_its_rows():
    x = images(8)
    whole = augment.augment(x, augment.TRANSFORMS, SEED)
    parts = [augment.augment(x[i:i + 4], augment.TRANSFORMS, SEED, offset=i, total=8)
             for i in (0, 4)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("name", augment.TRANSFORMS)
def test_gradients_are_those_of_the_transform(name):
    """Each transform is linear in the image (affine for brightness): the gradient of
    <w, T(x)> is the transpose of T applied to w, checked against finite differences."""
    x = images(4, seed=1)
    w = images(4, seed=2)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(w * augment.augment(x, [name], SEED))
    gradient = tape.gradient(value, x).numpy()
    assert np.abs(gradient).sum() > 0
    direction = images(4, seed=3).numpy() * 1e-2
    change = (tf.reduce_sum(w * augment.augment(x + direction, [name], SEED))
              - tf.reduce_sum(w * augment.augment(x - direction, [name], SEED))) / 2
    np.testing.assert_allclose(float(change), float((gradient * direction).sum()), rtol=2e-3)


def test_simgan_augments_what_the_discriminator_sees():
    plain, augmented = build(), build(augment="translation,cutout,brightness,contrast")
    for model in (plain, augmented):
        tf.function(functools.partial(model.train_step, phase=Phase.DISCRIMINATOR))(batch())
    different = [not np.allclose(a.numpy(), b.numpy())
                 for a, b in zip(plain.discriminator.trainable_variables,
                                 augmented.discriminator.trainable_variables)]
    assert all(different)
    assert float(plain.trackers["disc_loss"].result()) != float(
        augmented.trackers["disc_loss"].result())


@pytest.mark.parametrize("phase", [Phase.REFINER, Phase.DISCRIMINATOR])
def test_augmented_updates_on_two_replicas_equal_one(phase, mirrored_strategy):
    data = batch(8, seed=5)
    single = build(augment=augment.TRANSFORMS)
    tf.function(functools.partial(single.train_step, phase=phase))(data)
    with mirrored_strategy.scope():
        mirrored = build(augment=augment.TRANSFORMS)
    mirrored_step(mirrored_strategy, mirrored, phase, data)
    for a, b in zip(single.trainable_variables, mirrored.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(single.trackers["disc_loss"].result()),
                               float(mirrored.trackers["disc_loss"].result()), rtol=1e-4)
