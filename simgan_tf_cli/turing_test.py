"""Serves a visual Turing test (paper, Table 1) on a local web page.

Real vs refined (the other split's images go through an exported refiner):

    python turing_test.py --data_dir=<folder> --real_split=real_test \
        --other_split=synthetic --saved_model=runs/gaze_demo/export/refiner/900 \
        --output=turing_real_vs_refined.json

Real vs synthetic: leave out --saved_model. Real vs an already refined split (e.g. one
written by refine.py): --other_data_dir=<folder> --other_split=<split> --other_label=refined.
Open the printed address in a browser, answer every image; the JSON (confusion matrix,
accuracy, binomial p-value, every answer) is saved after each click, and the command ends
after the results page has been shown.

Parses flags and calls `simgan_tf.evaluation.turing_test`. Nothing else happens here.
"""

import sys

from absl import app, flags

import simgan_tf_cli as cli

FLAGS = flags.FLAGS

flags.DEFINE_string("data_dir", None, "Data folder with the real split.", required=True)
flags.DEFINE_string("real_split", "real", "Split of real images (a held-out one such as "
                    "real_test if the folder has it).")
flags.DEFINE_string("other_data_dir", None, "Data folder of the other split (default: "
                    "--data_dir).")
flags.DEFINE_string("other_split", "synthetic", "Split of the images to tell from real ones.")
flags.DEFINE_string("saved_model", None, "Exported refiner; when given, the other split's "
                    "images are refined by it first (real vs refined).")
flags.DEFINE_string("other_label", None, "Name of the other class in the results "
                    "(default: refined with --saved_model, else synthetic).")
flags.DEFINE_integer("num_images", 50, "Images of each class (paper: 50 real, 50 refined).")
flags.DEFINE_integer("seed", 0, "Which images, and their order.")
flags.DEFINE_string("output", "turing_test.json", "Where the answers and results go.")
flags.DEFINE_string("subject", None, "Name or id of the person, stored in the JSON.")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on.")
flags.DEFINE_integer("port", 8000, "Port (0: any free port).")
flags.DEFINE_integer("zoom", None, "Display magnification (default: about 440 px wide).")
flags.DEFINE_bool("exit_when_done", True, "Stop after the results page has been shown.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.start_tensorflow_quietly()
    if FLAGS.num_images < 1:
        raise app.UsageError(f"--num_images must be >= 1. Received: {FLAGS.num_images}")
    from simgan_tf.evaluation import turing_test  # imports TensorFlow when loading images

    other_dir = FLAGS.other_data_dir or FLAGS.data_dir
    other_label = FLAGS.other_label or ("refined" if FLAGS.saved_model else "synthetic")
    refine = None
    try:
        if FLAGS.saved_model:
            from simgan_tf.serving import export

            refine = export.load_refiner(FLAGS.saved_model)
        real, real_keys = turing_test.load_images(FLAGS.data_dir, FLAGS.real_split,
                                                  FLAGS.num_images, seed=FLAGS.seed)
        other, other_keys = turing_test.load_images(other_dir, FLAGS.other_split,
                                                    FLAGS.num_images, seed=FLAGS.seed + 1,
                                                    refine=refine)
        session = turing_test.Session(
            real, real_keys, other, other_keys, other_label=other_label, output=FLAGS.output,
            seed=FLAGS.seed, metadata={
                "subject": FLAGS.subject,
                "sources": {
                    "real": {"data_dir": FLAGS.data_dir, "split": FLAGS.real_split},
                    other_label: {"data_dir": other_dir, "split": FLAGS.other_split,
                                  "saved_model": FLAGS.saved_model}}})
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"turing_test.py: {e}")
    httpd = turing_test.make_server(session, FLAGS.host, FLAGS.port, zoom=FLAGS.zoom,
                                    exit_when_done=FLAGS.exit_when_done)
    host, port = httpd.server_address[:2]
    print(f"Visual Turing test, real vs {other_label}, {len(session.trials)} images: "
          f"open http://{host}:{port}/", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    results = session.results()
    print(f"{results['answered']} of {len(session.trials)} answered, accuracy "
          f"{results['accuracy']}, p-value {results['p_value']:.4g}; saved {FLAGS.output}",
          flush=True)


def run():
    """The `simgan-turing-test` command (and `python turing_test.py` in a checkout)."""
    cli.list_flags_in_help(__name__)
    app.run(main)


if __name__ == "__main__":
    run()
