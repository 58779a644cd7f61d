"""A run folder on a `tf.io.gfile` file system that is not the local disk (`ram://`)."""

import json
import logging
import os
import uuid

import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.serving import export
from simgan_tf.training import checkpointing, train_lib
from test_train import tiny_config

TOTAL = 2 + 1 + 2 * 3


@pytest.fixture
def ram_model_dir():
    """A fresh `ram://` run folder (TensorFlow's in-memory file system), removed after."""
    model_dir = f"ram://simgan-{uuid.uuid4().hex[:8]}/run"
    yield model_dir
    if tf.io.gfile.exists(model_dir):
        tf.io.gfile.rmtree(model_dir)


def test_train_resume_and_export_in_memory(shifted_data_dir, ram_model_dir, caplog):
    first = train_lib.train(tiny_config(shifted_data_dir), ram_model_dir, verbose=0)
    assert first.step == TOTAL
    # config.json
    with tf.io.gfile.GFile(os.path.join(ram_model_dir, "config.json")) as f:
        saved = config_lib.SimGANConfig.from_json(json.load(f))
    assert saved.data.data_dir == os.path.abspath(shifted_data_dir)
    assert saved.train.steps == 2
    # Checkpoints 4, 8 and the last one, all intact.
    checkpoint_dir = os.path.join(ram_model_dir, "checkpoints")
    names = tf.io.gfile.listdir(checkpoint_dir)
    for step in (4, 8, TOTAL):
        assert f"ckpt-{step}.index" in names, names
    latest = os.path.join(checkpoint_dir, f"ckpt-{TOTAL}")
    checkpointing.verify(latest)
    steps = [v for k, v in checkpointing.read_tensors(latest).items()
             if k.startswith("model/step_counter")]
    assert steps == [TOTAL]
    # TensorBoard events.
    assert tf.io.gfile.glob(os.path.join(ram_model_dir, "logs", "train", "events.out.*"))
    # The export, with its model card, loads and refines.
    assert first.export_path == os.path.join(ram_model_dir, "export", "refiner", str(TOTAL))
    assert tf.io.gfile.exists(os.path.join(first.export_path, "saved_model.pb"))
    assert export.read_model_card(first.export_path)["training_steps"] == TOTAL
    refine = export.load_refiner(first.export_path)
    images = np.zeros((2, 35, 55, 1), np.float32)
    np.testing.assert_allclose(refine(images).numpy(), first.model.refiner(images).numpy(),
                               atol=1e-5)
    weights = [v.numpy().copy() for v in first.model.variables]

    # Resume with more iterations: restores step 9 from memory and continues to 15.
    caplog.set_level(logging.INFO, logger="absl")
    longer = train_lib.train(tiny_config(shifted_data_dir, steps=4), ram_model_dir, verbose=0)
    assert f"Resumed from {latest} at step {TOTAL}" in caplog.text
    assert longer.step == 2 + 1 + 4 * 3 and longer.history is not None
    assert int(longer.model.refiner_optimizer.iterations.numpy()) == 2 + 4 * 2
    assert "ckpt-15.index" in tf.io.gfile.listdir(checkpoint_dir)
    assert tf.io.gfile.isdir(os.path.join(ram_model_dir, "export", "refiner", "15"))
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(weights, longer.model.variables))


def test_a_resumed_run_skips_a_damaged_checkpoint_in_memory(shifted_data_dir, ram_model_dir):
    train_lib.train(tiny_config(shifted_data_dir, export=False), ram_model_dir, verbose=0)
    checkpoint_dir = os.path.join(ram_model_dir, "checkpoints")
    [data] = tf.io.gfile.glob(os.path.join(checkpoint_dir, f"ckpt-{TOTAL}.data-*"))
    with tf.io.gfile.GFile(data, "rb") as f:
        blob = f.read()
    # TensorFlow's ram:// file system appends on "wb" to an existing file: remove it first.
    tf.io.gfile.remove(data)
    with tf.io.gfile.GFile(data, "wb") as f:
        f.write(blob[: len(blob) // 2])
    assert tf.io.gfile.stat(data).length == len(blob) // 2
    tf.io.gfile.makedirs(os.path.join(checkpoint_dir, "ckpt-12_temp"))  # a killed save
    model = train_lib.build_simgan(tiny_config(shifted_data_dir))
    run = checkpointing.RunCheckpoint(train_lib.make_checkpoint(model), checkpoint_dir,
                                      max_to_keep=3)
    assert run.candidates()[0] == os.path.join(checkpoint_dir, f"ckpt-{TOTAL}")
    assert run.restore_latest() == os.path.join(checkpoint_dir, "ckpt-8")
    assert model.step == 8
    assert not tf.io.gfile.glob(os.path.join(checkpoint_dir, "ckpt-*_temp"))
