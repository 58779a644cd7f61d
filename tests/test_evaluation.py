"""Tests of the evaluation metrics against hand computations."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from simgan_tf.evaluation import metrics


def test_angular_errors_by_hand():
    truth = np.array([[0, 0, -1], [0, 0, -1], [1, 0, 0], [0, 2, 0]], np.float64)
    predicted = np.array([[0, 0, -5], [1, 0, 0], [1, 1, 0], [0, -1, 0]], np.float64)
    np.testing.assert_allclose(metrics.angular_errors(truth, predicted),
                               [0.0, 90.0, 45.0, 180.0], atol=1e-6)


def test_gaze_to_vector_convention():
    vectors = metrics.gaze_to_vector(
        np.array([[0.0, 0.0], [0.3, 0.0], [0.0, 0.3], [-0.2, 0.5]]))
    assert vectors.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0)
    np.testing.assert_allclose(vectors[0], [0.0, 0.0, -1.0], atol=1e-12)
    assert vectors[1, 1] < 0  # pitch > 0: up the image (y points down)
    assert vectors[2, 0] < 0  # yaw > 0: to the image's left
    np.testing.assert_allclose(vectors[3], [-np.cos(-0.2) * np.sin(0.5), -np.sin(-0.2),
                                            -np.cos(-0.2) * np.cos(0.5)], atol=1e-12)


def test_gaze_to_vector_of_tensors_matches_numpy_also_in_tf_data():
    import tensorflow as tf

    gaze = np.array([[0.0, 0.0], [0.3, -0.2], [-0.5, 0.7]], np.float32)
    got = metrics.gaze_to_vector(tf.constant(gaze))
    assert tf.is_tensor(got) and got.dtype == tf.float32 and got.shape == (3, 3)
    np.testing.assert_allclose(got.numpy(), metrics.gaze_to_vector(gaze), atol=1e-6)
    mapped = tf.data.Dataset.from_tensor_slices(gaze).map(metrics.gaze_to_vector)
    np.testing.assert_allclose(np.stack(list(mapped.as_numpy_iterator())), got.numpy())


def test_vector_to_gaze_inverts_gaze_to_vector():
    gaze = np.array([[0.0, 0.0], [0.3, -0.2], [-0.5, 0.7], [1.2, -2.9]])
    np.testing.assert_allclose(metrics.vector_to_gaze(metrics.gaze_to_vector(gaze)), gaze,
                               atol=1e-12)
    # Any length; [..., 3] keeps its leading axes; a zero vector has no direction.
    np.testing.assert_allclose(metrics.vector_to_gaze([0.0, 0.0, -7.0]), [0.0, 0.0])
    assert metrics.vector_to_gaze(np.zeros((2, 4, 3))).shape == (2, 4, 2)
    assert np.isnan(metrics.vector_to_gaze([0.0, 0.0, 0.0])).all()


def test_angular_errors_of_gaze_angles():
    # Two gazes differing only in yaw by 10 degrees are 10 degrees apart.
    gaze = np.radians([[0.0, 5.0], [0.0, 15.0]])
    v = metrics.gaze_to_vector(gaze)
    assert metrics.angular_errors(v[:1], v[1:])[0] == pytest.approx(10.0)
    # Pitch and yaw together: the angle between (p, y) = (30, 0) and (0, 40) degrees is
    # arccos(cos 30 cos 40) = 48.44 degrees.
    v = metrics.gaze_to_vector(np.radians([[30.0, 0.0], [0.0, 40.0]]))
    expected = np.degrees(np.arccos(np.cos(np.radians(30)) * np.cos(np.radians(40))))
    assert metrics.angular_errors(v[:1], v[1:])[0] == pytest.approx(expected)
    assert expected == pytest.approx(48.44, abs=0.01)


def test_angular_errors_reject_bad_input():
    with pytest.raises(ValueError, match="\\[n, 3\\]"):
        metrics.angular_errors(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="non-zero"):
        metrics.angular_errors(np.zeros((1, 3)), np.ones((1, 3)))


def test_joint_errors_by_hand():
    truth = np.zeros((2, 2, 2))
    predicted = np.array([[[3, 4], [0, 1]], [[0, 0], [6, 8]]], np.float64)
    np.testing.assert_allclose(metrics.joint_errors(truth, predicted), [[5, 1], [0, 10]])


def test_cumulative_curve_by_hand():
    errors = np.array([0.5, 1.0, 2.5, 3.0, 10.0])
    np.testing.assert_allclose(metrics.cumulative_curve(errors, [1, 2, 3, 9, 10]),
                               [40, 40, 80, 80, 100])
    with pytest.raises(ValueError, match="empty"):
        metrics.cumulative_curve(np.array([]))


def test_summarize_gaze_and_hands():
    summary = metrics.summarize(np.array([1.0, 2.0, 6.0]), thresholds=[1, 5, 10])
    assert summary == {"mean": 3.0, "median": 2.0, "unit": "degrees", "count": 3,
                       "within": {"1": pytest.approx(100 / 3), "5": pytest.approx(200 / 3),
                                  "10": 100.0}}
    # Hands: mean over all joints; an image is within d only if its worst joint is.
    joints = np.array([[1.0, 3.0], [2.0, 2.0]])
    summary = metrics.summarize(joints, [2, 3], per_image=joints.max(axis=1),
                                   unit="pixels")
    assert summary["mean"] == 2.0 and summary["count"] == 2
    assert summary["within"] == {"2": 50.0, "3": 100.0}
    assert list(metrics.summarize(np.ones(3))["within"]) == [str(d) for d in range(1, 21)]


def test_results_and_curves_are_written(tmp_path):
    results = {"synthetic": metrics.summarize(np.array([5.0, 9.0, 12.0])),
               "refined": metrics.summarize(np.array([3.0, 4.0, 8.0]))}
    path = str(tmp_path / "out" / "results.json")
    os.makedirs(os.path.dirname(path))
    metrics.write_results(path, {"splits": results})
    assert metrics.read_results(path)["splits"]["refined"]["mean"] == 5.0
    with open(path) as f:
        assert json.load(f)["splits"]["synthetic"]["within"]["10"] == pytest.approx(200 / 3)
    png = metrics.plot_curves(results, str(tmp_path / "out" / "curves.png"), title="t")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (600, 450)
    assert sorted(os.listdir(tmp_path / "out")) == ["curves.png", "results.json"]
