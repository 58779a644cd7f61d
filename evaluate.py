"""The paper's evaluation: estimators trained on each split, tested on real images.

  python evaluate.py --dataset=gaze --data_dir=<data> --train_splits=synthetic,refined \
      --test_split=real_test --output_dir=<folder>

Writes `<output_dir>/results.json` (per training split: mean and median error and
"% within d" for d = 1..20, degrees for gaze, pixels for hands, and the realism score)
and `<output_dir>/curves.png`. Parses flags (the named ones and `--config=PATH=VALUE` over
the estimator preset) and calls `simgan_tf.evaluation.eval_lib.evaluate`.
"""

from absl import app, flags, logging

from simgan_tf import config as config_lib

FLAGS = flags.FLAGS

flags.DEFINE_enum("dataset", "gaze", ["gaze", "hand"], "Task: gaze (paper's gaze "
                  "estimator, angular error) or hand (stacked hourglass, joint error).")
flags.DEFINE_string("data_dir", None, "Data folder holding the training and test splits.",
                    required=True)
flags.DEFINE_list("train_splits", ["synthetic", "refined"], "Labelled splits to train on.")
flags.DEFINE_string("test_split", "real_test", "Labelled real split to test on.")
flags.DEFINE_string("output_dir", None, "Where results.json and curves.png go.",
                    required=True)
flags.DEFINE_string("realism_split", "real_test", "Real split the realism classifier "
                    "compares each training split with; empty to skip the realism score.")
flags.DEFINE_integer("batch_size", None, "Global batch size of the estimator.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate of the estimator.")
flags.DEFINE_integer("steps", None, "Training steps of each estimator.")
flags.DEFINE_integer("seed", None, "Seed of initialization and data order.")
flags.DEFINE_integer("realism_steps", None, "Training steps of the realism classifier.")
flags.DEFINE_integer("realism_images", None, "Images of each set for the realism "
                     "classifier (half train it, half test it).")
flags.DEFINE_string("saved_model", None, "Optional: the exported refiner that made the "
                    "refined split; its model card (assets/model_card.json) gets these results.")
flags.DEFINE_enum("strategy", "auto", list(config_lib.STRATEGIES), "Distribution strategy.")
flags.DEFINE_bool("verbose", False, "Show Keras progress bars.")
flags.DEFINE_multi_string(
    "config", [], "Sets any field of the estimator config (eval_lib.EvalConfig) by its "
    "dotted path, PATH=VALUE; repeatable, e.g. --config=steps=500 "
    "--config=realism.num_images=1000. Values are parsed by the field's type (JSON for "
    "thresholds). Applied after the named flags above, so --config wins when both set a "
    "field.")

# Named flags -> the EvalConfig field paths they set.
_ALIASES = {
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "steps": "steps",
    "seed": ("seed", "realism.seed"),
    "realism_steps": "realism.steps",
    "realism_images": "realism.num_images",
}


def resolve_config():
    """The estimator preset for --dataset and the images, with the flags applied."""
    from simgan_tf.evaluation import eval_lib
    from simgan_tf.data import schema

    height = schema.read_dataset_info(FLAGS.data_dir).image_height
    name = eval_lib.preset_for(FLAGS.dataset, height)
    if name != FLAGS.dataset:
        logging.info("%dx%d images: using the %r estimator preset.", height, height, name)
    overrides = config_lib.command_line_overrides(
        {flag: FLAGS[flag].value for flag in _ALIASES}, FLAGS.config, aliases=_ALIASES,
        config_class=eval_lib.EvalConfig)
    return config_lib.override(eval_lib.PRESETS[name], overrides).validate()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from simgan_tf.evaluation import eval_lib  # imports TensorFlow
    from simgan_tf import distribute

    try:
        config = resolve_config()
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from None
    from simgan_tf.serving import export

    if FLAGS.saved_model:
        try:
            export.read_model_card(FLAGS.saved_model)  # fail before the long work
        except (OSError, ValueError) as e:
            raise app.UsageError(f"--saved_model={FLAGS.saved_model}: no readable model "
                                 f"card ({e}).") from None
    strategy = distribute.build_strategy(FLAGS.strategy)
    try:
        results = eval_lib.evaluate(
            config, FLAGS.data_dir, FLAGS.train_splits, FLAGS.test_split, FLAGS.output_dir,
            realism_split=FLAGS.realism_split or None, strategy=strategy,
            verbose="auto" if FLAGS.verbose else 0)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from None
    for split, summary in results["splits"].items():
        within = summary["within"]
        realism = summary.get("realism", {}).get("accuracy")
        logging.info("%-12s mean %.2f median %.2f %s | within 5: %.1f%% 10: %.1f%%%s", split,
                     summary["mean"], summary["median"], summary["unit"],
                     within.get("5", float("nan")), within.get("10", float("nan")),
                     f" | realism accuracy {realism:.3f}" if realism is not None else "")
    logging.info("Wrote %s/results.json and curves.png.", FLAGS.output_dir)
    if FLAGS.saved_model:
        export.update_model_card(FLAGS.saved_model, evaluation={
            key: results[key] for key in ("task", "test_split", "test_images", "train_splits",
                                          "splits")})
        logging.info("Added the results to the model card of %s.", FLAGS.saved_model)


if __name__ == "__main__":
    app.run(main)
