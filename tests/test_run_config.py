"""What a resumed run may change in its config (`run_config`), end to end through train."""

import json
import logging
import os
import shutil

import pytest

from conftest import folder_bytes
from simgan_tf import config as config_lib
from simgan_tf.training import run_config, train_lib
from test_train import tiny_config

TOTAL = 2 + 1 + 2 * 3


@pytest.fixture(scope="module")
def trained_run(shifted_data_dir, tmp_path_factory):
    """A finished tiny run (9 updates, checkpoints 4, 8, 9); copy it before changing it."""
    model_dir = str(tmp_path_factory.mktemp("trained") / "run")
    config = config_lib.override(tiny_config(shifted_data_dir), {"train.export": False})
    assert train_lib.train(config, model_dir, verbose=0).step == TOTAL
    return model_dir


def copy_run(trained_run, tmp_path):
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained_run, model_dir)
    return model_dir


def base_config(data_dir, **overrides):
    config = config_lib.override(tiny_config(data_dir), {"train.export": False})
    return config_lib.override(config, overrides)


def read_json(model_dir):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def test_every_config_field_is_classified_once():
    fields = set(run_config.config_fields(config_lib.SimGANConfig().to_json()))
    fixed, allowed = set(run_config.FIXED_FIELDS), set(run_config.ALLOWED_FIELDS)
    steps = {run_config.STEPS_FIELD}
    assert not fixed & allowed and not (fixed | allowed) & steps
    assert fields - fixed - allowed - steps == set(), "unclassified config fields"
    assert (fixed | allowed | steps) - fields == set(), "classified fields that do not exist"
    assert len(run_config.FIXED_FIELDS) == len(fixed)
    assert len(run_config.ALLOWED_FIELDS) == len(allowed)


def test_an_unclassified_field_is_refused_like_a_fixed_one(monkeypatch):
    saved = config_lib.SimGANConfig()
    changed = config_lib.override(saved, {"train.reg_weight": 0.5})
    assert run_config.check_resume(saved, changed, checkpoint_step=3, path="c.json") == [
        dict(step=3, field="train.reg_weight", old=0.1, new=0.5)]
    monkeypatch.setattr(run_config, "ALLOWED_FIELDS",
                        tuple(f for f in run_config.ALLOWED_FIELDS if f != "train.reg_weight"))
    with pytest.raises(ValueError, match=r"train.reg_weight: saved 0.1, received 0.5"):
        run_config.check_resume(saved, changed, checkpoint_step=3, path="c.json")


@pytest.mark.parametrize("path, value", [
    ("train.pretrain_refiner_steps", 1000),
    ("train.pretrain_discriminator_steps", 0),
    ("train.k_g", 1),
    ("train.k_d", 2),
    ("train.batch_size", 16),
    ("train.history_size", 0),
    ("discriminator.output", "global"),  # --adversarial_loss
    ("train.seed", 5),
    ("data.shuffle_buffer", 17),
    ("refiner_optimizer.name", "sgd"),
    ("runtime.mixed_precision", True),
    ("train.augment", "cutout"),
    ("train.balance_target", 0.5),
    ("train.reg_feature", "local_mean"),
])
def test_resume_with_a_changed_schedule_field_is_refused_before_anything_happens(
        trained_run, shifted_data_dir, tmp_path, path, value):
    model_dir = copy_run(trained_run, tmp_path)
    before = folder_bytes(model_dir)
    old = run_config.config_fields(read_json(model_dir))[path]
    with pytest.raises(ValueError) as error:
        train_lib.train(base_config(shifted_data_dir, **{path: value}), model_dir, verbose=0)
    message = str(error.value)
    assert f"{path}: saved {old!r}, received {value!r}" in message, message
    assert "Use another --model_dir" in message and "at step 9" in message
    assert folder_bytes(model_dir) == before  # nothing restored into it, nothing written


def test_checkpoints_without_a_config_json_are_refused(trained_run, shifted_data_dir,
                                                        tmp_path):
    model_dir = copy_run(trained_run, tmp_path)
    os.remove(os.path.join(model_dir, "config.json"))
    before = folder_bytes(model_dir)
    with pytest.raises(ValueError, match=r"holds checkpoints up to step 9 but no config.json"):
        train_lib.train(base_config(shifted_data_dir), model_dir, verbose=0)
    assert folder_bytes(model_dir) == before


def test_several_differences_are_named_in_one_error(trained_run, shifted_data_dir, tmp_path):
    model_dir = copy_run(trained_run, tmp_path)
    config = base_config(shifted_data_dir, **{"train.k_g": 3, "train.seed": 9,
                                               "train.reg_weight": 0.7})
    with pytest.raises(ValueError) as error:
        train_lib.train(config, model_dir, verbose=0)
    message = str(error.value)
    assert "train.k_g: saved 2, received 3" in message
    assert "train.seed: saved 0, received 9" in message
    assert "reg_weight" not in message.split("Fields a resume may change")[0]


def test_larger_steps_continue_and_steps_ending_before_the_checkpoint_are_refused(
        trained_run, shifted_data_dir, tmp_path, caplog):
    model_dir = copy_run(trained_run, tmp_path)
    # steps=1 ends at update 6, before the checkpoint at 9: refused.
    with pytest.raises(ValueError, match=r"train.steps: saved 2, received 1 \(the run would "
                                         r"end at step 6, before its checkpoint at step 9\)"):
        train_lib.train(base_config(shifted_data_dir, **{"train.steps": 1}), model_dir,
                        verbose=0)
    caplog.set_level(logging.WARNING, logger="absl")
    result = train_lib.train(base_config(shifted_data_dir, **{"train.steps": 3}), model_dir,
                             verbose=0)
    assert result.step == TOTAL + 3
    assert "train.steps changed: 2 -> 3" in caplog.text
    assert read_json(model_dir)["changes"] == [
        dict(step=TOTAL, field="train.steps", old=2, new=3)]


def test_allowed_changes_are_warned_and_recorded_with_their_step(
        trained_run, shifted_data_dir, tmp_path, caplog):
    model_dir = copy_run(trained_run, tmp_path)
    assert "changes" not in read_json(model_dir)  # a config.json without the record
    caplog.set_level(logging.WARNING, logger="absl")
    changed = {"train.steps": 3, "train.reg_weight": 0.5,
               "refiner_optimizer.learning_rate": 1e-4, "train.log_every": 1}
    result = train_lib.train(base_config(shifted_data_dir, **changed), model_dir, verbose=0)
    assert result.step == TOTAL + 3
    for text in ("train.reg_weight changed: 0.1 -> 0.5",
                 "refiner_optimizer.learning_rate changed: 0.0002 -> 0.0001",
                 "train.log_every changed: 2 -> 1"):
        assert f"Resuming at step {TOTAL} with {text}" in caplog.text
    first = read_json(model_dir)["changes"]
    assert dict(step=TOTAL, field="train.reg_weight", old=0.1, new=0.5) in first
    assert len(first) == 4
    # A later resume keeps the record and adds its own change, at its own step.
    again = {**changed, "train.steps": 4, "train.reg_weight": 0.25}
    train_lib.train(base_config(shifted_data_dir, **again), model_dir, verbose=0)
    saved = read_json(model_dir)
    assert saved["changes"][:4] == first
    assert saved["changes"][4:] == [
        dict(step=TOTAL + 3, field="train.steps", old=3, new=4),
        dict(step=TOTAL + 3, field="train.reg_weight", old=0.5, new=0.25)]
    loaded = config_lib.SimGANConfig.from_json(saved)
    assert loaded.train.reg_weight == 0.25 and loaded.train.steps == 4
    # The same settings again: nothing new is recorded.
    train_lib.train(base_config(shifted_data_dir, **again), model_dir, verbose=0)
    assert read_json(model_dir)["changes"] == saved["changes"]


def test_config_json_records_the_release_and_a_resume_by_another_one(
        trained_run, shifted_data_dir, tmp_path):
    import simgan_tf

    model_dir = copy_run(trained_run, tmp_path)
    saved = read_json(model_dir)
    assert saved[run_config.VERSION_KEY] == simgan_tf.__version__
    saved[run_config.VERSION_KEY] = "0.0.1"  # as an older release wrote it
    with open(os.path.join(model_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(saved, f)
    train_lib.train(base_config(shifted_data_dir, **{"train.steps": 3}), model_dir, verbose=0)
    resumed = read_json(model_dir)
    assert resumed[run_config.VERSION_KEY] == simgan_tf.__version__
    assert dict(step=TOTAL, field=run_config.VERSION_KEY, old="0.0.1",
                new=simgan_tf.__version__) in resumed["changes"]
