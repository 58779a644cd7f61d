"""Resumable conversion: a split's finished shards survive an interruption.

`common.write_split` writes each split through `ResumableSplitWriter`, whose staging
folder has a fixed name, `<data_dir>/.partial-<split>/`, and holds, beside the shards,
`manifest.json`: the *fingerprint* of the conversion (every option and input that changes
the bytes) and, per finished shard, its file name, record count, sha256 and the position
in the converter's items where the next shard starts (plus the skip and note counts so
far, so that `dataset.json` and the printed summary come out as in an uninterrupted run).
The manifest is rewritten atomically after each shard is closed.

With `resume=True` a split whose `.partial-<split>/` manifest has the same fingerprint
continues after its last verified shard: the shards are re-hashed in order and the first
one that is missing or whose sha256 differs, and everything after it, is written again;
files the manifest does not list (a half-written shard, a temporary manifest) are
deleted. A split already published in `dataset.json` with the same fingerprint (in its
`source`) and shards whose sha256 still match is kept as is. A partial folder with
another fingerprint is refused (`ResumeError`, naming each value that differs).

Without `resume` a left-over partial folder of the split is deleted when the split starts:
the conversion starts over, and the published split (if any) is untouched until the new
one replaces it, as it always was.

On an interruption (Ctrl-C, a kill, a full disk) the partial folder stays for `--resume`;
a failed conversion (`common.ConversionError`: a `--strict` stop or a converter bug)
removes it, as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from simgan_tf.data import schema
from simgan_tf.data import writer as writer_lib

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
PARTIAL_PREFIX = ".partial-"


class ResumeError(ValueError):
    """A `--resume` that cannot continue: the partial output was made with other options."""


def partial_dir(data_dir: str, split: str) -> str:
    """`<data_dir>/.partial-<split>`: where a split's unfinished shards live."""
    return os.path.join(data_dir, f"{PARTIAL_PREFIX}{split}")


def canonical(value) -> Any:
    """`value` as JSON-serializable data that does not depend on the process: fields of a
    dataclass, sorted sets (whose iteration order follows the string hash seed),
    arrays as lists; anything else as its `repr`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): canonical(v)
                for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return canonical(value.tolist())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def inputs_digest(items: Sequence, inputs: Any = None) -> dict:
    """`{"count", "sha256"}` of a converter's inputs, without reading any source file.

    Args:
      items: the work items (their number is recorded).
      inputs: JSON-serializable description of the inputs, hashed if given (for lazy
        items that read data when indexed); otherwise every item (file paths, frame
        numbers, labels read from an index) in `canonical` form is hashed.
    """
    digest = hashlib.sha256()
    if inputs is not None:
        digest.update(json.dumps(canonical(inputs), sort_keys=True).encode("utf-8"))
    else:
        for item in items:
            digest.update(json.dumps(canonical(item), sort_keys=True).encode("utf-8"))
            digest.update(b"\n")
    return {"count": len(items), "sha256": digest.hexdigest()}


def fingerprint(**components) -> dict:
    """The components (JSON-normalised: tuples become lists) that must match to resume."""
    return json.loads(json.dumps(components, sort_keys=True))


def fingerprint_digest(components: dict) -> str:
    """sha256 of the fingerprint, stored as `source.fingerprint` in `dataset.json`."""
    text = json.dumps(components, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict) and value:
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def differences(stored: dict, wanted: dict) -> list[str]:
    """`"name: <stored> before, <wanted> now"` for every differing (dotted) value."""
    before, now = _flatten(stored), _flatten(wanted)

    def show(values, name):
        return json.dumps(values[name]) if name in values else "(absent)"

    return [f"{name}: {show(before, name)} before, {show(now, name)} now"
            for name in sorted(set(before) | set(now))
            if name not in before or name not in now or before[name] != now[name]]


def read_manifest(folder: str, wanted: dict) -> dict | None:
    """The manifest of partial folder `folder`, or None if there is no usable one.

    Raises:
      ResumeError: if the manifest's fingerprint differs from `wanted`, naming every
        value that differs.
    """
    path = os.path.join(folder, MANIFEST_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            manifest = json.loads(f.read())
        except json.JSONDecodeError:
            return None  # Never published by an atomic write: start over.
    if manifest.get("version") != MANIFEST_VERSION:
        return None
    if manifest["fingerprint"] != wanted:
        raise ResumeError(
            f"Cannot resume {folder}: it was started with other options or inputs. "
            "Differences: " + "; ".join(differences(manifest["fingerprint"], wanted))
            + ". Rerun with the original options, or without --resume to start over.")
    return manifest


def _verified_prefix(folder: str, shards: list) -> int:
    """How many of `shards`, in order, exist in `folder` with their recorded sha256."""
    for index, shard in enumerate(shards):
        path = os.path.join(folder, shard["file"])
        if not tf.io.gfile.exists(path) or writer_lib.sha256_file(path) != shard["sha256"]:
            return index
    return len(shards)


def published_split(data_dir: str, split: str, digest: str) -> schema.SplitInfo | None:
    """The split of `dataset.json` if it was written with fingerprint `digest` and all
    its shards still have their recorded sha256; otherwise None."""
    if not tf.io.gfile.exists(schema.dataset_info_path(data_dir)):
        return None
    info = schema.read_dataset_info(data_dir).splits.get(split)
    if info is None or info.source.get("fingerprint") != digest:
        return None
    folder = os.path.join(data_dir, split)
    return info if _verified_prefix(folder, info.shards) == len(info.shards) else None


class ResumableSplitWriter(writer_lib.SplitWriter):
    """A `SplitWriter` whose finished shards survive an interruption (module docstring).

    Args:
      *args, **kwargs: as `SplitWriter`.
      fingerprint: `fingerprint(...)` of this conversion of the split.
      resume: continue a partial folder with the same fingerprint instead of starting over.
      state: called after each shard is closed; returns the JSON-serializable position
        to resume from (stored in the manifest beside the shard).

    Attributes:
      reused_shards: shards kept from the partial folder.
      resume_state: the `state()` stored with the last reused shard, or None.
    """

    def __init__(self, *args, fingerprint: dict, resume: bool = False,
                 state: Callable[[], dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.fingerprint = fingerprint
        self.resume = resume
        self._state = state
        self._states = []
        self.reused_shards = 0
        self.resume_state = None

    def __enter__(self) -> "ResumableSplitWriter":
        tf.io.gfile.makedirs(self.data_dir)
        schema.check_compatible(self.data_dir, self.split, self.image_shape,
                                self.image_dtype, self.pixel_range)
        self._staging = partial_dir(self.data_dir, self.split)
        manifest = read_manifest(self._staging, self.fingerprint) if self.resume else None
        if manifest is None:
            writer_lib.remove_folder(self._staging)
            tf.io.gfile.makedirs(self._staging)
        else:
            self._reuse(manifest)
        self._write_manifest()
        return self

    def _reuse(self, manifest: dict) -> None:
        entries = manifest["shards"]
        kept = _verified_prefix(self._staging, [e["shard"] for e in entries])
        entries = entries[:kept]
        keep = {e["shard"]["file"] for e in entries}
        for name in tf.io.gfile.listdir(self._staging):
            if name not in keep:  # Half-written or unverified shard, old manifest.
                tf.io.gfile.remove(os.path.join(self._staging, name))
        self._shards = [dict(e["shard"]) for e in entries]
        self._states = [e["state"] for e in entries]
        self.count = sum(s["count"] for s in self._shards)
        self.reused_shards = kept
        self.resume_state = self._states[-1] if self._states else None

    def _write_manifest(self) -> None:
        schema.write_json_atomic(os.path.join(self._staging, MANIFEST_FILE), {
            "version": MANIFEST_VERSION, "fingerprint": self.fingerprint,
            "shards": [{"shard": shard, "state": state}
                       for shard, state in zip(self._shards, self._states)]})

    def _close_shard(self):
        super()._close_shard()
        self._states.append(self._state())
        self._write_manifest()

    def __exit__(self, exc_type, exc, tb):
        from data_prep import common  # common imports this module.

        if exc_type is not None and not issubclass(exc_type, common.ConversionError):
            if self._writer is not None:  # Its file is not in the manifest: discarded.
                self._writer.close()
            return False  # Keep the partial folder for --resume.
        return super().__exit__(exc_type, exc, tb)

    def _publish(self):
        tf.io.gfile.remove(os.path.join(self._staging, MANIFEST_FILE))
        super()._publish()
