"""Data of any image shape: presets chosen by the data, the custom preset, colour end to end."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from simgan_tf import config as config_lib
from simgan_tf.data import reader, schema
from simgan_tf.evaluation import realism
from simgan_tf.modeling.discriminator import build_discriminator
from simgan_tf.serving import export, refine_split
from simgan_tf.training import train_lib
from conftest import pattern_images, write_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOUR = (64, 64, 3)


def colour_images(n, seed, shape=COLOUR, tint=(1.0, 0.8, 0.6)):
    """Pattern images whose channels differ: each channel scaled by its own tint."""
    gray = pattern_images(n, seed, shape).astype(np.float32)
    return np.clip(gray * np.asarray(tint, np.float32), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def colour_data_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("colour"))
    write_split(data_dir, "synthetic", colour_images(48, 0), "synthetic")
    write_split(data_dir, "real", colour_images(48, 1, tint=(0.6, 0.8, 1.0)), "real")
    return data_dir


def test_receptive_field_of_the_paper_discriminators():
    # conv3/2, conv3/2, pool3/1, conv3/1: 1 + 2 + 2*2 + 2*4 + 2*4 = 23.
    assert config_lib.DiscriminatorConfig().receptive_field() == 23
    # conv7/4, conv5/2, pool3/2, conv3/2: 1 + 6 + 4*4 + 2*8 + 2*16 = 71.
    hand = config_lib.DiscriminatorConfig(layers=config_lib.HAND_DISCRIMINATOR)
    assert hand.receptive_field() == 71
    assert config_lib.DiscriminatorConfig(
        layers=config_lib.HAND_DEMO_DISCRIMINATOR).receptive_field() == 33


@pytest.mark.parametrize("height, width, map_shape", [
    (35, 55, (9, 14)),    # the gaze network exactly
    (64, 64, (8, 8)),     # one more stride-2 stage
    (48, 80, (6, 10)),
    (200, 120, (13, 8)),  # 120 needs 4 stages: ceil(120/16) = 8, ceil(200/16) = 13
])
def test_custom_discriminator_leaves_a_patch_map_of_at_most_nine(height, width, map_shape):
    layers = config_lib.custom_discriminator(height, width)
    if (height, width) == (35, 55):
        assert layers == config_lib.GAZE_DISCRIMINATOR
    model = build_discriminator((height, width, 1),
                                config_lib.DiscriminatorConfig(layers=layers))
    assert tuple(model.output.shape[1:3]) == map_shape


def test_custom_preset_scales_batch_and_history_with_the_image():
    config = config_lib.get_preset("custom", image_shape=(64, 64, 3)).validate()
    assert config.name == "custom" and config.image_shape == (64, 64, 3)
    # 512 * 1925 / 4096 = 240.6 -> 240 (a multiple of 8).
    assert config.train.batch_size == 240
    # 50 batches = 12,000 images of 48 KiB; 256 MiB of float32 holds 5,461.
    assert config.train.history_size == 256 * 2 ** 20 // (64 * 64 * 3 * 4) == 5461
    assert config.refiner == config_lib.PAPER_REFINER  # the glint's placement is for eyes
    assert config.train.k_g == 2 and config.train.k_d == 1
    big = config_lib.get_preset("custom", image_shape=(512, 512, 1))
    assert big.train.batch_size == 8  # the floor
    small = config_lib.get_preset("custom", image_shape=(24, 24, 1))
    assert small.train.batch_size == 512 and small.train.history_size == 512 * 50
    with pytest.raises(ValueError, match="image shape from the data"):
        config_lib.get_preset("custom")


@pytest.mark.parametrize("shape, preset", [
    ((35, 55, 1), "gaze"), ((224, 224, 1), "hand"), ((35, 55, 3), "custom"),
    ((64, 64, 1), "custom"), ((48, 80, 1), "custom")])
def test_the_data_chooses_the_preset_when_none_is_named(shape, preset):
    name, note = config_lib.resolve_preset(None, "/data", shape)
    assert name == preset and "chosen by the data's image shape" in note
    assert config_lib.resolve_preset("gaze", "/data", shape) == ("gaze", None)  # named wins


def test_no_preset_and_no_data_is_the_gaze_demo():
    assert config_lib.resolve_preset(None, None)[0] == "gaze_demo"
    with pytest.raises(ValueError, match="needs one"):
        config_lib.resolve_preset("custom", None)


def test_an_image_smaller_than_one_patch_is_refused_with_the_minimum_size():
    config = config_lib.override(config_lib.get_preset("gaze"), {
        "data.image_height": 20, "data.image_width": 40})
    with pytest.raises(ValueError, match=r"minimum image size for this discriminator is "
                                         r"23x23.*image_height=20"):
        config.validate()
    # The global ablation judges the whole image anyway: no minimum. The local head of
    # local+global still needs one patch.
    config_lib.override(config, {"discriminator.output": "global"}).validate()
    with pytest.raises(ValueError, match="minimum image size"):
        config_lib.override(config, {"discriminator.output": "local+global"}).validate()


def _tiny(config, data_dir):
    return config_lib.override(config, {
        "data.data_dir": data_dir, "train.batch_size": 8, "train.steps": 2,
        "train.pretrain_refiner_steps": 2, "train.pretrain_discriminator_steps": 1,
        "train.history_size": 8, "train.log_every": 2, "train.image_every": 3,
        "train.checkpoint_every": 100, "refiner.filters": 8, "refiner.num_blocks": 1,
        "data.shuffle_buffer": 16}).validate()


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_colour_trains_refines_exports_and_scores_end_to_end(colour_data_dir, tmp_path):
    config = _tiny(config_lib.get_preset("custom", image_shape=COLOUR), colour_data_dir)
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    assert result.step == 2 + 1 + 2 * 3
    assert result.model.refiner.output.shape[-1] == 3
    assert result.model.discriminator.output.shape[1:] == (8, 8, 2)

    # Float signature: colour in, colour out, equal to the trained refiner.
    refine = export.load_refiner(result.export_path)
    images = reader.load_arrays(colour_data_dir, "synthetic", count=4)["image"]
    assert images.shape == (4, *COLOUR)
    np.testing.assert_allclose(refine(images).numpy(),
                               result.model.refiner(images, training=False).numpy(),
                               atol=1e-5)
    # Bytes signature: a colour PNG in, a colour PNG of the same size out, whose pixels
    # are the float signature's output mapped back to [0, 255].
    pixels = colour_images(1, 7)[0]
    [out] = refine.encoded([_png(pixels)]).numpy()
    refined_png = np.asarray(Image.open(io.BytesIO(out)))
    assert refined_png.shape == COLOUR and refined_png.dtype == np.uint8
    # The signature scales in float32 with the reader's function: so does the expectation
    # (a float64 scaling can move a pixel across a rounding boundary).
    expected = reader.to_uint(refine(reader.scale_image(tf.constant(pixels[None])))).numpy()[0]
    np.testing.assert_array_equal(refined_png, expected)
    assert not np.array_equal(refined_png[..., 0], refined_png[..., 2])  # really colour

    # A refined split of colour records, then its realism score against real.
    info = refine_split.refine_split(result.export_path,
                                     os.path.join(colour_data_dir, "synthetic"),
                                     os.path.join(colour_data_dir, "refined"))
    assert info.count == 48
    assert schema.read_dataset_info(colour_data_dir).image_shape == COLOUR
    real = realism.load_images(colour_data_dir, "real", 16)
    refined = realism.load_images(colour_data_dir, "refined", 16)
    assert real.shape == refined.shape == (16, *COLOUR)
    score = realism.realism_score(real, refined, realism.RealismConfig(
        num_images=16, steps=5, batch_size=8))
    assert 0.0 <= score["accuracy"] <= 1.0 and score["test_images"] == 16


def test_train_py_picks_the_custom_preset_from_the_data(tmp_path):
    data_dir = str(tmp_path / "data")
    shape = (48, 80, 1)
    write_split(data_dir, "synthetic", pattern_images(24, 0, shape), "synthetic")
    write_split(data_dir, "real", pattern_images(24, 1, shape), "real")
    model_dir = str(tmp_path / "run")
    command = [sys.executable, os.path.join(ROOT, "train.py"), f"--data_dir={data_dir}",
               f"--model_dir={model_dir}", "--batch_size=8", "--steps=1",
               "--pretrain_refiner_steps=1", "--pretrain_discriminator_steps=1",
               "--history_size=8", "--refiner_filters=8", "--refiner_blocks=1",
               "--export=false", "--shuffle_buffer=8"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=str(tmp_path),
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the 'custom' preset, chosen by the data's image shape 48x80x1" in result.stderr
    with open(os.path.join(model_dir, "config.json")) as f:
        saved = config_lib.SimGANConfig.from_json(json.load(f))
    assert saved.name == "custom" and saved.image_shape == shape
    assert saved.discriminator.layers == config_lib.custom_discriminator(48, 80)
    assert saved.train.steps == 1


def test_train_py_refuses_images_too_small_for_the_discriminator(tmp_path):
    data_dir = str(tmp_path / "data")
    shape = (16, 40, 1)
    write_split(data_dir, "synthetic", pattern_images(8, 0, shape), "synthetic")
    write_split(data_dir, "real", pattern_images(8, 1, shape), "real")
    command = [sys.executable, os.path.join(ROOT, "train.py"), f"--data_dir={data_dir}",
               f"--model_dir={tmp_path / 'run'}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=str(tmp_path),
                            timeout=300)
    assert result.returncode != 0
    assert "minimum image size for this discriminator is 23x23" in result.stderr
    assert not os.path.exists(tmp_path / "run")
