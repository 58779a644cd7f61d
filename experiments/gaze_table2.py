"""Reproduces the paper's Table 2 on the built-in eye simulator, over several seeds.

The protocol of `experiments.tables` for gaze: the gaze estimator trained once on the
synthetic split and once on each SimGAN seed's refined split (the `gaze_demo` schedule),
tested on the simulator's labelled `real_test` eyes, with the realism score. With
`--oracle` it also trains one on the simulator's labelled `real` eyes (the oracle row)
and reports the share of the synthetic-to-oracle gap each seed closes. Writes
`<work_dir>/table2.md` and `<work_dir>/curves.png` (the paper's Figure 7); finished steps
are not run again.

Usage:
  python -m experiments.gaze_table2 --work_dir=runs/table2 --seeds=1,2,3 [--train_flags=...]
"""

from absl import app, flags

from experiments import tables

tables.define_flags("runs/table2")
flags.DEFINE_bool("oracle", False, "Also train the estimator on the labelled real split "
                  "(the oracle row) and report the gap closed.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    tables.run(tables.GAZE, FLAGS, oracle=FLAGS.oracle)


if __name__ == "__main__":
    app.run(main)
