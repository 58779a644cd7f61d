#!/usr/bin/env python3
"""The refiner's main convolution, forward and backward, against float32 matmul.

    python -m bench.conv_kernels [--batch=64] [--torch_python=/tmp/torch-venv/bin/python]

Times TensorFlow's kernels for the 64->64 3x3 'same' convolution on 35x55 feature maps
(eight of the gaze refiner's ten convolutions, 99.8% of its FLOPs): the forward pass, the
input gradient and the weight gradient, each best of 5 timings of 3 calls, beside a
4096x4096 float32 matmul in the same process. A refiner update is one forward and two
backward passes, so the two gradient kernels bound what training can reach. Run with
`TF_ENABLE_ONEDNN_OPTS=0` to see Eigen's kernels instead of oneDNN's. With
`--torch_python` (a virtual environment with torch==2.13.0; the project never depends on
it) the same kernels are timed in PyTorch, in the reference's NCHW layout and in
channels-last, in a subprocess right after, as two more columns.
"""

from __future__ import annotations

import os
import time

from absl import app, flags

from simgan_tf import runtime  # first: oneDNN
from bench.common import run

import tensorflow as tf  # pylint: disable=wrong-import-order  (after simgan_tf: oneDNN)

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 64, "Feature maps per batch.")
flags.DEFINE_string("torch_python", os.environ.get("SIMGAN_TF_TORCH_PYTHON"),
                    "python of a virtual environment with torch==2.13.0")


def best_gflops(function, args, flops: int) -> float:
    function(*args).numpy()
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(3):
            result = function(*args)
        result.numpy()
        best = max(best, 3 * flops / (time.perf_counter() - start) / 1e9)
    return best


TORCH_CODE = """
import time, torch
import torch.nn.functional as F
b, h, w, c, size = {b}, {h}, {w}, {c}, {size}
torch.manual_seed(0)
for layout in ("nchw", "channels_last"):
    x = torch.randn(b, c, h, w); k = torch.randn(c, c, 3, 3); dy = torch.randn(b, c, h, w)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        dy = dy.contiguous(memory_format=torch.channels_last)
    m = torch.randn(size, size)
    flops = 2 * b * h * w * 9 * c * c
    kernels = [
        ("conv forward", lambda: F.conv2d(x, k, padding=1), flops),
        ("conv input gradient", lambda: torch.nn.grad.conv2d_input(x.shape, k, dy, padding=1), flops),
        ("conv weight gradient", lambda: torch.nn.grad.conv2d_weight(x, k.shape, dy, padding=1), flops),
        ("matmul {size}x{size}", lambda: m @ m, 2 * size ** 3),
    ]
    for name, function, count in kernels:
        function()
        best = 0.0
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(3):
                function()
            best = max(best, 3 * count / (time.perf_counter() - start) / 1e9)
        print(f"{{layout}}|{{name}}|{{best:.1f}}", flush=True)
"""


def torch_kernels(python: str, **shape) -> dict[tuple[str, str], float]:
    """GFLOP/s of PyTorch's kernels on the same shapes, keyed by (layout, kernel)."""
    figures = {}
    for line in run([python, "-c", TORCH_CODE.format(**shape)]).splitlines():
        layout, name, value = line.split("|")
        figures[(layout, name)] = float(value)
    return figures


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    a = FLAGS
    b, h, w, c = a.batch, 35, 55, 64
    generator = tf.random.Generator.from_seed(0)
    x = generator.normal([b, h, w, c])
    kernel = generator.normal([3, 3, c, c])
    dy = generator.normal([b, h, w, c])
    flops = 2 * b * h * w * 9 * c * c
    size = 4096
    matrix = generator.normal([size, size])
    kernels = {
        "conv forward": (tf.function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME")),
                         (x, kernel), flops),
        "conv input gradient": (tf.function(lambda dy, k: tf.nn.conv2d_transpose(
            dy, k, [b, h, w, c], 1, "SAME")), (dy, kernel), flops),
        "conv weight gradient": (tf.function(lambda x, dy: tf.compat.v1.nn.conv2d_backprop_filter(
            x, [3, 3, c, c], dy, [1, 1, 1, 1], "SAME")), (x, dy), flops),
        "matmul 4096x4096": (tf.function(lambda m: tf.linalg.matmul(m, m)), (matrix,),
                             2 * size ** 3),
    }
    print(f"oneDNN: {runtime.onednn_enabled()}, batch {b}, 35x55x64 -> 64, 3x3")
    ours = {name: best_gflops(function, args, count)
            for name, (function, args, count) in kernels.items()}
    theirs = (torch_kernels(a.torch_python, b=b, h=h, w=w, c=c, size=size)
              if a.torch_python else {})
    if theirs:
        print("| kernel | TensorFlow GFLOP/s | PyTorch NCHW GFLOP/s | "
              "PyTorch channels-last GFLOP/s |")
        print("|---|---|---|---|")
    else:
        print("| kernel | GFLOP/s |")
        print("|---|---|")
    for name, value in ours.items():
        row = f"| {name} | {value:.1f} |"
        if theirs:
            row += (f" {theirs[('nchw', name)]:.1f} | "
                    f"{theirs[('channels_last', name)]:.1f} |")
        print(row, flush=True)


if __name__ == "__main__":
    app.run(main)
