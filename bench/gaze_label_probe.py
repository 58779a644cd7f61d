"""Watches a SimGAN gaze run keep (or lose) the labels, iteration by iteration.

Only a simulator can do this: its real domain is labelled. The probe trains the paper's
gaze estimator on the simulator's labelled `real` split once (cached in `--work_dir`, one
file per `--estimator_steps`), then trains SimGAN in chunks (`train_lib.train` resumes
from the run's checkpoint), and after each chunk refines the first `--images` synthetic
images and reads them with that estimator. Its mean angular error against the synthetic labels is low only if the refined
eyes still show the labelled gaze in a form a real-trained estimator reads; a refiner that
moves or smears the pupil drives it up. The raw synthetic images give the baseline.

With `--realism_images=N` (default 4000; 0 turns it off) it also scores realism after each
chunk as `evaluate.py` does: a fresh `realism` classifier trained to tell the first N
images of `real_test` from the first N refined ones (quantized to the split's pixels, as
`refine.py` writes them), accuracy and cross-entropy on the held-out halves.

Usage:
  python bench/gaze_label_probe.py --work_dir=runs/probe --chunks=25,50,100,150,200 \
      [--overrides='{"train.reg_weight": 0.2}']

A run folder of `train.py --dataset=gaze` copied to `<work_dir>/simgan` is resumed, so
its chunks need not be trained again (pass its `--seed` as `{"train.seed": S}`).

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

from simgan_tf import config as config_lib  # noqa: E402
from simgan_tf.data import builtin, reader, schema  # noqa: E402
from simgan_tf.evaluation import eval_lib, metrics, realism  # noqa: E402
from simgan_tf.simulators import eyes  # noqa: E402
from simgan_tf.training import train_lib  # noqa: E402


def load(data_dir: str, split: str, n: int):
    arrays = reader.load_arrays(data_dir, split, ("image", schema.LABEL_GAZE), count=n)
    return arrays["image"], arrays[schema.LABEL_GAZE]


def mean_error(estimator, images, labels) -> float:
    predictions = estimator.predict(images, batch_size=500, verbose=0)
    return float(metrics.angular_errors(eyes.gaze_to_vector(labels), predictions).mean())


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
    parser.add_argument("--realism_images", type=int, default=4000)
    parser.add_argument("--cache_dir", default=None)
    args = parser.parse_args(argv)

    base = config_lib.override(config_lib.get_preset("gaze_demo"), json.loads(args.overrides))
    d = base.data
    data_dir = builtin.ensure_simulator_data(
        args.cache_dir, num_synthetic=d.simulator_num_synthetic,
        num_real=d.simulator_num_real, num_real_test=d.simulator_num_real_test)
    os.makedirs(args.work_dir, exist_ok=True)
    estimator = real_estimator(
        data_dir, os.path.join(args.work_dir, f"real_estimator-{args.estimator_steps}.weights.h5"),
        args.estimator_steps)
    info = schema.read_dataset_info(data_dir)
    n = max(args.images, args.realism_images)
    synthetic, labels = load(data_dir, "synthetic", n)
    real = realism.load_images(data_dir, "real_test", args.realism_images) \
        if args.realism_images else None

    def scores(images) -> dict:
        row = {"error_deg": mean_error(estimator, images[:args.images], labels[:args.images])}
        if real is not None:
            row["realism"] = realism.realism_score(real, images[:args.realism_images])
        return row

    def describe(row) -> str:
        text = f"{row['error_deg']:.2f} deg"
        if "realism" in row:
            text += (f", realism accuracy {row['realism']['accuracy'] * 100:.1f}% "
                     f"(cross-entropy {row['realism']['cross_entropy']:.3f})")
        return text

    print(f"raw synthetic: {describe(scores(synthetic))}", flush=True)
    rows = []
    for steps in (int(c) for c in args.chunks.split(",")):
        config = config_lib.override(base, {"train.steps": steps, "train.export": False})
        result = train_lib.train(config, os.path.join(args.work_dir, "simgan"),
                                 cache_dir=args.cache_dir, verbose=0)
        if result.preempted:  # SIGTERM: the run saved a checkpoint; stop, as train.py does
            raise SystemExit(f"Stopped by SIGTERM after {result.step} updates.")
        refined = result.model.refiner.predict(synthetic, batch_size=500, verbose=0)
        refined = reader.scale_image(  # the pixels refine.py would write
            reader.to_uint(refined, info.image_dtype, info.pixel_range), info.image_dtype,
            info.pixel_range).numpy()
        rows.append({"iterations": steps, **scores(refined),
                     "l1_per_pixel": float(np.abs(refined - synthetic).mean())})
        print(f"after {steps} adversarial iterations: {describe(rows[-1])}, "
              f"L1 {rows[-1]['l1_per_pixel']:.3f}/pixel", flush=True)
    with open(os.path.join(args.work_dir, "probe.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
