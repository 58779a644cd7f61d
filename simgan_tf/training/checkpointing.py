"""Checkpoints of a run: what they hold, how they are written and how a run resumes.

A checkpoint holds everything that decides the future of a run: both networks, both
optimizers (with their iteration counters and moments), the step counter (and so the
phase of Algorithm 1), the history buffer and its fill counter, and the position of the
tf.data iterator (its shuffle buffers, file positions and prefetched batches). The random
draws of the history buffer are stateless functions of (seed, step), so the step counter
is their generator state.

Writing: TensorFlow writes a checkpoint's shards into `<prefix>_temp/`, merges them into
`<prefix>.data-*` and writes `<prefix>.index` last through a temporary file and a rename;
the `checkpoint` state file naming the latest one is replaced atomically afterwards. A run
killed while saving therefore leaves the previous checkpoint as the latest. Before
writing, the weights are checked to be finite: a checkpoint never holds NaN or Inf. A
save that fails (no space, no permission) raises `RunWriteError` naming the checkpoint,
and the previous checkpoint is still the latest.

Reading: `restore_latest` tries the checkpoints newest first. Each candidate is verified
by reading every tensor (TensorFlow checks each tensor's CRC32C), and only then restored;
a missing, truncated or corrupt checkpoint is skipped with a warning naming it, and the
previous one is used.

When: `CheckpointPolicy` alone decides when a checkpoint is written (every
`checkpoint_every` updates, at the end of training, and when the run is stopped early);
the training loop tells it about each update and it calls `RunCheckpoint.save`.

Multi-worker: every worker takes part in each save (saving may run collectives), but only
the chief writes into `<model_dir>/checkpoints`; the others write into a temporary folder
of theirs that is deleted right after (TensorFlow's documented pattern; see
`simgan_tf.distribute`). All workers restore from the chief's folder, which must
therefore be on storage they all see.

Every path goes through `tf.io.gfile`: the run folder may be local, `gs://` or `ram://`.
"""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow as tf
from absl import logging

from simgan_tf.write_errors import writing

_CHECKPOINT_NAME = "ckpt"
_NUMBER = re.compile(r"ckpt-(\d+)\.index$")


class NonFiniteWeightsError(FloatingPointError):
    """Raised instead of writing a checkpoint whose weights are NaN or infinite."""


def _open(prefix: str):
    """A reader of the checkpoint at `prefix`.

    Not `tf.train.load_checkpoint`: it reads a path that is a folder as "the latest
    checkpoint in it", and file systems without real folders (`ram://`, object stores)
    call every prefix of a file name a folder.
    """
    return tf.compat.v1.train.NewCheckpointReader(prefix)


def _remove_tree(path: str) -> None:
    try:
        tf.io.gfile.rmtree(path)
    except tf.errors.NotFoundError:
        pass


def checkpoint_number(path: str) -> int:
    """The step number of a checkpoint prefix `.../ckpt-<step>`."""
    return int(path.rsplit("-", 1)[1])


def latest_step(directory: str) -> int:
    """The highest step of a checkpoint index file in `directory` (0 if there is none).

    Reads file names only (nothing is restored): a resumed run's config is checked
    against it before anything else happens.
    """
    try:
        indexes = tf.io.gfile.glob(os.path.join(directory, f"{_CHECKPOINT_NAME}-*.index"))
    except tf.errors.NotFoundError:
        return 0
    return max((int(m.group(1)) for m in map(_NUMBER.search, indexes) if m), default=0)


def verify(prefix: str) -> None:
    """Reads every tensor of a checkpoint; raises if it is missing, partial or corrupt.

    Raises:
      tf.errors.OpError (DataLossError, NotFoundError, ...) or ValueError.
    """
    if not tf.io.gfile.exists(prefix + ".index"):
        raise tf.errors.NotFoundError(None, None, f"{prefix}.index does not exist")
    reader = _open(prefix)
    for key, dtype in reader.get_variable_to_dtype_map().items():
        if dtype != tf.variant:  # the iterator state: checked when restored
            reader.get_tensor(key)  # checks the tensor's CRC32C


@tf.function
def _all_finite(tensors):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


class RunCheckpoint:
    """The checkpoints of one run: numbered by step, verified on restore.

    Args:
      checkpoint: the `tf.train.Checkpoint` of the run.
      directory: `<model_dir>/checkpoints`, read by every worker, written by the chief.
      max_to_keep: checkpoints kept on disk.
      finite_check: tensors that must be finite for a checkpoint to be written
        (the trainable weights).
      write_directory: where this process writes (the chief: `directory`; other
        workers: a scratch folder deleted after each save).
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, *, max_to_keep: int,
                 finite_check=(), write_directory: str | None = None):
        self.checkpoint = checkpoint
        self.directory = directory
        self.write_directory = write_directory or directory
        self.finite_check = list(finite_check)
        self.max_to_keep = max_to_keep
        self._manager = self._new_manager()

    @property
    def is_writer(self) -> bool:
        """Whether this process writes into `directory` (the chief)."""
        return self.write_directory == self.directory

    def _new_manager(self) -> tf.train.CheckpointManager:
        # A new manager reads the state file again (after a fallback or a scratch wipe).
        return tf.train.CheckpointManager(self.checkpoint, self.write_directory,
                                          max_to_keep=self.max_to_keep,
                                          checkpoint_name=_CHECKPOINT_NAME)

    def candidates(self) -> list[str]:
        """Checkpoint prefixes in `directory`, newest (highest step) first."""
        prefixes = set()
        state = tf.train.get_checkpoint_state(self.directory)
        if state is not None:
            prefixes.update(state.all_model_checkpoint_paths)
        pattern = os.path.join(self.directory, f"{_CHECKPOINT_NAME}-*.index")
        for index in tf.io.gfile.glob(pattern):
            if _NUMBER.search(index):
                prefixes.add(index[: -len(".index")])
        # Both sources already carry `directory`: TensorFlow joins the state file's relative
        # names with it, and the glob pattern starts with it. Joining again would double a
        # relative `directory` (runs/x/checkpoints/runs/x/checkpoints/ckpt-9).
        return sorted(prefixes, key=checkpoint_number, reverse=True)

    def restore_latest(self) -> str | None:
        """Restores the newest intact checkpoint; returns its prefix (`None`: none found).

        A checkpoint that cannot be read completely is skipped with a warning.
        """
        if self.is_writer:  # shards of a save that was killed before its merge
            pattern = os.path.join(self.directory, f"{_CHECKPOINT_NAME}-*_temp")
            for partial in tf.io.gfile.glob(pattern):
                logging.warning("Removing %s, left by a save that did not finish.", partial)
                _remove_tree(partial)
        skipped = []
        for prefix in self.candidates():
            try:
                verify(prefix)
                self.checkpoint.restore(prefix).assert_existing_objects_matched()
            except Exception as e:  # noqa: BLE001 - the reader raises OpError, IndexError, ...
                message = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
                logging.warning("Checkpoint %s is unreadable (partial or corrupt), using the "
                                "previous one: %s", prefix, message)
                skipped.append(prefix)
                continue
            if skipped and self.is_writer:
                self._manager = self._new_manager()
            return prefix
        if skipped:
            logging.warning("No intact checkpoint in %s (unreadable: %s); starting from "
                            "scratch.", self.directory, ", ".join(skipped))
        return None

    def save(self, checkpoint_number: int) -> str | None:
        """Writes checkpoint `ckpt-<checkpoint_number>`; every worker must call it.

        Returns:
          The written prefix on the chief, `None` on other workers.

        Raises:
          NonFiniteWeightsError: if a weight is NaN or infinite (nothing is written).
          RunWriteError: if the checkpoint cannot be written (no space, no permission);
            the previous checkpoint stays the latest (the `checkpoint` state file is
            replaced only after the new checkpoint is complete).
        """
        if self.finite_check and not bool(_all_finite(self.finite_check)):
            raise NonFiniteWeightsError(
                f"Refusing to write checkpoint {checkpoint_number}: the weights hold NaN or "
                f"Inf. The latest good checkpoint in {self.directory} is kept.")
        target = os.path.join(self.write_directory, f"{_CHECKPOINT_NAME}-{checkpoint_number}")
        note = (f"The latest checkpoint is still {self._manager.latest_checkpoint}."
                if self._manager.latest_checkpoint else "No checkpoint was written before.")
        with writing(target, note):
            path = self._manager.save(checkpoint_number=checkpoint_number)
        if not self.is_writer:
            _remove_tree(self.write_directory)
            self._manager = self._new_manager()
            return None
        return path


class CheckpointPolicy:
    """Decides when a run writes a checkpoint: the one caller of `RunCheckpoint.save`.

    The training loop reports each finished update (`after_update`), the end of training
    (`at_end`) and an early stop (`on_stop`); the policy writes `ckpt-<step>`:

    - after every update whose step is a multiple of `every`;
    - at the end of training, unless that step was just written;
    - when the run stops early (SIGTERM on any worker), after the current update, unless
      that step was just written.

    The loop raises on a non-finite loss before reporting the update, and
    `RunCheckpoint.save` refuses non-finite weights, so no checkpoint holds NaN or Inf.
    The decisions depend on the step alone, so every worker of a multi-worker run saves
    (a collective) at the same steps.

    Args:
      run_checkpoint: the run's `RunCheckpoint`.
      every: interval in updates (>= 1).
    """

    def __init__(self, run_checkpoint: RunCheckpoint, every: int):
        if every < 1:
            raise ValueError(f"Expected every >= 1. Received: every={every}")
        self.run_checkpoint = run_checkpoint
        self.every = every
        self._last_step = None
        self._last_path = None

    @property
    def directory(self) -> str:
        """The folder every worker restores from (`<model_dir>/checkpoints`)."""
        return self.run_checkpoint.directory

    def after_update(self, step: int) -> str | None:
        """Writes `ckpt-<step>` if `step` is a multiple of `every`; returns its prefix."""
        return self._save(step) if step % self.every == 0 else None

    def at_end(self, step: int) -> str | None:
        """Training finished at `step`: makes sure `ckpt-<step>` is written."""
        return self._last_path if step == self._last_step else self._save(step)

    def on_stop(self, step: int) -> str | None:
        """The run stops early at `step`: makes sure `ckpt-<step>` is written."""
        return self.at_end(step)

    def _save(self, step: int) -> str | None:
        path = self.run_checkpoint.save(checkpoint_number=step)
        self._last_step, self._last_path = step, path
        if path:  # `None` on multi-worker workers other than the chief
            logging.info("Saved checkpoint %s", path)
        return path


def read_tensors(prefix: str, prefix_filter: str = "") -> dict[str, np.ndarray]:
    """All tensors of a checkpoint whose key starts with `prefix_filter` (for tests, tools)."""
    reader = _open(prefix)
    return {key: reader.get_tensor(key) for key, dtype in reader.get_variable_to_dtype_map().items()
            if key.startswith(prefix_filter) and dtype != tf.variant}
