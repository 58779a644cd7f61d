"""Scale-out: two local MultiWorkerMirroredStrategy workers, and the tf.data service."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from simgan_tf.training import checkpointing, train_lib
from simgan_tf import config as config_lib
from simgan_tf import distribute
from simgan_tf.serving import export
from test_train import event_tags, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL = 2 + 1 + 2 * 3


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(data_dir, model_dir, tmp_path, *flags):
    """Starts train.py as worker 0 (chief) and worker 1 of a loopback cluster."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        env.pop("CUDA_VISIBLE_DEVICES", None)
        log = open(tmp_path / f"worker{index}.log", "w")
        processes.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze",
             f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--strategy=multi_worker",
             "--pretrain_refiner_steps=2", "--pretrain_discriminator_steps=1",
             "--history_size=8", "--log_every=2", "--image_every=3", "--checkpoint_every=4",
             "--refiner_filters=8", "--refiner_blocks=1", "--verbosity=0", *flags],
            stdout=log, stderr=log, env=env, cwd=str(tmp_path)))
    return processes


def run_workers(data_dir, model_dir, tmp_path, *flags):
    """Runs both workers to the end; returns their exit codes and logs."""
    processes = start_workers(data_dir, model_dir, tmp_path, *flags)
    codes = [p.wait(timeout=600) for p in processes]
    logs = [open(tmp_path / f"worker{i}.log").read() for i in range(2)]
    return codes, logs


STEPS = 20
TOTAL_LONG = 2 + 1 + STEPS * 3
LONG_RUN = ("--batch_size=8", f"--steps={STEPS}", "--deterministic", "--shuffle_buffer=64")


@pytest.fixture(scope="module")
def two_worker_run(shifted_data_dir, tmp_path_factory):
    """A finished, uninterrupted two-worker run: (model_dir, logs)."""
    tmp_path = tmp_path_factory.mktemp("two_workers")
    model_dir = str(tmp_path / "run")
    codes, logs = run_workers(shifted_data_dir, model_dir, tmp_path, *LONG_RUN)
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    return model_dir, logs


def test_describe_names_the_strategy_and_its_replicas(mirrored_strategy):
    assert distribute.describe(tf.distribute.get_strategy()) == (
        "_DefaultDistributionStrategy: 1 replica in sync")
    assert distribute.describe(mirrored_strategy) == "MirroredStrategy: 2 replicas in sync"


def test_two_workers_train_and_only_the_chief_writes(two_worker_run):
    model_dir, logs = two_worker_run
    for log in logs:
        assert f"Done at step {TOTAL_LONG}" in log
    assert "2 replicas in sync; this process is worker 0 of 2 workers, the chief" in logs[0]
    assert "this process is worker 1 of 2 workers, not the chief" in logs[1]
    # Only the chief wrote: checkpoints, TensorBoard, export; no worker scratch left.
    assert "Saved checkpoint" in logs[0] and "Saved checkpoint" not in logs[1]
    checkpoints = os.path.join(model_dir, "checkpoints")
    assert tf.train.latest_checkpoint(checkpoints).endswith(f"ckpt-{TOTAL_LONG}")
    assert sorted(os.listdir(model_dir)) == ["checkpoints", "config.json", "export", "logs"]
    assert len(glob.glob(os.path.join(model_dir, "logs", "train", "events.out.*"))) == 1
    assert "schedule/phase" in event_tags(os.path.join(model_dir, "logs"))
    refine = export.load_refiner(os.path.join(model_dir, "export", "refiner", str(TOTAL_LONG)))
    assert refine(np.zeros((2, 35, 55, 1), np.float32)).shape == (2, 35, 55, 1)


def test_two_workers_refuse_a_batch_that_does_not_split(shifted_data_dir, tmp_path):
    codes, logs = run_workers(shifted_data_dir, str(tmp_path / "run"), tmp_path,
                              "--batch_size=6", "--steps=2")
    assert codes == [1, 1]
    for log in logs:
        assert "6 over 2 replicas. Use a multiple of 4" in log


def test_sigterm_to_one_worker_stops_both_at_one_step_and_resume_is_exact(
        shifted_data_dir, tmp_path, two_worker_run):
    model_dir = str(tmp_path / "run")
    processes = start_workers(shifted_data_dir, model_dir, tmp_path, *LONG_RUN)
    deadline = time.time() + 300
    while not glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-*.index")):
        assert time.time() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGTERM)  # the worker that is not the chief
    codes = [p.wait(timeout=300) for p in processes]
    logs = [open(tmp_path / f"worker{i}.log").read() for i in range(2)]
    assert codes == [143, 143], "\n\n".join(log[-3000:] for log in logs)
    assert "Received SIGTERM" in logs[1] and "Received SIGTERM" not in logs[0]
    steps = [int(log.split("Preempted at step ")[1].split(":")[0]) for log in logs]
    assert steps[0] == steps[1] < TOTAL_LONG
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert latest.endswith(f"ckpt-{steps[0]}")
    assert not os.path.exists(os.path.join(model_dir, ".workers"))

    # Both workers again: they restore the chief's checkpoint, replay their input
    # pipelines to that step and end with the weights of the uninterrupted run.
    codes, logs = run_workers(shifted_data_dir, model_dir, tmp_path, *LONG_RUN)
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    for log in logs:
        assert f"Fast-forwarding this worker's input pipeline by {steps[0]} batches" in log
    reference = checkpointing.read_tensors(
        os.path.join(two_worker_run[0], "checkpoints", f"ckpt-{TOTAL_LONG}"))
    resumed = checkpointing.read_tensors(
        os.path.join(model_dir, "checkpoints", f"ckpt-{TOTAL_LONG}"))
    for key in reference:
        if not key.startswith("save_counter"):
            np.testing.assert_array_equal(reference[key], resumed[key], err_msg=key)


def test_training_reads_from_the_tf_data_service(shifted_data_dir, tmp_path, caplog):
    dispatcher = tf.data.experimental.service.DispatchServer()
    worker = tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(
            dispatcher_address=dispatcher.target.split("://")[1]))
    assert dispatcher.target.startswith("grpc://")
    config = config_lib.override(tiny_config(shifted_data_dir, export=False),
                                 {"data.data_service": dispatcher.target})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    assert result.step == TOTAL
    assert worker._num_tasks() >= 1  # the pipeline ran on the service's worker
    assert "input position is not checkpointed (tf.data service)" in caplog.text
    worker._stop()
    dispatcher._stop()
