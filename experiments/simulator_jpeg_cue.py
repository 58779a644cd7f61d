#!/usr/bin/env python3
"""Can a realism classifier tell the simulator's real eyes by their JPEG compression?

The realism score of `evaluate.py` (a fresh classifier trained to tell real from
candidate images, `simgan_tf.evaluation.realism`) should measure what a refiner can
change. A fully convolutional refiner is translation-equivariant away from the image
border, so it cannot lay an 8x8 grid of compression blocks over its output. This
experiment trains that classifier on real eyes against the same camera without JPEG
(other gazes and nuisances of the same distribution), for three camera models:

  * `patch, aligned grid`: noise and JPEG applied to the 35x55 patch, the block grid on
    the patch grid (simulator data version 2);
  * `patch, random grid`: the same, the grid at a random offset per image;
  * `1.6x frame` (the default since version 3): noise and JPEG applied to a camera frame
    1.6 times finer, at a random grid offset, then resampled to the patch.

It also prints each model's real eyes against raw synthetic ones (the domain gap SimGAN
has to close) and a pixel-scale noise figure (standard deviation of each pixel minus the
mean of its 4 neighbours). 50% means indistinguishable.

Usage:
  python -m experiments.simulator_jpeg_cue [--images 4000]
"""

from __future__ import annotations

import dataclasses
import sys
import time

from absl import app, flags
import numpy as np

from simgan_tf.evaluation import realism
from simgan_tf.simulators import eyes
from experiments.common import to_inputs

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 4000, "images per set (half train, half test)")


def render(n: int, seed: int, domain: str, config: eyes.SimulatorConfig, *,
           jpeg: bool = True, aligned: bool = False) -> np.ndarray:
    """Renders `n` eyes; `jpeg=False` skips compression, `aligned` puts its grid at 0."""
    original = eyes._jpeg
    if not jpeg:
        eyes._jpeg = lambda image, quality, offset=(0, 0): image
    elif aligned:
        eyes._jpeg = lambda image, quality, offset=(0, 0): original(image, quality)
    try:
        return eyes.render(eyes.sample_gaze(n, seed), domain, seed, config)
    finally:
        eyes._jpeg = original


def pixel_noise(images: np.ndarray) -> float:
    values = images[..., 0].astype(np.float32) / 255.0
    residual = values[:, 1:-1, 1:-1] - 0.25 * (
        values[:, :-2, 1:-1] + values[:, 2:, 1:-1] + values[:, 1:-1, :-2] + values[:, 1:-1, 2:])
    return float(residual.std())


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = FLAGS
    default = eyes.SimulatorConfig()
    patch = dataclasses.replace(default, camera_scale=1.0, resample_jitter=0.0)
    models = [("patch, aligned grid", patch, True), ("patch, random grid", patch, False),
              ("1.6x frame (default)", default, False)]
    synthetic = render(args.images, 505, "synthetic", default)
    print("| camera model | real vs real without JPEG | real vs synthetic | pixel noise, "
          "real (synthetic %.4f) |" % pixel_noise(synthetic))
    print("|---|---|---|---|")
    for name, config, aligned in models:
        start = time.perf_counter()
        real = render(args.images, 404, "real", config, aligned=aligned)
        without = render(args.images, 505, "real", config, jpeg=False)
        cue = realism.realism_score(to_inputs(real), to_inputs(without))
        gap = realism.realism_score(to_inputs(real), to_inputs(synthetic))
        print(f"| {name} | {100 * cue['accuracy']:.1f}% (CE {cue['cross_entropy']:.3f}) | "
              f"{100 * gap['accuracy']:.1f}% (CE {gap['cross_entropy']:.3f}) | "
              f"{pixel_noise(real):.4f} |", flush=True)
        print(f"  ({time.perf_counter() - start:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
