#!/usr/bin/env python3
"""The refiner's main convolution, forward and backward, against float32 matmul.

    python bench/conv_kernels.py [--batch=64]

Times TensorFlow's kernels for the 64->64 3x3 'same' convolution on 35x55 feature maps
(eight of the gaze refiner's ten convolutions, 99.8% of its FLOPs): the forward pass, the
input gradient and the weight gradient, each best of 5 timings of 3 calls, beside a
4096x4096 float32 matmul in the same process. A refiner update is one forward and two
backward passes, so the two gradient kernels bound what training can reach. Run with
`TF_ENABLE_ONEDNN_OPTS=0` to see Eigen's kernels instead of oneDNN's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simgan_tf import runtime  # noqa: E402  (first: oneDNN)

import tensorflow as tf  # noqa: E402


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


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
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
    print("| kernel | GFLOP/s |")
    print("|---|---|")
    for name, (function, args, count) in kernels.items():
        print(f"| {name} | {best_gflops(function, args, count):.1f} |", flush=True)


if __name__ == "__main__":
    main()
