"""End-to-end tests of training: train.py, train_lib, resume, export."""

import dataclasses
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from simgan_tf.modeling.simgan import METRIC_NAMES
from simgan_tf.training import callbacks, train_lib
from simgan_tf import config as config_lib
from simgan_tf import runtime
from simgan_tf.serving import export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def event_tags(log_dir):
    """{tag: [steps]} of every summary in the event files under `log_dir`."""
    tags = {}
    for path in glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def tiny_config(data_dir, **train):
    """A `gaze_demo` run of a few updates with a small refiner, the paper's: its output is
    a function of its input (the presets' random output layers have their own tests)."""
    settings = dict(batch_size=8, steps=2, pretrain_refiner_steps=2,
                    pretrain_discriminator_steps=1, history_size=8, log_every=2,
                    image_every=3, checkpoint_every=4)
    settings.update(train)
    config = config_lib.get_preset("gaze_demo")
    config = config_lib.override(config, {f"train.{k}": v for k, v in settings.items()})
    config = dataclasses.replace(config, refiner=config_lib.PAPER_REFINER)
    return config_lib.override(config, {"data.data_dir": data_dir,
                                        "refiner.filters": 8, "refiner.num_blocks": 1})


def test_train_py_end_to_end(shifted_data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze",
               f"--data_dir={shifted_data_dir}", f"--model_dir={model_dir}", "--batch_size=8",
               "--steps=2", "--pretrain_refiner_steps=2", "--pretrain_discriminator_steps=1",
               "--history_size=8", "--log_every=1", "--image_every=2", "--checkpoint_every=3",
               "--reg_weight=0.5", "--seed=3"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=str(tmp_path),
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    total = 2 + 1 + 2 * 3
    # The resolved config.
    with open(os.path.join(model_dir, "config.json")) as f:
        saved = config_lib.SimGANConfig.from_json(json.load(f))
    assert saved.name == "gaze" and saved.train.batch_size == 8
    assert saved.train.reg_weight == 0.5 and saved.train.seed == 3
    assert saved.data.data_dir == os.path.abspath(shifted_data_dir)
    assert saved.refiner == config_lib.get_preset("gaze").refiner
    # Checkpoints, numbered by step, the last at the end.
    checkpoint_dir = os.path.join(model_dir, "checkpoints")
    assert tf.train.latest_checkpoint(checkpoint_dir).endswith(f"ckpt-{total}")
    assert os.path.exists(os.path.join(checkpoint_dir, "ckpt-3.index"))
    # TensorBoard scalars and images.
    tags = event_tags(os.path.join(model_dir, "logs"))
    for name in METRIC_NAMES:  # the options' metrics are written only when they are on
        assert callbacks.SCALAR_TAGS[name] in tags, (name, sorted(tags))
    assert "refiner/task_consistency_loss" not in tags
    assert "discriminator/learning_rate_scale" not in tags
    assert callbacks.REFINED_IMAGES_TAG in tags and callbacks.REAL_IMAGES_TAG in tags
    assert callbacks.PROBABILITY_IMAGES_TAG in tags
    assert callbacks.DIFFERENCE_HISTOGRAM_TAG in tags
    assert "_hparams_/session_start_info" in tags
    assert max(tags[callbacks.PHASE_TAG]) == total
    # The SavedModel reloads and refines a batch.
    export_path = os.path.join(model_dir, "export", "refiner", str(total))
    refine = export.load_refiner(export_path)
    images = np.random.default_rng(0).uniform(-1, 1, (3, 35, 55, 1)).astype(np.float32)
    refined = refine(images).numpy()
    assert refined.shape == (3, 35, 55, 1) and refined.dtype == np.float32
    assert np.all(np.abs(refined) <= 1)
    card = export.read_model_card(export_path)
    assert card["training_steps"] == total and card["config"]["train"]["reg_weight"] == 0.5
    assert card["data"]["splits"]["synthetic"]["count"] == 256
    assert "Refiner pretraining done" in result.stderr
    assert "L1 per pixel" in result.stderr


def test_train_py_reports_bad_flags(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze", "--batch_size=7",
         f"--data_dir={tmp_path}", f"--model_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Received: 7" in result.stderr
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=faces",
         f"--model_dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Unknown preset" in result.stderr
    assert "'faces'" in result.stderr


def test_resume_continues_from_the_latest_checkpoint(shifted_data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    first = train_lib.train(tiny_config(shifted_data_dir), model_dir, verbose=0)
    assert first.step == 2 + 1 + 2 * 3
    weights = [v.numpy().copy() for v in first.model.variables]
    buffer = first.model.history_buffer.images.numpy().copy()

    # Same command again: restores everything, nothing left to train.
    again = train_lib.train(tiny_config(shifted_data_dir), model_dir, verbose=0)
    assert again.step == first.step and again.history is None
    for a, b in zip(weights, again.model.variables):
        np.testing.assert_array_equal(a, b.numpy())
    np.testing.assert_array_equal(buffer, again.model.history_buffer.images.numpy())
    assert int(again.model.history_buffer.fill.numpy()) == 8
    optimizer_iterations = int(again.model.refiner_optimizer.iterations.numpy())
    assert optimizer_iterations == 2 + 2 * 2  # pretraining + K_g per iteration

    # More iterations: continues at step 9 up to 15.
    longer = train_lib.train(tiny_config(shifted_data_dir, steps=4), model_dir, verbose=0)
    assert longer.step == 2 + 1 + 4 * 3
    assert int(longer.model.refiner_optimizer.iterations.numpy()) == 2 + 4 * 2
    tags = event_tags(os.path.join(model_dir, "logs"))
    assert max(tags[callbacks.PHASE_TAG]) == 15
    assert os.path.isdir(os.path.join(model_dir, "export", "refiner", "15"))

    # A different network for the same model_dir is refused.
    other = config_lib.override(tiny_config(shifted_data_dir), {"refiner.filters": 16})
    with pytest.raises(ValueError, match="refiner.filters: saved 8, received 16"):
        train_lib.train(other, model_dir, verbose=0)


def test_mirrored_strategy_training_smoke(shifted_data_dir, tmp_path, mirrored_strategy):
    config = tiny_config(shifted_data_dir, export=False)
    result = train_lib.train(config, str(tmp_path / "run"), strategy=mirrored_strategy,
                             verbose=0)
    model = result.model
    assert result.step == 9 and result.export_path is None
    copies = mirrored_strategy.experimental_local_results(model.history_buffer.images)
    np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())
    assert int(model.history_buffer.fill.numpy()) == 8
    for values in (v for v in mirrored_strategy.experimental_local_results(
            model.refiner.trainable_variables[0])):
        assert np.all(np.isfinite(values.numpy()))
    with pytest.raises(ValueError, match="multiple of 4"):
        train_lib.train(tiny_config(shifted_data_dir, batch_size=6), str(tmp_path / "r2"),
                        strategy=mirrored_strategy, verbose=0)


@pytest.mark.parametrize("flag, message", [
    ("--steps=-1", "train.steps must be >= 0. Received: -1"),
    ("--pretrain_refiner_steps=-3", "train.pretrain_refiner_steps must be >= 0. Received: -3"),
    ("--reg_weight=-0.5", "train.reg_weight (lambda) must be >= 0. Received: -0.5"),
    ("--history_size=3", "at least half a batch (4). Received: 3"),
    ("--checkpoint_every=0", "train.checkpoint_every must be >= 1. Received: 0"),
    ("--data_service=localhost:5050", "grpc://host:port. Received: 'localhost:5050'"),
])
def test_train_py_rejects_out_of_range_flags_at_start(tmp_path, flag, message):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze", "--batch_size=8",
         f"--data_dir={tmp_path}", f"--model_dir={tmp_path / 'run'}", flag],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert not os.path.exists(tmp_path / "run")


def test_training_warns_when_tensorflow_runs_without_onednn(shifted_data_dir, tmp_path,
                                                           monkeypatch, caplog):

    config = config_lib.override(tiny_config(shifted_data_dir, steps=0, pretrain_refiner_steps=1,
                                             pretrain_discriminator_steps=0),
                                 {"train.export": False})
    monkeypatch.setattr(runtime, "onednn_enabled", lambda: False)
    with caplog.at_level("WARNING"):
        result = train_lib.train(config, str(tmp_path / "eigen"), verbose=0)
    assert result.step == 1
    assert "without its oneDNN CPU kernels" in caplog.text
    caplog.clear()
    monkeypatch.setattr(runtime, "onednn_enabled", lambda: True)
    with caplog.at_level("WARNING"):
        train_lib.train(config, str(tmp_path / "onednn"), verbose=0)
    assert "oneDNN" not in caplog.text


def test_bfloat16_refiner_stays_within_the_stated_tolerance_of_float32():
    """README ("Scaling out", mixed precision): on the same weights, the bfloat16 refiner's
    output differs from the float32 one by at most 0.008 on average, 0.04 at the 99th
    percentile and 0.1 anywhere ([-1, 1] units; 0.1 is 6.4 gray levels of 255)."""
    import keras

    from simgan_tf.modeling.refiner import build_refiner

    keras.utils.set_random_seed(3)
    reference = build_refiner((35, 55, 1))
    out = reference.get_layer("conv_out").kernel
    out.assign(out * 10.0)  # outputs spread over [-1, 1] like a trained refiner's
    with runtime.precision_policy(True):
        mixed = build_refiner((35, 55, 1))
    assert mixed.get_layer("block1_conv1").compute_dtype == "bfloat16"
    mixed.set_weights(reference.get_weights())
    images = np.random.default_rng(3).uniform(-1, 1, (32, 35, 55, 1)).astype(np.float32)
    expected = reference(images).numpy()
    assert expected.std() > 0.2
    difference = np.abs(mixed(images).numpy() - expected)
    assert 0 < difference.mean() <= 0.008
    assert np.percentile(difference, 99) <= 0.04
    assert difference.max() <= 0.1


def test_mixed_precision_runs_and_keeps_float32_at_the_edges(shifted_data_dir, tmp_path):
    import keras

    config = config_lib.override(tiny_config(shifted_data_dir), {"runtime.mixed_precision": True})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    model = result.model
    assert result.step == 9
    assert keras.config.dtype_policy().name == "float32"  # restored after building
    conv = model.refiner.get_layer("conv_in")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    images = tf.zeros([2, 35, 55, 1])
    assert model.refiner(images).dtype == tf.float32
    assert model.discriminator(images).dtype == tf.float32  # logits
    assert model.history_buffer.images.dtype == tf.float32
    assert int(model.history_buffer.fill.numpy()) == 8
    for name, tracker in model.trackers.items():
        assert tracker.result().dtype == tf.float32, name
    assert all(np.all(np.isfinite(v.numpy())) for v in model.trainable_variables)
    refine = export.load_refiner(result.export_path)
    signature = refine.loaded.signatures["serving_default"]
    assert signature.structured_input_signature[1]["images"].dtype == tf.float32
    refined = refine(np.zeros((3, 35, 55, 1), np.float32))
    assert refined.dtype == tf.float32 and refined.shape == (3, 35, 55, 1)
    # bfloat16 inside: the exported graph may round differently from eager by a few ulps.
    np.testing.assert_allclose(refined.numpy(), model.refiner(np.zeros((3, 35, 55, 1),
                                                                       np.float32)).numpy(),
                               atol=1e-3)
