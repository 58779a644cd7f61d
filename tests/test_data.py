import os

import numpy as np
import pytest
import tensorflow as tf

from simgan_tf.data import reader, schema
from conftest import pattern_images, write_split


@pytest.fixture
def folder(tmp_path):
    images = pattern_images(40, seed=3)
    gaze = np.stack([np.arange(40) / 100, -np.arange(40) / 100], 1).astype(np.float32)
    write_split(str(tmp_path), "synthetic", images, "synthetic", gaze=gaze, shard_bytes=10_000)
    write_split(str(tmp_path), "real", pattern_images(30, seed=4), "real", shard_bytes=10_000,
                compression="GZIP")
    return str(tmp_path), images, gaze


def test_read_split_decodes_scales_and_keeps_labels(folder):
    data_dir, images, gaze = folder
    examples = list(reader.read_split(data_dir, "synthetic").as_numpy_iterator())
    assert len(examples) == 40
    assert len(os.listdir(os.path.join(data_dir, "synthetic"))) > 1
    for i, e in enumerate(examples):
        assert e["key"] == f"synthetic/{i:05d}".encode()
        assert e["domain"] == b"synthetic"
        np.testing.assert_allclose(e["image"], images[i] / 127.5 - 1.0, atol=1e-6)
        np.testing.assert_allclose(e[schema.LABEL_GAZE], gaze[i])
        assert e["image"].dtype == np.float32 and e["image"].shape == (35, 55, 1)
    values = np.stack([e["image"] for e in examples])
    assert values.min() >= -1.0 and values.max() <= 1.0


def test_scale_and_to_uint_are_inverse():
    pixels8 = tf.constant([0, 1, 127, 128, 254, 255], tf.uint8)
    np.testing.assert_allclose(reader.scale_image(pixels8).numpy()[[0, -1]], [-1.0, 1.0])
    np.testing.assert_array_equal(reader.to_uint(reader.scale_image(pixels8)).numpy(), pixels8)
    pixels16 = tf.constant([0, 2001, 65535], tf.uint16)
    np.testing.assert_array_equal(
        reader.to_uint(reader.scale_image(pixels16, "uint16"), "uint16").numpy(), pixels16)
    np.testing.assert_array_equal(reader.to_uint(tf.constant([-3.0, 3.0])).numpy(), [0, 255])


def test_training_dataset_batches_both_domains_deterministically(folder):
    data_dir, _, _ = folder

    def first_batches(seed):
        ds = reader.training_dataset(data_dir, synthetic_split="synthetic", real_split="real",
                                   batch_size=8, image_shape=(35, 55, 1), seed=seed,
                                   shuffle_buffer=64, deterministic=True)
        return [b for b, _ in zip(ds.as_numpy_iterator(), range(12))]

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    assert a[0]["synthetic"].shape == (8, 35, 55, 1) and a[0]["real"].shape == (8, 35, 55, 1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["synthetic"], y["synthetic"])
        np.testing.assert_array_equal(x["real"], y["real"])
    assert any(not np.array_equal(x["synthetic"], z["synthetic"]) for x, z in zip(a, c))
    # 12 batches of 8 from 40 images: the dataset repeats, every image is seen.
    seen = np.concatenate([x["synthetic"] for x in a]).reshape(96, -1)
    assert len(np.unique(seen, axis=0)) == 40


def test_training_dataset_under_mirrored_strategy_splits_the_global_batch(folder,
                                                                         mirrored_strategy):
    data_dir, _, _ = folder
    strategy = mirrored_strategy
    ds = reader.training_dataset(data_dir, synthetic_split="synthetic", real_split="real",
                               batch_size=8, image_shape=(35, 55, 1), seed=0, shuffle_buffer=8)
    batch = next(iter(strategy.experimental_distribute_dataset(ds)))
    local = strategy.experimental_local_results(batch["synthetic"])
    assert [t.shape[0] for t in local] == [4, 4]


def test_errors_name_what_is_wrong(folder, tmp_path):
    data_dir, _, _ = folder
    with pytest.raises(ValueError, match="no split 'real_test'"):
        reader.read_split(data_dir, "real_test")
    with pytest.raises(ValueError, match=r"shape \(35, 55, 1\).*\(224, 224, 1\)"):
        reader.training_dataset(data_dir, synthetic_split="synthetic", real_split="real",
                              batch_size=2, image_shape=(224, 224, 1), seed=0)
    empty = tmp_path / "empty_split"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="No \\*.tfrecord"):
        reader.list_shards(str(empty))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reader.read_split(str(tmp_path / "nowhere"), "synthetic")


def test_image_of_wrong_size_fails_naming_the_record(tmp_path):
    write_split(str(tmp_path), "synthetic", pattern_images(3, seed=0), "synthetic")
    # A record whose PNG is 20x30 in a folder that says 35x55.
    bad = schema.encode_example(np.zeros((20, 30, 1), np.uint8), key="bad-record",
                                domain="synthetic")
    shard = os.path.join(str(tmp_path), "synthetic", "synthetic-00001.tfrecord")
    with tf.io.TFRecordWriter(shard) as w:
        w.write(bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad-record"):
        list(reader.read_split(str(tmp_path), "synthetic").as_numpy_iterator())


def test_pixel_range_scales_depth_and_clips(tmp_path):
    depth = np.array([[0, 1000, 2000, 3000]], np.uint16).reshape(1, 4, 1)
    images = np.repeat(depth[None], 2, 0)
    from simgan_tf.data.writer import SplitWriter

    with SplitWriter(str(tmp_path), "real", domain="real", image_shape=(1, 4, 1),
                     image_dtype="uint16", pixel_range=[0, 2000]) as writer:
        for i, image in enumerate(images):
            writer.write(schema.encode_example(image, key=f"d{i}", domain="real"))
    example = next(reader.read_split(str(tmp_path), "real").as_numpy_iterator())
    np.testing.assert_allclose(example["image"][0, :, 0], [-1.0, 0.0, 1.0, 1.0])
    back = reader.to_uint(tf.constant(example["image"]), "uint16", [0, 2000]).numpy()
    np.testing.assert_array_equal(back[0, :, 0], [0, 1000, 2000, 2000])
    # A folder keeps one pixel range: a split with another one is refused.
    with pytest.raises(ValueError, match=r"pixel_range \[0.0, 2000.0\]"):
        with SplitWriter(str(tmp_path), "synthetic", domain="synthetic",
                         image_shape=(1, 4, 1), image_dtype="uint16"):
            pass
    with pytest.raises(ValueError, match=r"overlaps the uint8 values. Received: \[300, 100\]"):
        SplitWriter(str(tmp_path), "x", domain="real", image_shape=(1, 4, 1),
                    pixel_range=[300, 100])
    # lo below the dtype's minimum: depth 0 (background) maps inside (-1, 1).
    depth = tf.constant([0, 500, 2000], tf.uint16)
    np.testing.assert_allclose(reader.scale_image(depth, "uint16", [-1000, 2000]).numpy(),
                               [-1 / 3, 0.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(
        reader.to_uint(reader.scale_image(depth, "uint16", [-1000, 2000]), "uint16",
                     [-1000, 2000]).numpy(), [0, 500, 2000])


def test_training_dataset_shards_by_file_for_multiple_workers(folder):
    data_dir, images, _ = folder
    # No record shuffling, so the first pass over a worker's shards covers all of them.
    kwargs = dict(synthetic_split="synthetic", real_split="real", batch_size=4,
                  image_shape=(35, 55, 1), seed=0, shuffle_buffer=1, deterministic=True)
    ds = reader.training_dataset(data_dir, **kwargs)
    policy = ds.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.FILE
    # Per input pipeline (worker): each reads its own shards, together all of them.
    seen = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker)
        batches = reader.training_dataset(data_dir, input_context=context, **kwargs)
        mine = np.concatenate([b["synthetic"] for b, _ in zip(batches.as_numpy_iterator(),
                                                               range(20))])
        seen.append({x.tobytes() for x in mine})
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 40


def test_load_arrays_returns_the_head_of_a_split_in_file_order(folder):
    data_dir, images, gaze = folder
    arrays = reader.load_arrays(data_dir, "synthetic", ("image", schema.LABEL_GAZE), count=25)
    assert arrays["image"].shape == (25, 35, 55, 1) and arrays["image"].dtype == np.float32
    np.testing.assert_allclose(arrays["image"], images[:25] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_allclose(arrays[schema.LABEL_GAZE], gaze[:25])
    whole = reader.load_arrays(data_dir, "real")
    assert list(whole) == ["image"] and whole["image"].shape == (30, 35, 55, 1)


def test_load_arrays_says_what_is_missing(folder):
    data_dir, _, _ = folder
    with pytest.raises(ValueError, match=r"'real' .* has no \['label/gaze'\]"):
        reader.load_arrays(data_dir, "real", ("image", schema.LABEL_GAZE))
    with pytest.raises(ValueError, match="has 30 records; 31 are needed"):
        reader.load_arrays(data_dir, "real", count=31)
    assert reader.load_arrays(data_dir, "real", count=31,
                            require_count=False)["image"].shape[0] == 30
