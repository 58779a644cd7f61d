"""Tests of refining a split: labels and keys kept exactly, images refined, bad input."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import pattern_images
from simgan_tf.data import reader, schema
from simgan_tf.serving import export, refine_split
from simgan_tf.data.writer import SplitWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (35, 55, 1)


def _write(data_dir, split, images, *, extra=True, shard_bytes=30_000, pixel_range=None,
           dtype="uint8"):
    rng = np.random.default_rng(5)
    fields = {schema.LABEL_GAZE: 2, "label/head_pose": 2} if extra else {}
    with SplitWriter(data_dir, split, domain="synthetic", image_shape=images.shape[1:],
                     image_dtype=dtype, label_fields=fields, shard_bytes=shard_bytes,
                     pixel_range=pixel_range, source={"made_by": "test"}) as writer:
        for i, image in enumerate(images):
            labels = {name: rng.normal(size=2) for name in fields}
            writer.write(schema.encode_example(image, key=f"eye-{i:04d}", domain="synthetic",
                                               labels=labels))


def _records(split_dir):
    paths, compression = reader.list_shards(split_dir)
    out = []
    for path in paths:
        for record in tf.data.TFRecordDataset(path, compression or "").as_numpy_iterator():
            out.append(tf.train.Example.FromString(record))
    return out


def test_refine_split_keeps_keys_labels_and_order(tmp_path, refiner_export):
    refiner, saved_model = refiner_export
    data_dir = str(tmp_path / "data")
    images = pattern_images(70, seed=3)
    _write(data_dir, "synthetic", images)
    info = refine_split.refine_split(saved_model, os.path.join(data_dir, "synthetic"),
                                   os.path.join(data_dir, "refined"), batch_size=16)
    assert info.count == 70 and info.domain == "synthetic"
    assert info.source["saved_model"] == os.path.abspath(saved_model)
    assert info.source["refined_from"]["split"] == "synthetic"
    dataset_info = schema.read_dataset_info(data_dir)
    assert dataset_info.splits["refined"].label_fields == {schema.LABEL_GAZE: 2,
                                                           "label/head_pose": 2}

    before = _records(os.path.join(data_dir, "synthetic"))
    after = _records(os.path.join(data_dir, "refined"))
    assert len(before) == len(after) == 70
    for old, new in zip(before, after):
        old_features = dict(old.features.feature)
        new_features = dict(new.features.feature)
        assert old_features.keys() == new_features.keys()
        for name in old_features:
            if name != schema.IMAGE_ENCODED:
                assert new_features[name] == old_features[name], name  # byte for byte
    # The images are the refiner's output, quantized back to 8 bits.
    scaled = images.astype(np.float32) / 127.5 - 1.0
    expected = np.round((np.clip(refiner(scaled).numpy(), -1, 1) + 1) * 127.5)
    got = np.stack([schema.decode_png_numpy(r.features.feature[schema.IMAGE_ENCODED]
                                            .bytes_list.value[0]) for r in after])
    assert np.max(np.abs(got.astype(np.float32) - expected)) <= 1
    assert np.mean(np.abs(got.astype(np.float32) - images)) > 1  # it did change them
    # The reader takes the new split like any other.
    parsed = next(iter(reader.read_split(data_dir, "refined").batch(70)))
    assert parsed["key"][0].numpy() == b"eye-0000"


def test_refine_split_into_another_folder_keeps_the_pixel_range(tmp_path):
    # A depth-like folder: uint16 with pixel_range [-1000, 2000]; an identity refiner.
    shape = (16, 16, 1)
    inputs = keras.Input(shape)
    identity = keras.Model(inputs, keras.layers.Identity()(inputs))
    saved_model = export.export_refiner(identity, str(tmp_path / "export"), 1, shape)
    depth = np.random.default_rng(0).integers(0, 2000, (5, *shape)).astype(np.uint16)
    _write(str(tmp_path / "a"), "synthetic", depth, extra=False, dtype="uint16",
           pixel_range=(-1000, 2000))
    refine_split.refine_split(saved_model, str(tmp_path / "a" / "synthetic"),
                            str(tmp_path / "b" / "refined"))
    info = schema.read_dataset_info(str(tmp_path / "b"))
    assert info.pixel_range == [-1000, 2000] and info.image_dtype == "uint16"
    got = np.stack([schema.decode_png_numpy(r.features.feature[schema.IMAGE_ENCODED]
                                            .bytes_list.value[0], "uint16")
                    for r in _records(str(tmp_path / "b" / "refined"))])
    np.testing.assert_array_equal(got, depth)  # identity round trip is exact in mm


def test_refine_split_rejects_bad_input(tmp_path, refiner_export):
    _, saved_model = refiner_export
    data_dir = str(tmp_path / "data")
    _write(data_dir, "synthetic", pattern_images(4, seed=1))
    synthetic = os.path.join(data_dir, "synthetic")
    with pytest.raises(ValueError, match=r"Expected output_dir to differ from input_dir\. "
                                         r"Received: input_dir='.*synthetic', output_dir="):
        refine_split.refine_split(saved_model, synthetic, synthetic + "/")
    with pytest.raises(FileNotFoundError, match="SavedModel"):
        refine_split.refine_split(str(tmp_path / "nope"), synthetic, str(tmp_path / "x"))
    with pytest.raises(ValueError, match="no split 'real'"):
        refine_split.refine_split(saved_model, os.path.join(data_dir, "real"),
                                str(tmp_path / "x"))
    other = str(tmp_path / "other")
    _write(other, "synthetic", pattern_images(4, seed=1, shape=(20, 20, 1)))
    with pytest.raises(ValueError, match=r"takes images of shape \(35, 55, 1\)"):
        refine_split.refine_split(saved_model, os.path.join(other, "synthetic"),
                                str(tmp_path / "x"))
    # A record whose image has another size: the error names the file and record.
    odd = str(tmp_path / "odd")
    with SplitWriter(odd, "synthetic", domain="synthetic", image_shape=SHAPE) as writer:
        for i, image in enumerate([*pattern_images(2, seed=1),
                                   np.zeros((20, 20, 1), np.uint8)]):
            writer.write(schema.encode_example(image, key=f"k{i}", domain="synthetic"))
    with pytest.raises(ValueError, match=r"synthetic-00000\.tfrecord, record 2: cannot be "
                                         r"refined: .*\[20 20 1\] \[but expected \[35, 55, 1\]"):
        refine_split.refine_split(saved_model, os.path.join(odd, "synthetic"),
                                  os.path.join(odd, "refined"))
    assert "refined" not in schema.read_dataset_info(odd).splits
    # A corrupt shard: the error names the file; nothing is published.
    path = reader.list_shards(synthetic)[0][0]
    with open(path, "r+b") as f:
        f.seek(30)
        f.write(b"\xff" * 8)
    with pytest.raises(ValueError, match=os.path.basename(path)):
        refine_split.refine_split(saved_model, synthetic, os.path.join(data_dir, "refined"))
    assert "refined" not in schema.read_dataset_info(data_dir).splits
    assert not os.path.exists(os.path.join(data_dir, "refined"))


def test_refine_py_command(tmp_path, refiner_export):
    _, saved_model = refiner_export
    data_dir = str(tmp_path / "data")
    _write(data_dir, "synthetic", pattern_images(6, seed=2))
    command = [sys.executable, os.path.join(ROOT, "refine.py"), f"--saved_model={saved_model}",
               f"--input_dir={data_dir}/synthetic", f"--output_dir={data_dir}/refined",
               "--batch_size=4"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert schema.read_dataset_info(data_dir).splits["refined"].count == 6
    bad = subprocess.run(command[:3] + [f"--input_dir={data_dir}/missing",
                                        f"--output_dir={data_dir}/r2"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "no split 'missing'" in bad.stderr
