"""What the realism classifier keys on: hand-made transforms of synthetic eyes, scored.

Applies fixed transforms to the first `--images` synthetic eyes of the built-in
simulator (no learning): a Gaussian blur, moments matched to the real eyes (each image's
contrast scaled and the mean shifted so that the set's mean and mean contrast are the
real set's), and additive Gaussian noise, quantized to 8 bits as `refine.py` writes them,
and reports for each the realism score `evaluate.py` reports (a fresh classifier's
held-out accuracy against as many `real_test` eyes) with the set's pixel statistics.
A transform that lowers the score removes a cue the classifier uses; one a deterministic
refiner cannot make (fresh random noise) bounds what a refiner can reach.

With `--data_dir` and `--split` it transforms that split of a data folder instead (for
example the `refined` split a Table 2 run wrote) and scores it against the folder's
`real_test`: how far a trained refiner's eyes are from the classifier's sweet spot.
`--crop=N` scores both sets without their outer N pixels on every side: a score that
drops shows that the classifier reads the images' edges (a refiner's zero padding).
`--spectrum` (edges in cycles per pixel) adds each set's mean power in those radial
frequency bands (`losses.radial_bands`, `losses.band_power`): the real set's power, and
each other set's as a ratio to it (grain too weak: below 1 at high frequencies; too much
contrast at coarse scales: above 1 at low ones).

Usage:
  python -m experiments.realism_cues [--transforms=blur0.8,blur0.8+noise0.03,...]
  python -m experiments.realism_cues --data_dir=runs/table2/data-1 --split=refined \
      --transforms=none,noise0.01,noise0.02 [--crop=2] [--spectrum=0.02,0.05,0.15,0.3,0.71]

Each transform is `+`-separated steps: `blurS` (Gaussian blur, sigma S pixels), `match`
(mean and contrast matched to real), `noiseS` (Gaussian noise of sigma S in [-1, 1]
units), `textureS@C` (multiplicative texture: the image in [0, 1] intensity times
`1 + S * n`, where `n` is white noise smoothed by a Gaussian of sigma C pixels and
rescaled to unit standard deviation, so its grain is about C pixels across),
`spectrum` (each frequency of each image scaled by one gain per band of `--spectrum`, the
square root of the real set's mean power over the set's in that band, so the set's power
in every band becomes the real set's; frequencies outside the bands and each image's
mean are kept: a fixed filter, the same for every image), `meanimage` (the difference
between the set's mean image and the real set's subtracted from every image, so the two
sets' mean images match: a fixed offset per pixel); `none` is the images as they are.
The `spectrum` and `meanimage` steps are fitted on the whole sets, both halves.
`--repeats=N` scores each set with N classifiers of seeds 0 to N-1 and reports their
mean (`realism.RealismConfig.repeats`, as `evaluate.py --realism_repeats`).
"""

from __future__ import annotations

from absl import app, flags
import numpy as np
from scipy import ndimage

from simgan_tf.evaluation import realism
from experiments import common

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags: defined only when it runs, so importing this module (as the
    tests do) leaves the global flag registry to other commands."""
    flags.DEFINE_list("transforms", ["none", "blur0.8", "noise0.03", "blur0.8+noise0.03",
                                     "blur0.8+match", "blur0.8+match+noise0.03"],
                      "Transforms of the synthetic eyes to score.")
    flags.DEFINE_integer("images", 4000, "Images of each set (half train the classifier).")
    flags.DEFINE_integer("seed", 0, "Seed of the noise.")
    flags.DEFINE_string("data_dir", None, "A data folder whose --split to transform, scored "
                        "against its real_test (default: the built-in simulator's data).")
    flags.DEFINE_string("split", "synthetic", "The split of --data_dir to transform.")
    flags.DEFINE_integer("crop", 0, "Pixels cut from every side of both sets before they "
                         "are scored.")
    flags.DEFINE_list("spectrum", ["0.02", "0.05", "0.15", "0.3", "0.71"],
                      "Edges of the radial frequency bands (cycles per pixel) whose power "
                      "is reported; empty for none.")
    flags.DEFINE_integer("repeats", 1, "Realism classifiers per set (seeds 0 to N-1); "
                         "the table shows their mean accuracy and cross-entropy.")
    flags.DEFINE_string("cache_dir", None, "Simulator data cache (default: "
                        "$SIMGAN_TF_CACHE or ~/.cache/simgan_tf).")


def statistics(images: np.ndarray) -> dict:
    """Mean, mean per-image standard deviation (contrast) and mean absolute difference
    of horizontally neighbouring pixels (noise), in [-1, 1] units."""
    return {"mean": float(images.mean()), "contrast": float(images.std(axis=(1, 2, 3)).mean()),
            "noise": float(np.abs(np.diff(images, axis=2)).mean())}


def crop(images: np.ndarray, pixels: int) -> np.ndarray:
    """`[n, H, W, C]` images without their outer `pixels` on every side."""
    if pixels < 0 or 2 * pixels >= min(images.shape[1:3]):
        raise app.UsageError(f"--crop={pixels} must be >= 0 and leave pixels of a "
                             f"{images.shape[1]}x{images.shape[2]} image.")
    return images[:, pixels:images.shape[1] - pixels, pixels:images.shape[2] - pixels]


def spectrum(images: np.ndarray, edges) -> np.ndarray:
    """Mean power of `[n, H, W, C]` images in the radial bands between `edges`, `[K]`:
    `losses.band_power` averaged over images and channels."""
    from simgan_tf.modeling import losses

    try:
        bands = losses.radial_bands(images.shape[1], images.shape[2], edges)
    except ValueError as e:
        raise app.UsageError(f"--spectrum: {e}") from e
    power = [losses.band_power(images[i:i + 512], bands).numpy()
             for i in range(0, len(images), 512)]
    return np.concatenate(power).mean(axis=(0, 1))


def match_spectrum(images: np.ndarray, real: np.ndarray, edges) -> np.ndarray:
    """`images` filtered so that their mean power in each band between `edges` is the
    real images' (`spectrum`): in each band every DFT coefficient of every image (its mean
    removed) is scaled by sqrt(real power / power); frequencies outside the bands and the
    images' means are kept. Not quantized."""
    from simgan_tf.modeling import losses

    if not edges:
        raise app.UsageError("The spectrum step needs the bands of --spectrum (band edges "
                             "in cycles per pixel).")
    power = spectrum(images, edges)  # first: names bad edges as a --spectrum error
    if not np.all(power > 0):
        empty = [f"{lo:g}-{hi:g}" for lo, hi, p in zip(edges[:-1], edges[1:], power) if p <= 0]
        raise app.UsageError(f"The spectrum step cannot scale band(s) {', '.join(empty)} "
                             "cycles per pixel: the images have no power there.")
    gains = np.sqrt(spectrum(real, edges) / power)
    bands = losses.radial_bands(images.shape[1], images.shape[2], edges) > 0  # [H, W, K]
    gain = np.ones(images.shape[1:3])
    for k in range(bands.shape[-1]):
        gain[bands[..., k]] = gains[k]
    mean = images.mean(axis=(1, 2), keepdims=True)
    coefficients = np.fft.fft2(images - mean, axes=(1, 2)) * gain[None, :, :, None]
    return (np.real(np.fft.ifft2(coefficients, axes=(1, 2))) + mean).astype(np.float32)


def transform(images: np.ndarray, spec: str, real: np.ndarray,
              rng: np.random.Generator, edges=None) -> np.ndarray:
    """`images` after the steps of `spec` (see the module docstring), 8-bit quantized;
    `edges`: the band edges of the `spectrum` step (cycles per pixel)."""
    out = images.astype(np.float32)
    for step in spec.split("+"):
        if step == "none":
            continue
        if step.startswith("blur"):
            sigma = float(step[4:])
            out = ndimage.gaussian_filter(out, sigma=(0, sigma, sigma, 0))
        elif step == "match":
            target = statistics(real)
            current = statistics(out)
            mean = out.mean(axis=(1, 2, 3), keepdims=True)
            out = (out - mean) * (target["contrast"] / current["contrast"]) + mean
            out += target["mean"] - out.mean()
        elif step.startswith("noise"):
            out = out + rng.normal(0.0, float(step[5:]), out.shape).astype(np.float32)
        elif step.startswith("texture"):
            strength, _, cell = step[7:].partition("@")
            if not cell:
                raise app.UsageError(f"Texture step {step!r} in {spec!r} needs a cell size: "
                                     "textureS@C.")
            noise = rng.standard_normal(out.shape).astype(np.float32)
            noise = ndimage.gaussian_filter(noise, sigma=(0, float(cell), float(cell), 0))
            noise /= noise.std(axis=(1, 2, 3), keepdims=True)
            out = (out + 1) * (1 + float(strength) * noise) - 1
        elif step == "spectrum":
            out = match_spectrum(out, real, edges)
        elif step == "meanimage":
            out = out - (out.mean(axis=0) - real.mean(axis=0))
        else:
            raise app.UsageError(f"Unknown transform step {step!r} in {spec!r}.")
    return np.round((np.clip(out, -1, 1) + 1) * 127.5).astype(np.float32) / 127.5 - 1


def score_transforms(data_dir: str | None, split: str, transforms, images: int, seed: int,
                     crop_pixels: int = 0, cache_dir: str | None = None,
                     spectrum_edges=None, repeats: int = 1) -> None:
    """Prints the table of the module docstring: `transforms` of the first `images`
    images of `split` of `data_dir` (the simulator's data when `None`), scored against
    as many of its `real_test` images, both without `crop_pixels` at every side, by the
    mean of `repeats` realism classifiers; with `spectrum_edges`, also the power in
    those frequency bands."""
    if repeats < 1:
        raise app.UsageError(f"--repeats must be >= 1. Received: {repeats}")
    if data_dir is None and split != "synthetic":
        raise app.UsageError("--split needs --data_dir (the simulator's data is scored from "
                             "its synthetic split).")
    try:
        edges = [float(e) for e in spectrum_edges or ()]
    except ValueError:
        raise app.UsageError(f"--spectrum must be numbers (band edges in cycles per pixel). "
                             f"Received: {','.join(map(str, spectrum_edges))}") from None
    data_dir = data_dir or common.simulator_data(cache_dir)
    real = realism.load_images(data_dir, "real_test", images)
    candidates = realism.load_images(data_dir, split, images)
    real, candidates = crop(real, crop_pixels), crop(candidates, crop_pixels)
    rng = np.random.default_rng(seed)
    bands = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    real_power = spectrum(real, edges) if edges else None
    if edges:
        print("(power: mean power in each band of cycles per pixel; real_test's in [-1, 1] "
              "units squared, the other rows' as a ratio to real_test's)")
    if repeats > 1:
        print(f"(realism: the mean of {repeats} classifiers, seeds 0 to {repeats - 1})")
    header = ["images", "mean", "contrast", "noise"] + [f"power {b}" for b in bands]
    print("| " + " | ".join(header + ["realism accuracy", "realism cross-entropy"]) + " |")
    print("|---" * (len(header) + 2) + "|")

    def cells(name, images, power_cells):
        s = statistics(images)
        return (f"| {name} | {s['mean']:.3f} | {s['contrast']:.3f} | {s['noise']:.3f} | "
                + "".join(f"{c} | " for c in power_cells))

    print(cells("real_test", real, [f"{p:.2e}" for p in real_power] if edges else [])
          + "- | - |", flush=True)
    for spec in transforms:
        candidate = transform(candidates, spec, real, rng, edges)
        ratios = [f"{r:.2f}" for r in spectrum(candidate, edges) / real_power] if edges else []
        score = realism.realism_score(real, candidate, realism.RealismConfig(repeats=repeats))
        print(cells(f"{split}, {spec}", candidate, ratios)
              + f"{score['accuracy'] * 100:.1f}% | {score['cross_entropy']:.3f} |", flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    score_transforms(FLAGS.data_dir, FLAGS.split, FLAGS.transforms, FLAGS.images, FLAGS.seed,
                     FLAGS.crop, FLAGS.cache_dir, FLAGS.spectrum, FLAGS.repeats)


if __name__ == "__main__":
    define_flags()
    app.run(main)
