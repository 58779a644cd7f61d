"""The training loop: `keras.Model.fit`'s loop over an input iterator the caller owns.

`fit` makes its own iterator from a dataset, and that iterator cannot be checkpointed;
`run` drives the same Keras callbacks (progress bar, `History`) over an iterator given
to it, so that the caller can save the iterator's position in its checkpoints. Per
update it:

1. runs one compiled step of the model (`model.make_train_function()`);
2. raises `NonFiniteLossError` on a NaN or infinite loss, before anything is written;
3. calls the callbacks, then tells the `checkpointing.CheckpointPolicy` about the update
   (the policy alone decides whether to write a checkpoint);
4. stops early, after a checkpoint, if any worker received SIGTERM or SIGINT (Ctrl-C;
   a second Ctrl-C raises `KeyboardInterrupt` at once).

The loop knows nothing about data folders: a TensorFlow error of a step is handed to the
caller's `on_input_error` hook (`validation.raise_for_input_error`, bound to the data),
which raises a `BadRecordError` naming the file and record if it can.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from simgan_tf.training import checkpointing


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; no checkpoint was written after it."""


@dataclasses.dataclass
class LoopResult:
    """What `run` did.

    Attributes:
      history: the `keras.callbacks.History` of the run.
      preempted: True if a stop request (SIGTERM or SIGINT) ended it early, after a
        checkpoint.
      logs: the last update's logs (metric name -> float).
      stop_signal: the signal number that stopped it (`None` if none did, or if it came
        to another worker).
    """
    history: keras.callbacks.History | None
    preempted: bool
    logs: dict
    stop_signal: int | None = None


class Preemption:
    """Records SIGTERM (a preemption notice) and SIGINT (Ctrl-C) while active.

    The first of either makes the loop save a checkpoint after the current step and stop;
    a second SIGINT raises `KeyboardInterrupt` at once (nothing more is saved; the latest
    checkpoint is kept). Only the main thread can install signal handlers; elsewhere both
    signals are left alone.

    Attributes:
      received: whether a stop was requested.
      signal_number: the signal that requested it (`signal.SIGTERM` or `signal.SIGINT`).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = False
        self.signal_number = None
        self._previous = {}

    def _handler(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received and signum == signal.SIGINT:
            logging.warning("Received a second SIGINT: stopping now without saving.")
            raise KeyboardInterrupt
        if self.received:
            return
        logging.warning("Received %s: saving a checkpoint after this step and stopping%s.",
                        name, " (press Ctrl-C again to stop at once)"
                        if signum == signal.SIGINT else "")
        self.received, self.signal_number = True, signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def fast_forward(iterator, batches: int) -> None:
    """Draws and drops `batches` batches: restores a position that was not checkpointed.

    Used by multi-worker runs, whose per-worker input positions are not in the chief's
    checkpoint. With a deterministic pipeline (`runtime.deterministic`) the iterator ends
    where the interrupted run's was; it costs reading and decoding those batches again.
    """
    logging.info("Fast-forwarding this worker's input pipeline by %d batches to the "
                 "restored step.", batches)
    for _ in range(batches):
        next(iterator)


def check_finite(logs: dict, model, checkpoint_dir: str) -> None:
    """Raises `NonFiniteLossError` if a value of `logs` (metric name -> float) is not finite.

    Args:
      logs: the update's logs.
      model: the `SimGAN` (its step and phase are named in the message).
      checkpoint_dir: where the latest good checkpoint is (named in the message).
    """
    bad = {name: value for name, value in logs.items() if not np.isfinite(value)}
    if bad:
        raise NonFiniteLossError(
            f"Non-finite loss at step {model.step} (phase "
            f"{model.schedule.phase(model.step - 1).name}): {bad}. Training stopped without "
            f"writing a checkpoint; the latest good one in {checkpoint_dir} is kept. Lower "
            "the learning rates or train.reg_weight, or check the data.")


def run(model, iterator, steps: int, callbacks, *,
        checkpoints: checkpointing.CheckpointPolicy,
        on_input_error: Callable[[Exception], None] = lambda error: None,
        any_worker: Callable[[bool], bool] = bool,
        verbose: int | str = "auto") -> LoopResult:
    """Runs `steps` updates of `model` over `iterator` with Keras callbacks.

    The equivalent of `model.fit(..., epochs=1, steps_per_epoch=steps)`.

    Args:
      model: a compiled `SimGAN` (its `step` counts the updates done).
      iterator: the input iterator (its position may be in the checkpoint).
      steps: updates to run (> 0).
      callbacks: Keras callbacks, called in order before the checkpoint decision.
      checkpoints: decides when checkpoints are written.
      on_input_error: called with any TensorFlow error of a step; raises the error to
        report instead (e.g. `BadRecordError`) or returns, and the error is re-raised.
      any_worker: `wants_to_stop -> any worker wants to stop`
        (`distribute.make_stop_agreement`); called after every update.
      verbose: Keras progress bar mode (`"auto"` and 1: bar, 0: silent, 2: one line).

    Returns:
      A `LoopResult`.

    Raises:
      NonFiniteLossError: on a NaN or infinite loss (the latest good checkpoint is kept).
    """
    verbose = 1 if verbose == "auto" else verbose
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, model=model, verbose=verbose,
        epochs=1, steps=steps)
    train_function = model.make_train_function()
    model.stop_training = False
    preempted, logs = False, {}
    with Preemption() as preemption:
        callback_list.on_train_begin()
        callback_list.on_epoch_begin(0)
        for batch in range(steps):
            callback_list.on_train_batch_begin(batch)
            try:
                step_logs = train_function(iterator)
            except tf.errors.OpError as error:
                on_input_error(error)
                raise
            logs = {name: float(value) for name, value in step_logs.items()}
            check_finite(logs, model, checkpoints.directory)
            callback_list.on_train_batch_end(batch, logs)
            checkpoints.after_update(model.step)
            if any_worker(preemption.received) and batch + 1 < steps:
                path = checkpoints.on_stop(model.step)
                logging.warning("Preempted at step %d: saved %s; run the same command "
                                "again to resume.", model.step,
                                path or "the checkpoint (written by the chief)")
                preempted = True
                break
            if model.stop_training:
                break
        if not preempted:
            callback_list.on_epoch_end(0, logs)
            callback_list.on_train_end(logs)
            checkpoints.at_end(model.step)
    history = next((c for c in callback_list.callbacks
                    if isinstance(c, keras.callbacks.History)), None)
    return LoopResult(history=history, preempted=preempted, logs=logs,
                      stop_signal=preemption.signal_number if preempted else None)
