"""Refining folders of image files with an exported refiner (the library of refine_images.py).

Files go through the export's bytes signature (`export.BYTES_SIGNATURE_KEY`), the same
path a TF Serving client takes: encoded PNG/JPEG in, PNG out, pixels mapped with the
training data's convention. Every image must have the export's height and width; colour
images are converted to the trained channel count.
"""

from __future__ import annotations

import os

import tensorflow as tf

from simgan_tf.serving import export

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_images(folder: str) -> list[str]:
    """The PNG and JPEG files directly in `folder`, sorted by name.

    Raises:
      FileNotFoundError: if the folder does not exist or holds no such file.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Image folder does not exist: {folder}")
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith(IMAGE_SUFFIXES)
                   and os.path.isfile(os.path.join(folder, n)))
    if not names:
        raise FileNotFoundError(
            f"No {'/'.join(IMAGE_SUFFIXES)} files in {folder} (found: "
            f"{sorted(os.listdir(folder))[:5]}).")
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
      FileNotFoundError: no input folder or no images in it.
      ValueError: two inputs map to the same output name (`a.png`, `a.jpg`), or a file
        does not decode to the export's image size (the message names the file).
    """
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: {batch_size}")
    paths = list_images(input_dir)
    names = [output_name(p) for p in paths]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"Several files in {input_dir} would be written as {clashes}; "
                         "rename them.")
    refine = export.load_refiner(saved_model)
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for start in range(0, len(paths), batch_size):
        batch = paths[start:start + batch_size]
        encoded = [_read(p) for p in batch]
        try:
            refined = refine.encoded(encoded).numpy()
        except tf.errors.InvalidArgumentError:
            refined = [_refine_one(refine, p, e) for p, e in zip(batch, encoded)]
        for path, png in zip(batch, refined):
            target = os.path.join(output_dir, output_name(path))
            with open(target, "wb") as f:
                f.write(png)
            written.append(target)
    return written


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _refine_one(refine, path, encoded):
    """Refines one file; on failure raises ValueError naming it."""
    try:
        return refine.encoded([encoded]).numpy()[0]
    except tf.errors.InvalidArgumentError as e:
        message = e.message.strip().splitlines()
        detail = next((line for line in message if "assertion failed" in line
                       or "image file format" in line), message[-1])
        raise ValueError(f"{path}: cannot be refined: {detail.strip()}") from None
