"""Evaluation metrics of the paper: angular gaze error, joint error, cumulative curves.

Gaze (paper, Fig. 7 and Table 2): the error of one test image is the angle in degrees
between the label's 3D unit gaze vector and the predicted vector (normalized). Reported:
mean and median error and the cumulative curve "% of test images whose error is within d
degrees".

Hands (paper, Fig. 12 and Table 4): the error of one joint is the Euclidean distance in
image pixels between its predicted and labelled (u, v). An image counts as within d when
*all* its joints are within d pixels, so the curve is computed from each image's worst
joint. Reported: mean and median joint error over all joints of all images, and that
curve.

The gaze label convention (`label/gaze`, MPIIGaze's) is defined here once:
`gaze_to_vector` and its inverse `vector_to_gaze`, used by the simulator, the converters
of `data_prep/` and the gaze estimator.

All functions here are pure and run on the host in NumPy; `gaze_to_vector` also takes
TensorFlow tensors (for input pipelines).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import numpy as np

from simgan_tf.data import schema

# d = 1 .. 20 (degrees for gaze, pixels for hands), as results.json reports.
DEFAULT_THRESHOLDS = tuple(range(1, 21))


def gaze_to_vector(gaze):
    """Converts (pitch, yaw) to 3D unit gaze vectors in camera coordinates.

    Camera coordinates as in MPIIGaze: x to the image's right, y down the image, z away
    from the camera; the vector is `(-cos(p) sin(y), -sin(p), -cos(p) cos(y))`, so
    `(0, 0)` looks into the camera, pitch > 0 up and yaw > 0 to the image's left.

    Args:
      gaze: `[..., 2]` (pitch, yaw) in radians: an array (or list), or a TensorFlow
        tensor (also inside `tf.data` and `tf.function`).

    Returns:
      `[..., 3]` unit vectors: float64 NumPy for an array, float32 tensor for a tensor.
    """
    tf = sys.modules.get("tensorflow")  # a tensor implies TensorFlow is imported
    if tf is not None and tf.is_tensor(gaze):
        ops, gaze = tf, tf.convert_to_tensor(gaze, tf.float32)
    else:
        ops, gaze = np, np.asarray(gaze, dtype=np.float64)
    pitch, yaw = gaze[..., 0], gaze[..., 1]
    return ops.stack([-ops.cos(pitch) * ops.sin(yaw), -ops.sin(pitch),
                      -ops.cos(pitch) * ops.cos(yaw)], axis=-1)


def vector_to_gaze(vectors: np.ndarray) -> np.ndarray:
    """The inverse of `gaze_to_vector`: `[..., 3]` vectors (any length) to (pitch, yaw).

    `pitch = asin(-y)`, `yaw = atan2(-x, -z)` of the normalized vector, in the camera
    coordinates of `gaze_to_vector` (y down).

    Returns:
      float64 `[..., 2]` radians, pitch in [-pi/2, pi/2], yaw in (-pi, pi]; NaN for a
      zero vector.
    """
    v = np.asarray(vectors, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.stack([np.arcsin(np.clip(-v[..., 1], -1, 1)),
                     np.arctan2(-v[..., 0], -v[..., 2])], axis=-1)


def angular_errors(true_vectors: np.ndarray, predicted_vectors: np.ndarray) -> np.ndarray:
    """Angles in degrees between gaze vectors.

    Args:
      true_vectors: `[n, 3]` label vectors (any length > 0).
      predicted_vectors: `[n, 3]` predictions (any length > 0).

    Returns:
      `[n]` angles in degrees, in [0, 180].

    Raises:
      ValueError: on mismatched shapes or a zero-length vector.
    """
    a = np.asarray(true_vectors, dtype=np.float64)
    b = np.asarray(predicted_vectors, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[-1] != 3:
        raise ValueError(f"Expected two [n, 3] arrays. Received: {a.shape} and {b.shape}")
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    if np.any(na == 0) or np.any(nb == 0):
        raise ValueError("Gaze vectors must have a non-zero length.")
    cos = np.sum(a * b, axis=-1) / (na * nb)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def joint_errors(true_uv: np.ndarray, predicted_uv: np.ndarray) -> np.ndarray:
    """Per-joint Euclidean distances in pixels.

    Args:
      true_uv: `[n, J, 2]` labelled (u, v).
      predicted_uv: `[n, J, 2]` predicted (u, v).

    Returns:
      `[n, J]` distances.
    """
    a = np.asarray(true_uv, dtype=np.float64)
    b = np.asarray(predicted_uv, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"Expected two [n, J, 2] arrays. Received: {a.shape} and {b.shape}")
    return np.linalg.norm(a - b, axis=-1)


def cumulative_curve(errors: np.ndarray, thresholds=DEFAULT_THRESHOLDS) -> np.ndarray:
    """Percentage of `errors` that are <= each threshold.

    Args:
      errors: `[n]` per-image errors (for hands: each image's worst joint).
      thresholds: the d values.

    Returns:
      `[len(thresholds)]` percentages in [0, 100].
    """
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    if errors.size == 0:
        raise ValueError("Expected at least one error value. Received an empty array.")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    return 100.0 * np.mean(errors[None, :] <= thresholds[:, None], axis=1)


def summarize(errors: np.ndarray, thresholds=DEFAULT_THRESHOLDS, *,
              per_image: np.ndarray | None = None, unit: str = "degrees") -> dict:
    """The figures results.json reports for one training set.

    Args:
      errors: all error values (gaze: one per image; hands: one per joint).
      thresholds: d values of the curve.
      per_image: the per-image value the curve counts (hands: worst joint); default
        `errors`.
      unit: unit name stored with the figures.

    Returns:
      `{"mean", "median", "unit", "count", "within": {str(d): percent}}`.
    """
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    per_image = errors if per_image is None else np.asarray(per_image, np.float64).reshape(-1)
    curve = cumulative_curve(per_image, thresholds)
    return {
        "mean": float(np.mean(errors)),
        "median": float(np.median(errors)),
        "unit": unit,
        "count": int(per_image.size),
        "within": {_threshold_key(d): float(p) for d, p in zip(thresholds, curve)},
    }


def _threshold_key(d) -> str:
    return str(int(d)) if float(d).is_integer() else str(float(d))


def write_results(path: str, results: dict) -> None:
    """Writes results.json atomically (a temporary file renamed into place).

    Keys keep their order (training splits as given, d ascending).
    """
    schema.write_json_atomic(path, results, sort_keys=False)


def read_results(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def plot_curves(results: dict, path: str, *, title: str = "", xlabel: str | None = None) -> str:
    """Plots the cumulative curves of several training sets on one figure (paper Fig. 7/12).

    Args:
      results: `{training set name: summarize(...) dict}`.
      path: output PNG path (written to a temporary name, then renamed).
      title: figure title.
      xlabel: x axis label (default from the unit).

    Returns:
      `path`.
    """
    # A Figure of its own (no pyplot): the process-wide backend stays what it was.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4.5), dpi=100)
    axes = figure.subplots()
    unit = "degrees"
    for name, summary in results.items():
        points = sorted((float(d), p) for d, p in summary["within"].items())
        axes.plot([d for d, _ in points], [p for _, p in points], marker="o", markersize=3,
                  label=f"{name} (mean {summary['mean']:.2f})")
        unit = summary.get("unit", unit)
    axes.set_xlabel(xlabel or f"distance from ground truth ({unit})")
    axes.set_ylabel("percentage of images")
    axes.set_ylim(0, 100)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    if title:  # wrapped to the figure's width
        axes.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=10)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp.png")
    figure.savefig(tmp)
    os.replace(tmp, path)
    return path

