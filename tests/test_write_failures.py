"""Failed writes stop the run with `RunWriteError` naming the path; the previous
checkpoint stays the latest and restores.

Each write site is tested by injecting a failure at the one function that writes (no
space, no permission). Real failures: a read-only folder where `chmod` stops writes (not
as root, which writes anyway: then a path whose parent is a file, which fails for root
too).
"""

import errno
import logging
import os

import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.data import schema
from simgan_tf.training import callbacks, run_lock, train_lib
from simgan_tf.write_errors import RunWriteError
from test_train import tiny_config

TOTAL = 2 + 1 + 2 * 3  # checkpoints at 4, 8 and 9


def no_space(path="?"):
    return tf.errors.ResourceExhaustedError(None, None, f"{path}; No space left on device")


def latest(model_dir):
    return tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))


def assert_resumes_from(data_dir, model_dir, step, caplog):
    """The run restarted without the failure resumes from `ckpt-<step>` and finishes."""
    assert latest(model_dir).endswith(f"ckpt-{step}")
    assert not os.path.exists(os.path.join(model_dir, run_lock.LOCK_FILE))
    caplog.set_level(logging.INFO, logger="absl")
    result = train_lib.train(tiny_config(data_dir), model_dir, verbose=0)
    assert f"ckpt-{step} at step {step}" in caplog.text
    assert result.step == TOTAL and latest(model_dir).endswith(f"ckpt-{TOTAL}")


def test_a_failed_checkpoint_write_keeps_the_previous_one(shifted_data_dir, tmp_path,
                                                          monkeypatch, caplog):
    model_dir = str(tmp_path / "run")
    save = tf.train.CheckpointManager.save

    def failing_save(manager, checkpoint_number=None, **kwargs):
        if checkpoint_number == 8:  # half a save, then the disk is full
            tf.io.gfile.makedirs(os.path.join(manager.directory, "ckpt-8_temp"))
            raise no_space(os.path.join(manager.directory, "ckpt-8_temp"))
        return save(manager, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", failing_save)
    with pytest.raises(RunWriteError) as error:
        train_lib.train(tiny_config(shifted_data_dir), model_dir, verbose=0)
    checkpoints = os.path.join(model_dir, "checkpoints")
    assert error.value.path == os.path.join(checkpoints, "ckpt-8")
    message = str(error.value)
    assert f"Could not write {checkpoints}/ckpt-8: ResourceExhaustedError" in message
    assert f"The latest checkpoint is still {checkpoints}/ckpt-4." in message
    assert "run the same command again to resume" in message
    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    assert_resumes_from(shifted_data_dir, model_dir, 4, caplog)
    assert not tf.io.gfile.glob(os.path.join(checkpoints, "*_temp"))


def test_a_failed_export_names_the_export_and_keeps_the_checkpoint(
        shifted_data_dir, tmp_path, monkeypatch, caplog):
    model_dir = str(tmp_path / "run")

    def failing_save(*args, **kwargs):
        raise tf.errors.PermissionDeniedError(None, None, "Permission denied")

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    with pytest.raises(RunWriteError) as error:
        train_lib.train(tiny_config(shifted_data_dir), model_dir, verbose=0)
    export_path = os.path.join(model_dir, "export", "refiner", str(TOTAL))
    assert error.value.path == export_path
    assert f"Could not write {export_path}: PermissionDeniedError" in str(error.value)
    monkeypatch.undo()
    assert latest(model_dir).endswith(f"ckpt-{TOTAL}")
    result = train_lib.train(tiny_config(shifted_data_dir), model_dir, verbose=0)
    assert result.step == TOTAL and result.export_path == export_path  # exported now
    assert os.path.exists(os.path.join(export_path, "saved_model.pb"))


def test_a_failed_config_write_stops_before_training(shifted_data_dir, tmp_path,
                                                     monkeypatch, caplog):
    model_dir = str(tmp_path / "run")
    config = tiny_config(shifted_data_dir, steps=1)
    train_lib.train(config, model_dir, verbose=0)  # ends at step 6, ckpt-4 and ckpt-6
    with open(os.path.join(model_dir, "config.json"), "rb") as f:
        saved = f.read()

    def failing_write(path, data, sort_keys=True):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(schema, "write_json_atomic", failing_write)
    with pytest.raises(RunWriteError, match=r"Could not write .*/run/config.json: OSError"):
        train_lib.train(tiny_config(shifted_data_dir, steps=2), model_dir, verbose=0)
    monkeypatch.undo()
    with open(os.path.join(model_dir, "config.json"), "rb") as f:
        assert f.read() == saved
    assert latest(model_dir).endswith("ckpt-6")  # nothing trained
    assert_resumes_from(shifted_data_dir, model_dir, 6, caplog)


def test_a_failed_summary_write_stops_the_run(shifted_data_dir, tmp_path, monkeypatch,
                                              caplog):
    model_dir = str(tmp_path / "run")
    write_scalars = callbacks.SummaryCallback._write_scalars

    def failing_scalar(tag, data, step=None, description=None):
        raise no_space(f"{model_dir}/logs/train/events.out.tfevents")

    def fail_after_step_5(callback, step, logs):
        if step >= 6:
            monkeypatch.setattr(tf.summary, "scalar", failing_scalar)
        return write_scalars(callback, step, logs)

    monkeypatch.setattr(callbacks.SummaryCallback, "_write_scalars", fail_after_step_5)
    with pytest.raises(RunWriteError) as error:
        train_lib.train(tiny_config(shifted_data_dir), model_dir, verbose=0)
    assert error.value.path == os.path.join(model_dir, "logs", "train")
    monkeypatch.undo()
    assert_resumes_from(shifted_data_dir, model_dir, 4, caplog)


def make_unwritable(folder):
    """Makes `folder` fail writes for real; returns how ('chmod' or 'file')."""
    os.makedirs(folder, exist_ok=True)
    os.chmod(folder, 0o555)
    try:
        with open(os.path.join(folder, ".probe"), "w"):
            pass
    except PermissionError:
        return "chmod"
    os.remove(os.path.join(folder, ".probe"))  # root: chmod does not stop writes
    os.chmod(folder, 0o755)
    os.rmdir(folder)
    with open(folder, "w") as f:  # a file where a folder must be: fails for root too
        f.write("not a folder")
    return "file"


def make_writable(folder, how):
    if how == "chmod":
        os.chmod(folder, 0o755)
    else:
        os.remove(folder)


@pytest.mark.parametrize("folder, error_path", [
    ("logs", "logs/train"),
    ("export", f"export/refiner/{TOTAL}"),
])
def test_a_real_unwritable_folder_fails_naming_the_path(shifted_data_dir, tmp_path, caplog,
                                                        folder, error_path):
    model_dir = str(tmp_path / "run")
    how = make_unwritable(os.path.join(model_dir, folder))
    try:
        with pytest.raises(RunWriteError) as error:
            train_lib.train(tiny_config(shifted_data_dir), model_dir, verbose=0)
    finally:
        make_writable(os.path.join(model_dir, folder), how)
    assert error.value.path == os.path.join(model_dir, error_path), how
    assert f"Could not write {model_dir}/{error_path}" in str(error.value)
    assert not os.path.exists(os.path.join(model_dir, run_lock.LOCK_FILE))
    if folder == "export":  # after training: the final checkpoint is written and restores
        caplog.set_level(logging.INFO, logger="absl")
        train_lib.train(tiny_config(shifted_data_dir), model_dir, verbose=0)
        assert f"ckpt-{TOTAL} at step {TOTAL}" in caplog.text


def test_a_real_unwritable_checkpoint_folder_fails_at_the_first_checkpoint(
        shifted_data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    how = make_unwritable(os.path.join(model_dir, "checkpoints"))
    try:
        config = config_lib.override(tiny_config(shifted_data_dir), {"train.export": False})
        with pytest.raises(RunWriteError, match=r"Could not write .*/checkpoints/ckpt-4"):
            train_lib.train(config, model_dir, verbose=0)
    finally:
        make_writable(os.path.join(model_dir, "checkpoints"), how)
