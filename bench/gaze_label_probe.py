"""Watches a SimGAN gaze run keep (or lose) the labels, iteration by iteration.

Only a simulator can do this: its real domain is labelled. The probe trains the paper's
gaze estimator on the simulator's labelled `real` split once (cached in `--work_dir`),
then trains SimGAN in chunks (`train_lib.train` resumes from the run's checkpoint), and
after each chunk refines the first `--images` synthetic images and reads them with that
estimator. Its mean angular error against the synthetic labels is low only if the refined
eyes still show the labelled gaze in a form a real-trained estimator reads; a refiner that
moves or smears the pupil drives it up. The raw synthetic images give the baseline.

Usage:
  python bench/gaze_label_probe.py --work_dir=runs/probe --chunks=25,50,100,150,200 \
      [--overrides='{"train.reg_weight": 0.2}']

`--chunks` are cumulative adversarial iterations (`train.steps`) of the `gaze_demo` preset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import simgan_tf  # noqa: E402,F401  (sets TensorFlow's CPU options before it loads)
import numpy as np  # noqa: E402

from simgan_tf import (builtin_data, config as config_lib, data, eval_lib, evaluation,  # noqa: E402
                       schema, simulator, train_lib)


def load(data_dir: str, split: str, n: int):
    images, labels = [], []
    for batch in data.read_split(data_dir, split).take(n).batch(1000).as_numpy_iterator():
        images.append(batch["image"])
        labels.append(batch[schema.LABEL_GAZE])
    return np.concatenate(images), np.concatenate(labels)


def mean_error(estimator, images, labels) -> float:
    predictions = estimator.predict(images, batch_size=500, verbose=0)
    return float(evaluation.angular_errors(simulator.gaze_to_vector(labels), predictions).mean())


def real_estimator(data_dir: str, path: str, steps: int):
    config = eval_lib.EvalConfig(steps=steps, seed=0)
    if os.path.exists(path):
        model = eval_lib.build_estimator(config, schema.read_dataset_info(data_dir).image_shape)
        model.load_weights(path)
        return model
    start = time.perf_counter()
    model = eval_lib.train_estimator(config, data_dir, "real")
    model.save_weights(path)
    test = eval_lib.test_estimator(config, model, data_dir, "real_test")["mean"]
    print(f"real-trained estimator: {time.perf_counter() - start:.0f} s, "
          f"{test:.2f} deg on real_test", flush=True)
    return model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default="runs/probe")
    parser.add_argument("--chunks", default="25,50,100,150,200")
    parser.add_argument("--overrides", default="{}", help="JSON dict of config overrides.")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--estimator_steps", type=int, default=1500)
    parser.add_argument("--cache_dir", default=None)
    args = parser.parse_args(argv)

    base = config_lib.override(config_lib.get_preset("gaze_demo"), json.loads(args.overrides))
    d = base.data
    data_dir = builtin_data.ensure_simulator_data(
        args.cache_dir, num_synthetic=d.simulator_num_synthetic,
        num_real=d.simulator_num_real, num_real_test=d.simulator_num_real_test)
    os.makedirs(args.work_dir, exist_ok=True)
    estimator = real_estimator(data_dir, os.path.join(args.work_dir, "real_estimator.weights.h5"),
                               args.estimator_steps)
    synthetic, labels = load(data_dir, "synthetic", args.images)
    print(f"raw synthetic: {mean_error(estimator, synthetic, labels):.2f} deg", flush=True)
    rows = []
    for steps in (int(c) for c in args.chunks.split(",")):
        config = config_lib.override(base, {"train.steps": steps, "train.export": False})
        result = train_lib.train(config, os.path.join(args.work_dir, "simgan"),
                                 cache_dir=args.cache_dir, verbose=0)
        refined = result.model.refiner.predict(synthetic, batch_size=500, verbose=0)
        rows.append({"iterations": steps, "error_deg": mean_error(estimator, refined, labels),
                     "l1_per_pixel": float(np.abs(refined - synthetic).mean())})
        print(f"after {steps} adversarial iterations: {rows[-1]['error_deg']:.2f} deg, "
              f"L1 {rows[-1]['l1_per_pixel']:.3f}/pixel", flush=True)
    with open(os.path.join(args.work_dir, "probe.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
