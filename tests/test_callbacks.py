"""Tests of the TensorBoard summaries: HParams, difference histogram, probability maps."""

import glob
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.plugins.hparams import plugin_data_pb2

from simgan_tf.modeling import refiner as refiner_lib
from simgan_tf.training import callbacks, train_lib
from simgan_tf import config as config_lib

from conftest import SHAPE, pattern_images


def read_summaries(log_dir):
    """[(step, tf.compat.v1.Summary.Value)] of every event file under `log_dir`."""
    values = []
    for path in sorted(glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"),
                                 recursive=True)):
        for event in tf.compat.v1.train.summary_iterator(path):
            values.extend((event.step, value) for value in event.summary.value)
    return values


def tiny_model(data_dir=None):
    config = config_lib.override(config_lib.get_preset("gaze_demo"), {
        "data.data_dir": data_dir, "refiner.filters": 8, "refiner.num_blocks": 1,
        "train.batch_size": 8, "train.history_size": 8})
    return config, train_lib.build_simgan(config)


def scale(images):
    return images.astype(np.float32) / 127.5 - 1.0


def test_flatten_hparams():
    flat = callbacks.flatten_hparams({"name": "gaze", "train": {"batch_size": 8, "lr": None,
                                                                "export": True},
                                      "discriminator": {"layers": [{"kind": "conv"}]}})
    assert flat == {"name": "gaze", "train.batch_size": 8, "train.export": True,
                    "discriminator.layers": '[{"kind": "conv"}]'}


def test_real_probability_map_is_the_softmax_per_patch_upsampled():
    _, model = tiny_model()
    images = scale(pattern_images(3, seed=2))
    probability = callbacks.real_probability_map(model.discriminator, images)
    assert probability.shape == (3, *SHAPE[:2], 1)
    logits = model.discriminator(images).numpy().astype(np.float64)  # [3, 9, 14, 2]
    assert logits.shape == (3, 9, 14, 2)
    real = 1.0 / (1.0 + np.exp(logits[..., 0] - logits[..., 1]))  # softmax, class real
    rows = np.floor((np.arange(35) + 0.5) * 9 / 35).astype(int)
    cols = np.floor((np.arange(55) + 0.5) * 14 / 55).astype(int)
    np.testing.assert_allclose(probability[..., 0], real[:, rows][:, :, cols], atol=1e-6)


def test_summary_callback_writes_hparams_histogram_and_probability_map(tmp_path):
    config, model = tiny_model()
    synthetic = scale(pattern_images(4, seed=0))
    real = scale(pattern_images(8, seed=1))
    hparams = callbacks.flatten_hparams(config.to_json())
    callback = callbacks.SummaryCallback(str(tmp_path), synthetic, real, log_every=1,
                                         image_every=1, hparams=hparams)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_train_end()  # step 0, nothing trained: no scalars, no second image
    summaries = read_summaries(str(tmp_path))
    by_tag = {}
    for step, value in summaries:
        by_tag.setdefault(value.tag, []).append((step, value))

    # HParams: one session start with the config's values.
    hparams_values = [v for _, v in summaries if v.metadata.plugin_data.plugin_name == "hparams"]
    assert len(hparams_values) == 1
    data = plugin_data_pb2.HParamsPluginData.FromString(
        hparams_values[0].metadata.plugin_data.content)
    logged = data.session_start_info.hparams
    assert logged["train.batch_size"].number_value == 8
    assert logged["train.reg_weight"].number_value == pytest.approx(0.1)
    assert logged["refiner_optimizer.name"].string_value == "adam"
    assert logged["train.export"].bool_value is True
    assert json.loads(logged["discriminator.layers"].string_value)[0] == {
        "kind": "conv", "filters": 96, "kernel_size": 3, "strides": 2}
    assert "data.data_dir" not in logged  # None is left out
    assert set(logged) == set(hparams)

    refined = model.refiner(synthetic).numpy()
    difference = refined - synthetic

    # Histogram of refined - synthetic over all pixels of the sample batch.
    [(step, histogram)] = by_tag[callbacks.DIFFERENCE_HISTOGRAM_TAG]
    assert step == 0 and histogram.metadata.plugin_data.plugin_name == "histograms"
    buckets = tf.make_ndarray(histogram.tensor)  # [k, 3]: left edge, right edge, count
    assert buckets.shape[1] == 3
    assert buckets[:, 2].sum() == difference.size
    assert buckets[0, 0] == pytest.approx(difference.min(), abs=1e-5)
    assert buckets[-1, 1] == pytest.approx(difference.max(), abs=1e-5)
    centers = (buckets[:, 0] + buckets[:, 1]) / 2
    assert np.average(centers, weights=buckets[:, 2]) == pytest.approx(
        float(difference.mean()), abs=float(difference.max() - difference.min()) / len(buckets))

    # refined | P(real) grid, 8-bit PNG in the summary.
    [(step, image)] = by_tag[callbacks.PROBABILITY_IMAGES_TAG]
    width, height, png = image.tensor.string_val
    grid = np.asarray(Image.open(io.BytesIO(png)))
    assert grid.shape[:2] == (4 * 36, 2 * 56) == (int(height), int(width))
    grid = grid if grid.ndim == 2 else grid[..., 0]
    probability = callbacks.real_probability_map(model.discriminator, refined)[..., 0]
    for row in range(4):
        top = row * 36
        shown_refined = grid[top:top + 35, :55].astype(int)
        shown_probability = grid[top:top + 35, 56:111].astype(int)
        np.testing.assert_allclose(shown_refined, (refined[row, ..., 0] + 1) / 2 * 255, atol=1)
        np.testing.assert_allclose(shown_probability, probability[row] * 255, atol=1)
    assert 0.0 < probability.min() <= probability.max() < 1.0
    assert "softmax probability" in image.metadata.summary_description

    # The older summaries are still there.
    assert callbacks.REFINED_IMAGES_TAG in by_tag and callbacks.REAL_IMAGES_TAG in by_tag


def test_image_summaries_leave_the_refiners_random_state_as_it_was(tmp_path):
    # A refiner with grain, lighting and a glint draws them at every call; a summary
    # written at another step (as a resumed run does) must not shift them.
    config, _ = tiny_model()
    model = train_lib.build_simgan(config_lib.override(config, {
        "refiner.grain": 0.03, "refiner.lighting": 0.05, "refiner.glint": 1.0}))
    states = refiner_lib.random_states(model.refiner)
    assert len(states) == 3  # grain, glint, lighting
    synthetic = scale(pattern_images(4, seed=0))
    before = [v.numpy().copy() for v in states]
    callback = callbacks.SummaryCallback(str(tmp_path), synthetic, synthetic, log_every=1,
                                         image_every=1)
    callback.set_model(model)
    callback.on_train_begin()  # writes the refined images
    callback.on_train_end()
    assert any(value.tag == callbacks.REFINED_IMAGES_TAG
               for _, value in read_summaries(str(tmp_path)))
    for b, v in zip(before, states):
        np.testing.assert_array_equal(b, v.numpy())
    with refiner_lib.KeepRandomState(model.refiner):
        first = model.refiner(synthetic).numpy()
    np.testing.assert_array_equal(first, model.refiner(synthetic).numpy())  # same draw
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, states))
    assert not np.array_equal(first, model.refiner(synthetic).numpy())  # then fresh ones
