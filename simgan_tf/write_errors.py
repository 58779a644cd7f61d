"""`RunWriteError`: a write of a training run failed (no space, no permission, ...).

Every place that writes into a run folder (the checkpoint, the export, `config.json`,
the TensorBoard event files, the run lock) turns the file system's error into a
`RunWriteError` naming the path it wrote, the cause and the way out, and the run stops.
A checkpoint is written to a temporary prefix and only then named in the `checkpoint`
state file, so after a failed write the previous checkpoint is still the latest and a
run started again restores it.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf


class RunWriteError(OSError):
    """A file of a training run could not be written.

    Attributes:
      path: the file or folder that was being written.
      cause: the underlying error (`OSError` or `tf.errors.OpError`).
    """

    def __init__(self, path: str, cause: BaseException, note: str = ""):
        self.path = path
        self.cause = cause
        reason = getattr(cause, "message", None) or str(cause) or type(cause).__name__
        reason = reason.strip().splitlines()[0][:400] if reason.strip() else type(cause).__name__
        text = (f"Could not write {path}: {type(cause).__name__}: {reason}. "
                f"{note + ' ' if note else ''}Free disk space or fix the permissions of the "
                "folder, then run the same command again to resume from the latest "
                "checkpoint.")
        super().__init__(text)

    def __reduce__(self):  # picklable with its arguments (multiprocessing, pytest-xdist)
        return (self.__class__, (self.path, self.cause))


@contextlib.contextmanager
def writing(path: str, note: str = ""):
    """Turns a file system error raised inside the block into a `RunWriteError`.

    Args:
      path: what the block writes (named in the error).
      note: a sentence added to the message (e.g. which checkpoint is still the latest).
    """
    try:
        yield
    except RunWriteError:
        raise
    except (OSError, tf.errors.OpError) as error:
        raise RunWriteError(path, error, note) from error
