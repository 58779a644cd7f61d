#!/usr/bin/env python3
"""Training and inference speed against PyTorch eager and against the machine's matmul peak.

Prints one table (the targets in BUILD.md, "Speed"), measured side by side in one run,
each measurement in a fresh process, A and B alternating:

  * the float32 matmul peak of this machine: the best of 5 4096 x 4096 products in
    TensorFlow (oneDNN) and, when given, PyTorch (MKL), measured right after every
    simgan-tf measurement so that both see the same load on a shared machine (NumPy's
    is printed once for reference);
  * Algorithm 1 training throughput (K_g=2, K_d=1, the paper's gaze networks, buffer on;
    synthetic images per second through refiner updates) of `bench.tf_simgan_step`
    and of the PyTorch eager reference step (`TORCH_STEP`), at each `--batches`;
    their ratio (median of the adjacent pairs), and simgan-tf's achieved FLOP/s as a
    fraction of that peak (FLOPs from `bench.flops`), over whole measurements and
    for the fastest single iteration against the highest peak seen in the run (best
    against best: on a shared machine these are the timings least disturbed by other
    tenants);
  * the same with `--mixed_precision` (bfloat16) at `--mixed_batches`, against the float32
    PyTorch figure of that batch, with the largest difference between the bfloat16 and
    float32 refiners' outputs on the same weights and images;
  * TensorFlow with Eigen's kernels instead of oneDNN (`TF_ENABLE_ONEDNN_OPTS=0`) at
    `--eigen_batches`: what `simgan_tf.runtime` gains by asking for oneDNN;
  * refiner inference through the exported SavedModel at `--infer_batches`.

PyTorch lives in its own virtual environment (the project never depends on it):
    python3.11 -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install -r bench/requirements-torch.txt
    python -m bench.train_speed --torch_python=/tmp/torch-venv/bin/python
Without `--torch_python` the PyTorch columns are left empty. Run from the checkout root.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

from absl import app, flags

from simgan_tf import config as config_lib
from simgan_tf import runtime
from bench.common import ROOT, default_rounds, field, matmul_peak, run, tf_step

TORCH_STEP = os.path.join(ROOT, "bench", "torch_simgan_step.py")

FLAGS = flags.FLAGS
flags.DEFINE_string("torch_python", os.environ.get("SIMGAN_TF_TORCH_PYTHON"),
                    "python of a virtual environment with torch==2.13.0")
flags.DEFINE_list("batches", ["32", "64", "512"], "Batch sizes of float32 training.")
flags.DEFINE_list("mixed_batches", ["64"], "Batch sizes of bfloat16 training; empty to skip "
                  "bfloat16.")
flags.DEFINE_list("eigen_batches", ["64"], "Batch sizes of training with Eigen's kernels; "
                  "empty to skip Eigen.")
flags.DEFINE_list("infer_batches", ["64", "512"], "Batch sizes of refiner inference; empty "
                  "to skip inference.")
flags.DEFINE_integer("repeats", 3, "A/B pairs per setting.")


def torch_spec(preset: str = "gaze") -> str:
    """The networks of a simgan-tf preset as the PyTorch step's `--spec` JSON."""
    config = config_lib.get_preset(preset)
    return json.dumps({
        "image_shape": list(config.image_shape),
        "refiner": {"filters": config.refiner.filters,
                    "kernel_size": config.refiner.kernel_size,
                    "num_blocks": config.refiner.num_blocks},
        "discriminator": [[layer.kind, layer.filters, layer.kernel_size, layer.strides]
                          for layer in config.discriminator.layers]})


def torch_step(python, batch, rounds, warmup=1):
    line = run([python, TORCH_STEP, "--batch", str(batch), "--rounds", str(rounds),
                "--warmup", str(warmup), "--spec", torch_spec()]).strip().splitlines()[-1]
    return field(line, "img_per_s")


def bfloat16_difference() -> str:
    """|bfloat16 refiner - float32 refiner| on the same weights and images, as in
    tests/test_train.py: the output layer scaled so outputs spread over [-1, 1] like a
    trained refiner's (a fresh one outputs values near 0, hiding the rounding)."""
    code = """
import simgan_tf, numpy as np, keras
from simgan_tf.modeling.refiner import build_refiner
from simgan_tf import runtime
rows = []
for seed in range(3):
    keras.utils.set_random_seed(seed)
    reference = build_refiner((35, 55, 1))
    out = reference.get_layer("conv_out").kernel
    out.assign(out * 10.0)
    with runtime.precision_policy(True):
        mixed = build_refiner((35, 55, 1))
    mixed.set_weights(reference.get_weights())
    images = np.random.default_rng(seed).uniform(-1, 1, (64, 35, 55, 1)).astype("float32")
    d = np.abs(mixed(images).numpy() - reference(images).numpy())
    rows.append(f"mean {d.mean():.4f}, p99 {np.percentile(d, 99):.4f}, max {d.max():.4f}")
print("; ".join(rows))
"""
    return run([sys.executable, "-c", code],
               dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")).strip().splitlines()[-1]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    a = FLAGS
    ints = lambda values: [int(x) for x in values if x]  # noqa: E731
    started = time.time()

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, bfloat16 native: "
          f"{runtime.bfloat16_native()}, python {platform.python_version()}", flush=True)

    peaks = {"tensorflow": matmul_peak(sys.executable, "tensorflow"),
             "numpy": matmul_peak(sys.executable, "numpy")}
    if a.torch_python:
        peaks["torch"] = matmul_peak(a.torch_python, "torch")
        print("torch:", run([a.torch_python, "-c", "import torch; print(torch.__version__)"]
                            ).strip(), flush=True)
    print("float32 matmul (4096x4096), GFLOP/s: "
          + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()), flush=True)

    seen_peaks = list(peaks.values())

    def peak_now() -> float:
        """The matmul peak right now: TensorFlow's and PyTorch's, whichever is higher."""
        now = [matmul_peak(sys.executable, "tensorflow")]
        if a.torch_python:
            now.append(matmul_peak(a.torch_python, "torch"))
        seen_peaks.append(max(now))
        return max(now)

    # (batch, what, torch img/s, tf img/s, ratio, gflop/s, % of peak, fastest gflop/s)
    rows = []

    def measure(batch, what, **kwargs):
        rounds = default_rounds(batch)
        pairs = []
        for _ in range(a.repeats):
            reference = None
            if a.torch_python:
                reference = torch_step(a.torch_python, batch, rounds)
            images, gflops, best = tf_step(batch, rounds, **kwargs)
            adjacent = peak_now()
            pairs.append((reference, images, gflops, gflops / adjacent, best))
            print(f"  batch {batch} {what}: torch {reference} img/s, simgan-tf {images} "
                  f"img/s ({gflops} GFLOP/s, fastest iteration {best} GFLOP/s; matmul peak "
                  f"right after: {adjacent:.1f} GFLOP/s)", flush=True)
        references = [r for r, *_ in pairs if r is not None]
        torch_median = statistics.median(references) if references else None
        ratio = (statistics.median(p[1] / p[0] for p in pairs) if references else None)
        rows.append((batch, what, torch_median, statistics.median(p[1] for p in pairs),
                     ratio, statistics.median(p[2] for p in pairs),
                     statistics.median(p[3] for p in pairs), max(p[4] for p in pairs)))

    for batch in ints(a.batches):
        measure(batch, "train float32")
    for batch in ints(a.mixed_batches):
        measure(batch, "train bfloat16", mixed=True)
    for batch in ints(a.eigen_batches):
        measure(batch, "train float32, Eigen (no oneDNN)", eigen=True)
    for batch in ints(a.infer_batches):
        values = []
        for _ in range(a.repeats):
            images, gflops, best = tf_step(batch, max(3, 2048 // batch), mode="infer")
            adjacent = peak_now()
            values.append((images, gflops, gflops / adjacent, best))
            print(f"  batch {batch} inference: {images} img/s ({gflops} GFLOP/s, fastest call "
                  f"{best} GFLOP/s; matmul peak right after: {adjacent:.1f})", flush=True)
        rows.append((batch, "refiner inference (SavedModel)", None,
                     statistics.median(v[0] for v in values), None,
                     statistics.median(v[1] for v in values),
                     statistics.median(v[2] for v in values), max(v[3] for v in values)))

    print()
    print("| batch | what | PyTorch eager img/s | simgan-tf img/s | ratio | GFLOP/s | "
          "% of matmul peak | fastest iteration: GFLOP/s, % of highest peak |")
    print("|---|---|---|---|---|---|---|---|")
    highest = max(seen_peaks)
    for batch, what, reference, images, ratio, gflops, share, best in rows:
        print(f"| {batch} | {what} | {'' if reference is None else f'{reference:.1f}'} | "
              f"{images:.1f} | {'' if ratio is None else f'{ratio:.2f}x'} | {gflops:.1f} | "
              f"{100 * share:.0f}% | {best:.1f}, {100 * best / highest:.0f}% |")
    if ints(a.mixed_batches):
        print(f"\n|bfloat16 refiner - float32 refiner| (same weights, 64 images, 3 seeds; "
              f"tested bounds: mean 0.008, p99 0.04, max 0.1): {bfloat16_difference()}")
    print(f"\n{a.repeats} A/B pairs per row: medians; ratio: median of the pairs' ratios; "
          "% of matmul peak: against the peak measured right after each simgan-tf "
          "measurement (best of 5 products, TensorFlow or PyTorch); fastest iteration: the "
          "best single iteration (inference call) of all repeats, in GFLOP/s and against "
          f"the highest matmul peak of the run ({highest:.1f} GFLOP/s). "
          f"{time.time() - started:.0f} s in all.")


if __name__ == "__main__":
    app.run(main)
