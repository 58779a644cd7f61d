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
  python -m experiments.gaze_label_probe --work_dir=runs/probe --chunks=25,50,100,150,200 \
      [--config=train.reg_weight=0.2 ...]

A run folder of `train.py --dataset=gaze` copied to `<work_dir>/simgan` is resumed, so
its chunks need not be trained again (pass its `--seed` as `--config=train.seed=S`).

`--chunks` are cumulative adversarial iterations (`train.steps`) of the `gaze_demo` preset.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags
import numpy as np

from simgan_tf import config as config_lib
from simgan_tf.data import reader, schema
from simgan_tf.evaluation import eval_lib, metrics, realism
from simgan_tf.training import train_lib
from experiments import common

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "runs/probe", "Where the SimGAN run, the cached estimator "
                    "and probe.json go.")
flags.DEFINE_list("chunks", ["25", "50", "100", "150", "200"], "Cumulative adversarial "
                  "iterations after which the refined images are read.")
flags.DEFINE_multi_string("config", [], "PATH=VALUE config override, repeatable (as in "
                          "train.py).")
flags.DEFINE_integer("images", 2000, "Synthetic images refined and read after each chunk.")
flags.DEFINE_integer("estimator_steps", 1500, "Training steps of the real-trained "
                     "estimator.")
flags.DEFINE_integer("realism_images", 4000, "Images of each set for the realism score; 0 "
                     "turns it off.")
flags.DEFINE_string("cache_dir", None, "Simulator data cache (default: $SIMGAN_TF_CACHE or "
                    "~/.cache/simgan_tf).")


def load(data_dir: str, split: str, n: int):
    arrays = reader.load_arrays(data_dir, split, ("image", schema.LABEL_GAZE), count=n)
    return arrays["image"], arrays[schema.LABEL_GAZE]


def mean_error(estimator, images, labels) -> float:
    predictions = estimator.predict(images, batch_size=500, verbose=0)
    return float(metrics.angular_errors(metrics.gaze_to_vector(labels), predictions).mean())


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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = FLAGS
    try:
        base = config_lib.override(config_lib.get_preset("gaze_demo"),
                                   config_lib.parse_overrides(args.config))
    except ValueError as e:  # names config fields and values; they match --config
        raise app.UsageError(str(e)) from None
    data_dir = common.simulator_data(args.cache_dir, base.data)
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
    for steps in (int(c) for c in args.chunks):
        config = config_lib.override(base, {"train.steps": steps, "train.export": False})
        result = train_lib.train(config, os.path.join(args.work_dir, "simgan"),
                                 cache_dir=args.cache_dir, verbose=0)
        if result.preempted:  # SIGTERM: the run saved a checkpoint; stop, as train.py does
            raise SystemExit(f"Stopped by SIGTERM after {result.step} updates.")
        # The refiner a run exports: the EMA refiner when `train.ema_decay` is on.
        refined = result.model.inference_refiner.predict(synthetic, batch_size=500, verbose=0)
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
    app.run(main)
