r"""Verifies a data folder written by the converters (or any `SplitWriter` user).

    python -m data_prep.check --data_dir=<data folder> [--max_problems=20]

Checks, per split of `dataset.json`:

* every shard file exists and has the recorded sha256 and record count, and the
  split's count is their sum;
* every record reads (no truncated or corrupt shard) and parses with
  `schema.feature_spec(label_fields)` (so every declared label is present with its
  length);
* `image/height`, `image/width`, `image/channels` and the PNG header
  (`schema.png_header_problem`: size, bit depth, color type) match the declared shape
  and dtype (8-bit or 16-bit), and the PNG decodes;
* `sample/domain` is the split's domain, `sample/key` is non-empty and unique in the
  split;
* labels are finite and plausible: `label/gaze` and `label/head_pose` angles within
  (-pi/2, pi/2), `label/joints_uvd` depths > 0.

Prints a table per split (shards, records, size, label ranges). Problems name the split,
the file and the record index; after `max_problems` the check stops. The exit code is 1
if there is any problem. Files not listed in `dataset.json` and leftover staging folders
are reported as warnings only, and so are `.partial-*` folders of an interrupted conversion
(finish it with `--resume`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys

import numpy as np

from simgan_tf.data import schema
from simgan_tf.data.writer import sha256_file

DEFAULT_MAX_PROBLEMS = 20
_PARSE_BATCH = 256
# Labels whose values are angles in radians, each expected within (-pi/2, pi/2).
ANGLE_LABELS = (schema.LABEL_GAZE, "label/head_pose")
# Values per point, to report ranges per coordinate.
_GROUPS = {schema.LABEL_JOINTS_UVD: 3, "label/landmarks_2d": 2}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem found.

    Attributes:
      split: split name, or None for folder-level problems.
      file: shard file name (or `dataset.json`), or None.
      index: record index within the file, or None.
      message: what was found and what was expected.
    """
    split: str | None
    file: str | None
    index: int | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.split is not None:
            where.append(f"split {self.split!r}")
        if self.file is not None:
            where.append(f"file {self.file}")
        if self.index is not None:
            where.append(f"record {self.index}")
        return (", ".join(where) + ": " if where else "") + self.message


@dataclasses.dataclass
class SplitReport:
    """Statistics of one split.

    Attributes:
      name: split name.
      domain: declared domain.
      compression: `None` or `"GZIP"`.
      shards: shard files declared.
      records: records read.
      bytes: total size of the shard files found.
      label_min, label_max: per label field, per coordinate minimum and maximum.
    """
    name: str
    domain: str
    compression: str | None
    shards: int = 0
    records: int = 0
    bytes: int = 0
    label_min: dict = dataclasses.field(default_factory=dict)
    label_max: dict = dataclasses.field(default_factory=dict)

    def update_labels(self, name: str, values: np.ndarray) -> None:
        group = _GROUPS.get(name, values.size if values.size <= 4 else 1)
        values = values.reshape(-1, group)
        low, high = values.min(axis=0), values.max(axis=0)
        if name in self.label_min:
            low = np.minimum(low, self.label_min[name])
            high = np.maximum(high, self.label_max[name])
        self.label_min[name], self.label_max[name] = low, high


@dataclasses.dataclass
class CheckReport:
    """Result of `check`.

    Attributes:
      data_dir: the folder checked.
      info: its `DatasetInfo`, or None if unreadable.
      splits: mapping split name -> `SplitReport`.
      problems: problems found, at most `max_problems`.
      warnings: harmless findings (unlisted files, leftover staging folders).
      stopped: True if the check stopped at `max_problems`.
    """
    data_dir: str
    info: schema.DatasetInfo | None = None
    splits: dict = dataclasses.field(default_factory=dict)
    problems: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, problems: bool = True) -> str:
        """The summary table, then warnings and (if `problems`) the problems."""
        lines = [f"Data folder: {self.data_dir}"]
        if self.info is not None:
            h, w, c = self.info.image_shape
            lines.append(f"images: {self.info.image_dtype} {h}x{w}x{c} (height x width x "
                         f"channels), schema version {self.info.schema_version}")
        lines.append(f"{'split':<12}{'domain':<11}{'shards':>7}{'records':>10}"
                     f"{'MiB':>10}  compression")
        for s in self.splits.values():
            lines.append(f"{s.name:<12}{s.domain:<11}{s.shards:>7}{s.records:>10}"
                         f"{s.bytes / 2**20:>10.2f}  {s.compression or 'none'}")
            for name in s.label_min:
                # `+ 0.0` prints -0.0 as 0.
                low = ", ".join(f"{v + 0.0:.3g}" for v in s.label_min[name])
                high = ", ".join(f"{v + 0.0:.3g}" for v in s.label_max[name])
                lines.append(f"    {name}: min [{low}] max [{high}]")
        lines.extend(f"warning: {w}" for w in self.warnings)
        if problems:
            lines.append(self.format_problems())
        return "\n".join(lines)

    def format_problems(self) -> str:
        """One line per problem, then the verdict."""
        lines = [f"PROBLEM: {p}" for p in self.problems]
        if self.stopped:
            lines.append(f"Stopped after {len(self.problems)} problems (--max_problems).")
        lines.append("OK" if self.ok else f"FAILED: {len(self.problems)} problem(s).")
        return "\n".join(lines)


class _Stop(Exception):
    """Raised internally once `max_problems` problems are collected."""


class _Checker:
    """Holds the state of one check run."""

    def __init__(self, data_dir: str, max_problems: int):
        self.report = CheckReport(data_dir=data_dir)
        self.max_problems = max_problems

    def problem(self, split, file, index, message) -> None:
        self.report.problems.append(Problem(split, file, index, message))
        if len(self.report.problems) >= self.max_problems:
            self.report.stopped = True
            raise _Stop()

    def run(self) -> CheckReport:
        report = self.report
        try:
            try:
                report.info = schema.read_dataset_info(report.data_dir)
            except (OSError, ValueError) as e:
                self.problem(None, schema.DATASET_INFO_FILE, None, str(e))
                return report
            for name in sorted(os.listdir(report.data_dir)):
                if name.startswith((".staging-", ".old-")):
                    report.warnings.append(
                        f"leftover folder {name} (an interrupted run; safe to delete)")
                elif name.startswith(".partial-"):
                    report.warnings.append(
                        f"leftover folder {name} (an interrupted conversion: rerun it "
                        "with --resume to finish it, or delete the folder)")
            for split, split_info in report.info.splits.items():
                self.check_split(split, split_info)
        except _Stop:
            pass
        return report

    def check_split(self, split: str, split_info: schema.SplitInfo) -> None:
        info = self.report.info
        report = SplitReport(name=split, domain=split_info.domain,
                             compression=split_info.compression,
                             shards=len(split_info.shards))
        self.report.splits[split] = report
        folder = os.path.join(self.report.data_dir, split)
        if split_info.domain not in schema.DOMAINS:
            self.problem(split, None, None, f"domain {split_info.domain!r} in "
                         f"dataset.json, expected one of {schema.DOMAINS}")
        if split_info.compression not in schema.COMPRESSIONS:
            self.problem(split, None, None, f"compression {split_info.compression!r} in "
                         f"dataset.json, expected one of {schema.COMPRESSIONS}")
            return
        label_fields = {}
        for name, length in split_info.label_fields.items():
            expected = schema.FIXED_LABEL_LENGTHS.get(name)
            if (not name.startswith(schema.LABEL_PREFIX) or not isinstance(length, int)
                    or length <= 0 or (expected is not None and length != expected)):
                self.problem(split, schema.DATASET_INFO_FILE, None,
                             f"label field {name!r} of length {length!r} is invalid")
                continue
            label_fields[name] = length
        if not os.path.isdir(folder):
            self.problem(split, None, None, f"split folder {folder} does not exist")
            return
        listed = {shard.get("file") for shard in split_info.shards}
        for name in sorted(set(os.listdir(folder)) - listed):
            self.report.warnings.append(f"split {split!r}: file {name} is not listed in "
                                        "dataset.json")
        keys = set()
        total = 0
        for shard in split_info.shards:
            total += self.check_shard(split, split_info, label_fields, shard, folder,
                                      info, keys, report)
        report.records = total
        if total != split_info.count:
            self.problem(split, None, None, f"{total} records read, dataset.json "
                         f"records count={split_info.count}")

    def check_shard(self, split, split_info, label_fields, shard, folder, info, keys,
                    report) -> int:
        import tensorflow as tf

        name = shard.get("file", "?")
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            self.problem(split, name, None, f"shard file {path} does not exist")
            return 0
        report.bytes += os.path.getsize(path)
        digest = sha256_file(path)
        if digest != shard.get("sha256"):
            self.problem(split, name, None, f"sha256 {digest} differs from "
                         f"dataset.json's {shard.get('sha256')}")
        spec = schema.feature_spec(label_fields)
        dataset = tf.data.TFRecordDataset(path,
                                          compression_type=split_info.compression or "")
        count, batch = 0, []
        try:
            for raw in dataset:
                batch.append(raw.numpy())
                count += 1
                if len(batch) == _PARSE_BATCH:
                    self.check_records(split, split_info, name, count - len(batch),
                                       batch, spec, info, keys, report)
                    batch = []
        except tf.errors.OpError as e:
            self.check_records(split, split_info, name, count - len(batch), batch, spec,
                               info, keys, report)
            self.problem(split, name, count, "cannot read the record (truncated or "
                         f"corrupt shard): {e.message.splitlines()[0]}")
            return count
        self.check_records(split, split_info, name, count - len(batch), batch, spec,
                           info, keys, report)
        if count != shard.get("count"):
            self.problem(split, name, None, f"{count} records read, dataset.json "
                         f"records count={shard.get('count')}")
        return count

    def check_records(self, split, split_info, file, start, batch, spec, info, keys,
                      report) -> None:
        import tensorflow as tf

        if not batch:
            return
        try:
            parsed = {k: v.numpy() for k, v in
                      tf.io.parse_example(tf.constant(batch), spec).items()}
            rows = [{k: v[i] for k, v in parsed.items()} for i in range(len(batch))]
        except tf.errors.InvalidArgumentError:
            rows = []
            for i, raw in enumerate(batch):
                try:
                    rows.append({k: v.numpy() for k, v in
                                 tf.io.parse_single_example(raw, spec).items()})
                except tf.errors.InvalidArgumentError as e:
                    rows.append(None)
                    self.problem(split, file, start + i, "does not parse with the "
                                 f"schema: {e.message.splitlines()[0]}")
        for i, row in enumerate(rows):
            if row is not None:
                self.check_record(split, split_info, file, start + i, row, info, keys,
                                  report)

    def check_record(self, split, split_info, file, index, row, info, keys,
                     report) -> None:
        def bad(message):
            self.problem(split, file, index, message)

        shape = (int(row[schema.IMAGE_HEIGHT]), int(row[schema.IMAGE_WIDTH]),
                 int(row[schema.IMAGE_CHANNELS]))
        if shape != info.image_shape:
            bad(f"image/height, width, channels = {shape}, declared {info.image_shape}")
        header_problem = schema.png_header_problem(row[schema.IMAGE_ENCODED], info)
        if header_problem is not None:
            bad(header_problem)
        else:
            try:
                schema.decode_png_numpy(row[schema.IMAGE_ENCODED], info.image_dtype)
            except (OSError, ValueError, SyntaxError) as e:
                bad(f"image/encoded does not decode as PNG: {e}")
        domain = row[schema.SAMPLE_DOMAIN].decode("utf-8", "replace")
        if domain != split_info.domain:
            bad(f"sample/domain {domain!r}, split domain {split_info.domain!r}")
        key = row[schema.SAMPLE_KEY].decode("utf-8", "replace")
        if not key:
            bad("empty sample/key")
        elif key in keys:
            bad(f"duplicate sample/key {key!r}")
        keys.add(key)
        for name in split_info.label_fields:
            if name not in row:
                continue
            values = np.asarray(row[name], dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(values)):
                bad(f"{name} is not finite: {values.tolist()}")
                continue
            if name in ANGLE_LABELS and np.any(np.abs(values) >= math.pi / 2):
                bad(f"{name} = {values.tolist()}: expected angles in (-pi/2, pi/2) "
                    "radians")
            if name == schema.LABEL_JOINTS_UVD and np.any(values[2::3] <= 0):
                bad(f"{name} has depths <= 0: {values[2::3].tolist()}")
            report.update_labels(name, values)


def check(data_dir: str, *, max_problems: int = DEFAULT_MAX_PROBLEMS) -> CheckReport:
    """Verifies a data folder.

    Args:
      data_dir: the data folder (holding `dataset.json`).
      max_problems: stop after this many problems (> 0).

    Returns:
      The `CheckReport`; `report.ok` is True if no problem was found.
    """
    if max_problems <= 0:
        raise ValueError(f"Expected max_problems > 0. Received: {max_problems}")
    return _Checker(data_dir, max_problems).run()


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("data_dir", None, "Data folder to verify.", required=True)
    flags.DEFINE_integer("max_problems", DEFAULT_MAX_PROBLEMS,
                         "Stop after this many problems.", lower_bound=1)


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    report = check(flags.FLAGS.data_dir, max_problems=flags.FLAGS.max_problems)
    print(report.format(problems=False))
    print(report.format_problems(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
