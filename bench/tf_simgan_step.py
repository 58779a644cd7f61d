#!/usr/bin/env python3
"""simgan-tf's SimGAN gaze training step, the counterpart of the PyTorch reference step.

`bench.train_speed` runs both side by side. The same measurement as the PyTorch
reference, through the library's own code: the paper's gaze networks from the `gaze`
preset, the `SimGAN` model's compiled per-phase train functions (`make_train_function`,
what `train.py` runs), its losses and history buffer, Algorithm 1 with K_g refiner
updates per K_d discriminator updates, and, as in the reference, SGD at 1e-3, lambda
1e-4, a 2,560-image buffer and one fixed random batch of synthetic and real images
(compute, not data loading). After each update the losses are read back to the host, as
`train_lib`'s loop does to check they are finite.

    python -m bench.tf_simgan_step [--batch 64] [--rounds 10] [--warmup 1] [--mixed_precision]
    python -m bench.tf_simgan_step --mode infer [--batch 512]

`--mode train` prints one line, like the reference, plus the achieved FLOP/s:
    tf mode=train batch=B k_g=.. k_d=.. rounds=R seconds=S img_per_s=X gflop_per_s=G
       best_img_per_s=.. best_gflop_per_s=.. precision=.. onednn=..
Throughput is synthetic images per second through refiner updates, K_g * batch * rounds
/ seconds (as the reference counts it); `best_*` is the fastest single iteration, the
figure least disturbed by other work on a shared machine. `--mode infer` times the
exported refiner (the SavedModel's `serving_default`, what `refine.py` and TF Serving
run) on batches of `--batch` images and prints img_per_s and gflop_per_s the same way.
Import order matters: `simgan_tf` first, so that TensorFlow starts with oneDNN
(`simgan_tf.runtime`); `TF_ENABLE_ONEDNN_OPTS=0` measures Eigen's kernels instead.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time

from absl import app, flags

from simgan_tf import runtime  # first: oneDNN
from simgan_tf import config as config_lib
from simgan_tf.serving import export
from simgan_tf.training import train_lib
from bench import flops

import tensorflow as tf  # pylint: disable=wrong-import-order  (after simgan_tf: oneDNN)

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "train", ["train", "infer"], "Time Algorithm 1 (train) or the "
                  "exported refiner (infer).")
flags.DEFINE_integer("batch", 64, "Images per batch.")
flags.DEFINE_integer("rounds", 10, "Timed iterations (train) or refiner calls (infer).")
flags.DEFINE_integer("warmup", 1, "Untimed rounds first.")
flags.DEFINE_integer("k_g", 2, "Refiner updates per iteration.")
flags.DEFINE_integer("k_d", 1, "Discriminator updates per iteration.")
flags.DEFINE_integer("buffer", 2560, "History buffer size, images.")
flags.DEFINE_float("lam", 1e-4, "Self-regularization weight lambda.")
flags.DEFINE_bool("mixed_precision", False,
                  "bfloat16 compute (Keras mixed_bfloat16), float32 weights")


def make_config(args) -> config_lib.SimGANConfig:
    # The paper's refiner, as in the PyTorch reference step (the gaze preset's output
    # grain, lighting and glint have no counterpart there).
    paper = dataclasses.replace(config_lib.get_preset("gaze"), refiner=config_lib.PAPER_REFINER)
    return config_lib.override(paper, {
        "train.batch_size": args.batch, "train.k_g": args.k_g, "train.k_d": args.k_d,
        "train.pretrain_refiner_steps": 0, "train.pretrain_discriminator_steps": 0,
        "train.steps": 10 ** 9, "train.history_size": args.buffer,
        "train.reg_weight": args.lam, "runtime.mixed_precision": args.mixed_precision,
        "train.seed": 0,
        "refiner_optimizer": config_lib.OptimizerConfig(name="sgd", learning_rate=1e-3),
        "discriminator_optimizer": config_lib.OptimizerConfig(name="sgd", learning_rate=1e-3),
    })


def build(config):
    with runtime.precision_policy(config.runtime.mixed_precision) as loss_scale:
        return train_lib.build_simgan(config, loss_scale=loss_scale)


def time_training(args, config) -> tuple[float, int]:
    """Seconds for `args.rounds` iterations of Algorithm 1, and FLOPs per counted image."""
    model = build(config)
    shape = config.image_shape
    generator = tf.random.Generator.from_seed(0)
    batch = {"synthetic": generator.uniform([args.batch, *shape], -1.0, 1.0),
             "real": generator.uniform([args.batch, *shape], -1.0, 1.0)}
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    train_function = model.make_train_function()
    updates_per_round = args.k_g + args.k_d

    def one_round():
        start = time.perf_counter()
        for _ in range(updates_per_round):
            logs = train_function(iterator)
            logs = {name: float(value) for name, value in logs.items()}
        return time.perf_counter() - start

    for _ in range(args.warmup):
        one_round()
    durations = [one_round() for _ in range(args.rounds)]
    counts = flops.algorithm1_flops(model.refiner, model.discriminator, k_g=args.k_g,
                                    k_d=args.k_d)
    return durations, counts.per_counted_image


def time_inference(args, config) -> tuple[float, int]:
    """Seconds for `args.rounds` batches through the exported refiner, FLOPs per image."""
    model = build(config)
    shape = config.image_shape
    with tempfile.TemporaryDirectory() as folder:
        path = export.export_refiner(model.refiner, folder, 0, shape)
        refine = export.load_refiner(path)
        images = tf.random.Generator.from_seed(0).uniform([args.batch, *shape], -1.0, 1.0)
        for _ in range(args.warmup):
            refine(images).numpy()
        durations = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            refine(images).numpy()
            durations.append(time.perf_counter() - start)
    return durations, flops.forward_flops(model.refiner)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    a = FLAGS
    config = make_config(a)
    if a.mode == "train":
        durations, per_image = time_training(a, config)
        per_round = a.k_g * a.batch
    else:
        durations, per_image = time_inference(a, config)
        per_round = a.batch
    seconds = sum(durations)
    images = per_round * a.rounds
    best = per_round / min(durations)
    precision = "bfloat16" if a.mixed_precision else "float32"
    print(f"tf mode={a.mode} batch={a.batch} k_g={a.k_g} k_d={a.k_d} rounds={a.rounds} "
          f"seconds={seconds:.3f} img_per_s={images / seconds:.1f} "
          f"gflop_per_s={images * per_image / seconds / 1e9:.1f} "
          f"best_img_per_s={best:.1f} best_gflop_per_s={best * per_image / 1e9:.1f} "
          f"precision={precision} onednn={runtime.onednn_enabled()}", flush=True)


if __name__ == "__main__":
    app.run(main)
