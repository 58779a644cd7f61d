"""Tests of data_prep/common.py: ordered parallel map, skips, strict mode, atomicity."""

import json
import os
import time

import numpy as np
import pytest

from data_prep import common
from simgan_tf.data import schema

SHAPE = (4, 6, 1)
LABELS = {schema.LABEL_GAZE: 2}


def _slow_square(x):
    # Earlier items sleep longer, so with 2 workers later chunks finish first.
    time.sleep(0.0005 * (20 - x % 20))
    return x * x


def _make_sample(i):
    """Worker for write_split tests: item i -> one Sample or Skip."""
    source = f"item{i}.png"
    if i == 3:
        return [common.Skip(common.UNREADABLE_IMAGE, source, "bad bytes")]
    if i == 5:  # Wrong image shape: caught by the parent's check.
        return [common.Sample(f"k{i}", np.zeros((5, 6, 1), np.uint8),
                              {schema.LABEL_GAZE: [0.0, 0.0]}, source)]
    if i == 7:
        return [common.Sample(f"k{i}", np.zeros(SHAPE, np.uint8),
                              {schema.LABEL_GAZE: [np.nan, 0.0]}, source)]
    image = np.full(SHAPE, i, np.uint8)
    return [common.Sample(f"k{i}", image, {schema.LABEL_GAZE: [0.01 * i, -0.01 * i]},
                          source, notes=("even",) if i % 2 == 0 else ())]


def _fail_on_6(i):
    if i == 6:
        raise KeyError("boom")
    return _make_sample(i)


def _read(path, compression=None):
    import tensorflow as tf

    records = []
    for raw in tf.data.TFRecordDataset(path, compression_type=compression or ""):
        example = tf.train.Example.FromString(raw.numpy())
        records.append(example.features.feature)
    return records


def _write(tmp_path, items, process=_make_sample, **options):
    options.setdefault("progress", False)
    options.setdefault("workers", 1)
    return common.write_split(
        items=items, process=process, data_dir=str(tmp_path / "data"), split="real",
        domain="real", image_shape=SHAPE, label_fields=LABELS,
        options=common.ConvertOptions(**options),
        source={"command": "test", "input_dir": "x"}, chunk_size=2)


@pytest.mark.parametrize("workers,chunk_size", [(1, 1), (2, 1), (2, 3)])
def test_ordered_map_keeps_input_order(workers, chunk_size):
    items = list(range(40))
    out = list(common.ordered_map(_slow_square, items, workers=workers,
                                  chunk_size=chunk_size, max_pending=3))
    assert out == [x * x for x in items]


def test_ordered_map_early_close_stops_workers():
    results = common.ordered_map(_slow_square, range(10_000), workers=2, chunk_size=4)
    assert [next(results) for _ in range(5)] == [0, 1, 4, 9, 16]
    start = time.monotonic()
    results.close()  # Terminates the pool without computing the rest.
    assert time.monotonic() - start < 5


def test_ordered_map_names_item_on_unexpected_error():
    with pytest.raises(common.ConversionError, match=r"item 6.*KeyError"):
        list(common.ordered_map(_fail_on_6, range(10), workers=1))


def test_convert_options_validation_and_normalization():
    assert common.ConvertOptions(compression="gzip").compression == "GZIP"
    assert common.ConvertOptions(compression="none").compression is None
    assert common.ConvertOptions(workers=0).num_workers == (os.cpu_count() or 1)
    with pytest.raises(ValueError, match="Received: 'zip'"):
        common.ConvertOptions(compression="zip")
    with pytest.raises(ValueError, match="shard_bytes > 0. Received: 0"):
        common.ConvertOptions(shard_bytes=0)
    with pytest.raises(ValueError, match="limit > 0"):
        common.ConvertOptions(limit=0)
    assert common.ConvertOptions(compression="GZIP", limit=3).describe() == {
        "shard_bytes": 64 * 2**20, "compression": "gzip", "strict": False, "limit": 3}


def test_skip_counter_keeps_first_examples():
    counter = common.SkipCounter(max_examples=2)
    for i in range(4):
        counter.add(common.Skip("missing_key", f"{i}.json", "look_vec"))
    counter.add(common.Skip("wrong_shape", "9.json"))
    assert counter.counts == {"missing_key": 4, "wrong_shape": 1}
    assert counter.total == 5
    assert counter.examples["missing_key"] == ["0.json: missing_key (look_vec)",
                                               "1.json: missing_key (look_vec)"]


def test_run_sample_turns_skip_sample_into_skip():
    def bad():
        raise common.SkipSample("wrong_shape", "got (3,)")

    assert common.run_sample("a.json", bad) == common.Skip("wrong_shape", "a.json",
                                                           "got (3,)")


@pytest.mark.parametrize("workers", [1, 2])
def test_write_split_skips_counts_and_records(tmp_path, workers):
    summary = _write(tmp_path, list(range(10)), workers=workers)
    assert summary.written == 7
    assert summary.skipped == {"non_finite_label": 1, "unreadable_image": 1,
                               "wrong_shape": 1}
    assert summary.examples["unreadable_image"] == [
        "item3.png: unreadable_image (bad bytes)"]
    assert "expected uint8 (4, 6, 1)" in summary.examples["wrong_shape"][0]
    assert summary.notes == {"even": 5}  # Items 0, 2, 4, 6, 8.
    assert summary.shards == 1
    data = tmp_path / "data"
    records = _read(str(data / "real" / "real-00000.tfrecord"))
    keys = [r[schema.SAMPLE_KEY].bytes_list.value[0].decode() for r in records]
    assert keys == ["k0", "k1", "k2", "k4", "k6", "k8", "k9"]
    np.testing.assert_allclose(records[3][schema.LABEL_GAZE].float_list.value,
                               [0.04, -0.04], rtol=1e-6)
    source = json.loads((data / "dataset.json").read_text())["splits"]["real"]["source"]
    assert source["command"] == "test"
    assert source["written"] == 7
    assert source["skipped"] == summary.skipped
    assert source["notes"] == {"even": 5}
    text = common.Summary(str(data), {"real": summary}).format()
    assert "skipped 1 x unreadable_image" in text
    assert "item3.png: unreadable_image (bad bytes)" in text


def test_records_are_canonical(tmp_path):
    # The feature map is serialized in sorted order, so the bytes do not depend on the
    # process's string hashing (PYTHONHASHSEED): shards are reproducible across runs.
    from tensorflow.core.example import example_pb2

    _write(tmp_path, list(range(5)))
    import tensorflow as tf

    path = str(tmp_path / "data" / "real" / "real-00000.tfrecord")
    raws = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    assert len(raws) == 4
    for raw in raws:
        example = example_pb2.Example.FromString(raw)
        assert example.SerializeToString(deterministic=True) == raw


def test_write_split_strict_names_file_and_reason(tmp_path):
    with pytest.raises(common.ConversionError,
                       match=r"item3\.png: unreadable_image \(bad bytes\).*--strict"):
        _write(tmp_path, list(range(10)), strict=True)
    data = tmp_path / "data"
    assert not (data / "real").exists()
    assert [p for p in os.listdir(data) if p.startswith(".")] == []


def test_write_split_limit_and_sharding(tmp_path):
    summary = _write(tmp_path, list(range(100)), limit=20, shard_bytes=300,
                     compression="gzip")
    assert summary.written == 20
    assert summary.limited
    info = schema.read_dataset_info(str(tmp_path / "data"))
    split = info.splits["real"]
    assert split.count == 20 and split.compression == "GZIP"
    assert len(split.shards) == summary.shards > 1
    assert sum(s["count"] for s in split.shards) == 20
    assert all(s["file"].endswith(".tfrecord.gz") for s in split.shards)
    assert split.source["stopped_at_limit"] is True


def test_interrupted_write_keeps_previous_split(tmp_path, monkeypatch):
    _write(tmp_path, [0, 1, 2])
    data = tmp_path / "data"
    before_json = (data / "dataset.json").read_bytes()
    before_shard = (data / "real" / "real-00000.tfrecord").read_bytes()
    calls = []

    def exploding_encode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # As if the user pressed Ctrl-C mid-conversion.
        return schema.encode_example(*args, **kwargs)

    monkeypatch.setattr(common.schema, "encode_example", exploding_encode)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, list(range(20)), shard_bytes=50)
    assert (data / "dataset.json").read_bytes() == before_json
    assert os.listdir(data / "real") == ["real-00000.tfrecord"]
    assert (data / "real" / "real-00000.tfrecord").read_bytes() == before_shard
    # The finished shards wait in .partial-real/ for --resume (data_prep.resume) ...
    assert sorted(os.listdir(data)) == [".partial-real", "dataset.json", "real"]
    # ... and a rerun without it starts clean, removing them.
    monkeypatch.undo()
    assert _write(tmp_path, list(range(20))).written == 17
    assert sorted(os.listdir(data)) == ["dataset.json", "real"]


def test_worker_error_is_not_a_skip(tmp_path):
    with pytest.raises(common.ConversionError, match=r"item 6.*KeyError"):
        _write(tmp_path, list(range(10)), process=_fail_on_6, workers=2)
    assert not (tmp_path / "data" / "real").exists()


def test_define_common_flags_and_options_from_flags():
    from absl import flags

    fv = flags.FlagValues()
    common.define_common_flags(fv)
    fv(["prog", "--shard_bytes=1000", "--compression=gzip", "--workers=1", "--strict",
        "--limit=5"])
    options = common.options_from_flags(fv)
    assert options == common.ConvertOptions(shard_bytes=1000, compression="GZIP",
                                            workers=1, strict=True, limit=5)
