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
  python bench/gaze_oracle.py --work_dir=runs/oracle [--seed=1] [--cache_dir=...]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gaze_table2 import link_data  # noqa: E402
from simgan_tf.data import builtin, schema  # noqa: E402
from simgan_tf import config as config_lib
from simgan_tf.simulators import eyes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default="runs/oracle")
    parser.add_argument("--seed", type=int, default=1, help="Seed of the estimator.")
    parser.add_argument("--cache_dir", default=None)
    args = parser.parse_args(argv)

    d = config_lib.get_preset("gaze_demo").data
    source = builtin.ensure_simulator_data(
        args.cache_dir, num_synthetic=d.simulator_num_synthetic,
        num_real=d.simulator_num_real, num_real_test=d.simulator_num_real_test)
    work_dir = os.path.abspath(args.work_dir)
    data_dir = os.path.join(work_dir, "data")
    link_data(source, data_dir, ["synthetic", "real_test"])
    count = schema.read_dataset_info(source).splits["synthetic"].count
    seed = builtin.split_seeds(0)["synthetic"]  # the synthetic split's own seed
    quiet = dataclasses.replace(eyes.SimulatorConfig(), read_noise_range=(0.0, 0.0),
                                shot_noise=0.0, jpeg_quality_range=(95, 95))
    splits = schema.read_dataset_info(data_dir).splits
    for split, config in (("oracle_real", None), ("oracle_no_noise", quiet)):
        if split not in splits:
            print(f"rendering {count} images into {data_dir}/{split}", flush=True)
            builtin.write_simulator_split(data_dir, split, "real", count, seed,
                                               config=config)
    command = [sys.executable, "evaluate.py", "--dataset=gaze", f"--data_dir={data_dir}",
               f"--seed={args.seed}", "--train_splits=oracle_real,oracle_no_noise",
               "--test_split=real_test", f"--output_dir={os.path.join(work_dir, 'eval')}"]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
