"""Tests of refining folders of image files: the library and refine_images.py."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from simgan_tf.serving import export, image_files

from conftest import pattern_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_image(path, image, fmt):
    Image.fromarray(image[..., 0]).save(path, format=fmt)


def read_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def test_refine_images_py_refines_a_folder(refiner_export, tmp_path):
    _, saved_model = refiner_export
    images = pattern_images(5, seed=4)
    input_dir = tmp_path / "in"
    input_dir.mkdir()
    names = ["a.png", "b.PNG", "c.jpg", "d.jpeg", "e.png"]
    for name, image in zip(names, images):
        write_image(input_dir / name, image, "JPEG" if "jp" in name else "PNG")
    (input_dir / "notes.txt").write_text("not an image")
    output_dir = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "refine_images.py"), f"--saved_model={saved_model}",
         f"--input_dir={input_dir}", f"--output_dir={output_dir}", "--batch_size=2"],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Refined 5 images" in result.stdout
    assert sorted(os.listdir(output_dir)) == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    # Each output is what the export's bytes signature makes of that file.
    refine = export.load_refiner(saved_model)
    for name, out in zip(names, ["a.png", "b.png", "c.png", "d.png", "e.png"]):
        expected = refine.encoded([(input_dir / name).read_bytes()]).numpy()[0]
        np.testing.assert_array_equal(read_png(output_dir / out),
                                      np.asarray(Image.open(io.BytesIO(expected))))
        assert read_png(output_dir / out).shape == (35, 55)


def test_errors_name_the_folder_or_file(refiner_export, tmp_path):
    _, saved_model = refiner_export
    with pytest.raises(FileNotFoundError, match="does not exist: .*missing"):
        image_files.refine_folder(saved_model, str(tmp_path / "missing"), str(tmp_path / "o"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("")
    with pytest.raises(FileNotFoundError, match=r"No \.png/\.jpg/\.jpeg files in .*empty"):
        image_files.refine_folder(saved_model, str(empty), str(tmp_path / "o"))
    clash = tmp_path / "clash"
    clash.mkdir()
    image = pattern_images(1, seed=0)[0]
    write_image(clash / "a.png", image, "PNG")
    write_image(clash / "a.jpg", image, "JPEG")
    with pytest.raises(ValueError, match=r"would be written as \['a.png'\]"):
        image_files.refine_folder(saved_model, str(clash), str(tmp_path / "o"))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    write_image(wrong / "good.png", image, "PNG")
    write_image(wrong / "small.png", np.zeros((20, 30, 1), np.uint8), "PNG")
    with pytest.raises(ValueError, match=r"small\.png: cannot be refined: .*\[20 30 1\]"):
        image_files.refine_folder(saved_model, str(wrong), str(tmp_path / "o"))
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "refine_images.py"), f"--saved_model={saved_model}",
         f"--input_dir={empty}", f"--output_dir={tmp_path / 'o'}"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "No .png/.jpg/.jpeg files in" in result.stderr
