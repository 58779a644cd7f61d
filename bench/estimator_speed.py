#!/usr/bin/env python3
"""Training speed of the evaluation's networks against this machine's matmul peak.

    python -m bench.estimator_speed [--networks=gaze,realism] [--repeats=3]
        [--variants=evaluate,compute,jit,spe] [--steps=40]

`evaluate.py` trains, per training split, the paper's gaze estimator
(`simgan_tf.evaluation.estimators.build_gaze_estimator`, batch 64, Adam) and the realism
classifier (`simgan_tf.evaluation.realism.build_classifier`). For each network this
script times `keras.Model.fit` in steady state (the time between the end of a warm-up
step and the end of the last step, taken by a callback) in these variants, alternating
them in one process, `--repeats` times:

  * `evaluate`: the input and compile settings `evaluate.py` uses (the gaze estimator
    reads and decodes a TFRecord split with `reader.read_split`, shuffle buffer 10,000,
    as `eval_lib.train_estimator` does; the realism classifier is trained by
    `realism.train_classifier` itself);
  * `compute`: the same model on one constant batch (no input pipeline at all);
  * `jit`: `compile(jit_compile=True)` (XLA), constant batch;
  * `spe`: `compile(steps_per_execution=--spe)`, constant batch.

Right before each measurement the float32 matmul peak is measured in the same process
(2048 x 2048 products for 4 s), and every figure is reported as a percentage of the peak
measured next to it, twice: the mean step rate against the mean matmul rate (both
averaged over the load of the moment), and the fastest step against the fastest product
(the timings least disturbed by other tenants of a shared machine).
FLOPs per training image come from `bench.flops`
(forward, weight gradients, input gradients of all layers but the first). bfloat16 is
measured only where the CPU computes it natively (`simgan_tf.runtime.bfloat16_native`).
Prints the medians and the spread (min-max) of the repeats.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time

from absl import app, flags

from simgan_tf import runtime
import keras  # after simgan_tf, which asks TensorFlow for oneDNN
import numpy as np
import tensorflow as tf

from simgan_tf.data import builtin, reader, schema
from simgan_tf.evaluation import estimators, metrics, realism
from bench import flops

FLAGS = flags.FLAGS
flags.DEFINE_list("networks", ["gaze", "realism"], "Networks to time: gaze, realism.")
flags.DEFINE_list("variants", ["evaluate", "compute", "jit", "spe"], "Variants to time.")
flags.DEFINE_integer("repeats", 3, "Measurements of each variant.")
flags.DEFINE_integer("steps", 0, "Timed steps per measurement (0: 40 for gaze, 300 for "
                     "realism).")
flags.DEFINE_integer("spe", 10, "steps_per_execution of the `spe` variant.")
flags.DEFINE_integer("num_images", 2048, "Synthetic eyes rendered for the `evaluate` input.")

BATCH = 64
SHAPE = estimators.GAZE_INPUT_SHAPE
WARMUP = 10


class _StepTimes(keras.callbacks.Callback):
    """Records the time at the end of every executed batch (steps_per_execution steps)."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


_PEAK = {}


def matmul_peak(seconds: float = 4.0) -> tuple[float, float]:
    """Float32 2048 x 2048 products (oneDNN) in this process, for `seconds`.

    Returns:
      `(mean, best)` GFLOP/s: over all products, and of the fastest one.
    """
    if "f" not in _PEAK:
        _PEAK["a"] = tf.random.normal([2048, 2048])
        _PEAK["f"] = tf.function(lambda a: tf.linalg.matmul(a, a))
        _PEAK["f"](_PEAK["a"]).numpy()
    times = []
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds or len(times) < 3:
        start = time.perf_counter()
        _PEAK["f"](_PEAK["a"]).numpy()
        times.append(time.perf_counter() - start)
    flop = 2 * 2048 ** 3 / 1e9
    return flop * len(times) / sum(times), flop / min(times)


def gaze_input(data_dir: str) -> tf.data.Dataset:
    """The gaze estimator's input as `eval_lib.train_estimator` builds it."""
    info = schema.read_dataset_info(data_dir)
    return (reader.read_split(data_dir, "synthetic", info=info, shuffle=True, repeat=True,
                              seed=0, shuffle_buffer=10_000)
            .map(lambda e: (e["image"], metrics.gaze_to_vector(e[schema.LABEL_GAZE])),
                 num_parallel_calls=tf.data.AUTOTUNE)
            .batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def constant_input(network: str) -> tf.data.Dataset:
    images = tf.random.uniform([BATCH, *SHAPE], -1, 1)
    targets = (tf.random.normal([BATCH, 3]) if network == "gaze"
               else tf.cast(tf.range(BATCH) % 2, tf.float32))
    return tf.data.Dataset.from_tensors((images, targets)).repeat()


def build(network: str, **compile_args) -> keras.Model:
    """A fresh, compiled network as evaluate.py compiles it, plus `compile_args`."""
    keras.utils.set_random_seed(0)
    if network == "gaze":
        model = estimators.build_gaze_estimator(SHAPE)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=estimators.gaze_loss,
                      **compile_args)
    else:
        model = realism.build_classifier(SHAPE)
        model.compile(optimizer=keras.optimizers.Adam(realism.RealismConfig().learning_rate),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True),
                      **compile_args)
    return model


def _rates(times: list, warm: int, per_execution: int) -> tuple[float, float]:
    """`(mean, best)` images per second after `warm` executions of `per_execution` steps."""
    gaps = np.diff(times[warm - 1:])
    images = per_execution * BATCH
    return images * len(gaps) / float(np.sum(gaps)), images / float(np.min(gaps))


def steady_rate(model: keras.Model, dataset, steps: int,
                per_execution: int) -> tuple[float, float]:
    """`(mean, best)` training images per second after the warm-up steps."""
    times = _StepTimes()
    executions = (WARMUP + steps) // per_execution
    model.fit(dataset, epochs=1, steps_per_epoch=executions * per_execution, verbose=0,
              callbacks=[times])
    return _rates(times.times, max(1, WARMUP // per_execution), per_execution)


def realism_rate(steps: int) -> tuple[float, float]:
    """`(mean, best)` images per second of `realism.train_classifier`'s own fit, in steady state."""
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2000, *SHAPE)).astype(np.float32)
    labels = (np.arange(2000) % 2).astype(np.float32)
    config = realism.RealismConfig(steps=WARMUP + steps)
    times = _StepTimes()
    realism.train_classifier(images, labels, config, callbacks=[times])
    return _rates(times.times, WARMUP, 1)


def measure(network: str, variant: str, data_dir: str, steps: int) -> tuple[float, float]:
    """`(mean, best)` images per second of one variant (see the module docstring)."""
    if variant == "evaluate" and network == "realism":
        return realism_rate(steps)
    args = {"jit": {"jit_compile": True},
            "spe": {"steps_per_execution": FLAGS.spe},
            "bfloat16": {}}.get(variant, {})
    if variant == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build(network, **args)
        dataset = gaze_input(data_dir) if variant == "evaluate" else constant_input(network)
        return steady_rate(model, dataset, steps, args.get("steps_per_execution", 1))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def per_image_flops(network: str) -> int:
    model = (estimators.build_gaze_estimator(SHAPE) if network == "gaze"
             else realism.build_classifier(SHAPE))
    return flops.forward_flops(model) + flops.backward_flops(model)


def report(network: str, rows: dict, per_image: int) -> None:
    """Prints one network's table: each variant's share of the peak measured next to it."""
    print(f"\n{network}: {per_image / 1e9:.4f} GFLOP per training image, batch {BATCH}")
    print("| variant | img/s (median) | mean step / mean peak: median (min-max) "
          "| best step / best peak: median (min-max) |")
    print("|---|---|---|---|")
    for variant, measured in rows.items():
        cells = []
        for kind in (0, 1):
            shares = [100 * rates[kind] * per_image / 1e9 / peaks[kind]
                      for rates, peaks in measured]
            cells.append(f"{statistics.median(shares):.0f}% "
                         f"({min(shares):.0f}-{max(shares):.0f}%)")
        rate = statistics.median(rates[0] for rates, _ in measured)
        print(f"| {variant} | {rate:.0f} | {cells[0]} | {cells[1]} |")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    variants = list(FLAGS.variants)
    if runtime.bfloat16_native():
        variants.append("bfloat16")
    else:
        print("This CPU has no native bfloat16 (no AVX512_BF16 or AMX-BF16): bfloat16 "
              "not measured.")
    print(f"oneDNN: {runtime.onednn_enabled()}")
    work = tempfile.mkdtemp(prefix="estimator_speed-")
    try:
        builtin.write_simulator_split(work, "synthetic", "synthetic", FLAGS.num_images, seed=1)
        for network in FLAGS.networks:
            steps = FLAGS.steps or (40 if network == "gaze" else 300)
            rows = {v: [] for v in variants}
            for repeat in range(FLAGS.repeats):
                for variant in variants:
                    peak = matmul_peak()
                    rates = measure(network, variant, work, steps)
                    rows[variant].append((rates, peak))
                    print(f"  {network} {variant} #{repeat}: {rates[0]:.0f} img/s "
                          f"(best step {rates[1]:.0f}), peak {peak[0]:.0f} GFLOP/s "
                          f"(best {peak[1]:.0f})", flush=True)
            report(network, rows, per_image_flops(network))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
