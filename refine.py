"""Refines a TFRecord split with an exported refiner.

The `simgan-refine` command of an installed simgan-tf, for a checkout: the flags and `main`
are in `simgan_tf_cli/refine.py` (`python refine.py --help` lists them).
"""

from simgan_tf_cli.refine import run

if __name__ == "__main__":
    run()
