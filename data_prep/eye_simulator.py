"""Writes the built-in eye simulator's data folder.

    python -m data_prep.eye_simulator --output_dir=<data folder> \
        [--num_synthetic=20000] [--num_real=20000] [--num_real_test=4000] [--seed=0]

Writes `synthetic/` (clean renders, the UnityEyes role), `real/` (the same geometry with
camera effects, the MPIIGaze role) and `real_test/` (held-out `real` images) with
`label/gaze` on every record. `train.py` does this by itself into its cache when it is
given no `--data_dir`; this command is for choosing sizes or the place.
"""

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Data folder to write.", required=True)
flags.DEFINE_integer("num_synthetic", 20_000, "Images in synthetic/.", lower_bound=1)
flags.DEFINE_integer("num_real", 20_000, "Images in real/.", lower_bound=1)
flags.DEFINE_integer("num_real_test", 4_000, "Images in real_test/ (0: none).", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Dataset seed.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from simgan_tf.data import builtin

    seeds = builtin.split_seeds(FLAGS.seed)
    for split, domain, count in (("synthetic", "synthetic", FLAGS.num_synthetic),
                                 ("real", "real", FLAGS.num_real),
                                 ("real_test", "real", FLAGS.num_real_test)):
        if count:
            print(f"Rendering {count} {domain} images into {FLAGS.output_dir}/{split}")
            builtin.write_simulator_split(FLAGS.output_dir, split, domain, count,
                                               seeds[split])


if __name__ == "__main__":
    app.run(main)
