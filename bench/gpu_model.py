#!/usr/bin/env python3
"""On paper: SimGAN's `gaze` preset on a GPU, from FLOPs and memory traffic (no GPU needed).

    python -m bench.gpu_model [--preset=gaze] [--batch=0]

A roofline model. For each phase of Algorithm 1 it counts, per batch element, the FLOPs
(`bench.flops`) and the bytes moved to and from GPU memory, and bounds the time by
`max(FLOPs / peak FLOP/s, bytes / memory bandwidth)`, for float32 on CUDA cores, TF32
and bfloat16 on tensor cores. Peaks are NVIDIA's H100 SXM5 datasheet figures, dense
(the datasheet's tensor-core figures "with sparsity" are twice these):
FP32 67 TFLOP/s, TF32 494.7 TFLOP/s, BF16 989.4 TFLOP/s, HBM3 3.35 TB/s, 80 GB.

Traffic model (stated, not measured): every layer reads its inputs and writes its output
once in the forward pass (no fusion across layers; weights are negligible: 0.3 M
refiner and 0.08 M discriminator parameters); a backward pass moves twice the forward
bytes (it reads the saved activations and the output gradient, writes the input
gradient). Phases, per batch element:

  * refiner pretraining: R forward + backward;
  * discriminator pretraining: R forward, D forward + backward on a refined and a real
    image (`bench.flops.Algorithm1Flops.discriminator_update`);
  * adversarial iteration, per synthetic image through a refiner update (K_g refiner
    updates, each R and D forward and backward, and K_d discriminator updates, per K_g
    images).

The host must decode what the GPU consumes: every update draws a batch of each split
(`reader.training_dataset` zips both), 2 images per batch element and update, so
`2 (K_g + K_d) / K_g` decoded images per counted image in the adversarial phase.
`bench.input_speed` measures the decoded images per second per core of this pipeline.
"""

from __future__ import annotations

import math

from absl import app, flags

from simgan_tf import config as config_lib
from simgan_tf.training import train_lib
from bench import flops

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "gaze", "Config preset whose networks and batch are modelled.")
flags.DEFINE_integer("batch", 0, "Batch size (0: the preset's).")

# NVIDIA H100 SXM5 datasheet, dense figures.
PEAKS = {"float32 (CUDA cores)": (67e12, 4), "TF32 (tensor cores)": (494.7e12, 4),
         "bfloat16 (tensor cores)": (989.4e12, 2)}
BANDWIDTH = 3.35e12
MEMORY = 80e9


def forward_elements(model) -> tuple[int, int]:
    """`(elements read + written, elements of saved activations)` per example, forward."""
    moved = saved = 0
    for layer in model.layers:
        nodes = layer._inbound_nodes  # pylint: disable=protected-access
        if not nodes or not nodes[0].input_tensors:
            continue
        out = math.prod(layer.output.shape[1:])
        moved += out + sum(math.prod(t.shape[1:]) for t in nodes[0].input_tensors)
        saved += out
    return moved, saved


def phases(config) -> tuple[dict, int, int]:
    """Per batch element `{phase: (flops, elements moved, decoded images)}`, and the
    saved activations of a refiner update and the parameters."""
    model = train_lib.build_simgan(config)
    r, d = model.refiner, model.discriminator
    counts = flops.algorithm1_flops(r, d, k_g=config.train.k_g, k_d=config.train.k_d)
    r_moved, r_saved = forward_elements(r)
    d_moved, d_saved = forward_elements(d)
    k_g, k_d = config.train.k_g, config.train.k_d
    refiner_update = 3 * r_moved + 3 * d_moved
    discriminator_update = r_moved + 2 * 3 * d_moved
    result = {
        "refiner pretraining": (flops.forward_flops(r) + flops.backward_flops(r),
                                3 * r_moved, 2),
        "discriminator pretraining": (counts.discriminator_update, discriminator_update, 2),
        "adversarial iteration": (counts.per_counted_image,
                                  (k_g * refiner_update + k_d * discriminator_update) / k_g,
                                  2 * (k_g + k_d) / k_g),
    }
    return result, r_saved + d_saved, r.count_params() + d.count_params()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = config_lib.get_preset(FLAGS.preset)
    batch = FLAGS.batch or config.train.batch_size
    rows, saved, params = phases(config)
    print(f"preset {FLAGS.preset}, batch {batch}, image {config.image_shape}, "
          f"K_g={config.train.k_g}, K_d={config.train.k_d}; H100 SXM5 (dense peaks)")
    print("| phase | precision | GFLOP/img | MB/img | FLOP/byte | bound by | "
          "img/s (roofline) | decoded img/s the host must supply |")
    print("|---|---|---|---|---|---|---|---|")
    for phase, (flop, moved, decoded) in rows.items():
        for precision, (peak, size) in PEAKS.items():
            nbytes = moved * size
            seconds = max(flop / peak, nbytes / BANDWIDTH)
            bound = "compute" if flop / peak >= nbytes / BANDWIDTH else "memory"
            rate = 1 / seconds
            print(f"| {phase} | {precision} | {flop / 1e9:.3f} | {nbytes / 1e6:.1f} | "
                  f"{flop / nbytes:.0f} | {bound} | {rate:,.0f} | {decoded * rate:,.0f} |")
    history = config.train.history_size * math.prod(config.image_shape) * 4
    activations = saved * batch * 4
    print(f"\nmemory at batch {batch}, float32: saved activations {activations / 1e9:.1f} GB, "
          f"history buffer {history / 1e6:.0f} MB, weights and Adam state "
          f"{params * 4 * 3 / 1e6:.1f} MB, of {MEMORY / 1e9:.0f} GB")


if __name__ == "__main__":
    app.run(main)
