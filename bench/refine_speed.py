#!/usr/bin/env python3
"""Batch refinement speed of an exported refiner over a TFRecord split (`refine.py`).

    python -m bench.refine_speed [--saved_model=<export>] [--num_images=4096]
        [--batch_size=256] [--repeats=3]

Renders `--num_images` synthetic eyes with the built-in simulator into a temporary data
folder, then alternates, in one process:
  * `simgan_tf.serving.refine_split.refine_split` end to end (read records, decode PNG,
    refine through the SavedModel's `serving_default`, encode PNG, write a checksummed
    split);
  * the SavedModel's `serving_default` alone on the same batch size (compute only).
It prints both in images per second, the share of the compute-only speed that the whole
command keeps, and the refiner's achieved FLOP/s against this machine's float32 matmul
peak measured in the same run. Without `--saved_model` a freshly initialized gaze
refiner is exported (the speed does not depend on the weights).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

from absl import app, flags
import numpy as np

from simgan_tf import config as config_lib
from simgan_tf.data import builtin
from simgan_tf.modeling.refiner import build_refiner
from simgan_tf.serving import export, refine_split
from bench import flops
from bench.common import matmul_peak

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "An exported refiner (default: a freshly "
                    "initialized gaze refiner, exported into a temporary folder).")
flags.DEFINE_integer("num_images", 4096, "Synthetic eyes rendered and refined.")
flags.DEFINE_integer("batch_size", 256, "Images per refiner call.")
flags.DEFINE_integer("repeats", 3, "Measurements of each kind.")

SHAPE = (35, 55, 1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    a = FLAGS
    work = tempfile.mkdtemp(prefix="refine_speed-")
    try:
        saved_model = a.saved_model or export.export_refiner(
            build_refiner(SHAPE), os.path.join(work, "export"), 0, SHAPE)
        data_dir = os.path.join(work, "data")
        builtin.write_simulator_split(data_dir, "synthetic", "synthetic", a.num_images,
                                      seed=1)
        refine = export.load_refiner(saved_model)
        card_config = export.read_model_card(saved_model).get("config") or {}
        refiner_config = config_lib.SimGANConfig.from_json(card_config).refiner
        per_image = flops.forward_flops(
            build_refiner(tuple(refine.input_spec.shape[1:]), refiner_config))
        images = np.random.default_rng(0).uniform(
            -1, 1, (a.batch_size, *refine.input_spec.shape[1:])).astype(np.float32)
        refine(images).numpy()
        peak = matmul_peak(sys.executable, "tensorflow")
        rows = []
        for _ in range(a.repeats):
            start = time.perf_counter()
            refine_split.refine_split(saved_model, os.path.join(data_dir, "synthetic"),
                                      os.path.join(data_dir, "refined"),
                                      batch_size=a.batch_size)
            whole = a.num_images / (time.perf_counter() - start)
            calls = max(3, a.num_images // a.batch_size)
            start = time.perf_counter()
            for _ in range(calls):
                refine(images).numpy()
            compute = calls * a.batch_size / (time.perf_counter() - start)
            rows.append((whole, compute))
            print(f"  refine.py {whole:.1f} img/s, serving_default alone {compute:.1f} img/s",
                  flush=True)
        whole = statistics.median(w for w, _ in rows)
        compute = statistics.median(c for _, c in rows)
        print(f"\nmatmul peak (TensorFlow, float32): {peak:.1f} GFLOP/s; refiner: "
              f"{per_image / 1e9:.3f} GFLOP per image")
        print("| what | img/s | GFLOP/s | % of matmul peak |")
        print("|---|---|---|---|")
        for what, rate in ((f"refine.py over {a.num_images} records, batch {a.batch_size}",
                            whole),
                           (f"serving_default alone, batch {a.batch_size}", compute)):
            print(f"| {what} | {rate:.1f} | {rate * per_image / 1e9:.1f} | "
                  f"{100 * rate * per_image / 1e9 / peak:.0f}% |")
        print(f"\nrefine.py keeps {100 * whole / compute:.0f}% of the compute-only speed.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
