import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf

from simgan_tf.data import schema
from simgan_tf.data.writer import SplitWriter


def _examples(n, domain="synthetic"):
    return [schema.encode_example(np.full((35, 55, 1), 7 + (i % 2) * 100, np.uint8), key=f"k{i:03d}",
                                  domain=domain, labels={schema.LABEL_GAZE: [i, -i]})
            for i in range(n)]


def _write(data_dir, split, examples, **kwargs):
    with SplitWriter(str(data_dir), split, domain="synthetic", image_shape=(35, 55, 1),
                     label_fields={schema.LABEL_GAZE: 2}, **kwargs) as writer:
        for e in examples:
            writer.write(e)


@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_writes_shards_with_counts_and_checksums(tmp_path, compression):
    examples = _examples(50)
    assert len({len(e) for e in examples}) == 1  # equal sizes: shards of exactly 20
    _write(tmp_path, "synthetic", examples, shard_bytes=len(examples[0]) * 20,
           compression=compression)
    info = schema.read_dataset_info(str(tmp_path))
    split = info.splits["synthetic"]
    assert split.count == 50 and split.compression == compression
    assert [s["count"] for s in split.shards] == [20, 20, 10]
    suffix = ".tfrecord.gz" if compression else ".tfrecord"
    names = sorted(os.listdir(tmp_path / "synthetic"))
    assert names == [f"synthetic-{i:05d}{suffix}" for i in range(3)]
    records = []
    for shard in split.shards:
        path = tmp_path / "synthetic" / shard["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        records += [r.numpy() for r in tf.data.TFRecordDataset(
            str(path), compression_type=compression or "")]
    assert records == examples
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_exception_keeps_previous_split_and_leaves_no_staging(tmp_path):
    _write(tmp_path, "synthetic", _examples(5))
    before = {n: (tmp_path / "synthetic" / n).read_bytes()
              for n in os.listdir(tmp_path / "synthetic")}
    with pytest.raises(RuntimeError, match="interrupted"):
        with SplitWriter(str(tmp_path), "synthetic", domain="synthetic",
                         image_shape=(35, 55, 1), shard_bytes=100) as writer:
            for e in _examples(30):
                writer.write(e)
            raise RuntimeError("interrupted")
    after = {n: (tmp_path / "synthetic" / n).read_bytes()
             for n in os.listdir(tmp_path / "synthetic")}
    assert after == before
    assert schema.read_dataset_info(str(tmp_path)).splits["synthetic"].count == 5
    assert sorted(os.listdir(tmp_path)) == ["dataset.json", "synthetic"]


def test_rewrite_replaces_split_without_stale_shards(tmp_path):
    examples = _examples(30)
    _write(tmp_path, "synthetic", examples, shard_bytes=len(examples[0]) * 5)
    assert len(os.listdir(tmp_path / "synthetic")) == 6
    _write(tmp_path, "synthetic", examples[:4])
    assert os.listdir(tmp_path / "synthetic") == ["synthetic-00000.tfrecord"]
    assert schema.read_dataset_info(str(tmp_path)).splits["synthetic"].count == 4


def test_rejects_mismatched_image_shape_before_writing(tmp_path):
    _write(tmp_path, "synthetic", _examples(2))
    with pytest.raises(ValueError, match=r"\(224, 224, 1\)"):
        with SplitWriter(str(tmp_path), "real", domain="real", image_shape=(224, 224, 1)):
            pass
    assert not (tmp_path / "real").exists()


@pytest.mark.parametrize("kwargs, message", [
    (dict(domain="other"), "domain"),
    (dict(compression="ZLIB"), "compression"),
    (dict(shard_bytes=0), "shard_bytes"),
])
def test_validates_arguments(tmp_path, kwargs, message):
    args = dict(domain="synthetic", image_shape=(35, 55, 1))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        SplitWriter(str(tmp_path), "synthetic", **args)


def test_split_in_a_ram_filesystem_folder_writes_and_reads_back():
    """Every file access goes through tf.io.gfile: a `ram://` (or `gs://`) folder works."""
    from simgan_tf.data import reader, validation

    data_dir = "ram://test_writer/data"
    examples = _examples(12)
    _write(data_dir, "synthetic", examples[:3])
    _write(data_dir, "synthetic", examples, shard_bytes=len(examples[0]) * 5)  # replaces
    assert sorted(tf.io.gfile.listdir(data_dir)) == ["dataset.json", "synthetic"]
    info = schema.read_dataset_info(data_dir)
    split = info.splits["synthetic"]
    assert split.count == 12 and [s["count"] for s in split.shards] == [5, 5, 2]
    paths, compression = reader.list_shards(f"{data_dir}/synthetic")
    assert [os.path.basename(p) for p in paths] == [s["file"] for s in split.shards]
    assert compression is None
    for path, shard in zip(paths, split.shards):
        with tf.io.gfile.GFile(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == shard["sha256"]
    reports = validation.validate_split(data_dir, "synthetic", info)
    assert [r.records for r in reports] == [5, 5, 2]
    arrays = reader.load_arrays(data_dir, "synthetic", ("image", "key", schema.LABEL_GAZE))
    assert [k.decode() for k in arrays["key"]] == [f"k{i:03d}" for i in range(12)]
    np.testing.assert_array_equal(arrays[schema.LABEL_GAZE][:, 0], np.arange(12))
    np.testing.assert_allclose(arrays["image"][:2, 0, 0, 0], [7 / 127.5 - 1, 107 / 127.5 - 1],
                               atol=1e-6)
    tf.io.gfile.rmtree("ram://test_writer")
