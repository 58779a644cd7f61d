"""Tests of data_prep/check.py on good and deliberately broken data folders."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_prep import check
from simgan_tf.data import schema
from simgan_tf.data.writer import SplitWriter

REPO = os.path.join(os.path.dirname(__file__), "..")
SAMPLES = os.path.join(os.path.dirname(__file__), "testdata", "samples")
TILE_DIR = os.path.join(SAMPLES, "unityeyes", "tiles")
LABELS = {"label/gaze": 2, "label/head_pose": 2}


def _tiles():
    """The 8 genuine 55x35 UnityEyes tiles, uint8 [35, 55, 1]."""
    names = [f"tile_r{r}c{c}.png" for r in range(2) for c in range(4)]
    missing = [n for n in names if not os.path.exists(os.path.join(TILE_DIR, n))]
    if missing:
        pytest.fail(f"Genuine samples missing in {TILE_DIR}: {missing} (see "
                    "tests/testdata/samples/PROVENANCE.md).")
    tiles = [np.asarray(Image.open(os.path.join(TILE_DIR, n)).convert("L"))[..., None]
             for n in names]
    assert all(t.shape == (35, 55, 1) for t in tiles)
    return tiles


def _write(data_dir, split="synthetic", *, domain="synthetic", records=None,
           label_fields=LABELS, shard_bytes=2**20, compression=None):
    """Writes a split; `records` is a list of (image, key, domain, labels)."""
    if records is None:
        records = [(tile, str(i), domain,
                    {"label/gaze": [0.1 * i, -0.05 * i], "label/head_pose": [0.0, 0.2]})
                   for i, tile in enumerate(_tiles())]
    with SplitWriter(data_dir, split, domain=domain, image_shape=(35, 55, 1),
                     label_fields=label_fields, shard_bytes=shard_bytes,
                     compression=compression) as writer:
        for image, key, record_domain, labels in records:
            writer.write(schema.encode_example(image, key=key, domain=record_domain,
                                               labels=labels))
    return schema.read_dataset_info(data_dir)


def _good(tmp_path):
    data = str(tmp_path / "data")
    _write(data, shard_bytes=6000)  # Several shards.
    _write(data, "real", domain="real", compression="GZIP")
    return data


def test_good_folder(tmp_path):
    data = _good(tmp_path)
    report = check.check(data)
    assert report.ok, report.format()
    assert sorted(report.splits) == ["real", "synthetic"]
    synthetic = report.splits["synthetic"]
    assert synthetic.records == 8 and synthetic.shards > 1
    np.testing.assert_allclose(synthetic.label_min["label/gaze"], [0.0, -0.35], atol=1e-6)
    np.testing.assert_allclose(synthetic.label_max["label/gaze"], [0.7, 0.0], atol=1e-6)
    text = report.format()
    assert "synthetic" in text and "GZIP" in text and text.endswith("OK")
    assert "label/gaze: min [0, -0.35] max [0.7, 0]" in text


def _problems(data, **kwargs):
    report = check.check(data, **kwargs)
    assert not report.ok
    return report.problems


def test_truncated_shard(tmp_path):
    data = _good(tmp_path)
    info = schema.read_dataset_info(data)
    shard = info.splits["synthetic"].shards[0]
    path = os.path.join(data, "synthetic", shard["file"])
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 10)
    problems = _problems(data)
    assert problems[0].split == "synthetic" and problems[0].file == shard["file"]
    assert "sha256" in problems[0].message
    # The last record of the shard cannot be read: its index is named.
    assert problems[1].index == shard["count"] - 1
    assert "truncated or corrupt" in problems[1].message
    assert str(problems[1]).startswith(
        f"split 'synthetic', file {shard['file']}, record {shard['count'] - 1}: ")
    assert any("records read, dataset.json records count=8" in p.message
               for p in problems)


def test_bad_checksum_and_missing_shard(tmp_path):
    data = _good(tmp_path)
    path = os.path.join(data, "dataset.json")
    raw = json.load(open(path))
    raw["splits"]["real"]["shards"][0]["sha256"] = "0" * 64
    json.dump(raw, open(path, "w"))
    problems = _problems(data)
    assert len(problems) == 1
    assert problems[0].split == "real" and problems[0].file == "real-00000.tfrecord.gz"
    assert "differs from dataset.json's 0000" in problems[0].message
    os.remove(os.path.join(data, "real", "real-00000.tfrecord.gz"))
    problems = _problems(data)
    assert "does not exist" in problems[0].message


def test_wrong_image_size(tmp_path):
    data = str(tmp_path / "data")
    tiles = _tiles()
    ok = {"label/gaze": [0, 0], "label/head_pose": [0, 0]}
    records = [(tiles[0], "a", "synthetic", ok),
               (np.zeros((36, 60, 1), np.uint8), "b", "synthetic", ok)]
    _write(data, records=records)  # SplitWriter does not look at the images.
    problems = _problems(data)
    assert [(p.split, p.file, p.index) for p in problems] == [
        ("synthetic", "synthetic-00000.tfrecord", 1)] * 2
    assert problems[0].message == (
        "image/height, width, channels = (36, 60, 1), declared (35, 55, 1)")
    assert problems[1].message == (
        "PNG of 36x60, bit depth 8, color type 0 (1 channels); dataset.json says 35x55, "
        "1 channel(s), uint8")


def test_missing_field(tmp_path):
    data = str(tmp_path / "data")
    tiles = _tiles()
    ok = {"label/gaze": [0, 0], "label/head_pose": [0, 0]}
    records = [(tiles[0], "a", "synthetic", ok),
               (tiles[1], "b", "synthetic", {"label/gaze": [0, 0]})]
    _write(data, records=records)
    problems = _problems(data)
    assert len(problems) == 1
    assert (problems[0].file, problems[0].index) == ("synthetic-00000.tfrecord", 1)
    assert "does not parse with the schema" in problems[0].message
    assert "label/head_pose" in problems[0].message


def test_implausible_values_duplicates_domain_and_dtype(tmp_path):
    data = str(tmp_path / "data")
    tiles = _tiles()
    ok = {"label/gaze": [0, 0], "label/head_pose": [0, 0]}
    records = [(tiles[0], "a", "synthetic", ok),
               (tiles[1], "a", "synthetic", ok),  # Duplicate key.
               (tiles[2], "c", "real", ok),  # Wrong domain.
               (tiles[3], "d", "synthetic", {"label/gaze": [1.7, 0],  # > pi/2.
                                             "label/head_pose": [0, 0]}),
               (tiles[4].astype(np.uint16), "e", "synthetic", ok)]  # 16-bit PNG.
    _write(data, records=records)
    problems = _problems(data)
    messages = {p.index: p.message for p in problems}
    assert messages[1] == "duplicate sample/key 'a'"
    assert messages[2] == "sample/domain 'real', split domain 'synthetic'"
    assert "label/gaze = [1.7" in messages[3] and "(-pi/2, pi/2)" in messages[3]
    assert "PNG of 35x55, bit depth 16, color type 0" in messages[4]


def test_joint_depths_must_be_positive(tmp_path):
    data = str(tmp_path / "data")
    joints = np.ones((14, 3))
    joints[5, 2] = -3.0
    with SplitWriter(data, "real", domain="real", image_shape=(35, 55, 1),
                     label_fields={"label/joints_uvd": 42}) as writer:
        writer.write(schema.encode_example(
            _tiles()[0], key="k", domain="real", labels={"label/joints_uvd": joints}))
    problems = _problems(data)
    assert "label/joints_uvd has depths <= 0" in problems[0].message


def test_no_dataset_json_and_max_problems(tmp_path):
    problems = _problems(str(tmp_path))
    assert problems[0].file == "dataset.json" and "not found" in problems[0].message
    data = str(tmp_path / "data")
    tiles = _tiles()
    _write(data, records=[(tiles[0], "same", "synthetic",
                           {"label/gaze": [0, 0], "label/head_pose": [0, 0]})] * 10)
    report = check.check(data, max_problems=3)
    assert len(report.problems) == 3 and report.stopped
    assert "Stopped after 3 problems" in report.format()


def test_leftovers_are_warnings(tmp_path):
    data = _good(tmp_path)
    os.makedirs(os.path.join(data, ".staging-real-1234abcd"))
    open(os.path.join(data, "synthetic", "notes.txt"), "w").close()
    report = check.check(data)
    assert report.ok
    assert any(".staging-real-1234abcd" in w for w in report.warnings)
    assert any("notes.txt is not listed" in w for w in report.warnings)


def test_command_line(tmp_path):
    data = _good(tmp_path)
    # Break one record's image size in a third split.
    records = [(np.zeros((36, 60, 1), np.uint8), "x", "real",
                {"label/gaze": [0, 0], "label/head_pose": [0, 0]})]
    _write(data, "real_test", domain="real", records=records)
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.check", f"--data_dir={data}",
         "--max_problems=5"], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 1
    assert "synthetic" in result.stdout and "real_test" in result.stdout
    assert ("PROBLEM: split 'real_test', file real_test-00000.tfrecord, record 0: "
            "image/height, width, channels = (36, 60, 1)") in result.stderr
    assert "FAILED: 2 problem(s)." in result.stderr
