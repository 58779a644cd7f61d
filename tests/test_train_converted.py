"""Training on data converted by data_prep: gaze (UnityEyes + MPIIGaze) and hand (NYU)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_prep import mpiigaze, nyu_hand, unityeyes
from simgan_tf.data import reader, schema

import test_data_prep_mpiigaze as mpiigaze_fixtures
import test_data_prep_nyu_hand as nyu_fixtures
import test_data_prep_unityeyes as unityeyes_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(args, tmp_path):
    command = [sys.executable, os.path.join(ROOT, "train.py"), *args,
               f"--model_dir={tmp_path / 'run'}", "--batch_size=2", "--steps=1",
               "--pretrain_refiner_steps=1", "--pretrain_discriminator_steps=1",
               "--history_size=2", "--log_every=1", "--image_every=5"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run" / "config.json") as f:
        return json.load(f)


def test_gaze_preset_trains_on_converted_unityeyes_and_mpiigaze(tmp_path):
    sample = unityeyes_fixtures._sample_json()
    imgs = str(tmp_path / "UnityEyes" / "imgs")
    for stem, (scale, dx) in enumerate([(1.0, 0.0), (1.0, 20.0), (0.95, -15.0), (1.0, 5.0)]):
        unityeyes_fixtures._write_sample(imgs, str(stem + 1),
                                         unityeyes_fixtures._scaled(sample, scale, dx))
    mpiigaze_fixtures._make_root(str(tmp_path / "MPIIGaze"))
    data_dir = str(tmp_path / "gaze")
    options = unityeyes_fixtures._options()
    unityeyes.convert(imgs, data_dir, options=options)
    mpiigaze.convert(str(tmp_path / "MPIIGaze"), data_dir, test_participants="p12",
                     options=options)
    info = schema.read_dataset_info(data_dir)
    assert {s: info.splits[s].count for s in info.splits} == {
        "synthetic": 4, "real": 8, "real_test": 4}

    config = _train(["--dataset=gaze", f"--data_dir={data_dir}"], tmp_path)
    assert config["name"] == "gaze"  # the paper preset, not the simulator demo
    assert config["refiner"] == {"filters": 64, "kernel_size": 3, "num_blocks": 4,
                                "noise_channels": 0, "grain": 0.03, "grain_rate": 10.0,
                                "lighting": 0.05, "lighting_rate": 10.0,
                                "highlights": 0.0, "highlight_shift": 2.0,
                                "glint": 1.0, "glint_shift": 2.0,
                                "glint_placement": "pupil", "padding": "zeros"}
    assert os.path.isdir(tmp_path / "run" / "export" / "refiner" / "5")


def test_hand_preset_trains_on_converted_nyu_depth(tmp_path):
    root = str(tmp_path / "nyu")
    nyu_fixtures._make_root(root)
    data_dir = str(tmp_path / "hand")
    nyu_hand.convert(root, data_dir, options=nyu_fixtures._options())
    info = schema.read_dataset_info(data_dir)
    assert info.image_shape == (224, 224, 1) and info.image_dtype == "uint16"
    assert info.pixel_range == [-1000.0, 2000.0]

    # Depth d in mm maps to (d - 500) / 1500: background -1/3, the hand (731 mm and
    # more in the genuine frame) above 0.15.
    raw = nyu_fixtures._read_split(data_dir, "real")[0]["image"].astype(np.float32)
    scaled = next(reader.read_split(data_dir, "real").as_numpy_iterator())["image"]
    np.testing.assert_allclose(scaled, (raw - 500.0) / 1500.0, atol=1e-6)
    hand = scaled[raw > 0]
    np.testing.assert_allclose(scaled[raw == 0], -1 / 3, atol=1e-6)
    assert 0.15 < hand.min() and hand.max() < 0.6 and hand.std() > 0.005

    config = _train(["--dataset=hand", f"--data_dir={data_dir}"], tmp_path)
    assert config["name"] == "hand"
    assert config["refiner"] == {"filters": 64, "kernel_size": 7, "num_blocks": 10,
                                "noise_channels": 0, "grain": 0.0, "grain_rate": 10.0,
                                "lighting": 0.0, "lighting_rate": 10.0,
                                "highlights": 0.0, "highlight_shift": 2.0,
                                "glint": 0.0, "glint_shift": 2.0,
                                "glint_placement": "features", "padding": "zeros"}
    assert [layer["kernel_size"] for layer in config["discriminator"]["layers"]] == [
        7, 5, 3, 3, 1, 1]
    export_dir = tmp_path / "run" / "export" / "refiner" / "5"
    refined = tf.saved_model.load(str(export_dir)).signatures["serving_default"](
        images=tf.constant(scaled[None]))["refined"]
    assert refined.shape == (1, 224, 224, 1)


@pytest.mark.parametrize("shape, source_size, grayscale", [
    ((64, 64, 3), (96, 80), False),   # colour, cropped from larger photos
    ((48, 80, 1), (60, 100), True),   # grayscale, fitted
])
def test_custom_preset_trains_on_folders_converted_by_data_prep_images(
        tmp_path, shape, source_size, grayscale):
    from PIL import Image

    rng = np.random.default_rng(0)
    for folder, tint, ext in (("renders", (1.0, 0.9, 0.7), "png"),
                              ("photos", (0.7, 0.9, 1.0), "jpg")):
        os.makedirs(tmp_path / folder / "a")
        for i in range(12):
            base = rng.uniform(60, 200, (*source_size, 1)) * np.array(tint)
            path = tmp_path / folder / ("a" if i % 2 else "") / f"{i:02d}.{ext}"
            Image.fromarray(base.astype(np.uint8)).save(path)
    data_dir = str(tmp_path / "data")
    convert = subprocess.run(
        [sys.executable, "-m", "data_prep.images", f"--synthetic_dir={tmp_path / 'renders'}",
         f"--real_dir={tmp_path / 'photos'}", f"--size={shape[0]}x{shape[1]}",
         "--resize=crop" if shape[2] == 3 else "--resize=fit", f"--grayscale={grayscale}",
         f"--output_dir={data_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert convert.returncode == 0, convert.stderr[-3000:]
    assert schema.read_dataset_info(data_dir).image_shape == shape

    config = _train([f"--data_dir={data_dir}", "--config=refiner.filters=8",
                     "--config=refiner.num_blocks=1"], tmp_path)
    assert config["name"] == "custom" and config["data"]["image_height"] == shape[0]
    assert config["data"]["image_width"] == shape[1]
    assert config["data"]["image_channels"] == shape[2]
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints"))[0].startswith("checkpoint")

    # The run's export refines the synthetic split into a split of the same shape.
    export_dir = tmp_path / "run" / "export" / "refiner" / "5"
    refine = subprocess.run(
        [sys.executable, os.path.join(ROOT, "refine.py"), f"--saved_model={export_dir}",
         f"--input_dir={data_dir}/synthetic", f"--output_dir={data_dir}/refined"],
        capture_output=True, text=True, timeout=600)
    assert refine.returncode == 0, refine.stderr[-3000:]
    refined = reader.load_arrays(data_dir, "refined")["image"]
    assert refined.shape == (12, *shape)
    synthetic = reader.load_arrays(data_dir, "synthetic")["image"]
    assert not np.allclose(refined, synthetic)
