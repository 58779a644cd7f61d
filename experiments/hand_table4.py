"""The paper's Table 4 on the built-in hand depth simulator, over several seeds.

The protocol of `experiments.tables` for hands: the stacked-hourglass hand estimator
(`hand_demo` evaluation preset, 64x64 depth) trained on the synthetic split, on each
SimGAN seed's refined split (the `hand_demo` schedule, or longer with
`--train_flags=--steps=N`) and on the simulator's labelled `real` split (the oracle),
tested on the labelled `real_test` depth images. The table reports the mean joint error
in pixels, the % of test images whose 14 joints are all within d pixels (the paper's
Figure 12), the realism score and the gap closed. Writes `<work_dir>/table4.md` and
`<work_dir>/curves.png`; finished steps are not run again.

Usage:
  python -m experiments.hand_table4 --work_dir=runs/table4 --seeds=1,2,3 [--train_flags=...]
"""

from absl import app, flags

from experiments import tables

tables.define_flags("runs/table4")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    tables.run(tables.HAND, FLAGS, oracle=True)


if __name__ == "__main__":
    app.run(main)
