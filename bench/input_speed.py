#!/usr/bin/env python3
"""Input pipeline speed against what training consumes: it must never be the bottleneck.

    python -m bench.input_speed [--data_dir=<folder>] [--batches=32,64,512] [--repeats=3]

For each batch size, alternating in one run:
  * the pipeline: `simgan_tf.data.reader.training_dataset` on the data folder (both splits read,
    PNG headers checked, decoded, scaled, shuffled with the default 10,000-record buffers,
    batched), drawn as fast as it goes after its shuffle buffers have filled: images per
    second delivered (synthetic + real);
  * training: `bench.tf_simgan_step` at the same batch (Algorithm 1, K_g=2, K_d=1,
    float32) in a fresh process; every update takes one batch of each split, so it
    consumes 2 * b images per update.
The ratio is the pipeline's rate over training's consumption (target: at least 10x).
Without `--data_dir` it reads the built-in eye simulator's data (the `gaze_demo` preset's,
generated into the cache the first time).
"""

from __future__ import annotations

import statistics
import time

from absl import app, flags

from simgan_tf import config as config_lib
from simgan_tf.data import reader
from bench.common import default_rounds, simulator_data, tf_step

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "default: the eye simulator's data")
flags.DEFINE_list("batches", ["32", "64", "512"], "Batch sizes.")
flags.DEFINE_integer("repeats", 3, "Measurements of each batch size.")
flags.DEFINE_float("seconds", 10.0, "per pipeline measurement")

K_G, K_D = 2, 1


def pipeline_rate(data_dir: str, batch: int, seconds: float) -> float:
    """Images per second (both splits) delivered after the shuffle buffers filled."""
    dataset = reader.training_dataset(
        data_dir, synthetic_split="synthetic", real_split="real", batch_size=batch,
        image_shape=(35, 55, 1), seed=0)
    iterator = iter(dataset)
    shuffle_buffer = config_lib.DataConfig().shuffle_buffer
    for _ in range(shuffle_buffer // batch + 2):  # fill the shuffle buffers
        next(iterator)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        element = next(iterator)
        count += 1
    element["real"].numpy()
    return 2 * batch * count / (time.perf_counter() - start)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    a = FLAGS
    data_dir = a.data_dir or simulator_data()
    print(f"data: {data_dir}", flush=True)
    rows = []
    for batch in [int(b) for b in a.batches if b]:
        pairs = []
        for _ in range(a.repeats):
            delivered = pipeline_rate(data_dir, batch, a.seconds)
            trained = tf_step(batch, default_rounds(batch))[0]
            consumed = trained * (K_G + K_D) / K_G * 2  # 2b images per update
            pairs.append((delivered, consumed))
            print(f"  batch {batch}: pipeline {delivered:.0f} img/s, training consumes "
                  f"{consumed:.0f} img/s", flush=True)
        rows.append((batch, statistics.median(d for d, _ in pairs),
                     statistics.median(c for _, c in pairs),
                     statistics.median(d / c for d, c in pairs)))
    print()
    print("| batch | pipeline delivers img/s | training consumes img/s | ratio |")
    print("|---|---|---|---|")
    for batch, delivered, consumed, ratio in rows:
        print(f"| {batch} | {delivered:.0f} | {consumed:.0f} | {ratio:.1f}x |")


if __name__ == "__main__":
    app.run(main)
