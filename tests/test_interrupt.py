"""Ctrl-C: SIGINT saves like SIGTERM; a second SIGINT stops at once."""

import os
import signal
import subprocess
import sys
import time

import pytest

from simgan_tf.training import checkpointing, loop, run_lock
from test_resume import ROOT, TOTAL, command, latest_number, start, wait_for_checkpoint


def test_sigint_saves_a_checkpoint_at_the_stopped_step_and_exits_130(
        shifted_data_dir, tmp_path):
    model_dir, log_path = str(tmp_path / "run"), str(tmp_path / "log.txt")
    process = start(shifted_data_dir, model_dir, log_path)
    wait_for_checkpoint(model_dir, process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130, open(log_path).read()[-3000:]
    log = open(log_path).read()
    assert "Received SIGINT: saving a checkpoint after this step" in log
    stopped_at = int(log.split("Preempted at step ")[1].split(":")[0])
    assert 0 < stopped_at < TOTAL and latest_number(model_dir) == stopped_at
    assert "Stopped by SIGINT at step" in log
    prefix = os.path.join(model_dir, "checkpoints", f"ckpt-{stopped_at}")
    checkpointing.verify(prefix)
    steps = [v for k, v in checkpointing.read_tensors(prefix).items()
             if k.startswith("model/step_counter")]
    assert steps == [stopped_at]
    assert not os.path.exists(os.path.join(model_dir, run_lock.LOCK_FILE))
    # The same command resumes from it and finishes.
    result = subprocess.run(command(shifted_data_dir, model_dir), capture_output=True,
                            text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resumed from {prefix} at step {stopped_at}" in result.stderr
    assert latest_number(model_dir) == TOTAL


def deliver(signum):
    """Sends `signum` to this process and waits until Python ran its handler."""
    os.kill(os.getpid(), signum)
    for _ in range(100):
        time.sleep(0.01)


def test_a_second_sigint_raises_keyboard_interrupt_at_once():
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started in the background
    with loop.Preemption() as preemption:
        deliver(signal.SIGINT)
        assert preemption.received and preemption.signal_number == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            deliver(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_sigterm_then_sigint_still_saves_as_sigterm():
    with loop.Preemption() as preemption:
        deliver(signal.SIGTERM)
        assert preemption.signal_number == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a Ctrl-C after it stops at once
            deliver(signal.SIGINT)
        deliver(signal.SIGTERM)  # a repeated SIGTERM is ignored
        assert preemption.signal_number == signal.SIGTERM
