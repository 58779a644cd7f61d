"""Exact resume through train.py: SIGKILL at a random moment, SIGTERM, same final weights."""

import glob
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from simgan_tf.training import checkpointing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 40
TOTAL = 4 + 2 + STEPS * 3


def command(data_dir, model_dir):
    return [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze",
            f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--batch_size=8",
            f"--steps={STEPS}", "--pretrain_refiner_steps=4", "--pretrain_discriminator_steps=2",
            "--history_size=8", "--checkpoint_every=7", "--deterministic", "--noexport",
            "--log_every=5", "--image_every=1000", "--seed=1", "--shuffle_buffer=64",
            "--refiner_filters=8", "--refiner_blocks=1", "--verbosity=0"]


def start(data_dir, model_dir, log_path):
    log = open(log_path, "a")
    return subprocess.Popen(command(data_dir, model_dir), stdout=log, stderr=log, cwd=ROOT)


def wait_for_checkpoint(model_dir, process, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-*.index")):
            return
        assert process.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.05)
    raise TimeoutError("no checkpoint appeared")


def latest_number(model_dir):
    """Step of the newest checkpoint index in the folder (0 if none)."""
    return max((checkpointing.checkpoint_number(p[: -len(".index")]) for p in
                glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-*.index"))), default=0)


def final_tensors(model_dir):
    prefix = os.path.join(model_dir, "checkpoints", f"ckpt-{TOTAL}")
    tensors = checkpointing.read_tensors(prefix)
    # save_counter counts this run's saves; everything else decides the future.
    return {k: v for k, v in tensors.items() if not k.startswith("save_counter")}


def test_killed_and_preempted_runs_resume_to_the_same_weights(shifted_data_dir, tmp_path):
    reference = str(tmp_path / "reference")
    result = subprocess.run(command(shifted_data_dir, reference), capture_output=True,
                            text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    model_dir, log_path = str(tmp_path / "interrupted"), str(tmp_path / "log.txt")
    # 1. SIGKILL at a random moment after the first checkpoint.
    delay = random.uniform(0.0, 1.0)
    process = start(shifted_data_dir, model_dir, log_path)
    wait_for_checkpoint(model_dir, process)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, f"not killed (delay {delay:.2f} s)"
    killed_at = latest_number(model_dir)
    assert killed_at < TOTAL, f"the run finished before SIGKILL (delay {delay:.2f} s)"

    # 2. Same command: resumes; SIGTERM makes it save a checkpoint and exit with 143.
    process = start(shifted_data_dir, model_dir, log_path)
    deadline = time.time() + 300
    while latest_number(model_dir) <= killed_at:  # training again, SIGTERM handled
        assert process.poll() is None and time.time() < deadline, open(log_path).read()[-3000:]
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 0.5))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143, open(log_path).read()[-3000:]
    log = open(log_path).read()
    assert f"ckpt-{killed_at} at step {killed_at}" in log
    assert "Preempted at step" in log
    preempted_at = int(log.split("Preempted at step ")[1].split(":")[0])
    assert killed_at < preempted_at < TOTAL
    assert os.path.exists(os.path.join(model_dir, "checkpoints", f"ckpt-{preempted_at}.index"))

    # 3. Same command again: finishes with the weights of the uninterrupted run.
    result = subprocess.run(command(shifted_data_dir, model_dir), capture_output=True,
                            text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resumed from {model_dir}/checkpoints/ckpt-{preempted_at}" in result.stderr
    expected, got = final_tensors(reference), final_tensors(model_dir)
    assert set(expected) == set(got)
    assert any("history" in k for k in got) and any("optimizer" in k for k in got)
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
