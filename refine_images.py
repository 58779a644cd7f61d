"""Refines a folder of image files with an exported refiner.

The `simgan-refine-images` command of an installed simgan-tf, for a checkout: the flags and `main`
are in `simgan_tf_cli/refine_images.py` (`python refine_images.py --help` lists them).
"""

from simgan_tf_cli.refine_images import run

if __name__ == "__main__":
    run()
