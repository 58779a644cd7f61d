"""Machinery shared by the `data_prep` converters.

A converter lists its *items* (a file, a day of recordings, a frame) in a fixed order and
gives a picklable `process(item) -> list[Sample | Skip]` function. `write_split` maps
`process` over the items in worker processes, keeps the input order whatever the number
of workers (so keys and shard bytes do not depend on it), skips bad samples with a
per-reason count (or raises in strict mode), shows a progress bar and writes the split
through `simgan_tf.data.writer.SplitWriter` (sharded; published atomically on success).

Workers only read, crop and resize (numpy, Pillow, scipy); the parent process encodes the
`tf.train.Example`s (in canonical, sorted-map form: the bytes do not depend on the
process) and writes the shards, so TensorFlow is imported once, by the parent.
Workers are started with the `spawn` method: safe even when the parent has already
initialised TensorFlow, and cheap because workers never import it.

Every split is resumable (`data_prep.resume`: `--resume` keeps the finished shards of an
interrupted run).

This module is longer than 400 lines on purpose: it is the one contract every converter
shares (items, samples and skips, options and flags, the ordered map, the split writing
loop and its summary).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import itertools
import multiprocessing
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from simgan_tf.data import schema
from simgan_tf.data import writer as writer_lib

# How many skip messages a summary keeps per reason.
MAX_EXAMPLES = 5

# Skip reasons shared by the converters (a converter may add its own).
MISSING_FILE = "missing_file"
UNREADABLE_IMAGE = "unreadable_image"
UNREADABLE_FILE = "unreadable_file"
MISSING_KEY = "missing_key"
MALFORMED_VALUE = "malformed_value"
NON_FINITE_LABEL = "non_finite_label"
WRONG_SHAPE = "wrong_shape"


class SkipSample(Exception):
    """Raised by a converter's per-sample code to skip that sample.

    Args:
      reason: snake_case reason, the unit of skip counting (`unreadable_image`, ...).
      detail: what was received, for the message.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ConversionError(RuntimeError):
    """A conversion stopped: a bad sample in strict mode, or an unexpected failure."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One converted sample, produced by a worker.

    Attributes:
      key: stable unique id of the sample within its split.
      image: `[height, width, channels]` uint8 or uint16 array.
      labels: mapping from `label/<name>` to a 1-D float array.
      source: the input file (and position in it) the sample came from.
      notes: names of valid but noteworthy events (e.g. a documented fallback rule was
        used), counted in the summary.
    """
    key: str
    image: np.ndarray
    labels: dict
    source: str
    notes: tuple = ()


@dataclasses.dataclass(frozen=True)
class Skip:
    """A sample that could not be converted.

    Attributes:
      reason: snake_case reason, the unit of skip counting.
      source: the input file (and position in it).
      detail: what was received.
    """
    reason: str
    source: str
    detail: str = ""

    def message(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.source}: {self.reason}{detail}"


def run_sample(source: str, fn: Callable[[], Sample]) -> Sample | Skip:
    """Returns `fn()`, or a `Skip` naming `source` if it raises `SkipSample`."""
    try:
        return fn()
    except SkipSample as e:
        return Skip(e.reason, source, e.detail)


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """Options common to every converter (the `--shard_bytes`, ... flags).

    Attributes:
      shard_bytes: target shard size in bytes of serialized records (before
        compression); a shard is closed once it reaches this size.
      compression: `None`/`"none"` or `"gzip"`/`"GZIP"`; stored as `None` or `"GZIP"`.
      workers: worker processes; 0 means `os.cpu_count()`; 1 runs in this process.
        The output does not depend on it.
      strict: if True, the first bad sample stops the conversion with a
        `ConversionError` naming the file and the reason; the split is not written.
      limit: if set, at most this many records per split (the first ones in the
        converter's order), for trying things out.
      progress: show a tqdm progress bar on stderr.
      chunk_size: items per worker task; None lets the converter choose.
      resume: continue an interrupted conversion from its finished shards (see
        `data_prep.resume`); refused if it was started with other options or inputs.
        The output is the same as without it.
    """
    shard_bytes: int = writer_lib.DEFAULT_SHARD_BYTES
    compression: str | None = None
    workers: int = 0
    strict: bool = False
    limit: int | None = None
    progress: bool = True
    chunk_size: int | None = None
    resume: bool = False

    def __post_init__(self):
        compression = self.compression
        if isinstance(compression, str) and compression.lower() in ("none", ""):
            compression = None
        elif isinstance(compression, str) and compression.lower() == "gzip":
            compression = "GZIP"
        if compression not in schema.COMPRESSIONS:
            raise ValueError("Expected compression 'none' or 'gzip'. "
                             f"Received: {self.compression!r}")
        object.__setattr__(self, "compression", compression)
        if int(self.shard_bytes) <= 0:
            raise ValueError(f"Expected shard_bytes > 0. Received: {self.shard_bytes}")
        if int(self.workers) < 0:
            raise ValueError(
                f"Expected workers >= 0 (0 = all cores). Received: {self.workers}")
        if self.limit is not None and int(self.limit) <= 0:
            raise ValueError(f"Expected limit > 0 or None. Received: {self.limit}")
        if self.chunk_size is not None and int(self.chunk_size) <= 0:
            raise ValueError(
                f"Expected chunk_size > 0 or None. Received: {self.chunk_size}")

    @property
    def num_workers(self) -> int:
        return int(self.workers) or (os.cpu_count() or 1)

    def describe(self) -> dict:
        """Options that change the output, for `dataset.json` (not workers, progress,
        resume)."""
        return {"shard_bytes": int(self.shard_bytes),
                "compression": "gzip" if self.compression else "none",
                "strict": bool(self.strict), "limit": self.limit}


class SkipCounter:
    """Counts skipped samples per reason and keeps the first few messages of each.

    Args:
      max_examples: messages kept per reason.
    """

    def __init__(self, max_examples: int = MAX_EXAMPLES):
        self.max_examples = max_examples
        self.counts = collections.Counter()
        self.examples = collections.defaultdict(list)

    def add(self, skip: Skip) -> None:
        self.counts[skip.reason] += 1
        if len(self.examples[skip.reason]) < self.max_examples:
            self.examples[skip.reason].append(skip.message())

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclasses.dataclass
class SplitSummary:
    """What happened while writing one split.

    Attributes:
      split: split name (`synthetic`, `real`, `real_test`).
      written: records written.
      skipped: mapping reason -> number of skipped samples.
      examples: mapping reason -> first few skip messages (file and detail).
      notes: mapping note -> count of valid samples that used a documented fallback.
      shards: number of shard files.
      seconds: wall time.
      limited: True if `limit` stopped the split early.
      reused_shards: shards kept from an interrupted or earlier run (`resume`).
    """
    split: str
    written: int = 0
    skipped: dict = dataclasses.field(default_factory=dict)
    examples: dict = dataclasses.field(default_factory=dict)
    notes: dict = dataclasses.field(default_factory=dict)
    shards: int = 0
    seconds: float = 0.0
    limited: bool = False
    reused_shards: int = 0


@dataclasses.dataclass
class Summary:
    """Result of one converter run.

    Attributes:
      output_dir: the data folder written.
      splits: mapping split name -> `SplitSummary`, in writing order.
    """
    output_dir: str
    splits: dict = dataclasses.field(default_factory=dict)

    def format(self) -> str:
        """A table per split, then each skip reason with its first file names."""
        lines = [f"Data folder: {self.output_dir}",
                 f"{'split':<12}{'written':>10}{'skipped':>10}{'shards':>8}"
                 f"{'seconds':>10}"]
        for s in self.splits.values():
            limited = "  (stopped at --limit)" if s.limited else ""
            reused = f"  ({s.reused_shards} shards reused)" if s.reused_shards else ""
            lines.append(f"{s.split:<12}{s.written:>10}{sum(s.skipped.values()):>10}"
                         f"{s.shards:>8}{s.seconds:>10.1f}{limited}{reused}")
        for s in self.splits.values():
            for reason, count in s.skipped.items():
                lines.append(f"  {s.split}: skipped {count} x {reason}, first ones:")
                lines.extend(f"    {m}" for m in s.examples.get(reason, []))
            for note, count in s.notes.items():
                lines.append(f"  {s.split}: {count} x {note}")
        return "\n".join(lines)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _apply_to_chunk(fn: Callable, chunk: list) -> list:
    """Runs in a worker: `[fn(item) for item in chunk]`, naming the item on a failure."""
    results = []
    for item in chunk:
        try:
            results.append(fn(item))
        except Exception as e:  # A bug, not bad data (that is a Skip): stop, say where.
            raise ConversionError(
                f"Unexpected error on item {repr(item)[:300]}: {e!r}") from e
    return results


def ordered_map(fn: Callable[[Any], Any], items: Iterable, *, workers: int,
                chunk_size: int = 16, max_pending: int | None = None) -> Iterator:
    """Yields `fn(item)` for every item, in the order of `items`.

    With `workers > 1`, chunks of `chunk_size` items run in a `spawn` process pool, at
    most `max_pending` chunks (default `4 * workers`) in flight, which bounds memory.
    Results come in input order whatever `workers` is, so what is written from them is
    deterministic. Closing the generator early terminates the workers.

    Args:
      fn: picklable callable (a module-level function or a `functools.partial` of one).
      items: picklable items.
      workers: number of processes; `<= 1` runs in this process.
      chunk_size: items per task.
      max_pending: chunks submitted but not yet consumed, at most.

    Yields:
      `fn(item)` for each item, in order.
    """
    if workers <= 1:
        for item in items:
            yield _apply_to_chunk(fn, [item])[0]
        return
    max_pending = max_pending or 4 * workers
    chunks = _chunks(items, chunk_size)
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:  # Its exit terminates the workers.
        pending = collections.deque(
            pool.apply_async(_apply_to_chunk, (fn, chunk))
            for chunk in itertools.islice(chunks, max_pending))
        while pending:
            results = pending.popleft().get()
            next_chunk = next(chunks, None)
            if next_chunk is not None:
                pending.append(pool.apply_async(_apply_to_chunk, (fn, next_chunk)))
            yield from results


def _check_sample(sample: Sample, image_shape: tuple, image_dtype: str,
                  label_fields: dict) -> Skip | None:
    """Checks a sample against its split's declared image shape, dtype and labels."""
    image = sample.image
    if tuple(image.shape) != tuple(image_shape) or image.dtype != np.dtype(image_dtype):
        return Skip(WRONG_SHAPE, sample.source,
                    f"image {image.dtype} {tuple(image.shape)}, expected {image_dtype} "
                    f"{tuple(image_shape)}")
    if set(sample.labels) != set(label_fields):
        return Skip(MISSING_KEY, sample.source,
                    f"labels {sorted(sample.labels)}, expected {sorted(label_fields)}")
    for name, length in label_fields.items():
        value = np.asarray(sample.labels[name], dtype=np.float64).reshape(-1)
        if value.size != length:
            return Skip(WRONG_SHAPE, sample.source,
                        f"{name} has {value.size} values, expected {length}")
        if not np.all(np.isfinite(value)):
            return Skip(NON_FINITE_LABEL, sample.source, f"{name} = {value.tolist()}")
    return None


class _Progress:
    """Where `write_split` is in the items, and its skip and note counts so far.

    `state()` is what a resumed run needs to continue right after the last record of a
    closed shard: the item to process next, how many of its results were already
    consumed, and the counts.
    """

    def __init__(self):
        self.skips = SkipCounter()
        self.notes = collections.Counter()
        self.item = 0  # Index of the item whose results are being consumed.
        self.offset = 0  # Its results consumed so far.
        self.size = 0  # Its number of results.

    def state(self) -> dict:
        done = self.offset >= self.size
        return {"item": self.item + 1 if done else self.item,
                "offset": 0 if done else self.offset,
                "skipped": dict(self.skips.counts),
                "examples": {k: list(v) for k, v in self.skips.examples.items()},
                "notes": dict(self.notes)}

    def restore(self, state: dict | None) -> tuple[int, int]:
        """Takes the counts of `state` (a `state()`); returns `(item, offset)`."""
        if state is None:
            return 0, 0
        self.skips.counts = collections.Counter(state["skipped"])
        self.skips.examples = collections.defaultdict(
            list, {k: list(v) for k, v in state["examples"].items()})
        self.notes = collections.Counter(state["notes"])
        return int(state["item"]), int(state["offset"])


def _write_results(results: Iterator, first: tuple[int, int], split_writer,
                   progress: _Progress, bar, *, split: str, domain: str, image_shape,
                   image_dtype: str, label_fields: dict, options: ConvertOptions) -> bool:
    """Checks and writes the results of items `first[0]...`; True if `limit` stopped it.

    The first `first[1]` results of item `first[0]` were written by an earlier run.
    """
    for index, item_results in enumerate(results, start=first[0]):
        bar.update(1)
        progress.item, progress.size = index, len(item_results)
        for position, result in enumerate(item_results):
            if index == first[0] and position < first[1]:
                continue
            progress.offset = position + 1  # Before `write`, which may close a shard.
            if isinstance(result, Sample):
                result = _check_sample(
                    result, image_shape, image_dtype, label_fields) or result
            if isinstance(result, Skip):
                if options.strict:
                    raise ConversionError(
                        f"Split {split!r}: {result.message()}. Stopped by "
                        "--strict; without it the sample is skipped and counted.")
                progress.skips.add(result)
                continue
            progress.notes.update(result.notes)
            split_writer.write(schema.encode_example(
                result.image, key=result.key, domain=domain, labels=result.labels))
            if options.limit and split_writer.count >= options.limit:
                return True
        bar.set_postfix(written=split_writer.count, skipped=progress.skips.total,
                        refresh=False)
    return False


def _published_summary(split: str, info: schema.SplitInfo) -> SplitSummary:
    """The `SplitSummary` of a split kept as published (`resume`)."""
    source = info.source
    return SplitSummary(
        split=split, written=info.count, skipped=dict(source.get("skipped", {})),
        examples=dict(source.get("skip_examples", {})), notes=dict(source.get("notes", {})),
        shards=len(info.shards), limited=bool(source.get("stopped_at_limit")),
        reused_shards=len(info.shards))


def write_split(*, items: Sequence, process: Callable[[Any], list], data_dir: str,
                split: str, domain: str, image_shape: tuple, image_dtype: str = "uint8",
                label_fields: dict, options: ConvertOptions, source: dict,
                chunk_size: int = 16, unit: str = "file", pixel_range=None,
                inputs: Any = None) -> SplitSummary:
    """Converts `items` into the split `<data_dir>/<split>/` and its dataset.json entry.

    Args:
      items: the converter's work items in output order (a sequence: its length is the
        progress bar's total; with `options.resume`, only the items after the finished
        shards are indexed).
      process: picklable `process(item) -> list of Sample | Skip`.
      data_dir: the data folder.
      split: split name.
      domain: `synthetic` or `real`.
      image_shape: `(height, width, channels)` of every image.
      image_dtype: `uint8` or `uint16`.
      label_fields: mapping `label/<name>` -> number of floats; every sample carries
        exactly these.
      options: common options; `options.chunk_size`, if set, overrides `chunk_size`.
      source: description stored in `dataset.json` (`command`, `input_dir`, `options`,
        ...); `written`, `skipped`, `skip_examples`, `notes`, `stopped_at_limit` and
        `fingerprint` (see `data_prep.resume`) are added.
      chunk_size: items per worker task unless `options.chunk_size` is set.
      unit: progress bar unit.
      pixel_range: `[lo, hi]` pixel values the reader maps to [-1, 1] (see
        `simgan_tf.data.schema.DatasetInfo`); `None` for the dtype's full range.
      inputs: JSON-serializable identity of the inputs for the resume fingerprint, for
        items that read data when indexed; None hashes `repr` of every item.

    Returns:
      The `SplitSummary`.

    Raises:
      ConversionError: in strict mode on the first bad sample (naming the file and the
        reason), or on an unexpected error in a worker; then no partial folder is left.
      data_prep.resume.ResumeError: `options.resume` and the split's partial folder was
        started with other options or inputs (naming them).
      On any error or interruption the previous split (if any) stays untouched; other
      than on `ConversionError`, the finished shards stay in `.partial-<split>/`.
    """
    from absl import logging
    from tqdm import tqdm

    from data_prep import resume

    start = time.monotonic()
    components = resume.fingerprint(
        split=split, domain=domain, image_shape=list(image_shape), image_dtype=image_dtype,
        pixel_range=pixel_range, label_fields=label_fields,
        shard_bytes=int(options.shard_bytes), compression=options.compression,
        strict=bool(options.strict), limit=options.limit, source=source,
        inputs=resume.inputs_digest(items, inputs))
    digest = resume.fingerprint_digest(components)
    partial = resume.partial_dir(data_dir, split)
    if options.resume and resume.read_manifest(partial, components) is None:
        published = resume.published_split(data_dir, split, digest)
        if published is not None:
            writer_lib.remove_folder(partial)
            logging.info("Split %r: kept as published (%d shards reused).", split,
                         len(published.shards))
            return _published_summary(split, published)
    progress = _Progress()
    summary = SplitSummary(split=split)
    with resume.ResumableSplitWriter(
            data_dir, split, domain=domain, image_shape=image_shape,
            image_dtype=image_dtype, label_fields=label_fields,
            shard_bytes=int(options.shard_bytes), compression=options.compression,
            source=dict(source, fingerprint=digest), pixel_range=pixel_range,
            fingerprint=components, resume=options.resume,
            state=progress.state) as split_writer:
        first = progress.restore(split_writer.resume_state)
        summary.reused_shards = split_writer.reused_shards
        if options.resume:
            logging.info("Split %r: %d shards (%d records) reused, continuing at item %d "
                         "of %d.", split, split_writer.reused_shards, split_writer.count,
                         first[0], len(items))
        chunk_size = options.chunk_size or chunk_size
        # No more workers than chunks: tiny inputs run without starting a pool.
        workers = min(options.num_workers, -(-(len(items) - first[0]) // chunk_size))
        results = ordered_map(process, (items[i] for i in range(first[0], len(items))),
                              workers=workers, chunk_size=chunk_size)
        with contextlib.closing(results), tqdm(
                total=len(items), initial=first[0], desc=split, unit=unit,
                disable=not options.progress, dynamic_ncols=True) as bar:
            summary.limited = bool(options.limit and split_writer.count >= options.limit)
            summary.limited = summary.limited or _write_results(
                results, first, split_writer, progress, bar, split=split, domain=domain,
                image_shape=image_shape, image_dtype=image_dtype,
                label_fields=label_fields, options=options)
        summary.written = split_writer.count
        summary.skipped = dict(sorted(progress.skips.counts.items()))
        summary.examples = {k: list(progress.skips.examples[k]) for k in summary.skipped}
        summary.notes = dict(sorted(progress.notes.items()))
        # SplitWriter stores `source` in dataset.json when the `with` block exits cleanly.
        split_writer.source.update(
            written=summary.written, skipped=summary.skipped,
            skip_examples=summary.examples, notes=summary.notes,
            stopped_at_limit=summary.limited)
    summary.shards = len(split_writer.shards)
    summary.seconds = time.monotonic() - start
    return summary


def remove_split(data_dir: str, split: str) -> bool:
    """Removes `split` from `dataset.json`, then its folder; False if it was not there.

    `dataset.json` is rewritten atomically first, so an interruption leaves at worst an
    unlisted folder (which `data_prep.check` reports), never a listed split without shards.
    """
    import tensorflow as tf

    if not tf.io.gfile.exists(schema.dataset_info_path(data_dir)):
        return False
    info = schema.read_dataset_info(data_dir)
    if split not in info.splits:
        return False
    del info.splits[split]
    schema.write_json_atomic(schema.dataset_info_path(data_dir), info.to_json())
    writer_lib.remove_folder(os.path.join(data_dir, split))
    return True


def remove_stale_held_out(data_dir: str, split: str = "real_test", *,
                          command: str | None = None) -> bool:
    """Removes a held-out `split` left by an earlier run that split `real/` differently.

    Called by a converter that has just written `real/` and no `split`: the samples an
    earlier run held out into `split` (by `real_test_fraction > 0` in its `source`, or,
    if `command` is given, any `split` written by that command, e.g. MPIIGaze's test
    participants) are now in `real/` too, so keeping `split` would test on training
    data. A `split` written from its own input by another command is kept.

    Returns:
      True if `split` was removed.
    """
    import tensorflow as tf

    if not tf.io.gfile.exists(schema.dataset_info_path(data_dir)):
        return False
    info = schema.read_dataset_info(data_dir).splits.get(split)
    if info is None:
        return False
    fraction = (info.source.get("options") or {}).get("real_test_fraction")
    stale = bool(fraction) or (command is not None and info.source.get("command") == command)
    return stale and remove_split(data_dir, split)


def check_input_dir(path: str, what: str) -> str:
    """Returns `path` made absolute; raises FileNotFoundError naming it if not a folder."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} not found: {path!r} is not a folder.")
    return os.path.abspath(path)


def check_fraction(fraction, what: str = "real_test_fraction") -> float:
    """Returns `fraction` as a float; raises ValueError unless it is in [0, 1)."""
    value = float(fraction)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"Expected {what} in [0, 1). Received: {what}={fraction!r}")
    return value


def held_out(key: str, fraction: float) -> bool:
    """Whether the sample `key` belongs to the held-out `fraction` (e.g. `real_test/`).

    The first 8 bytes of `sha256(key)` (UTF-8), read as an integer `h` in [0, 2**64), put
    the key in the held-out part if `h / 2**64 < fraction`. The answer depends on the key
    alone: not on the other keys, their order, the number of workers or Python's string
    hashing, and adding samples never moves an existing one to the other part.
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2.0**64


def split_held_out(items: Sequence, fraction: float, key: Callable = str) -> tuple:
    """`(kept, held)`: `items` split by `held_out(key(item), fraction)`, order kept."""
    fraction = check_fraction(fraction)
    kept, held = [], []
    for item in items:
        (held if held_out(key(item), fraction) else kept).append(item)
    return kept, held


def define_common_flags(flag_values=None) -> None:
    """Defines `--shard_bytes`, `--compression`, `--workers`, `--strict`, `--limit` and
    `--resume`.

    Called from each converter's `__main__` block only, so importing several converters
    (as the tests do) defines no flag twice.
    """
    from absl import flags

    fv = flags.FLAGS if flag_values is None else flag_values
    flags.DEFINE_integer(
        "shard_bytes", writer_lib.DEFAULT_SHARD_BYTES,
        "Target shard size in bytes of serialized records (before compression).",
        lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("compression", "none", ["none", "gzip"], "Shard compression.",
                      flag_values=fv)
    flags.DEFINE_integer(
        "workers", os.cpu_count() or 1,
        "Worker processes (1 = in this process). The output does not depend on it.",
        lower_bound=1, flag_values=fv)
    flags.DEFINE_boolean(
        "strict", False,
        "Stop at the first bad sample, naming the file and the reason, instead of "
        "skipping and counting it.", flag_values=fv)
    flags.DEFINE_integer("limit", None, "Write at most this many records per split.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_boolean(
        "resume", False,
        "Continue an interrupted conversion: keep its finished shards (checked by "
        "sha256) and finished splits, write the rest. Refused if the options or inputs "
        "differ. Without it a conversion starts over.", flag_values=fv)


def define_real_test_fraction_flag(flag_values=None) -> None:
    """Defines `--real_test_fraction` (the real samples `held_out` into `real_test/`)."""
    from absl import flags

    flags.DEFINE_float(
        "real_test_fraction", 0.0,
        "Fraction of the real samples written to real_test/ instead of real/, chosen "
        "by a hash of each key (deterministic). 0: no real_test/ split.",
        flag_values=flags.FLAGS if flag_values is None else flag_values)


def options_from_flags(flag_values=None) -> ConvertOptions:
    """Builds `ConvertOptions` from the flags of `define_common_flags`."""
    from absl import flags

    fv = flags.FLAGS if flag_values is None else flag_values
    return ConvertOptions(shard_bytes=fv.shard_bytes, compression=fv.compression,
                          workers=fv.workers, strict=fv.strict, limit=fv.limit,
                          resume=fv.resume)


def run_main(convert: Callable[[], Summary]) -> int:
    """Runs `convert()` for a `main`: prints the summary, or the error; the exit code."""
    try:
        summary = convert()
    except (ConversionError, FileNotFoundError, ValueError) as e:  # ResumeError too.
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary.format())
    return 0


def make_main(convert_from_flags: Callable[[Any], Summary]) -> Callable[[list], int]:
    """A converter's `main(argv)` for `absl.app.run`.

    It rejects positional arguments, then runs `convert_from_flags(flags.FLAGS)` through
    `run_main` (the summary, or the error and exit code 1).
    """
    def main(argv):
        from absl import app, flags

        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        return run_main(lambda: convert_from_flags(flags.FLAGS))

    return main
