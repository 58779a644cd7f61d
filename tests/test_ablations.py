"""The paper's ablations as training flags: global adversarial loss (Fig. 8), no history (Fig. 9)."""

import json
import os
import subprocess
import sys

import numpy as np

from simgan_tf import config as config_lib
from simgan_tf.training import train_lib
from test_train import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_py_with_both_ablations(shifted_data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze",
               f"--data_dir={shifted_data_dir}", f"--model_dir={model_dir}", "--batch_size=8",
               "--steps=2", "--pretrain_refiner_steps=1", "--pretrain_discriminator_steps=1",
               "--history_size=0", "--adversarial_loss=global", "--export=false"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(model_dir, "config.json")) as f:
        saved = config_lib.SimGANConfig.from_json(json.load(f))
    assert saved.discriminator.output == "global" and saved.train.history_size == 0
    bad = subprocess.run(command[:-3] + ["--adversarial_loss=patchwise"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "adversarial_loss" in bad.stderr


def test_global_discriminator_trains_and_gives_one_decision_per_image(shifted_data_dir,
                                                                       tmp_path):
    config = config_lib.override(tiny_config(shifted_data_dir, history_size=0, export=False),
                                 {"discriminator.output": "global"})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    model = result.model
    assert model.history_buffer.size == 0
    images = np.random.default_rng(0).uniform(-1, 1, (2, 35, 55, 1)).astype(np.float32)
    logits = model.discriminator(images).numpy()
    assert logits.shape == (2, 9, 14, 2)
    np.testing.assert_array_equal(logits, np.broadcast_to(logits[:, :1, :1], logits.shape))
    assert result.step == model.schedule.total_steps


def test_local_plus_global_discriminator_trains_from_the_flag(shifted_data_dir, tmp_path):
    config = config_lib.override(tiny_config(shifted_data_dir, export=False),
                                 {"discriminator.output": "local+global"})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    model = result.model
    assert result.step == model.schedule.total_steps
    dense = model.discriminator.get_layer("global_logits")
    assert np.all(np.isfinite(dense.kernel.numpy()))
    images = np.random.default_rng(0).uniform(-1, 1, (2, 35, 55, 1)).astype(np.float32)
    logits = model.discriminator(images).numpy()
    assert logits.shape == (2, 9, 14, 2)
    # Patches differ (the local head) and share one image term (the global head).
    assert not np.allclose(logits, np.broadcast_to(logits[:, :1, :1], logits.shape))
    assert config_lib.command_line_overrides({"adversarial_loss": "local+global"}, []) == {
        "discriminator.output": "local+global"}
