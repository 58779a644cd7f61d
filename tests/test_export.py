"""Tests of the refiner export: signatures, fixed shapes, bytes round trip, model card."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from simgan_tf import config as config_lib
from simgan_tf.data import reader, schema
from simgan_tf.serving import export
from simgan_tf.modeling.refiner import build_refiner

from conftest import SHAPE, pattern_images

BIN = os.path.dirname(sys.executable)


def encode(image, fmt):
    """PIL-encoded PNG or JPEG bytes of a uint8 `[H, W, 1 or 3]` or uint16 `[H, W, 1]` image."""
    array = image[..., 0] if image.shape[-1] == 1 else image
    if image.dtype == np.uint16:
        array = array.astype("<u2")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def decode_png(data_bytes, dtype="uint8"):
    with Image.open(io.BytesIO(data_bytes)) as image:
        assert image.format == "PNG"
        array = np.asarray(image).astype(dtype)
    return array[..., None] if array.ndim == 2 else array


def test_saved_model_cli_lists_both_signatures(refiner_export):
    _, path = refiner_export
    result = subprocess.run([os.path.join(BIN, "saved_model_cli"), "show", "--all", "--dir", path],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    default = out[out.index("signature_def['serving_default']"):]
    assert "inputs['images']" in default and "DT_FLOAT" in default
    assert "shape: (-1, 35, 55, 1)" in default and "outputs['refined']" in default
    encoded = out[out.index("signature_def['serving_bytes']"):]
    encoded = encoded[:encoded.index("Method name")]
    assert "inputs['images_bytes']" in encoded and "outputs['refined_bytes']" in encoded
    assert encoded.count("DT_STRING") == 2 and "shape: (-1)" in encoded


def test_loads_in_a_fresh_process_without_the_project(refiner_export, tmp_path):
    refiner, path = refiner_export
    images = np.random.default_rng(0).uniform(-1, 1, (3, *SHAPE)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    png = encode(pattern_images(1, seed=3)[0], "PNG")
    (tmp_path / "image.png").write_bytes(png)
    # simgan_tf is made unimportable: loading must need TensorFlow only.
    code = f"""
import sys
sys.modules["simgan_tf"] = None
import numpy as np, tensorflow as tf
loaded = tf.saved_model.load({path!r})
refined = loaded.signatures["serving_default"](images=tf.constant(np.load("images.npy")))
np.save("refined.npy", refined["refined"].numpy())
png = open("image.png", "rb").read()
out = loaded.signatures["serving_bytes"](images_bytes=tf.constant([png]))["refined_bytes"]
open("refined.png", "wb").write(out.numpy()[0])
print(open(loaded.model_card.asset_path.numpy().decode()).read())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = refiner(images).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "refined.npy"), expected, atol=1e-5)
    card = json.loads(result.stdout[result.stdout.index("{"):])
    assert card["training_steps"] == 5 and card["image_shape"] == [35, 55, 1]
    # The PNG refined in the fresh process is the one refined here.
    here = export.load_refiner(path).encoded([png]).numpy()[0]
    np.testing.assert_array_equal(decode_png((tmp_path / "refined.png").read_bytes()),
                                  decode_png(here))


@pytest.mark.parametrize("fmt,channels", [("PNG", 1), ("JPEG", 1), ("PNG", 3), ("JPEG", 3)])
def test_bytes_signature_round_trip(refiner_export, fmt, channels):
    refiner, path = refiner_export
    refine = export.load_refiner(path)
    gray = pattern_images(4, seed=1)
    images = gray if channels == 1 else np.concatenate(
        [gray, gray // 2, 255 - gray], -1).astype(np.uint8)
    encoded = [encode(image, fmt) for image in images]
    out = refine.encoded(encoded).numpy()
    assert out.shape == (4,)
    # What the signature should do: decode as TensorFlow does (JPEG is lossy, colour
    # becomes gray), scale to [-1, 1], refine, map back to 8 bits.
    decoded = np.stack([tf.io.decode_image(e, channels=1).numpy() for e in encoded])
    if fmt == "PNG" and channels == 1:
        np.testing.assert_array_equal(decoded, images)
    expected = reader.to_uint(refiner(reader.scale_image(decoded)), "uint8").numpy()
    got = np.stack([decode_png(o) for o in out])
    assert got.shape == (4, *SHAPE) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected).max() <= 1  # float rounding at .5
    assert np.mean(got == expected) > 0.99
    # Not the identity: the refiner changed the pixels.
    assert np.abs(got.astype(int) - decoded).mean() > 1


def test_bytes_signature_uses_the_datas_pixel_range(tmp_path):
    """16-bit depth in mm with pixel_range [-1000, 2000]: 0 -> -1/3 -> 0 mm again."""
    shape = (16, 16, 1)
    refiner = build_refiner(shape, config_lib.RefinerConfig(filters=4, num_blocks=0))
    info = schema.DatasetInfo(16, 16, 1, image_dtype="uint16", pixel_range=[-1000, 2000])
    path = export.export_refiner(refiner, str(tmp_path), 1, shape, data_info=info)
    depth = np.random.default_rng(0).integers(0, 2500, (2, *shape)).astype(np.uint16)
    depth[:, :4] = 0  # background
    out = export.load_refiner(path).encoded([encode(d, "PNG") for d in depth]).numpy()
    got = np.stack([decode_png(o, "uint16") for o in out])
    scaled = reader.scale_image(depth, "uint16", [-1000, 2000])
    np.testing.assert_allclose(scaled.numpy()[:, :4], -1 / 3, atol=1e-6)
    expected = reader.to_uint(refiner(scaled), "uint16", [-1000, 2000]).numpy()
    assert np.abs(got.astype(int) - expected).max() <= 1
    card = export.read_model_card(path)
    assert card["pixels"]["image_dtype"] == "uint16"
    assert card["pixels"]["pixel_range"] == [-1000.0, 2000.0]


def test_wrong_shapes_fail_with_a_clear_error(refiner_export):
    _, path = refiner_export
    refine = export.load_refiner(path)
    for shape in [(2, 10, 12, 1), (2, 35, 55, 3)]:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"expected shape \[batch, 35, 55, 1\]\. Received shape:\] "
                                 + r"\[" + " ".join(map(str, shape)) + r"\]"):
            refine(np.zeros(shape, np.float32))
    # Rank 3 (a single image without batch axis) is refused too, not passed to the
    # convolution (which would abort the process).
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Received shape:\] \[35 55 1\]"):
        refine(np.zeros(SHAPE, np.float32))
    good = encode(pattern_images(1, seed=0)[0], "PNG")
    small = encode(np.zeros((10, 12, 1), np.uint8), "JPEG")
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image\] \[1\] \[of the batch\] \[decodes to shape\] \[10 12 1\] "
                             r"\[but expected \[35, 55, 1\]\.\]"):
        refine.encoded([good, small])
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        refine.encoded([b"not an image"])


def test_empty_batches(refiner_export):
    refine = export.load_refiner(refiner_export[1])
    assert refine(np.zeros((0, *SHAPE), np.float32)).shape == (0, *SHAPE)
    assert refine.encoded(tf.zeros([0], tf.string)).shape == (0,)


def test_model_card(refiner_export, tmp_path):
    refiner, _ = refiner_export
    config = config_lib.get_preset("gaze_demo")
    info = schema.DatasetInfo(35, 55, 1, splits={"synthetic": schema.SplitInfo(
        count=10, domain="synthetic", shards=[], label_fields={schema.LABEL_GAZE: 2},
        source={"generator": "test"})})
    path = export.export_refiner(refiner, str(tmp_path), 12, SHAPE, data_info=info,
                                 data_dir="/data/eyes", config=config.to_json())
    assert sorted(os.listdir(os.path.join(path, "assets"))) == ["model_card.json",
                                                                 "model_card.md"]
    card = export.read_model_card(path)
    assert card["training_steps"] == 12 and card["image_shape"] == [35, 55, 1]
    assert config_lib.SimGANConfig.from_json(card["config"]) == config
    assert card["data"] == {"data_dir": "/data/eyes", "splits": {"synthetic": {
        "count": 10, "domain": "synthetic", "label_fields": {"label/gaze": 2},
        "source": {"generator": "test"}}}}
    assert card["pixels"]["pixel_range"] == [0, 255] and card["evaluation"] is None
    import simgan_tf
    assert card["software"]["simgan_tf"] == simgan_tf.__version__
    assert set(card["signatures"]) == {"serving_default", "serving_bytes"}
    markdown = open(os.path.join(path, "assets", "model_card.md")).read()
    assert "Training steps: 12" in markdown and "Not evaluated." in markdown
    # Evaluation figures, given later.
    figures = {"gaze_error_degrees": {"synthetic": 11.2, "refined": 7.8}}
    export.update_model_card(path, evaluation=figures)
    assert export.read_model_card(path)["evaluation"] == figures
    markdown = open(os.path.join(path, "assets", "model_card.md")).read()
    assert '"refined": 7.8' in markdown and "Not evaluated." not in markdown
    # ... or at export time.
    again = export.export_refiner(refiner, str(tmp_path), 12, SHAPE, evaluation=figures)
    assert export.read_model_card(again)["evaluation"] == figures
    with pytest.raises(FileNotFoundError, match="model_card.json not found"):
        export.read_model_card(str(tmp_path))
    with pytest.raises(TypeError):
        export.export_refiner(refiner, str(tmp_path), 13, SHAPE, evaluation={"x": object()})


def test_exports_without_the_bytes_signature_still_load(refiner_export, tmp_path):
    """An export of an older simgan-tf (serving_default only) loads; `encoded` says why not."""
    refiner, _ = refiner_export
    module = tf.Module()
    module.refiner = refiner
    module.serve = tf.function(lambda images: {"refined": refiner(images)},
                               input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32)])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    refine = export.load_refiner(str(tmp_path))
    images = np.zeros((1, *SHAPE), np.float32)
    np.testing.assert_allclose(refine(images).numpy(), refiner(images).numpy(), atol=1e-6)
    assert tuple(refine.input_spec.shape) == (None, *SHAPE)
    with pytest.raises(ValueError, match="has no 'serving_bytes' signature"):
        refine.encoded([b""])


def test_export_and_refinement_in_a_ram_filesystem_folder(refiner_export):
    """Exports, model cards, refined splits and files go through tf.io.gfile (`ram://`)."""
    from conftest import write_split
    from simgan_tf.serving import image_files, refine_split

    refiner, _ = refiner_export
    root = "ram://test_export"
    path = export.export_refiner(refiner, f"{root}/export", 3, SHAPE)
    path = export.export_refiner(refiner, f"{root}/export", 3, SHAPE)  # replaces it
    assert path == f"{root}/export/3"
    assert [n.rstrip("/") for n in tf.io.gfile.listdir(f"{root}/export")] == ["3"]
    assert export.read_model_card(path)["training_steps"] == 3
    export.update_model_card(path, evaluation={"error": 1.5})
    assert export.read_model_card(path)["evaluation"] == {"error": 1.5}
    images = pattern_images(6, seed=9)
    scaled = images.astype(np.float32) / 127.5 - 1
    expected = reader.to_uint(refiner(scaled), "uint8").numpy()
    np.testing.assert_array_equal(export.load_refiner(path)(scaled).numpy(),
                                  refiner(scaled).numpy())

    write_split(f"{root}/data", "synthetic", images, "synthetic")
    info = refine_split.refine_split(path, f"{root}/data/synthetic", f"{root}/data/refined",
                                     batch_size=4)
    assert info.count == 6 and info.source["saved_model"] == path
    refined = reader.load_arrays(f"{root}/data", "refined")["image"]
    np.testing.assert_array_equal(reader.to_uint(refined, "uint8").numpy(), expected)

    tf.io.gfile.makedirs(f"{root}/files")
    for i, image in enumerate(images):
        with tf.io.gfile.GFile(f"{root}/files/{i}.png", "wb") as f:
            f.write(encode(image, "PNG"))
    written = image_files.refine_folder(path, f"{root}/files", f"{root}/refined_files",
                                        batch_size=4)
    assert written == [f"{root}/refined_files/{i}.png" for i in range(6)]
    for name, want in zip(written, expected):
        with tf.io.gfile.GFile(name, "rb") as f:
            np.testing.assert_array_equal(decode_png(f.read()), want)
    tf.io.gfile.rmtree(root)
