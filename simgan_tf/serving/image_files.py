"""Refining folders of image files with an exported refiner (the library of refine_images.py).

Files are refined by `refiner_client.RefinerClient`, as `refine_split` refines records:
PNG, JPEG (or BMP, GIF) in, PNG out, pixels mapped with the export's convention (that of
its training data, from the model card). Every image must have the export's height and
width; colour images are converted to the trained channel count. Folders may be local,
`gs://` or `ram://` (`tf.io.gfile`).
"""

from __future__ import annotations

import os

import tensorflow as tf

from simgan_tf.data import schema
from simgan_tf.serving.refiner_client import RefinerClient

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_images(folder: str) -> list[str]:
    """The PNG and JPEG files directly in `folder`, sorted by name.

    Raises:
      FileNotFoundError: if the folder does not exist or holds no such file.
    """
    if not tf.io.gfile.isdir(folder):
        raise FileNotFoundError(f"Image folder does not exist: {folder}")
    found = sorted(tf.io.gfile.listdir(folder))
    names = [n for n in found if n.lower().endswith(IMAGE_SUFFIXES)
             and not tf.io.gfile.isdir(os.path.join(folder, n))]
    if not names:
        raise FileNotFoundError(
            f"No {'/'.join(IMAGE_SUFFIXES)} files in {folder} (found: {found[:5]}).")
    return [os.path.join(folder, n) for n in names]


def output_name(path: str) -> str:
    """The refined file's name: the input's name with the suffix `.png`."""
    return os.path.splitext(os.path.basename(path))[0] + ".png"


def refine_folder(saved_model: str, input_dir: str, output_dir: str, *,
                  batch_size: int = 32) -> list[str]:
    """Refines every PNG/JPEG file of `input_dir` into a PNG of the same stem in `output_dir`.

    Args:
      saved_model: an exported refiner (`<model_dir>/export/refiner/<step>`).
      input_dir: folder of image files of the export's image size.
      output_dir: created if missing; existing files of the same names are replaced.
      batch_size: images per call of the refiner.

    Returns:
      The written paths, in input order.

    Raises:
      FileNotFoundError: no input folder, no images in it, or no export there.
      ValueError: `batch_size` < 1, two inputs map to the same output name (`a.png`,
        `a.jpg`), or a file does not decode to the export's image size (the message
        names the file).
    """
    paths = list_images(input_dir)
    names = [output_name(p) for p in paths]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"Several files in {input_dir} would be written as {clashes}; "
                         "rename them.")
    client = RefinerClient(saved_model, batch_size=batch_size, any_format=True)
    tf.io.gfile.makedirs(output_dir)
    written = []
    files = ((path, _read(path), path) for path in paths)
    for path, pixels in client.refine_all(files):
        target = os.path.join(output_dir, output_name(path))
        with tf.io.gfile.GFile(target, "wb") as f:
            f.write(schema.encode_png(pixels))
        written.append(target)
    return written


def _read(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()
