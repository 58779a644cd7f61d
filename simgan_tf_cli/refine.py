"""Refines a TFRecord split with an exported refiner.

  python refine.py --saved_model=<model_dir>/export/refiner/<step> \
      --input_dir=<data>/synthetic --output_dir=<data>/refined

Every record is copied with its key, domain and labels unchanged and its image replaced
by the refined one; the output split's `dataset.json` entry says where it came from.
Parses flags and calls `simgan_tf.serving.refine_split.refine_split`; nothing else happens here.
"""

from absl import app, flags, logging

import simgan_tf_cli as cli

FLAGS = flags.FLAGS


def define_flags(*, input_help: str, output_help: str, batch_size: int) -> None:
    """The flags of refine.py and refine_images.py: an export, what to refine, where to."""
    flags.DEFINE_string("saved_model", None, "Exported refiner SavedModel folder "
                        "(<model_dir>/export/refiner/<step>).", required=True)
    flags.DEFINE_string("input_dir", None, input_help, required=True)
    flags.DEFINE_string("output_dir", None, output_help, required=True)
    flags.DEFINE_integer("batch_size", batch_size, "Images per refiner call.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.start_tensorflow_quietly()
    from simgan_tf.serving import refine_split  # imports TensorFlow

    try:
        info = refine_split.refine_split(FLAGS.saved_model, FLAGS.input_dir, FLAGS.output_dir,
                                       batch_size=FLAGS.batch_size, progress=True)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from None
    logging.info("Wrote %d refined images to %s.", info.count, FLAGS.output_dir)


def run():
    """The `simgan-refine` command (and `python refine.py` in a checkout)."""
    define_flags(input_help="Split folder to refine, e.g. <data>/synthetic.",
                 output_help="Split folder to write, e.g. <data>/refined.", batch_size=256)
    cli.list_flags_in_help(__name__)
    cli.run_main(main)


if __name__ == "__main__":
    run()
