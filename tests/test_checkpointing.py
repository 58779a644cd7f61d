"""Checkpoints: verified restore with fallback, no non-finite checkpoint, iterator state."""

import glob
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from simgan_tf.training import checkpointing, train_lib
from simgan_tf import config as config_lib
from test_train import tiny_config


@pytest.fixture(scope="module")
def trained_run(shifted_data_dir, tmp_path_factory):
    """A finished tiny run with checkpoints 4, 8 and 9."""
    model_dir = str(tmp_path_factory.mktemp("trained") / "run")
    result = train_lib.train(tiny_config(shifted_data_dir, export=False), model_dir, verbose=0)
    assert result.step == 9
    return model_dir


def checkpoint_dir(model_dir):
    return os.path.join(model_dir, "checkpoints")


def restore_into_new_model(config, model_dir):
    model = train_lib.build_simgan(config)
    run = checkpointing.RunCheckpoint(train_lib.make_checkpoint(model),
                                      checkpoint_dir(model_dir), max_to_keep=3)
    return model, run.restore_latest()


def truncate_data(prefix):
    path = glob.glob(prefix + ".data-*")[0]
    with open(path, "rb+") as f:
        f.truncate(os.path.getsize(path) // 2)


def flip_data_bytes(prefix):
    path = glob.glob(prefix + ".data-*")[0]
    blob = bytearray(open(path, "rb").read())
    for i in range(100, len(blob), 997):
        blob[i] ^= 0x5A
    open(path, "wb").write(bytes(blob))


def delete_index(prefix):
    os.remove(prefix + ".index")


def corrupt_index(prefix):
    with open(prefix + ".index", "rb+") as f:
        f.truncate(20)


@pytest.mark.parametrize("damage", [truncate_data, flip_data_bytes, delete_index,
                                    corrupt_index])
def test_damaged_latest_checkpoint_falls_back_to_the_previous(trained_run, shifted_data_dir,
                                                               tmp_path, damage, caplog):
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run, model_dir)
    latest = os.path.join(checkpoint_dir(model_dir), "ckpt-9")
    damage(latest)
    partial = os.path.join(checkpoint_dir(model_dir), "ckpt-12_temp")  # a killed save
    os.makedirs(partial)
    open(os.path.join(partial, "part-00000-of-00001.data-00000-of-00001"), "wb").close()
    model, restored = restore_into_new_model(tiny_config(shifted_data_dir), model_dir)
    assert restored == os.path.join(checkpoint_dir(model_dir), "ckpt-8")
    assert model.step == 8
    assert f"Checkpoint {latest} is unreadable" in caplog.text
    assert not os.path.exists(partial)
    # The networks' weights are saved through the optimizers that own them.
    expected = checkpointing.read_tensors(restored, "refiner_optimizer/_trainable_variables")
    assert len(expected) == len(model.refiner.trainable_variables)
    for i, variable in enumerate(model.refiner.trainable_variables):
        np.testing.assert_array_equal(
            expected[f"refiner_optimizer/_trainable_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE"],
            variable.numpy())


def test_training_resumes_from_the_previous_checkpoint_when_the_latest_is_corrupt(
        trained_run, shifted_data_dir, tmp_path, caplog):
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run, model_dir)
    truncate_data(os.path.join(checkpoint_dir(model_dir), "ckpt-9"))
    caplog.set_level(logging.INFO, logger="absl")
    result = train_lib.train(tiny_config(shifted_data_dir, export=False), model_dir, verbose=0)
    assert "ckpt-9 is unreadable" in caplog.text
    assert "Resumed from" in caplog.text and "ckpt-8 at step 8" in caplog.text
    assert result.step == 9 and result.history is not None
    checkpointing.verify(os.path.join(checkpoint_dir(model_dir), "ckpt-9"))  # rewritten


def test_no_intact_checkpoint_starts_from_scratch_with_a_warning(trained_run, shifted_data_dir,
                                                                 tmp_path, caplog):
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run, model_dir)
    for index in glob.glob(os.path.join(checkpoint_dir(model_dir), "*.index")):
        truncate_data(index[: -len(".index")])
    model, restored = restore_into_new_model(tiny_config(shifted_data_dir), model_dir)
    assert restored is None and model.step == 0
    assert "No intact checkpoint" in caplog.text


def test_checkpoint_holds_everything_that_decides_the_future(trained_run):
    tensors = checkpointing.read_tensors(os.path.join(checkpoint_dir(trained_run), "ckpt-9"))
    keys = " ".join(tensors)
    for part in ("refiner_optimizer/_trainable_variables/",  # the networks' weights
                 "discriminator_optimizer/_trainable_variables/",
                 "refiner_optimizer/_iterations", "discriminator_optimizer/_iterations",
                 "refiner_optimizer/_variables/",  # Adam's moments
                 "model/history_buffer/images", "model/history_buffer/fill",
                 "model/step_counter"):
        assert part in keys, part
    reader = tf.train.load_checkpoint(os.path.join(checkpoint_dir(trained_run), "ckpt-9"))
    assert any(k.startswith("iterator") for k in reader.get_variable_to_shape_map())
    step = [v for k, v in tensors.items() if k.startswith("model/step_counter")]
    assert step == [9]


def test_non_finite_weights_are_never_checkpointed(shifted_data_dir, tmp_path):
    model = train_lib.build_simgan(tiny_config(shifted_data_dir))
    run = checkpointing.RunCheckpoint(train_lib.make_checkpoint(model), str(tmp_path),
                                      max_to_keep=3, finite_check=model.trainable_variables)
    assert run.save(1).endswith("ckpt-1")
    weight = model.discriminator.trainable_variables[0]
    weight.assign(tf.fill(weight.shape, np.nan))
    with pytest.raises(checkpointing.NonFiniteWeightsError, match="Refusing to write "
                       "checkpoint 2"):
        run.save(2)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-1")
    assert not glob.glob(str(tmp_path / "ckpt-2*"))


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(
        trained_run, shifted_data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run, model_dir)
    # lambda * sum over 1,925 pixels overflows float32: the next refiner loss is infinite.
    config = config_lib.override(tiny_config(shifted_data_dir, steps=4, export=False),
                                 {"train.reg_weight": 1e38})
    with pytest.raises(train_lib.NonFiniteLossError,
                       match=r"Non-finite loss at step 10 \(phase REFINER\).*refiner_reg_loss"):
        train_lib.train(config, model_dir, verbose=0)
    latest = tf.train.latest_checkpoint(checkpoint_dir(model_dir))
    assert latest.endswith("ckpt-9")
    assert sorted(os.listdir(checkpoint_dir(model_dir))) == sorted(
        os.listdir(checkpoint_dir(trained_run)))
    for key, value in checkpointing.read_tensors(latest).items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), key


@pytest.mark.parametrize("relative", [False, True])
def test_a_run_folder_given_as_a_relative_path_resumes(tmp_path, monkeypatch, relative):
    """`train.py`'s default --model_dir (runs/<preset>) is relative."""
    monkeypatch.chdir(tmp_path)
    directory = "run/checkpoints" if relative else str(tmp_path / "run" / "checkpoints")
    value = tf.Variable(0.0)
    writer = checkpointing.RunCheckpoint(tf.train.Checkpoint(value=value), directory,
                                         max_to_keep=3)
    for step in (10, 20):
        value.assign(float(step))
        writer.save(step)
    value.assign(-1.0)
    reader = checkpointing.RunCheckpoint(tf.train.Checkpoint(value=value), directory,
                                         max_to_keep=3)
    assert reader.candidates() == [os.path.join(directory, "ckpt-20"),
                                   os.path.join(directory, "ckpt-10")]
    assert reader.restore_latest() == os.path.join(directory, "ckpt-20")
    assert value.numpy() == 20.0
