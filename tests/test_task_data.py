"""A user's own task network: any split as a tf.data.Dataset of (image, labels), and the
realism score alone (`eval_lib.evaluate_realism`, `evaluate.py` without --train_splits)."""

import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import pattern_images
from simgan_tf.data import schema, task_data
from simgan_tf.data.writer import SplitWriter
from simgan_tf.evaluation import eval_lib, realism
from simgan_tf.serving import refine_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOUR = (24, 40, 3)
LABELS = {"label/box": 4, "label/brightness": 1}


def _write(data_dir, split, images, domain, labels=None):
    fields = {name: len(values[0]) for name, values in (labels or {}).items()}
    with SplitWriter(data_dir, split, domain=domain, image_shape=images.shape[1:],
                     label_fields=fields, shard_bytes=8_000) as writer:
        for i, image in enumerate(images):
            writer.write(schema.encode_example(
                image, key=f"{split}/{i:04d}", domain=domain,
                labels={name: values[i] for name, values in labels.items()} if labels
                else None))


def _labels(images, seed):
    rng = np.random.default_rng(seed)
    return {"label/box": rng.uniform(0, 1, (len(images), 4)).astype(np.float32),
            "label/brightness": (images.mean(axis=(1, 2, 3)) / 127.5 - 1)[:, None]
            .astype(np.float32)}


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory):
    """A 24x40x3 folder: labelled synthetic (two custom label fields), unlabelled real."""
    data_dir = str(tmp_path_factory.mktemp("colour"))
    synthetic = pattern_images(50, 0, COLOUR)
    _write(data_dir, "synthetic", synthetic, "synthetic", _labels(synthetic, 0))
    real = (255 - pattern_images(50, 1, COLOUR)).astype(np.uint8)  # easy to tell apart
    _write(data_dir, "real", real, "real")
    return data_dir, synthetic


def test_one_label_name_gives_image_and_label_tensors_in_file_order(colour_dir):
    data_dir, synthetic = colour_dir
    labels = _labels(synthetic, 0)
    dataset = task_data.task_dataset(data_dir, "synthetic", "label/box", batch_size=None)
    assert dataset.element_spec[0].shape == COLOUR
    assert dataset.element_spec[1].shape == (4,)
    pairs = list(dataset.as_numpy_iterator())
    assert len(pairs) == 50
    np.testing.assert_allclose(pairs[7][0], synthetic[7] / 127.5 - 1, atol=1e-6)
    np.testing.assert_array_equal(np.stack([p[1] for p in pairs]), labels["label/box"])


def test_a_list_or_none_gives_a_dict_of_labels(colour_dir):
    data_dir, synthetic = colour_dir
    labels = _labels(synthetic, 0)
    both = task_data.task_dataset(data_dir, "synthetic", batch_size=50)
    images, batch = next(iter(both))
    assert images.shape == (50, *COLOUR)
    assert sorted(batch) == sorted(LABELS)
    np.testing.assert_array_equal(batch["label/brightness"].numpy(), labels["label/brightness"])
    one = task_data.task_dataset(data_dir, "synthetic", ["label/brightness"], batch_size=50)
    assert list(next(iter(one))[1]) == ["label/brightness"]


def test_batches_keep_every_example_unless_repeating(colour_dir):
    data_dir, _ = colour_dir
    sizes = [len(x) for x, _ in task_data.task_dataset(data_dir, "synthetic", "label/box",
                                                      batch_size=16)]
    assert sizes == [16, 16, 16, 2]
    repeated = task_data.task_dataset(data_dir, "synthetic", "label/box", batch_size=16,
                                      shuffle=True, repeat=True, seed=3)
    assert repeated.element_spec[0].shape == (16, *COLOUR)  # one shape for training
    assert [len(x) for x, _ in repeated.take(5)] == [16] * 5


def test_shuffling_is_a_function_of_the_seed(colour_dir):
    data_dir, _ = colour_dir

    def order(seed):
        dataset = task_data.task_dataset(data_dir, "synthetic", "label/box", batch_size=None,
                                          shuffle=True, seed=seed, shuffle_buffer=64)
        return np.stack([label for _, label in dataset.as_numpy_iterator()])

    plain = np.stack([label for _, label in task_data.task_dataset(
        data_dir, "synthetic", "label/box", batch_size=None).as_numpy_iterator()])
    np.testing.assert_array_equal(order(5), order(5))
    assert not np.array_equal(order(5), plain)
    assert not np.array_equal(order(5), order(6))
    np.testing.assert_array_equal(np.sort(order(5), axis=0), np.sort(plain, axis=0))


def test_preprocess_maps_each_example_before_batching(colour_dir):
    data_dir, synthetic = colour_dir
    gray = task_data.task_dataset(
        data_dir, "synthetic", "label/brightness", batch_size=10,
        preprocess=lambda image, label: (tf.reduce_mean(image, -1, keepdims=True), label * 2))
    images, labels = next(iter(gray))
    assert images.shape == (10, 24, 40, 1)
    np.testing.assert_allclose(labels.numpy(), 2 * _labels(synthetic, 0)["label/brightness"][:10],
                               rtol=1e-6)


def test_missing_labels_are_named_with_what_the_split_has(colour_dir):
    data_dir, _ = colour_dir
    with pytest.raises(ValueError, match=r"no label field\(s\) \['label/gaze'\].*"
                                         r"label/box.*label/brightness"):
        task_data.task_dataset(data_dir, "synthetic", "label/gaze")
    with pytest.raises(ValueError, match="'real' .* has no label fields"):
        task_data.task_dataset(data_dir, "real")
    with pytest.raises(ValueError, match="no split 'refined'"):
        task_data.task_dataset(data_dir, "refined", "label/box")


def test_a_users_own_keras_model_learns_from_a_split_and_a_refined_split_keeps_labels(
        tmp_path, refiner_export):
    """35x55x1 eyes labelled with their brightness: a user's regression network trains on
    the synthetic split, and the refined split (`refine_split`) keeps every label."""
    data_dir = str(tmp_path / "data")
    synthetic, test = pattern_images(192, 0), pattern_images(64, 9)
    _write(data_dir, "synthetic", synthetic, "synthetic", _labels(synthetic, 0))
    _write(data_dir, "real_test", test, "real", _labels(test, 9))
    refine_split.refine_split(refiner_export[1], os.path.join(data_dir, "synthetic"),
                              os.path.join(data_dir, "refined"))
    refined = task_data.task_dataset(data_dir, "refined", batch_size=None)
    original = task_data.task_dataset(data_dir, "synthetic", batch_size=None)
    for (r_image, r_labels), (s_image, s_labels) in zip(refined.take(8), original.take(8)):
        assert not np.allclose(r_image, s_image)  # refined pixels ...
        for name in LABELS:  # ... the same labels
            np.testing.assert_array_equal(r_labels[name], s_labels[name])

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((35, 55, 1)),
                              keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(3e-3), "mse")
    train = task_data.task_dataset(data_dir, "synthetic", "label/brightness", batch_size=32,
                                   shuffle=True, repeat=True, seed=0)
    test_set = task_data.task_dataset(data_dir, "real_test", "label/brightness", batch_size=64)
    before = model.evaluate(test_set, verbose=0)
    model.fit(train, epochs=1, steps_per_epoch=150, verbose=0)
    after = model.evaluate(test_set, verbose=0)
    variance = float(np.var(_labels(test, 9)["label/brightness"]))
    assert after < 0.5 * variance < before
    model.fit(task_data.task_dataset(data_dir, "refined", "label/brightness", batch_size=32,
                                     repeat=True), epochs=1, steps_per_epoch=3, verbose=0)
    assert np.isfinite(model.evaluate(test_set, verbose=0))


def test_realism_alone_scores_every_non_real_split_of_unlabelled_data(colour_dir, tmp_path):
    data_dir, _ = colour_dir
    out = str(tmp_path / "realism")
    config = realism.RealismConfig(num_images=40, steps=40, batch_size=16)
    results = eval_lib.evaluate_realism(config, data_dir, None, "real", out)
    assert results["candidate_splits"] == ["synthetic"]
    assert results["realism_images"] == 40
    score = results["splits"]["synthetic"]["realism"]
    assert score["test_images"] == 40 and 0.9 <= score["accuracy"] <= 1.0  # inverted: easy
    assert json.load(open(os.path.join(out, "results.json")))["splits"] == results["splits"]
    assert sorted(os.listdir(out)) == ["logs", "results.json"]  # no curves without errors
    tags = {value.tag: value for path in glob.glob(os.path.join(out, "logs", "events.*"))
            for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value}
    assert set(tags) == {"evaluation/synthetic/realism_accuracy"}
    with pytest.raises(ValueError, match="no split 'real_test'"):
        eval_lib.evaluate_realism(config, data_dir, None, "real_test", out)
    with pytest.raises(ValueError, match="all real"):
        eval_lib.evaluate_realism(config, data_dir, [], "real", out)


def test_evaluate_py_without_train_splits_reports_realism_alone(tmp_path):
    data_dir = str(tmp_path / "gray")  # 48x80x1, no labels anywhere
    _write(data_dir, "synthetic", pattern_images(24, 0, (48, 80, 1)), "synthetic")
    _write(data_dir, "refined", pattern_images(24, 2, (48, 80, 1)), "synthetic")
    _write(data_dir, "real_test", pattern_images(24, 1, (48, 80, 1)), "real")
    out = str(tmp_path / "eval")
    command = [sys.executable, os.path.join(ROOT, "evaluate.py"), f"--data_dir={data_dir}",
               f"--output_dir={out}", "--realism_steps=3", "--realism_images=16"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.load(open(os.path.join(out, "results.json")))
    assert results["task"] == "realism" and results["realism_split"] == "real_test"
    assert sorted(results["splits"]) == ["refined", "synthetic"]
    assert results["config"]["num_images"] == 16 and results["config"]["steps"] == 3
    table = result.stdout.strip().splitlines()[-3:]  # header, refined, synthetic
    assert table[0].startswith("split") and "realism accuracy vs real_test" in table[0]
    for line, split in zip(table[1:], ["refined", "synthetic"]):
        name, accuracy = line.split()
        assert name == split
        assert float(accuracy) == round(results["splits"][split]["realism"]["accuracy"], 3)
    assert "realism classifier: refined vs real_test" in result.stderr  # its progress bar
    only = subprocess.run(command + ["--candidate_splits=refined", f"--output_dir={out}-r",
                                     "--realism_repeats=2"],
                          capture_output=True, text=True, timeout=600)
    assert only.returncode == 0, only.stderr[-3000:]
    results = json.load(open(os.path.join(f"{out}-r", "results.json")))
    assert list(results["splits"]) == ["refined"] and results["config"]["repeats"] == 2
    score = results["splits"]["refined"]["realism"]
    assert len(score["accuracies"]) == 2
    assert score["accuracy"] == pytest.approx(sum(score["accuracies"]) / 2)
    assert only.stdout.strip().splitlines()[-1].split() == [
        "refined", f"{score['accuracy']:.3f}", "(sd", f"{score['accuracy_sd']:.3f},", "2",
        "classifiers)"]


@pytest.mark.parametrize("flags, message", [
    (["--train_splits=synthetic", "--candidate_splits=refined"],
     "--candidate_splits is for the realism score alone"),
    (["--realism_split="], "Nothing to evaluate"),
])
def test_evaluate_py_refuses_flag_combinations_it_cannot_take(tmp_path, flags, message):
    command = [sys.executable, os.path.join(ROOT, "evaluate.py"), f"--data_dir={tmp_path}",
               f"--output_dir={tmp_path / 'out'}", *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and message in result.stderr
    assert not os.path.exists(tmp_path / "out")
