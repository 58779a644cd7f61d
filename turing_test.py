"""Serves a visual Turing test (paper, Table 1) on a local web page.

The `simgan-turing-test` command of an installed simgan-tf, for a checkout: the flags and `main`
are in `simgan_tf_cli/turing_test.py` (`python turing_test.py --help` lists them).
"""

from simgan_tf_cli.turing_test import run

if __name__ == "__main__":
    run()
