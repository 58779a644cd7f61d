"""The paper's evaluation: estimators trained on each split, tested on real images.

The `simgan-evaluate` command of an installed simgan-tf, for a checkout: the flags and `main`
are in `simgan_tf_cli/evaluate.py` (`python evaluate.py --help` lists them).
"""

from simgan_tf_cli.evaluate import run

if __name__ == "__main__":
    run()
