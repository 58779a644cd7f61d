"""Bad input: errors that name the file and record, or counted skips."""

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import pattern_images, write_split
from simgan_tf.training import callbacks, train_lib
from simgan_tf.data import reader, validation, schema
from simgan_tf.data.validation import BadRecordError
from test_train import event_tags, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
    """64 synthetic and 64 real 35x55 images, in shards of about 16 records."""
    data_dir = str(tmp_path_factory.mktemp("good"))
    write_split(data_dir, "synthetic", pattern_images(64, 0), "synthetic",
                gaze=np.zeros((64, 2), np.float32), shard_bytes=20_000)
    write_split(data_dir, "real", pattern_images(64, 1), "real", shard_bytes=20_000)
    return data_dir


@pytest.fixture
def folder(good_dir, tmp_path):
    copy = str(tmp_path / "data")
    shutil.copytree(good_dir, copy)
    return copy


def shards(data_dir, split):
    return sorted(glob.glob(os.path.join(data_dir, split, "*.tfrecord")))


def records(path):
    return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def rewrite(path, replace):
    """Rewrites a shard with records {index: new serialized bytes} replaced."""
    old = records(path)
    with tf.io.TFRecordWriter(path) as writer:
        for i, record in enumerate(old):
            writer.write(replace.get(i, record))


def without(record, field):
    example = tf.train.Example.FromString(record)
    del example.features.feature[field]
    return example.SerializeToString()


def image_record(image, key="bad"):
    return schema.encode_example(image, key=key, domain="synthetic",
                                 labels={schema.LABEL_GAZE: [0.0, 0.0]})


def validate(data_dir, split="synthetic", **kwargs):
    info = schema.read_dataset_info(data_dir)
    return validation.validate_split(data_dir, split, info, **kwargs)


def test_good_folder_passes_and_counts_records(good_dir):
    reports = validate(good_dir)
    assert len(reports) >= 3
    assert sum(r.records for r in reports) == 64
    assert all(r.records == r.declared and r.unreadable == 0 for r in reports)


def test_truncated_shard_is_found_by_its_headers(folder):
    path = shards(folder, "synthetic")[1]
    count = len(records(path))
    with open(path, "rb+") as f:
        f.truncate(os.path.getsize(path) - 100)
    with pytest.raises(BadRecordError, match=f"{path}, record {count - 1}: truncated"):
        validate(folder)
    reports = validate(folder, skip_bad_records=True)
    assert [r.unreadable for r in reports if r.path == path] == [1]


@pytest.mark.parametrize("problem, make, match", [
    ("missing field", lambda r: without(r, schema.SAMPLE_KEY), "missing field.*sample/key"),
    ("missing label", lambda r: without(r, schema.LABEL_GAZE), "missing field.*label/gaze"),
    ("wrong size", lambda r: image_record(np.zeros((30, 50, 1), np.uint8)), "PNG of 30x50"),
    ("wrong channels", lambda r: image_record(np.zeros((35, 55, 3), np.uint8)),
     r"PNG of 35x55, bit depth 8, color type 2 \(3 channels\)"),
    ("not an example", lambda r: b"garbage", "not a tf.train.Example"),
])
def test_bad_first_record_fails_before_training(folder, problem, make, match):
    path = shards(folder, "synthetic")[2]
    rewrite(path, {0: make(records(path)[0])})
    with pytest.raises(BadRecordError, match=f"{path}, record 0: {match}"):
        validate(folder)


def test_empty_split_and_missing_shards_are_reported(folder):
    info_path = schema.dataset_info_path(folder)
    with open(info_path) as f:
        info = json.load(f)
    info["splits"]["real"]["count"] = 0
    with open(info_path, "w") as f:
        json.dump(info, f)
    with pytest.raises(ValueError, match="Split 'real' of .* is empty"):
        validate(folder, "real")
    for path in shards(folder, "synthetic"):
        os.remove(path)
    with pytest.raises(FileNotFoundError, match="No \\*.tfrecord.*synthetic"):
        validate(folder)


def test_empty_shard_file_is_reported(folder):
    path = shards(folder, "real")[0]
    open(path, "wb").close()
    with pytest.raises(BadRecordError, match=f"{path}: empty file"):
        validate(folder, "real")


@pytest.mark.parametrize("problem, make, match", [
    ("wrong size", lambda r: image_record(np.zeros((30, 50, 1), np.uint8)),
     "key bad.*PNG header height 30 width 50"),
    ("missing image", lambda r: without(r, schema.IMAGE_ENCODED),
     r"value counts of image/channels, image/encoded.* are \[1 0 1"),
])
def test_bad_record_deep_in_a_shard_fails_training_naming_file_and_index(
        folder, tmp_path, problem, make, match):
    path = shards(folder, "synthetic")[0]
    rewrite(path, {3: make(records(path)[3])})
    validate(folder)  # the first records are fine
    with pytest.raises(BadRecordError, match=f"^Bad input data in {path}, record 3: .*{match}"):
        train_lib.train(tiny_config(folder, export=False), str(tmp_path / "run"), verbose=0)
    assert not glob.glob(str(tmp_path / "run" / "checkpoints" / "ckpt-*"))


def test_corrupt_record_is_located_after_training_fails(folder, tmp_path):
    path = shards(folder, "real")[1]
    blob = bytearray(open(path, "rb").read())
    first = len(records(path)[0]) + 16
    blob[first + 12 + 40] ^= 0xFF  # inside the data of record 1
    open(path, "wb").write(bytes(blob))
    validate(folder, "real")  # headers and first record are fine
    with pytest.raises(BadRecordError, match=f"{path}, record 1: .*corrupted record"):
        train_lib.train(tiny_config(folder, export=False), str(tmp_path / "run"), verbose=0)


def test_skip_bad_records_counts_and_reports_them(folder, tmp_path, caplog):
    path = shards(folder, "synthetic")[0]
    old = records(path)
    rewrite(path, {1: image_record(np.zeros((30, 50, 1), np.uint8)),
                   2: without(old[2], schema.IMAGE_ENCODED)})
    truncated = shards(folder, "real")[-1]
    with open(truncated, "rb+") as f:
        f.truncate(os.path.getsize(truncated) - 100)
    config = tiny_config(folder, export=False, log_every=1, batch_size=4)
    with pytest.raises(BadRecordError):
        train_lib.train(config, str(tmp_path / "strict"), verbose=0)
    # A deterministic input pipeline (no record shuffle) reads the synthetic shards (27, 27
    # and 10 records) round-robin, from their first records: the 24 images of 6 steps
    # come from the first 30 records, which hold records 1 and 2 of the first shard
    # wherever the file shuffle puts it. With the truncated real record the count is exact.
    assert sorted(len(records(p)) for p in shards(folder, "synthetic")) == [10, 27, 27]
    config = train_lib.config_lib.override(config, {"train.steps": 1,
                                                    "data.skip_bad_records": True,
                                                    "data.shuffle_buffer": 1,
                                                    "runtime.deterministic": True})
    model_dir = str(tmp_path / "run")
    result = train_lib.train(config, model_dir, verbose=0)
    assert result.step == 2 + 1 + 3
    assert result.skipped_records == 1 + 2, result.skipped_records
    assert f"Skipping 1 unreadable record(s) of {truncated}" in caplog.text
    assert "bad input record(s) so far" in caplog.text
    tags = event_tags(os.path.join(model_dir, "logs"))
    assert callbacks.SKIPPED_RECORDS_TAG in tags


def test_skip_count_follows_the_record_order(folder):
    path = shards(folder, "synthetic")[0]
    old = records(path)
    rewrite(path, {1: image_record(np.zeros((30, 50, 1), np.uint8)),
                   2: without(old[2], schema.IMAGE_ENCODED)})

    def counts(batches):
        dataset = reader.training_dataset(
            folder, synthetic_split="synthetic", real_split="real", batch_size=8,
            image_shape=(35, 55, 1), seed=0, shuffle_buffer=1, deterministic=True,
            skip_bad_records=True)
        return [int(batch["skipped"][-1]) for batch in dataset.take(batches)]

    first = counts(20)  # 160 images: the 62 good records twice, and part of a third pass
    # Every entry of a batch is the count up to that batch's last image, so it never
    # falls; both bad records of the first shard are among the first batch's 10 records;
    # each pass over the split drops them again: two passes done, a third begun.
    assert first[0] == 2
    assert all(a <= b for a, b in zip(first, first[1:]))
    assert 4 <= first[-1] <= 6
    # The count belongs to the data, not to how far ahead the pipeline reads: the same
    # seed gives the same sequence.
    assert counts(20) == first


def test_train_py_reports_missing_data_dir(tmp_path):
    missing = str(tmp_path / "nowhere")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze",
         f"--data_dir={missing}", f"--model_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert f"Data folder does not exist. Received: data_dir='{missing}'" in result.stderr
    assert "Traceback" not in result.stderr
