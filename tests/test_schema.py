import json
import os

import numpy as np
import pytest
import tensorflow as tf

from simgan_tf.data import schema


def _parse(serialized, label_fields):
    return tf.io.parse_single_example(serialized, schema.feature_spec(label_fields))


def test_encode_example_round_trips_every_field():
    image = np.arange(35 * 55, dtype=np.uint16).reshape(35, 55, 1).astype(np.uint8)
    serialized = schema.encode_example(
        image, key="p01/day02/0003.jpg/left", domain="real",
        labels={schema.LABEL_GAZE: [0.25, -0.5], schema.LABEL_JOINTS_UVD: np.ones((14, 3))})
    features = _parse(serialized, {schema.LABEL_GAZE: 2, schema.LABEL_JOINTS_UVD: 42})
    decoded = tf.io.decode_png(features[schema.IMAGE_ENCODED], channels=1).numpy()
    np.testing.assert_array_equal(decoded, image)
    assert features[schema.IMAGE_HEIGHT].numpy() == 35
    assert features[schema.IMAGE_WIDTH].numpy() == 55
    assert features[schema.IMAGE_CHANNELS].numpy() == 1
    assert features[schema.SAMPLE_KEY].numpy() == b"p01/day02/0003.jpg/left"
    assert features[schema.SAMPLE_DOMAIN].numpy() == b"real"
    np.testing.assert_allclose(features[schema.LABEL_GAZE].numpy(), [0.25, -0.5])
    np.testing.assert_allclose(features[schema.LABEL_JOINTS_UVD].numpy(), np.ones(42))


def test_sixteen_bit_png_keeps_values():
    depth = np.array([[0, 1, 2001], [65535, 731, 300]], np.uint16)[..., None]
    encoded = schema.encode_png(depth)
    decoded = tf.io.decode_png(encoded, channels=1, dtype=tf.uint16).numpy()
    np.testing.assert_array_equal(decoded, depth)
    np.testing.assert_array_equal(schema.decode_png_numpy(encoded, "uint16"), depth)


@pytest.mark.parametrize("kwargs, message", [
    (dict(domain="fake"), "domain='fake'"),
    (dict(labels={"gaze": [0.0, 0.0]}), "start with 'label/'"),
    (dict(labels={schema.LABEL_GAZE: [0.0]}), "1 values"),
    (dict(labels={schema.LABEL_GAZE: [np.nan, 0.0]}), "must be finite"),
    (dict(labels={schema.LABEL_JOINTS_UVD: [1.0, 2.0]}), "J x 3"),
])
def test_encode_example_rejects_bad_input_naming_the_key(kwargs, message):
    args = dict(key="sample-7", domain="synthetic")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message) as info:
        schema.encode_example(np.zeros((4, 4, 1), np.uint8), **args)
    assert "sample-7" in str(info.value)


@pytest.mark.parametrize("image", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 2), np.uint8),
                                   np.zeros((4, 4, 1), np.float32),
                                   np.zeros((4, 4, 3), np.uint16)])
def test_encode_png_rejects_bad_shapes_and_dtypes(image):
    with pytest.raises(ValueError, match="Received"):
        schema.encode_png(image)


def test_dataset_info_update_merges_splits_and_rejects_other_shapes(tmp_path):
    split = schema.SplitInfo(count=3, domain="synthetic", shards=[], label_fields={})
    schema.update_dataset_info(str(tmp_path), "synthetic", split, image_shape=(35, 55, 1),
                               image_dtype="uint8")
    real = schema.SplitInfo(count=5, domain="real", shards=[], label_fields={})
    info = schema.update_dataset_info(str(tmp_path), "real", real, image_shape=(35, 55, 1),
                                      image_dtype="uint8")
    assert sorted(info.splits) == ["real", "synthetic"]
    reread = schema.read_dataset_info(str(tmp_path))
    assert reread.splits["real"].count == 5 and reread.splits["synthetic"].count == 3
    assert reread.schema_version == schema.SCHEMA_VERSION
    with pytest.raises(ValueError, match=r"shape \(35, 55, 1\)"):
        schema.update_dataset_info(str(tmp_path), "hand", real, image_shape=(224, 224, 1),
                                   image_dtype="uint16")
    assert schema.read_dataset_info(str(tmp_path)).splits.keys() == {"real", "synthetic"}


def test_read_dataset_info_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        schema.read_dataset_info(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        schema.read_dataset_info(str(tmp_path))
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        schema.read_dataset_info(str(tmp_path))
    (tmp_path / "dataset.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(ValueError, match="malformed"):
        schema.read_dataset_info(str(tmp_path))
    assert os.path.basename(schema.dataset_info_path(str(tmp_path))) == "dataset.json"


def test_encoded_bytes_do_not_depend_on_the_process_hash_seed():
    import subprocess
    import sys

    code = ("import numpy as np, sys; from simgan_tf.data import schema; "
            "sys.stdout.write(schema.encode_example(np.zeros((3, 4, 1), np.uint8), key='k', "
            "domain='real', labels={'label/gaze': [1, 2], 'label/head_pose': [3, 4]}).hex())")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=root, env={**os.environ, "PYTHONHASHSEED": seed},
                              check=True).stdout for seed in ("1", "2", "3")}
    assert len(outputs) == 1


def _png_cases():
    gray = schema.encode_png(np.zeros((35, 55, 1), np.uint8))
    depth = schema.encode_png(np.zeros((16, 24, 1), np.uint16))
    rgb = schema.encode_png(np.zeros((7, 9, 3), np.uint8))
    not_ihdr = gray[:12] + b"IDAT" + gray[16:]
    return [(gray, (35, 55, 8, 0)), (depth, (16, 24, 16, 0)), (rgb, (7, 9, 8, 2)),
            (gray[:32], None), (b"", None), (b"\xff\xd8\xff" + gray[3:], None),
            (not_ihdr, None)]


@pytest.mark.parametrize("encoded, header", _png_cases())
def test_png_header_in_python_and_in_graph_agree(encoded, header):
    assert schema.png_header(encoded) == header
    got, is_png = schema.png_header_tensor(tf.constant(encoded))
    assert bool(is_png) == (header is not None)
    if header is not None:
        assert tuple(got.numpy()) == header


def test_png_header_problem_says_what_was_found_and_expected():
    info = schema.DatasetInfo(35, 55, 1)
    assert info.png_header == (35, 55, 8, 0)
    assert schema.png_header_problem(schema.encode_png(np.zeros((35, 55, 1), np.uint8)),
                                     info) is None
    assert schema.png_header_problem(b"GIF89a", info) == "image/encoded is not a PNG"
    assert schema.png_header_problem(schema.encode_png(np.zeros((35, 55, 3), np.uint8)),
                                     info) == (
        "PNG of 35x55, bit depth 8, color type 2 (3 channels); dataset.json says 35x55, "
        "1 channel(s), uint8")
    assert schema.DatasetInfo(16, 16, 1, "uint16").png_header == (16, 16, 16, 0)


def test_get_split_names_the_folder():
    info = schema.DatasetInfo(35, 55, 1, splits={
        "real": schema.SplitInfo(count=0, domain="real", shards=[], label_fields={})})
    with pytest.raises(ValueError, match=r"/d/dataset.json has no split 'synthetic'\. "
                                         r"Available: \['real'\]"):
        info.get_split("synthetic", "/d")
    with pytest.raises(ValueError, match=r"Split 'real' of /d is empty"):
        info.get_split("real", "/d")
    assert info.get_split("real", "/d", allow_empty=True).domain == "real"
