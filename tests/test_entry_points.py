"""`--config=PATH=VALUE` on train.py and evaluate.py, and resuming a run of the old layout."""

import json
import os
import subprocess
import sys

import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.evaluation import eval_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_command(data_dir, model_dir, *flags):
    """A tiny train.py run: 1 + 1 pretraining updates, then `--steps` iterations."""
    return [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze",
            f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--batch_size=8",
            "--pretrain_refiner_steps=1", "--pretrain_discriminator_steps=1",
            "--history_size=8", "--noexport", "--log_every=1", "--image_every=1000",
            "--checkpoint_every=1000", "--shuffle_buffer=64", "--refiner_filters=8",
            "--refiner_blocks=1", "--verbosity=0", *flags]


def run(command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600,
                          **kwargs)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_train_py_config_flag_sets_fields_and_an_old_layout_run_resumes(
        shifted_data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    config_json = os.path.join(model_dir, "config.json")
    flags = ["--k_d=3", "--config=train.k_d=2", "--config=runtime.deterministic=true",
             "--config=train.keep_checkpoints=2"]
    result = run(train_command(shifted_data_dir, model_dir, "--steps=1", *flags))
    assert result.returncode == 0, result.stderr[-3000:]
    saved = read_json(config_json)
    assert saved["train"]["k_d"] == 2  # --config applies after --k_d
    assert saved["train"]["keep_checkpoints"] == 2 and saved["train"]["steps"] == 1
    assert saved["runtime"] == {"strategy": "auto", "deterministic": True,
                                "mixed_precision": False}
    checkpoints = os.path.join(model_dir, "checkpoints")
    assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-6")  # 1 + 1 + (2 + 2)

    # The same run as an earlier release wrote it: runtime settings at their old paths.
    runtime = saved.pop("runtime")
    saved["strategy"] = runtime["strategy"]
    saved["train"].update(deterministic=runtime["deterministic"],
                          mixed_precision=runtime["mixed_precision"])
    with open(config_json, "w", encoding="utf-8") as f:
        json.dump(saved, f)
    result = run(train_command(shifted_data_dir, model_dir, "--steps=2", *flags))
    assert result.returncode == 0, result.stderr[-3000:]
    assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-10")  # resumed at 6
    resaved = read_json(config_json)
    assert resaved["runtime"]["deterministic"] is True and "strategy" not in resaved
    assert config_lib.SimGANConfig.from_json(resaved).train.k_d == 2


def test_train_py_rejects_unknown_paths_and_bad_values_before_training(tmp_path):
    model_dir = tmp_path / "run"
    for flag, message in [
            ("--config=train.nope=1", "Unknown config field 'train.nope'"),
            ("--config=refiner.kernel_size=five",
             "Config field 'refiner.kernel_size' expects int. "
             "Received: 'refiner.kernel_size=five'"),
            ("--config=train.k_d", "PATH=VALUE"),
            ("--config=refiner.kernel_size=4", "odd kernel_size"),  # validated after
    ]:
        result = run([sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze",
                      f"--data_dir={tmp_path}", f"--model_dir={model_dir}", flag])
        assert result.returncode != 0
        assert message in result.stderr, result.stderr[-2000:]
        assert not model_dir.exists()
    # Without a preset named, the data folder's dataset.json decides it: a folder without
    # one is named before anything else happens.
    result = run([sys.executable, os.path.join(ROOT, "train.py"), f"--data_dir={tmp_path}",
                  f"--model_dir={model_dir}"])
    assert result.returncode != 0 and "dataset.json" in result.stderr, result.stderr[-2000:]
    assert not model_dir.exists()


def test_train_py_config_data_dir_counts_for_the_demo_rule(tmp_path):
    # --config=data.data_dir names a data folder as --data_dir does: `gaze` stays `gaze`
    # (and fails on the missing folder) instead of running `gaze_demo`.
    missing = str(tmp_path / "missing")
    result = run([sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze",
                  f"--config=data.data_dir={missing}", "--batch_size=8",
                  f"--model_dir={tmp_path / 'run'}", "--verbosity=0"])
    assert result.returncode != 0
    assert missing in result.stderr and "gaze_demo" not in result.stderr, result.stderr[-2000:]


def test_evaluate_py_config_flag_reaches_the_estimator_config(shifted_data_dir, tmp_path):
    aliases = {"seed": ("seed", "realism.seed"), "steps": "steps"}
    overrides = config_lib.command_line_overrides(
        {"seed": 4, "steps": 100}, ["steps=7", "realism.num_images=8", "thresholds=[1, 2.5]",
                                   "hourglass.sigma=2"],
        aliases=aliases, config_class=eval_lib.EvalConfig)
    config = config_lib.override(eval_lib.PRESETS["gaze"], overrides).validate()
    assert (config.steps, config.seed, config.realism.seed) == (7, 4, 4)
    assert config.realism.num_images == 8 and config.thresholds == (1, 2.5)
    assert config.hourglass.sigma == 2.0

    result = run([sys.executable, os.path.join(ROOT, "evaluate.py"),
                  f"--data_dir={shifted_data_dir}", f"--output_dir={tmp_path / 'out'}",
                  "--config=realism.nope=3"])
    assert result.returncode != 0
    assert "Unknown config field 'realism.nope': RealismConfig has" in result.stderr, \
        result.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_train_py_prints_the_next_commands_and_they_run(shifted_data_dir, tmp_path):
    """A finished run prints refine and evaluate commands with its own paths; run as
    printed (with this interpreter), they refine into the data folder and score it."""
    import shutil

    data_dir = str(tmp_path / "data")
    shutil.copytree(shifted_data_dir, data_dir)  # refine writes a split into it
    model_dir = str(tmp_path / "run")
    command = [c for c in train_command(data_dir, model_dir, "--steps=1") if c != "--noexport"]
    result = run(command)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    start = lines.index("Next: refine the synthetic split and evaluate it:")
    refine, evaluate = [line.strip() for line in lines[start + 1:start + 3]]
    export = os.path.join(model_dir, "export", "refiner", "5")  # 1 + 1 + (2 + 1)
    assert refine == (f"python refine.py --saved_model={export} --input_dir={data_dir}/synthetic "
                      f"--output_dir={data_dir}/refined")
    # No labelled real_test split here: the realism score of both splits against real.
    assert evaluate == (f"python evaluate.py --data_dir={data_dir} "
                        f"--candidate_splits=synthetic,refined --realism_split=real "
                        f"--output_dir={model_dir}/eval")
    for printed, extra in ((refine, []), (evaluate, ["--realism_steps=2", "--realism_images=8",
                                                     "--noprogress"])):
        argv = [sys.executable, *printed.split()[1:], *extra]
        done = run(argv)
        assert done.returncode == 0, done.stderr[-3000:]
    results = read_json(os.path.join(model_dir, "eval", "results.json"))
    assert sorted(results["splits"]) == ["refined", "synthetic"]
