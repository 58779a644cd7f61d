"""The ceiling for refinement on the built-in eye simulator: an "oracle refiner".

Renders the synthetic split's own gazes and eye geometry in the simulator's real domain
(`oracle_real`: what a perfect refiner would output) and again without the real domain's
random sensor noise (`oracle_no_noise`: read and shot noise off, JPEG quality 95, the
best a deterministic refiner can aim at), then runs

  python evaluate.py --dataset=gaze --data_dir=<work>/data --seed=SEED \
      --train_splits=oracle_real,oracle_no_noise --test_split=real_test \
      --output_dir=<work>/eval

README's Table 2 compares these rows with synthetic and refined.

Usage:
  python -m experiments.gaze_oracle --work_dir=runs/oracle [--seed=1] [--cache_dir=...]
"""

from __future__ import annotations

import dataclasses
import os

from absl import app, flags

from simgan_tf.data import builtin, schema
from simgan_tf.simulators import eyes
from experiments import common

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "runs/oracle", "Where the data folder and results go.")
flags.DEFINE_integer("seed", 1, "Seed of the estimator.")
flags.DEFINE_string("cache_dir", None, "Simulator data cache (default: $SIMGAN_TF_CACHE or "
                    "~/.cache/simgan_tf).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = FLAGS
    source = common.simulator_data(args.cache_dir)
    work_dir = os.path.abspath(args.work_dir)
    data_dir = os.path.join(work_dir, "data")
    common.link_data(source, data_dir, ["synthetic", "real_test"])
    count = schema.read_dataset_info(source).splits["synthetic"].count
    seed = builtin.split_seeds(0)["synthetic"]  # the synthetic split's own seed
    quiet = dataclasses.replace(eyes.SimulatorConfig(), read_noise_range=(0.0, 0.0),
                                shot_noise=0.0, jpeg_quality_range=(95, 95))
    splits = schema.read_dataset_info(data_dir).splits
    for split, config in (("oracle_real", None), ("oracle_no_noise", quiet)):
        if split not in splits:
            print(f"rendering {count} images into {data_dir}/{split}", flush=True)
            builtin.write_simulator_split(data_dir, split, "real", count, seed, config=config)
    common.run(common.evaluate_command(data_dir, args.seed, "oracle_real,oracle_no_noise",
                                       os.path.join(work_dir, "eval")))


if __name__ == "__main__":
    app.run(main)
