"""One training run per model folder: the run lock `<model_dir>/run.lock`.

`RunLock(model_dir)` is held for the whole run (`train_lib.train` takes it before it reads
or writes anything in the folder and releases it at the end, also on errors; under
multi-worker training the chief holds it, the other workers do not). The lock file is
JSON: the holder's `host`, `pid`, `started` (UTC, ISO 8601), `heartbeat` (Unix time of
its last sign of life) and a random `token`. While held, a thread rewrites the heartbeat
every `heartbeat_seconds` (30 s).

A second run on the folder fails at once with `RunLockedError` naming the holder (host,
pid, start time, heartbeat age) and the way out. A lock is stale, and is taken over with
a warning naming the old holder, when:

- it was written on this host by a process that is no longer running (a run killed by
  SIGKILL, an out-of-memory kill, a crash); `os.kill(pid, 0)` tells;
- or its heartbeat is older than `stale_after` (300 s): the holder's machine died or
  lost the storage, or a pid of this host was reused by another process.

A lock on another host with a recent heartbeat is never taken over: stop that run, wait
`stale_after` after it died, or delete the lock file if you know it is gone.

Guarantees. On a local disk the lock file is created with `O_CREAT | O_EXCL`, so of two
processes that start at once exactly one gets it, and a takeover renames the stale file
away (atomic) before creating a new one. Other `tf.io.gfile` file systems (`ram://`,
`gs://` and other object stores) have no exclusive create: there the lock is written
only if absent, then read back after `settle_seconds` to check that this process's token
is the one stored. That detects a second run started any time after the first one, and
nearly always two runs started together, but cannot exclude that two processes which
start within the same instant both believe they hold it. Host names must tell machines
apart (two containers with one host name and separate pid spaces look like one host).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
import uuid

import tensorflow as tf
from absl import logging

from simgan_tf.write_errors import writing

LOCK_FILE = "run.lock"
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0
SETTLE_SECONDS = 0.2  # non-local file systems: wait before reading the lock back
_READ_ATTEMPTS = 20  # a lock file just created may still be empty for a moment


class RunLockedError(RuntimeError):
    """Another training run holds the model folder's lock."""


@dataclasses.dataclass(frozen=True)
class LockInfo:
    """The contents of a lock file.

    Attributes:
      host: `socket.gethostname()` of the holder.
      pid: its process id.
      started: when it took the lock (UTC, ISO 8601).
      heartbeat: Unix time of its last heartbeat.
      token: random id of this holding (tells two holders apart).
    """
    host: str
    pid: int
    started: str
    heartbeat: float
    token: str

    @classmethod
    def new(cls) -> "LockInfo":
        now = time.time()
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return cls(socket.gethostname(), os.getpid(), started, now, uuid.uuid4().hex)

    def describe(self, now: float | None = None) -> str:
        age = (now or time.time()) - self.heartbeat
        return (f"pid {self.pid} on host {self.host!r}, started {self.started}, last "
                f"heartbeat {age:.0f} s ago")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def stale_reason(info: LockInfo, stale_after: float, now: float | None = None) -> str | None:
    """Why a lock is stale (a sentence), or `None` if its holder may be running."""
    age = (now or time.time()) - info.heartbeat
    if info.host == socket.gethostname() and not _pid_alive(info.pid):
        return f"process {info.pid} is not running on this host"
    if age > stale_after:
        return f"its last heartbeat is {age:.0f} s old (more than {stale_after:.0f} s)"
    return None


def _is_local(path: str) -> bool:
    return "://" not in path


def _encode(info: LockInfo) -> bytes:
    return (json.dumps(dataclasses.asdict(info), sort_keys=True) + "\n").encode()


class RunLock:
    """The lock of a model folder, held by one training run at a time.

    Use as a context manager (`with RunLock(model_dir): ...`) or call `acquire` and
    `release`.

    Args:
      model_dir: the run folder (any `tf.io.gfile` path; created if missing).
      heartbeat_seconds: interval between heartbeats (> 0).
      stale_after: a lock whose heartbeat is older than this (seconds) is stale; must be
        several heartbeats long.
      settle_seconds: non-local file systems: wait before reading a new lock back.
      holder_kind: what holds the lock, for the error messages ("training run"; the
        table drivers of `experiments` lock their work folder as a "table driver").
      folder_flag: the flag that names the folder, for the error messages.
    """

    def __init__(self, model_dir: str, *, heartbeat_seconds: float = HEARTBEAT_SECONDS,
                 stale_after: float = STALE_AFTER_SECONDS,
                 settle_seconds: float = SETTLE_SECONDS, holder_kind: str = "training run",
                 folder_flag: str = "--model_dir"):
        if heartbeat_seconds <= 0 or stale_after < 2 * heartbeat_seconds:
            raise ValueError(
                "Expected heartbeat_seconds > 0 and stale_after >= 2 * heartbeat_seconds. "
                f"Received: heartbeat_seconds={heartbeat_seconds}, stale_after={stale_after}")
        self.path = os.path.join(model_dir, LOCK_FILE)
        self.model_dir = model_dir
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = stale_after
        self.settle_seconds = settle_seconds
        self.holder_kind = holder_kind
        self.folder_flag = folder_flag
        self.info: LockInfo | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> "RunLock":
        """Takes the lock, taking over a stale one with a warning.

        Raises:
          RunLockedError: if another running process holds it.
          RunWriteError: if the lock file cannot be written.
        """
        with writing(self.path):
            tf.io.gfile.makedirs(self.model_dir)
        for _ in range(3):  # a takeover can race with another process's
            info = LockInfo.new()
            if self._create(info):
                self.info = info
                self._start_heartbeat()
                return self
            holder = self.read()
            if holder is None:  # removed meanwhile
                continue
            reason = stale_reason(holder, self.stale_after)
            if reason is None:
                raise self._locked_error(holder)
            logging.warning("Taking over the run lock %s: it was held by %s, and %s.",
                            self.path, holder.describe(), reason)
            self._remove_stale(holder)
        raise RunLockedError(f"Could not take the run lock {self.path}: other processes took "
                             f"it over at the same time. Run one {self.holder_kind} per "
                             f"{self.folder_flag}.")

    def release(self) -> None:
        """Stops the heartbeat and deletes the lock file if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.info is not None:
            holder = self.read()
            if holder is not None and holder.token == self.info.token:
                try:
                    tf.io.gfile.remove(self.path)
                except tf.errors.NotFoundError:
                    pass
            self.info = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def _locked_error(self, holder: LockInfo) -> RunLockedError:
        return RunLockedError(
            f"{self.model_dir} is in use by another {self.holder_kind}: "
            f"{holder.describe()} (lock file {self.path}). Wait for it to finish or stop "
            f"it, or use another {self.folder_flag}. A lock left by a process that died is "
            f"taken over by itself (at once on the same host, {self.stale_after:.0f} s "
            "after the last heartbeat from another host); delete the lock file only if you "
            "know that run is gone.")

    def read(self) -> LockInfo | None:
        """The lock file's contents (`None` if there is no lock file).

        A lock file that stays unreadable (a writer killed between creating and filling
        it) reads as a lock of an unknown, dead holder.
        """
        for attempt in range(_READ_ATTEMPTS):
            try:
                with tf.io.gfile.GFile(self.path, "rb") as f:
                    return LockInfo(**json.loads(f.read().decode()))
            except tf.errors.NotFoundError:
                return None
            except (ValueError, TypeError):  # empty or half-written
                if attempt + 1 < _READ_ATTEMPTS:
                    time.sleep(0.05)
        return LockInfo(host="?", pid=-1, started="?", heartbeat=0.0, token="unreadable")

    def _create(self, info: LockInfo) -> bool:
        """Writes the lock file if there is none; whether this process now holds it."""
        with writing(self.path):
            if _is_local(self.path):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                try:
                    os.write(fd, _encode(info))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                return True
            if tf.io.gfile.exists(self.path):  # no exclusive create: write, then check
                return False
            with tf.io.gfile.GFile(self.path, "wb") as f:
                f.write(_encode(info))
            time.sleep(self.settle_seconds)
            holder = self.read()
            return holder is not None and holder.token == info.token

    def _remove_stale(self, holder: LockInfo) -> None:
        """Deletes a stale lock file, unless another process replaced it meanwhile."""
        with writing(self.path):
            if not _is_local(self.path):
                tf.io.gfile.remove(self.path)
                return
            aside = f"{self.path}.stale-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(self.path, aside)  # atomic: one taker moves this file
            except FileNotFoundError:
                return
            moved = self.read_file(aside)
            if moved is not None and moved.token != holder.token:
                try:  # a fresh lock was moved: put it back (link fails if one exists)
                    os.link(aside, self.path)
                except FileExistsError:
                    pass
            os.remove(aside)

    @staticmethod
    def read_file(path: str) -> LockInfo | None:
        try:
            with open(path, "rb") as f:
                return LockInfo(**json.loads(f.read().decode()))
        except (OSError, ValueError, TypeError):
            return None

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        """Rewrites the heartbeat until released; stops if the lock is no longer ours."""
        while not self._stop.wait(self.heartbeat_seconds):
            holder = self.read()
            if holder is None or holder.token != self.info.token:
                logging.error("The run lock %s is no longer this run's (now: %s); another "
                              "process took over the model folder.", self.path,
                              holder.describe() if holder else "no lock file")
                return
            self.info = dataclasses.replace(self.info, heartbeat=time.time())
            tmp = f"{self.path}.tmp-{uuid.uuid4().hex[:8]}"
            try:
                with tf.io.gfile.GFile(tmp, "wb") as f:
                    f.write(_encode(self.info))
                tf.io.gfile.rename(tmp, self.path, overwrite=True)
            except (OSError, tf.errors.OpError) as error:  # the run's own writes will fail
                logging.warning("Could not refresh the run lock %s: %s", self.path, error)
