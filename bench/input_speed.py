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
Then, to size a host for a faster accelerator (docs/benchmarks.md, "GPU model"), the
same pipeline on one core (`tf.data` private thread pool of 1 thread, intra-op
parallelism 1): decoded images per second per core, at each batch size.
Without `--data_dir` it reads the built-in eye simulator's data (the `gaze_demo` preset's,
generated into the cache the first time).
"""

from __future__ import annotations

import statistics
import time

from absl import app, flags
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.data import reader
from bench.common import default_rounds, simulator_data, tf_step

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "default: the eye simulator's data")
flags.DEFINE_list("batches", ["32", "64", "512"], "Batch sizes.")
flags.DEFINE_integer("repeats", 3, "Measurements of each batch size.")
flags.DEFINE_float("seconds", 10.0, "per pipeline measurement")
flags.DEFINE_bool("train", True, "Also time training's consumption (slow); without it only "
                  "the pipeline's rates are measured.")

K_G, K_D = 2, 1


def pipeline_rate(data_dir: str, batch: int, seconds: float, one_core: bool = False) -> float:
    """Images per second (both splits) delivered after the shuffle buffers filled.

    With `one_core`, the pipeline runs on one thread (decoded images/s per core).
    """
    dataset = reader.training_dataset(
        data_dir, synthetic_split="synthetic", real_split="real", batch_size=batch,
        image_shape=(35, 55, 1), seed=0)
    if one_core:
        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        options.threading.max_intra_op_parallelism = 1
        dataset = dataset.with_options(options)
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
        measured = []
        for _ in range(a.repeats):
            delivered = pipeline_rate(data_dir, batch, a.seconds)
            per_core = pipeline_rate(data_dir, batch, a.seconds, one_core=True)
            consumed = (tf_step(batch, default_rounds(batch))[0] * (K_G + K_D) / K_G * 2
                        if a.train else float("nan"))  # 2b images per update
            measured.append((delivered, per_core, consumed))
            print(f"  batch {batch}: pipeline {delivered:.0f} img/s ({per_core:.0f} on one "
                  f"core), training consumes {consumed:.0f} img/s", flush=True)
        rows.append((batch, *(statistics.median(m[k] for m in measured) for k in range(3)),
                     statistics.median(d / c for d, _, c in measured)))
    print()
    print("| batch | pipeline delivers img/s | decoded img/s per core | "
          "training consumes img/s | ratio |")
    print("|---|---|---|---|---|")
    for batch, delivered, per_core, consumed, ratio in rows:
        trained = f"{consumed:.0f} | {ratio:.1f}x" if a.train else "- | -"
        print(f"| {batch} | {delivered:.0f} | {per_core:.0f} | {trained} |")


if __name__ == "__main__":
    app.run(main)
