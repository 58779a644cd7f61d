"""Refines a folder of image files with an exported refiner.

    python refine_images.py --saved_model=runs/gaze_demo/export/refiner/900 \
        --input_dir=my_synthetic_pngs --output_dir=refined_pngs

Parses flags and calls `simgan_tf.serving.image_files.refine_folder`. Nothing else happens here.
"""

import sys

from absl import app, flags, logging

import simgan_tf_cli as cli

from simgan_tf_cli.refine import define_flags  # the same four flags as refine.py

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.start_tensorflow_quietly()
    from simgan_tf.serving import image_files

    try:
        written = image_files.refine_folder(FLAGS.saved_model, FLAGS.input_dir,
                                            FLAGS.output_dir, batch_size=FLAGS.batch_size)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"refine_images.py: {e}")
    logging.info("Refined %d images from %s into %s.", len(written), FLAGS.input_dir,
                 FLAGS.output_dir)
    print(f"Refined {len(written)} images into {FLAGS.output_dir}")


def run():
    """The `simgan-refine-images` command (and `python refine_images.py` in a checkout)."""
    define_flags(input_help="Folder of PNG/JPEG files of the export's image size.",
                 output_help="Where the refined PNG files go (same file stems).", batch_size=32)
    cli.list_flags_in_help("simgan_tf_cli.refine", __name__)
    cli.run_main(main)


if __name__ == "__main__":
    run()
