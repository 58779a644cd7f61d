"""One run per model folder: `run_lock.RunLock`, across real processes."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import tensorflow as tf

from simgan_tf.training import run_lock, train_lib
from test_train import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = ("import sys; from simgan_tf.training import run_lock; "
        "lock = run_lock.RunLock(sys.argv[1]).acquire(); print('held', flush=True); "
        "sys.stdin.read(); lock.release()")


def hold_in_subprocess(model_dir):
    """A second process that takes the folder's lock and keeps it until stdin closes."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, model_dir], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert process.stdout.readline().strip() == "held"
    return process


def write_lock(model_dir, **fields):
    info = dict(host=socket.gethostname(), pid=os.getpid(), started="2026-01-01T00:00:00Z",
                heartbeat=time.time(), token="t0")
    info.update(fields)
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, run_lock.LOCK_FILE), "w") as f:
        json.dump(info, f)


def test_a_second_train_py_on_a_folder_in_use_fails_naming_the_holder(
        shifted_data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    holder = hold_in_subprocess(model_dir)
    try:
        info = json.load(open(os.path.join(model_dir, run_lock.LOCK_FILE)))
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname()
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze",
             f"--data_dir={shifted_data_dir}", f"--model_dir={model_dir}", "--batch_size=8",
             "--steps=1", "--pretrain_refiner_steps=1", "--pretrain_discriminator_steps=1",
             "--history_size=8", "--noexport"],
            capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert result.returncode == 1, result.stderr[-3000:]
        assert (f"{model_dir} is in use by another training run: pid {holder.pid} on host "
                f"{socket.gethostname()!r}, started {info['started']}") in result.stderr
        assert "use another --model_dir" in result.stderr
        assert not os.path.exists(os.path.join(model_dir, "config.json"))
        assert json.load(open(os.path.join(model_dir, run_lock.LOCK_FILE))) == info
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not os.path.exists(os.path.join(model_dir, run_lock.LOCK_FILE))  # released


def test_the_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path, caplog):
    model_dir = str(tmp_path / "run")
    holder = hold_in_subprocess(model_dir)
    with pytest.raises(run_lock.RunLockedError, match=f"pid {holder.pid} on host"):
        run_lock.RunLock(model_dir).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    assert os.path.exists(os.path.join(model_dir, run_lock.LOCK_FILE))  # left behind
    caplog.set_level(logging.WARNING, logger="absl")
    with run_lock.RunLock(model_dir) as lock:
        assert f"it was held by pid {holder.pid}" in caplog.text
        assert f"process {holder.pid} is not running on this host" in caplog.text
        held = json.load(open(lock.path))
        assert held["pid"] == os.getpid() and held["token"] == lock.info.token
    assert not os.path.exists(lock.path)


def test_another_hosts_lock_is_stale_only_after_its_heartbeat_timeout(tmp_path, caplog):
    model_dir = str(tmp_path / "run")
    write_lock(model_dir, host="elsewhere", pid=1, heartbeat=time.time() - 5)
    with pytest.raises(run_lock.RunLockedError, match="pid 1 on host 'elsewhere'"):
        run_lock.RunLock(model_dir, stale_after=60, heartbeat_seconds=10).acquire()
    write_lock(model_dir, host="elsewhere", pid=1, heartbeat=time.time() - 100)
    caplog.set_level(logging.WARNING, logger="absl")
    lock = run_lock.RunLock(model_dir, stale_after=60, heartbeat_seconds=10).acquire()
    try:
        assert "heartbeat is 100 s old (more than 60 s)" in caplog.text
        assert json.load(open(lock.path))["host"] == socket.gethostname()
    finally:
        lock.release()


def test_the_heartbeat_is_refreshed_while_held(tmp_path):
    lock = run_lock.RunLock(str(tmp_path), heartbeat_seconds=0.1, stale_after=1.0).acquire()
    try:
        first = json.load(open(lock.path))["heartbeat"]
        time.sleep(0.6)
        later = json.load(open(lock.path))
        assert later["heartbeat"] > first and later["token"] == lock.info.token
    finally:
        lock.release()
    assert not os.path.exists(lock.path)


def test_lock_on_a_gfile_file_system_without_exclusive_create():
    model_dir = f"ram://lock-{uuid.uuid4().hex[:8]}/run"
    with run_lock.RunLock(model_dir) as lock:
        assert tf.io.gfile.exists(lock.path)
        with pytest.raises(run_lock.RunLockedError, match="is in use by another training run"):
            run_lock.RunLock(model_dir).acquire()
    assert not tf.io.gfile.exists(lock.path)


def test_train_releases_the_lock_at_the_end_and_on_errors(shifted_data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    lock_path = os.path.join(model_dir, run_lock.LOCK_FILE)
    config = tiny_config(shifted_data_dir, export=False, steps=0,
                         pretrain_discriminator_steps=0)
    assert train_lib.train(config, model_dir, verbose=0).step == 2
    assert not os.path.exists(lock_path)
    with pytest.raises(ValueError, match="train.seed: saved"):  # a refused resume
        train_lib.train(tiny_config(shifted_data_dir, seed=4), model_dir, verbose=0)
    assert not os.path.exists(lock_path)
    write_lock(model_dir, host="elsewhere", pid=1)  # held by a live run elsewhere
    with pytest.raises(train_lib.RunLockedError, match="host 'elsewhere'"):
        train_lib.train(config, model_dir, verbose=0)
    assert os.path.exists(lock_path)  # someone else's lock is left alone
