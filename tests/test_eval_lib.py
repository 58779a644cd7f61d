"""End-to-end tests of the evaluation on simulator data: evaluate(), evaluate.py, realism."""

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from simgan_tf.data import builtin
from simgan_tf import config as config_lib
from simgan_tf.evaluation import estimators, eval_lib
from simgan_tf.serving import export
from simgan_tf.evaluation import realism
from simgan_tf.serving import refine_split
from simgan_tf.data import schema
from simgan_tf.modeling.refiner import build_refiner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_REALISM = realism.RealismConfig(num_images=64, steps=15, batch_size=16)


@pytest.fixture(scope="module")
def eye_data(tmp_path_factory):
    """Simulator eyes (synthetic, real, labelled real_test) plus a `refined` split."""
    cache = str(tmp_path_factory.mktemp("cache"))
    data_dir = builtin.ensure_simulator_data(cache, num_synthetic=160, num_real=64,
                                                  num_real_test=96)
    keras.utils.set_random_seed(1)
    refiner = build_refiner((35, 55, 1), config_lib.RefinerConfig(filters=4, num_blocks=1))
    saved_model = export.export_refiner(refiner, str(tmp_path_factory.mktemp("export")), 1,
                                        (35, 55, 1))
    refine_split.refine_split(saved_model, os.path.join(data_dir, "synthetic"),
                            os.path.join(data_dir, "refined"))
    return data_dir


def test_evaluate_gaze_end_to_end(eye_data, tmp_path, mirrored_strategy):
    config = dataclasses.replace(eval_lib.PRESETS["gaze"], steps=6, batch_size=16,
                                 shuffle_buffer=64, realism=TINY_REALISM)
    out = str(tmp_path / "eval")
    results = eval_lib.evaluate(config, eye_data, ["synthetic", "refined"], "real_test", out,
                                realism_split="real_test", strategy=mirrored_strategy)
    assert sorted(os.listdir(out)) == ["curves.png", "logs", "results.json"]
    tags = {}
    for path in glob.glob(os.path.join(out, "logs", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags[value.tag] = value
    curves = tf.io.decode_png(tf.make_ndarray(tags[eval_lib.CURVES_TAG].tensor)[2])
    assert curves.shape == (450, 600, 4)
    for split in ("synthetic", "refined"):
        assert f"evaluation/{split}/mean_error" in tags
        assert f"evaluation/{split}/realism_accuracy" in tags
    with open(os.path.join(out, "results.json")) as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(results))
    assert saved["task"] == "gaze" and saved["test_split"] == "real_test"
    assert saved["test_images"] == 96
    assert saved["train_splits"] == ["synthetic", "refined"]
    assert list(saved["splits"]) == ["synthetic", "refined"]
    for summary in saved["splits"].values():
        assert summary["unit"] == "degrees" and summary["count"] == 96
        assert 0 < summary["median"] < 180 and 0 < summary["mean"] < 180
        within = summary["within"]
        assert list(within) == [str(d) for d in range(1, 21)]
        values = list(within.values())
        assert values == sorted(values) and 0 <= values[0] and values[-1] <= 100
        assert summary["train_images"] == 160
        r = summary["realism"]
        assert 0 <= r["accuracy"] <= 1 and r["test_images"] == 64
    # Different training images give different estimators (same seed, same settings).
    assert saved["splits"]["synthetic"]["mean"] != saved["splits"]["refined"]["mean"]
    logged = float(tf.make_ndarray(tags["evaluation/refined/mean_error"].tensor))
    assert logged == pytest.approx(saved["splits"]["refined"]["mean"], rel=1e-6)
    with Image.open(os.path.join(out, "curves.png")) as image:
        assert image.format == "PNG"


def test_evaluation_is_reproducible_for_a_seed(eye_data):
    config = dataclasses.replace(eval_lib.PRESETS["gaze"], steps=4, batch_size=8,
                                 shuffle_buffer=32)
    first = eval_lib.train_estimator(config, eye_data, "synthetic")
    second = eval_lib.train_estimator(config, eye_data, "synthetic")
    a = eval_lib.test_estimator(config, first, eye_data, "real_test")
    b = eval_lib.test_estimator(config, second, eye_data, "real_test")
    assert a["mean"] == pytest.approx(b["mean"], rel=1e-4)


def test_evaluate_rejects_unlabelled_or_missing_splits(eye_data, shifted_data_dir, tmp_path):
    config = dataclasses.replace(eval_lib.PRESETS["gaze"], steps=1)
    with pytest.raises(ValueError, match=r"'real' of .* has no label field\(s\) "
                                         r"\['label/gaze'\].* gaze evaluation needs"):
        eval_lib.evaluate(config, shifted_data_dir, ["synthetic"], "real", str(tmp_path))
    with pytest.raises(ValueError, match="no split 'nope'"):
        eval_lib.evaluate(config, eye_data, ["synthetic"], "nope", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        eval_lib.evaluate(config, str(tmp_path / "missing"), ["synthetic"], "real_test",
                          str(tmp_path))
    with pytest.raises(ValueError, match="label/joints_uvd"):
        eval_lib.evaluate(dataclasses.replace(config, task="hand"), eye_data, ["synthetic"],
                          "real_test", str(tmp_path))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        dataclasses.replace(config, steps=0).validate()
    assert os.listdir(tmp_path) == []  # nothing written before the checks


def test_evaluate_hand_end_to_end(tmp_path):
    data_dir = builtin.ensure_simulator_data(
        str(tmp_path / "cache"), num_synthetic=48, num_real=16, num_real_test=24, kind="hand",
        size=32)
    config = dataclasses.replace(
        eval_lib.PRESETS["hand"], steps=3, batch_size=8, shuffle_buffer=16,
        hourglass=estimators.HourglassConfig(heatmap_size=8, num_stacks=1, depth=2, filters=8),
        thresholds=(2, 4, 8, 16, 32))
    results = eval_lib.evaluate(config, data_dir, ["synthetic"], "real_test",
                                str(tmp_path / "eval"))
    summary = results["splits"]["synthetic"]
    assert summary["unit"] == "pixels" and summary["count"] == 24
    assert list(summary["within"]) == ["2", "4", "8", "16", "32"]
    assert 0 < summary["mean"] < 32 * np.sqrt(2)
    assert "realism" not in summary
    assert os.path.exists(tmp_path / "eval" / "curves.png")


def test_realism_score_separates_what_differs_and_not_what_does_not():
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (256, 12, 12, 1)).astype(np.float32)
    same = rng.uniform(-1, 1, (256, 12, 12, 1)).astype(np.float32)
    different = np.clip(same * 0.2 + 0.5, -1, 1)  # low contrast, bright
    config = realism.RealismConfig(steps=120, batch_size=32)
    easy = realism.realism_score(real, different, config)
    hard = realism.realism_score(real, same, config)
    assert easy["accuracy"] > 0.95 and easy["test_images"] == 256
    assert 0.3 < hard["accuracy"] < 0.7
    assert hard["cross_entropy"] > easy["cross_entropy"]
    with pytest.raises(ValueError, match="shape"):
        realism.realism_score(real, same[:, :8], config)
    with pytest.raises(ValueError, match="at least 4"):
        realism.realism_score(real[:3], same[:3], config)


def test_realism_repeats_average_classifiers_of_consecutive_seeds():
    rng = np.random.default_rng(2)
    real = rng.uniform(-1, 1, (96, 12, 12, 1)).astype(np.float32)
    candidate = np.clip(rng.uniform(-1, 1, (96, 12, 12, 1)) * 0.8 + 0.1, -1, 1)
    config = realism.RealismConfig(steps=20, batch_size=16, seed=5, repeats=3)
    score = realism.realism_score(real, candidate, config)
    singles = [realism.realism_score(real, candidate, dataclasses.replace(
        config, seed=seed, repeats=1)) for seed in (5, 6, 7)]
    assert score["accuracies"] == pytest.approx([s["accuracy"] for s in singles], abs=1e-9)
    assert score["accuracy"] == pytest.approx(np.mean(score["accuracies"]))
    assert score["accuracy_sd"] == pytest.approx(np.std(score["accuracies"], ddof=1))
    for key in ("real_accuracy", "candidate_accuracy", "cross_entropy"):
        assert score[key] == pytest.approx(np.mean([s[key] for s in singles]), rel=1e-4)
    assert score["test_images"] == 96
    assert len(set(score["accuracies"])) > 1  # the seeds do give different classifiers
    assert singles[0]["accuracies"] == [singles[0]["accuracy"]]
    assert singles[0]["accuracy_sd"] == 0.0
    with pytest.raises(ValueError, match="repeats >= 1"):
        realism.realism_score(real, candidate, dataclasses.replace(config, repeats=0))


def test_train_classifier_runs_the_configured_steps_with_callbacks_and_seed():
    rng = np.random.default_rng(1)
    images = np.concatenate([rng.uniform(0.5, 1, (64, 10, 10, 1)),
                             rng.uniform(-1, -0.5, (64, 10, 10, 1))]).astype(np.float32)
    labels = np.concatenate([np.ones(64), np.zeros(64)]).astype(np.float32)

    class Count(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            Count.batches += 1

    config = realism.RealismConfig(steps=25, batch_size=16, seed=3)
    model = realism.train_classifier(images, labels, config, callbacks=[Count()])
    again = realism.train_classifier(images, labels, config)
    assert Count.batches == 25
    logits = model.predict(images, verbose=0)[:, 0]
    assert np.mean((logits > 0) == (labels > 0.5)) > 0.95
    np.testing.assert_allclose(again.predict(images, verbose=0)[:, 0], logits, rtol=1e-4,
                               atol=1e-5)


def test_mixed_precision_trains_in_bfloat16_with_float32_outputs(eye_data):
    config = dataclasses.replace(eval_lib.PRESETS["gaze"], steps=3, batch_size=8,
                                 shuffle_buffer=32, mixed_precision=True)
    model = eval_lib.train_estimator(config, eye_data, "synthetic")
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    assert model.get_layer("conv1").variable_dtype == "float32"
    assert model.get_layer("gaze_vector").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the policy is restored
    summary = eval_lib.test_estimator(config, model, eye_data, "real_test")
    assert 0 < summary["mean"] < 180
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (32, 35, 55, 1)).astype(np.float32)
    labels = (np.arange(32) % 2).astype(np.float32)
    classifier = realism.train_classifier(
        images, labels, realism.RealismConfig(steps=2, batch_size=8, mixed_precision=True))
    assert classifier.get_layer("conv1").compute_dtype == "bfloat16"
    assert classifier.predict(images, verbose=0).dtype == np.float32


def test_evaluate_py_command(eye_data, tmp_path, refiner_export):
    saved_model = str(tmp_path / "export")
    shutil.copytree(refiner_export[1], saved_model)  # the shared export stays untouched
    card_before = export.read_model_card(saved_model)
    assert card_before["evaluation"] is None
    out = str(tmp_path / "eval")
    command = [sys.executable, os.path.join(ROOT, "evaluate.py"), "--dataset=gaze",
               f"--data_dir={eye_data}", "--train_splits=synthetic,refined",
               "--test_split=real_test", f"--output_dir={out}", "--steps=3", "--batch_size=8",
               "--realism_steps=3", "--realism_images=16", "--seed=4",
               f"--saved_model={saved_model}", "--mixed_precision"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.load(open(os.path.join(out, "results.json")))
    assert results["config"]["steps"] == 3 and results["config"]["seed"] == 4
    assert results["config"]["realism"]["num_images"] == 16
    assert results["config"]["mixed_precision"] and results["config"]["realism"]["mixed_precision"]
    assert sorted(results["splits"]) == ["refined", "synthetic"]
    header, *rows = result.stdout.strip().splitlines()[-3:]
    assert header.split()[:3] == ["trained", "on", "mean"] and "realism accuracy" in header
    for row, split in zip(rows, ["synthetic", "refined"]):
        cells = row.split()
        summary = results["splits"][split]
        assert cells[0] == split and float(cells[1]) == round(summary["mean"], 2)
        assert float(cells[-1]) == round(summary["realism"]["accuracy"], 3)
    for bar in ("gaze estimator on synthetic", "gaze estimator on refined",
                "realism classifier: refined vs real"):
        assert bar in result.stderr  # a progress bar per network
    card = export.read_model_card(saved_model)
    assert card["evaluation"]["splits"] == results["splits"]
    assert card["evaluation"]["test_split"] == "real_test"
    assert card["config"] == card_before["config"]  # the rest of the card is kept
    bad = subprocess.run(command[:4] + ["--train_splits=synthetic", "--test_split=nope",
                                        f"--output_dir={out}2"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "no split 'nope'" in bad.stderr
    assert not os.path.exists(f"{out}2")


def test_small_depth_images_use_the_demo_hand_preset():
    assert eval_lib.preset_for("hand", 224) == "hand"
    assert eval_lib.preset_for("hand", 64) == "hand_demo"
    assert eval_lib.preset_for("gaze", 35) == "gaze"
    demo = eval_lib.PRESETS["hand_demo"].validate()
    assert demo.hourglass.heatmap_size * 4 == 64  # no upsampling of 64x64 inputs
    with pytest.raises(ValueError, match="task"):
        eval_lib.preset_for("face", 64)
