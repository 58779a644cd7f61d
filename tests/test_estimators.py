"""Tests of the task networks: the paper's gaze estimator and the hourglass hand estimator."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf.evaluation import estimators, metrics


def test_gaze_estimator_is_the_papers():
    model = estimators.build_gaze_estimator()
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.padding) for c in convs] == [
        (32, (3, 3), "valid"), (32, (3, 3), "valid"), (64, (3, 3), "valid"),
        (80, (3, 3), "valid"), (192, (3, 3), "valid")]
    pools = [l for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert [(p.pool_size, p.strides) for p in pools] == [((3, 3), (2, 2)), ((2, 2), (2, 2))]
    # 35x55 -> 33x53 -> 31x51 -> 29x49 -> pool 14x24 -> 12x22 -> 10x20 -> pool 5x10 x 192.
    assert model.get_layer("flatten").output.shape == (None, 9600)
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    assert [tuple(d.kernel.shape) for d in dense] == [(9600, 1000), (1000, 3)]
    assert dense[-1].activation is keras.activations.linear
    assert all(c.activation is keras.activations.relu for c in convs)
    assert model.output_shape == (None, 3)


def test_gaze_loss_is_half_the_squared_euclidean_distance():
    labels = np.array([[0.0, 0.0, -1.0], [0.6, 0.0, -0.8]], np.float32)
    predictions = np.array([[0.0, 1.0, -1.0], [0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(estimators.gaze_loss(labels, predictions).numpy(),
                               [0.5 * 1.0, 0.5 * 1.0], rtol=1e-6)


def test_gaze_estimator_learns_a_linear_gaze_cue():
    """Pupil position encodes the gaze: a few hundred steps must beat the constant guess."""
    rng = np.random.default_rng(0)
    n = 512
    gaze = rng.uniform(-0.4, 0.4, (n, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:35, 0:55]
    cx = 27 - 20 * gaze[:, 1, None, None]
    cy = 17 - 20 * gaze[:, 0, None, None]
    images = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)[..., None] * 2 - 1
    keras.utils.set_random_seed(0)
    model = estimators.build_gaze_estimator()
    model.compile(keras.optimizers.Adam(3e-4), loss=estimators.gaze_loss)
    vectors = metrics.gaze_to_vector(tf.constant(gaze)).numpy()
    model.fit(images.astype(np.float32), vectors, batch_size=32, epochs=6, verbose=0)
    errors = metrics.angular_errors(vectors, model.predict(images, verbose=0))
    constant = metrics.angular_errors(vectors, np.tile([[0, 0, -1.0]], (n, 1)))
    assert errors.mean() < 0.5 * constant.mean(), (errors.mean(), constant.mean())


def test_joint_heatmaps_peak_at_the_joints():
    uv = np.array([[[10.0, 20.0], [63.5, 0.5]]], np.float32)  # image 64 px, heatmap 16
    maps = estimators.joint_heatmaps(uv, image_size=64, heatmap_size=16, sigma=1.0).numpy()
    assert maps.shape == (1, 16, 16, 2)
    # u = 10 -> 10 * 16 / 64 - 0.5 = 2.0; v = 20 -> 4.5.
    row, col = np.unravel_index(np.argmax(maps[0, :, :, 0]), (16, 16))
    assert col == 2 and row in (4, 5)
    np.testing.assert_allclose(maps[0, 4, 2, 0], math.exp(-0.25 / 2), rtol=1e-5)
    # u = 63.5 -> 15.375, v = 0.5 -> -0.375: the corner pixel.
    row, col = np.unravel_index(np.argmax(maps[0, :, :, 1]), (16, 16))
    assert (row, col) == (0, 15)


def test_heatmaps_to_joints_inverts_the_targets():
    rng = np.random.default_rng(1)
    uv = rng.uniform(8, 56, (3, 14, 2)).astype(np.float32)
    maps = estimators.joint_heatmaps(uv, image_size=64, heatmap_size=32, sigma=1.5)
    got = estimators.heatmaps_to_joints(maps, image_size=64, window=4).numpy()
    np.testing.assert_allclose(got, uv, atol=0.05)


def test_heatmap_loss_sums_stacks_of_mean_squared_errors():
    target = np.zeros((1, 4, 4, 2), np.float32)
    target[0, 1, 1, 0] = 1.0
    stacks = np.zeros((1, 2, 4, 4, 2), np.float32)
    stacks[0, 1] = target[0]  # second stack perfect, first all zeros
    # First stack: one wrong pixel of 32 -> 1/32; second: 0.
    np.testing.assert_allclose(estimators.heatmap_loss(target, stacks).numpy(), [1 / 32])


def test_hand_estimator_shapes_and_resizing():
    config = estimators.HourglassConfig(heatmap_size=16, num_stacks=2, depth=2, filters=16)
    model = estimators.build_hand_estimator((64, 64, 1), config)
    assert model.output_shape == (None, 2, 16, 16, 14)
    assert "resize" not in [l.name for l in model.layers]  # 64 = 4 x 16
    paper = estimators.build_hand_estimator((224, 224, 1), estimators.HourglassConfig(
        filters=16, depth=4))
    assert paper.output_shape == (None, 2, 64, 64, 14)
    assert paper.get_layer("resize").output.shape == (None, 256, 256, 1)
    out = model(tf.zeros([2, 64, 64, 1]))
    assert out.shape == (2, 2, 16, 16, 14) and out.dtype == tf.float32


@pytest.mark.parametrize("kwargs, message", [
    (dict(heatmap_size=20, depth=3), "divisible by 2\\*\\*depth"),
    (dict(filters=7), "even number"),
    (dict(num_stacks=0), "num_stacks"),
])
def test_bad_hourglass_configs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimators.build_hand_estimator((64, 64, 1), estimators.HourglassConfig(**kwargs))


def test_hand_estimator_needs_square_images():
    with pytest.raises(ValueError, match="square"):
        estimators.build_hand_estimator((64, 32, 1), estimators.HourglassConfig(heatmap_size=16))
