#!/usr/bin/env python3
"""XLA (`jit_compile=True`) against TensorFlow's graph executor, per compiled function.

    python -m bench.xla_speed [--batch=64] [--calls=6] [--repeats=3]

Times, alternating in one process, each function as simgan-tf compiles it (`plain`: a
`tf.function`) and the same function with `jit_compile=True` (`xla`):

  * the four SimGAN phase functions (`SimGAN.train_step(data, phase=...)`, the paper's
    gaze networks from the `gaze` preset, a 1,024-image history buffer) on one constant
    batch of synthetic and real images;
  * the refiner's forward pass (`training=False`), what the export serves.

The estimator's and the realism classifier's train steps are measured with XLA by
`bench.estimator_speed` (variant `jit`). Each measurement runs `--calls` calls after two
untimed ones (tracing, and XLA's compilation); prints the mean and the best call per
function and mode, and the xla/plain ratio of each (median over repeats; > 1: XLA is
faster). Compilation time is printed separately (first call minus a later one).
"""

from __future__ import annotations

import dataclasses
import statistics
import time

from absl import app, flags

from simgan_tf import runtime  # noqa: F401  (first: oneDNN)
from simgan_tf import config as config_lib
import tensorflow as tf

from simgan_tf.modeling.schedule import Phase
from simgan_tf.training import train_lib

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 64, "Images per batch.")
flags.DEFINE_integer("calls", 6, "Timed calls per measurement.")
flags.DEFINE_integer("repeats", 3, "Measurements of each function and mode.")


def build_model(batch: int):
    paper = dataclasses.replace(config_lib.get_preset("gaze"), refiner=config_lib.PAPER_REFINER)
    config = config_lib.override(paper, {
        "train.batch_size": batch, "train.history_size": 1024, "train.seed": 0})
    return train_lib.build_simgan(config), config.image_shape


def functions(model, shape, batch: int) -> dict:
    """`{name: (python function, constant arguments)}` of every compiled function."""
    generator = tf.random.Generator.from_seed(0)
    data = {"synthetic": generator.uniform([batch, *shape], -1.0, 1.0),
            "real": generator.uniform([batch, *shape], -1.0, 1.0)}
    result = {}
    for phase in Phase:
        def step(data, phase=phase):
            model.train_step(dict(data), phase=phase)
            return [t.result() for t in model.trackers.values()]
        result[phase.name.lower()] = (step, (data,))
    result["refiner forward"] = (lambda x: model.refiner(x, training=False),
                                 (data["synthetic"],))
    return result


def _wait(outputs) -> None:
    for t in tf.nest.flatten(outputs):
        t.numpy()


def measure(function, args, calls: int) -> tuple[float, float, float]:
    """`(first call s, mean s, best s)` of `function(*args)` after two untimed calls."""
    start = time.perf_counter()
    _wait(function(*args))
    first = time.perf_counter() - start
    _wait(function(*args))
    durations = []
    for _ in range(calls):
        start = time.perf_counter()
        _wait(function(*args))
        durations.append(time.perf_counter() - start)
    return first, statistics.mean(durations), min(durations)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    model, shape = build_model(FLAGS.batch)
    rows = {}
    for repeat in range(FLAGS.repeats):
        for name, (python_function, args) in functions(model, shape, FLAGS.batch).items():
            for mode in ("plain", "xla"):
                compiled = tf.function(python_function, jit_compile=mode == "xla")
                try:
                    timing = measure(compiled, args, FLAGS.calls)
                except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
                    print(f"  {name} {mode}: does not compile: {str(e).splitlines()[0]}")
                    continue
                rows.setdefault((name, mode), []).append(timing)
                print(f"  {name} {mode} #{repeat}: first {timing[0]:.2f} s, mean "
                      f"{timing[1] * 1e3:.0f} ms, best {timing[2] * 1e3:.0f} ms", flush=True)
    print(f"\nbatch {FLAGS.batch}; median over {FLAGS.repeats} repeats")
    print("| function | plain mean ms | xla mean ms | xla speed-up (mean) | "
          "xla speed-up (best) | xla compile s |")
    print("|---|---|---|---|---|---|")
    for name in dict.fromkeys(n for n, _ in rows):
        plain, xla = rows.get((name, "plain"), []), rows.get((name, "xla"), [])
        if not plain or not xla:
            print(f"| {name} | - | - | does not compile | | |")
            continue
        med = lambda values, k: statistics.median(v[k] for v in values)  # noqa: E731
        compile_s = med(xla, 0) - med(xla, 1)
        print(f"| {name} | {med(plain, 1) * 1e3:.0f} | {med(xla, 1) * 1e3:.0f} | "
              f"{med(plain, 1) / med(xla, 1):.2f}x | {med(plain, 2) / med(xla, 2):.2f}x | "
              f"{compile_s:.1f} |")


if __name__ == "__main__":
    app.run(main)
