"""Distribution: building the strategy, who writes, and agreeing to stop across workers.

The strategy is built once, at the entry point (`build_strategy`), before anything lists
the devices. Library code receives it (or asks `tf.distribute.get_strategy()`) and uses
the helpers here instead of reading the cluster itself:

- `describe`: one line on the strategy, its replicas and this worker, for the log.
- `in_multi_worker_mode`: whether the strategy spans several processes
  (`MultiWorkerMirroredStrategy` with a cluster in `TF_CONFIG`).
- `is_chief`: whether this process writes the run's files (config, summaries,
  checkpoints, export). The other workers write into `worker_scratch_dir`, deleted by
  `remove_worker_scratch_dir` (TensorFlow's documented pattern: every worker takes part
  in a save, which may run collectives, but only the chief's copy is kept).
- `make_stop_agreement`: a function that tells every worker whether any of them wants
  to stop, so that all of them stop (and checkpoint) after the same step.

All paths go through `tf.io.gfile`: the run folder may be local, `gs://` or `ram://`.
"""

from __future__ import annotations

import os
from typing import Callable

import tensorflow as tf

from simgan_tf import config as config_lib

_SCRATCH_PARENT = ".workers"


def build_strategy(name: str) -> tf.distribute.Strategy:
    """Builds the distribution strategy named by `config.runtime.strategy`.

    Args:
      name: `auto`: MirroredStrategy over all GPUs if there are several, else the
        default strategy; `one_device`: the first GPU or the CPU; `mirrored`:
        MirroredStrategy over the local devices (GPUs, else logical CPUs);
        `multi_worker`: MultiWorkerMirroredStrategy configured from `TF_CONFIG`.

    Raises:
      ValueError: for another name.
    """
    if name == "multi_worker":
        # Before anything else touches the devices: collectives are configured at startup.
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    raise ValueError(f"Expected strategy in {config_lib.STRATEGIES}. Received: name={name!r}")


def describe(strategy: tf.distribute.Strategy | None = None) -> str:
    """One line on where the run computes, for the log: the strategy, its replicas and,
    under multi-worker training, this worker's task, the number of workers and whether
    it is the chief. For example `MultiWorkerMirroredStrategy: 2 replicas in sync; this
    process is worker 1 of 2 workers, not the chief`."""
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    text = f"{type(strategy).__name__}: {replicas} replica{'s' if replicas > 1 else ''} in sync"
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type:
        workers = sum(len(tasks) for name, tasks in resolver.cluster_spec().as_dict().items()
                      if name in ("chief", "worker"))
        role = "the chief" if is_chief(strategy) else "not the chief"
        text += (f"; this process is {resolver.task_type} {resolver.task_id} of {workers} "
                 f"workers, {role}")
    return text


def in_multi_worker_mode(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether `strategy` (default: the current one) spans several worker processes.

    TensorFlow has no public call for this; Keras asks the strategy's extended object
    the same way. A `MultiWorkerMirroredStrategy` without a cluster is not multi-worker.
    """
    strategy = strategy or tf.distribute.get_strategy()
    return bool(strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run's files (always true outside multi-worker).

    The chief is the task of type `chief`, or worker 0 when the cluster has no chief.
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def worker_scratch_dir(model_dir: str, strategy: tf.distribute.Strategy | None = None) -> str:
    """The folder a non-chief worker writes into: `<model_dir>/.workers/<type>-<id>`.

    Raises:
      ValueError: if `strategy` has no cluster (there is no worker to name).
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        raise ValueError("Expected a strategy with a cluster (a worker task type and id). "
                         f"Received: strategy={type(strategy).__name__}")
    return os.path.join(model_dir, _SCRATCH_PARENT, f"{resolver.task_type}-{resolver.task_id}")


def remove_worker_scratch_dir(scratch: str) -> None:
    """Deletes a worker's scratch folder, and `.workers/` once the last one is gone.

    `tf.io.gfile` cannot remove a folder only if it is empty, so the parent is removed
    when its listing is empty: every worker removes its own folder at the very end of
    the run, after the last collective, so no worker writes there any more.
    """
    try:
        tf.io.gfile.rmtree(scratch)
    except tf.errors.NotFoundError:
        pass
    parent = os.path.dirname(scratch)
    try:
        if not tf.io.gfile.listdir(parent):
            tf.io.gfile.rmtree(parent)
    except tf.errors.NotFoundError:  # another worker removed it first
        pass


def make_stop_agreement(strategy: tf.distribute.Strategy | None = None
                        ) -> Callable[[bool], bool]:
    """A function `wants_to_stop -> any worker wants to stop`, the same on every worker.

    Outside multi-worker training it is `bool`. Under `MultiWorkerMirroredStrategy` it
    sums the flags over all replicas (a collective: every worker must call it at the
    same step, and each call waits for the others).
    """
    strategy = strategy or tf.distribute.get_strategy()
    if not in_multi_worker_mode(strategy):
        return bool

    @tf.function
    def agree(flag):
        per_replica = strategy.run(tf.identity, args=(flag,))
        return strategy.reduce("SUM", per_replica, axis=None)

    return lambda flag: int(agree(tf.constant(int(flag))).numpy()) > 0
