import os

import numpy as np
from absl import logging

from simgan_tf.data import builtin, reader, schema
from simgan_tf import config as config_lib
from simgan_tf.training import train_lib


def test_generates_labelled_splits_once(tmp_path):
    data_dir = builtin.ensure_simulator_data(
        str(tmp_path), num_synthetic=40, num_real=30, num_real_test=20, seed=0)
    info = schema.read_dataset_info(data_dir)
    assert info.image_shape == (35, 55, 1) and info.image_dtype == "uint8"
    assert {name: s.count for name, s in info.splits.items()} == {
        "synthetic": 40, "real": 30, "real_test": 20}
    assert [info.splits[s].domain for s in ("synthetic", "real", "real_test")] == [
        "synthetic", "real", "real"]
    for split in info.splits:
        assert info.splits[split].label_fields == {schema.LABEL_GAZE: 2}
        examples = list(reader.read_split(data_dir, split).as_numpy_iterator())
        keys = [e["key"] for e in examples]
        assert len(set(keys)) == len(keys) and keys[0] == f"sim/{split}/0000000".encode()
        gaze = np.stack([e[schema.LABEL_GAZE] for e in examples])
        assert np.all(np.abs(gaze) < 1.0) and gaze.std(0).min() > 0.05
    # The real split and the real test split are different images.
    real = [e["image"] for e in reader.read_split(data_dir, "real").as_numpy_iterator()]
    test = [e["image"] for e in reader.read_split(data_dir, "real_test").as_numpy_iterator()]
    assert not np.array_equal(real[0], test[0])
    # A second call reuses the cache.
    mtimes = {n: os.path.getmtime(os.path.join(data_dir, n)) for n in info.splits}
    assert builtin.ensure_simulator_data(
        str(tmp_path), num_synthetic=40, num_real=30, num_real_test=20, seed=0) == data_dir
    assert mtimes == {n: os.path.getmtime(os.path.join(data_dir, n)) for n in info.splits}


def test_generation_is_deterministic(tmp_path):
    a = builtin.ensure_simulator_data(str(tmp_path / "a"), num_synthetic=10,
                                           num_real=10, num_real_test=0)
    b = builtin.ensure_simulator_data(str(tmp_path / "b"), num_synthetic=10,
                                           num_real=10, num_real_test=0)
    info_a, info_b = schema.read_dataset_info(a), schema.read_dataset_info(b)
    for split in ("synthetic", "real"):
        assert ([s["sha256"] for s in info_a.splits[split].shards]
                == [s["sha256"] for s in info_b.splits[split].shards])


def test_train_without_data_dir_uses_the_simulator_and_says_so(tmp_path, caplog):
    config = config_lib.override(config_lib.get_preset("gaze_demo"), {
        "data.simulator_num_synthetic": 32, "data.simulator_num_real": 32,
        "data.simulator_num_real_test": 8, "refiner.filters": 4, "refiner.num_blocks": 1,
        "train.batch_size": 8, "train.steps": 1, "train.pretrain_refiner_steps": 1,
        "train.pretrain_discriminator_steps": 1, "train.history_size": 8,
        "train.export": False})
    logging.set_verbosity(logging.INFO)
    with caplog.at_level("INFO"):
        result = train_lib.train(config, str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                                 verbose=0)
    assert result.step == 1 + 1 + 3
    assert result.config.data.data_dir.startswith(str(tmp_path / "cache"))
    text = caplog.text
    assert "built-in eye simulator" in text and "data_prep.unityeyes" in text
    assert "Rendering 32 synthetic eye images" in text


def test_hand_depth_data_and_training_without_data_dir(tmp_path, caplog):
    data_dir = builtin.ensure_simulator_data(
        str(tmp_path / "cache"), num_synthetic=16, num_real=16, num_real_test=4,
        kind="hand", size=64)
    info = schema.read_dataset_info(data_dir)
    assert info.image_shape == (64, 64, 1) and info.image_dtype == "uint16"
    assert info.pixel_range == [-1000.0, 2000.0]
    assert info.splits["real"].label_fields == {schema.LABEL_JOINTS_UVD: 42}
    example = next(reader.read_split(data_dir, "synthetic").as_numpy_iterator())
    image = example["image"]
    np.testing.assert_allclose(image.min(), -1 / 3, atol=1e-6)  # background depth 0
    hand = image[image > -0.3]  # hands at about 450-1050 mm: (d - 500) / 1500
    assert hand.size > 200 and -0.1 < hand.min() and hand.max() < 0.4
    assert example[schema.LABEL_JOINTS_UVD].shape == (42,)

    config = config_lib.override(config_lib.get_preset("hand_demo"), {
        "data.simulator_num_synthetic": 16, "data.simulator_num_real": 16,
        "data.simulator_num_real_test": 4, "train.batch_size": 4, "train.steps": 1,
        "train.pretrain_refiner_steps": 1, "train.pretrain_discriminator_steps": 1,
        "train.history_size": 4, "train.export": False})
    logging.set_verbosity(logging.INFO)
    with caplog.at_level("INFO"):
        result = train_lib.train(config, str(tmp_path / "run"),
                                 cache_dir=str(tmp_path / "cache"), verbose=0)
    assert result.step == 5 and result.config.data.data_dir == data_dir
    assert "hand depth simulator at a reduced resolution of 64x64" in caplog.text
    assert "data_prep.nyu_hand" in caplog.text
