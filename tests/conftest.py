"""Test setup: quiet TensorFlow, two logical CPU devices, small data folders."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import simgan_tf  # noqa: F401  before TensorFlow: asks it for oneDNN kernels, as users get
import tensorflow as tf  # noqa: E402

# Two logical CPUs for the MirroredStrategy tests; must happen before TF starts devices.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from simgan_tf.data import schema  # noqa: E402
from simgan_tf.data.writer import SplitWriter  # noqa: E402

SHAPE = (35, 55, 1)


def pattern_images(n, seed, shape=SHAPE):
    """Smooth random blobs on a mid-gray background: `[n, H, W, C]` uint8 in ~[60, 200]."""
    rng = np.random.default_rng(seed)
    height, width, channels = shape
    yy, xx = np.mgrid[0:height, 0:width]
    cy = rng.uniform(8, height - 8, n)[:, None, None]
    cx = rng.uniform(8, width - 8, n)[:, None, None]
    radius = rng.uniform(4, 9, n)[:, None, None]
    level = rng.uniform(50, 90, n)[:, None, None]
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
    images = 170 - level * blob + 10 * np.sin(xx / 5.0)[None]
    return np.repeat(np.clip(images, 0, 255)[..., None], channels, -1).astype(np.uint8)


def write_split(data_dir, split, images, domain, *, gaze=None, compression=None,
                shard_bytes=2**20):
    labels = {schema.LABEL_GAZE: 2} if gaze is not None else {}
    with SplitWriter(data_dir, split, domain=domain, image_shape=images.shape[1:],
                     label_fields=labels, compression=compression,
                     shard_bytes=shard_bytes) as writer:
        for i, image in enumerate(images):
            writer.write(schema.encode_example(
                image, key=f"{split}/{i:05d}", domain=domain,
                labels={schema.LABEL_GAZE: gaze[i]} if gaze is not None else None))


def make_shifted_data(data_dir, n=256, shift=50, noise=8.0, seed=0):
    """`synthetic` = pattern images; `real` = other pattern images `shift` darker + noise."""
    rng = np.random.default_rng(seed + 100)
    synthetic = pattern_images(n, seed)
    real = pattern_images(n, seed + 1).astype(np.float32) - shift
    real = np.clip(real + rng.normal(0, noise, real.shape), 0, 255).astype(np.uint8)
    gaze = rng.uniform(-0.3, 0.3, (n, 2)).astype(np.float32)
    write_split(data_dir, "synthetic", synthetic, "synthetic", gaze=gaze, shard_bytes=20_000)
    write_split(data_dir, "real", real, "real", shard_bytes=20_000)
    return synthetic, real


@pytest.fixture(scope="session")
def shifted_data_dir(tmp_path_factory):
    """A data folder whose `real` split is the synthetic pattern family, darker + noise."""
    data_dir = str(tmp_path_factory.mktemp("shifted_data"))
    make_shifted_data(data_dir)
    return data_dir


_MIRRORED = []


@pytest.fixture
def mirrored_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by all tests.

    Several MirroredStrategy objects in one process reuse collective instance keys and
    their all-reduces collide, so tests share this one.
    """
    if not _MIRRORED:
        _MIRRORED.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    return _MIRRORED[0]


@pytest.fixture(scope="session")
def refiner_export(tmp_path_factory):
    """A small refiner with random weights for 35x55x1 images and its export.

    Returns:
      `(refiner, export_path)`; the export maps 8-bit pixels over their full range.
    """
    import keras

    from simgan_tf import config as config_lib
    from simgan_tf.serving import export
    from simgan_tf.modeling.refiner import build_refiner

    keras.utils.set_random_seed(7)
    refiner = build_refiner(SHAPE, config_lib.RefinerConfig(filters=8, num_blocks=1))
    path = export.export_refiner(refiner, str(tmp_path_factory.mktemp("export")), 5, SHAPE)
    return refiner, path


REPO = os.path.join(os.path.dirname(__file__), "..")


def run_module(module, *args, timeout=180):
    """Runs `python -m <module> <args>` from the repository; the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def folder_bytes(folder):
    """`{relative path: bytes}` of every file below `folder`, folders mapped to None
    (to compare two states, leftover empty folders included)."""
    files = {}
    for parent, dirs, names in os.walk(folder):
        files.update({os.path.relpath(os.path.join(parent, d), folder): None for d in dirs})
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files
