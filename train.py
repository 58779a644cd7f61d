"""Trains SimGAN: `python train.py --dataset=gaze [--data_dir=...] [--model_dir=...]`.

The `simgan-train` command of an installed simgan-tf, for a checkout: the flags and `main`
are in `simgan_tf_cli/train.py` (`python train.py --help` lists them).
"""

from simgan_tf_cli.train import run

if __name__ == "__main__":
    run()
