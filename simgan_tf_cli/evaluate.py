"""The paper's evaluation: estimators trained on each split, tested on real images.

  python evaluate.py --dataset=gaze --data_dir=<data> --train_splits=synthetic,refined \
      --test_split=real_test --output_dir=<folder>

Writes `<output_dir>/results.json` (per training split: mean and median error and
"% within d" for d = 1..20, degrees for gaze, pixels for hands, and the realism score)
and `<output_dir>/curves.png`. Without `--train_splits` it reports the realism score
alone, for any data (no labels needed):

  python evaluate.py --data_dir=<data> --output_dir=<folder> [--candidate_splits=refined]

Parses flags (the named ones and `--config=PATH=VALUE` over the estimator preset) and
calls `simgan_tf.evaluation.eval_lib.evaluate` or `eval_lib.evaluate_realism`.
"""

from absl import app, flags, logging

import simgan_tf_cli as cli

from simgan_tf import config as config_lib

FLAGS = flags.FLAGS

flags.DEFINE_enum("dataset", "gaze", ["gaze", "hand"], "Task: gaze (paper's gaze "
                  "estimator, angular error) or hand (stacked hourglass, joint error).")
flags.DEFINE_string("data_dir", None, "Data folder holding the training and test splits.",
                    required=True)
flags.DEFINE_list("train_splits", [], "Labelled splits to train the estimator on, e.g. "
                  "synthetic,refined. None: the realism score alone (of --candidate_splits).")
flags.DEFINE_list("candidate_splits", None, "Without --train_splits: the splits whose "
                  "realism score is reported (default: every split that is not real).")
flags.DEFINE_string("test_split", "real_test", "Labelled real split to test on.")
flags.DEFINE_string("output_dir", None, "Where results.json and curves.png go.",
                    required=True)
flags.DEFINE_string("realism_split", "real_test", "Real split the realism classifier "
                    "compares each training split with; empty to skip the realism score "
                    "(with --train_splits).")
flags.DEFINE_integer("batch_size", None, "Global batch size of the estimator.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate of the estimator.")
flags.DEFINE_integer("steps", None, "Training steps of each estimator.")
flags.DEFINE_integer("seed", None, "Seed of initialization and data order.")
flags.DEFINE_integer("realism_steps", None, "Training steps of the realism classifier.")
flags.DEFINE_integer("realism_repeats", None, "Realism classifiers trained per split, with "
                     "seeds --seed, --seed + 1, ...; the score is their mean (one "
                     "classifier's accuracy varies by several points with its seed).")
flags.DEFINE_integer("realism_images", None, "Images of each set for the realism "
                     "classifier (half train it, half test it).")
flags.DEFINE_string("saved_model", None, "Optional: the exported refiner that made the "
                    "refined split; its model card (assets/model_card.json) gets these results.")
flags.DEFINE_bool("mixed_precision", None, "Train the estimators and realism classifiers in "
                  "bfloat16 on CPU (float16 on GPU); fast only on CPUs with native bfloat16 "
                  "(AVX512_BF16 or AMX).")
flags.DEFINE_enum("strategy", "auto", list(config_lib.STRATEGIES), "Distribution strategy.")
flags.DEFINE_bool("verbose", False, "Show Keras progress bars (instead of --progress).")
flags.DEFINE_bool("progress", True, "A progress bar per trained network (estimators, "
                  "realism classifiers); --noprogress for logs only.")
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
    "realism_repeats": "realism.repeats",
    "realism_images": "realism.num_images",
    "mixed_precision": ("mixed_precision", "realism.mixed_precision"),
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
    check_flags()
    cli.start_tensorflow_quietly()
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
        if FLAGS.train_splits:
            results = eval_lib.evaluate(
                config, FLAGS.data_dir, FLAGS.train_splits, FLAGS.test_split,
                FLAGS.output_dir, realism_split=FLAGS.realism_split or None,
                strategy=strategy, verbose="auto" if FLAGS.verbose else 0,
                progress=FLAGS.progress and not FLAGS.verbose)
        else:
            results = eval_lib.evaluate_realism(
                config.realism, FLAGS.data_dir, FLAGS.candidate_splits, FLAGS.realism_split,
                FLAGS.output_dir, strategy=strategy, progress=FLAGS.progress)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from None
    print(results_table(results), flush=True)
    logging.info("Wrote %s/results.json%s.", FLAGS.output_dir,
                 " and curves.png" if FLAGS.train_splits else "")
    if FLAGS.saved_model:
        keys = ("task", "test_split", "test_images", "train_splits", "realism_split",
                "candidate_splits", "splits")
        export.update_model_card(FLAGS.saved_model, evaluation={
            key: results[key] for key in keys if key in results})
        logging.info("Added the results to the model card of %s.", FLAGS.saved_model)


def check_flags():
    """Flag combinations `evaluate` cannot take (raises `app.UsageError`)."""
    if FLAGS.train_splits and FLAGS.candidate_splits is not None:
        raise app.UsageError(
            "--candidate_splits is for the realism score alone (no --train_splits); with "
            "--train_splits each training split gets the realism score. Received: "
            f"--train_splits={','.join(FLAGS.train_splits)} "
            f"--candidate_splits={','.join(FLAGS.candidate_splits)}")
    if not FLAGS.train_splits and not FLAGS.realism_split:
        raise app.UsageError(
            "Nothing to evaluate: no --train_splits and an empty --realism_split. Give "
            "--train_splits=synthetic,refined for the estimators, or a real split to score "
            "against (--realism_split=real_test).")


def _realism_text(score: dict | None) -> str:
    """A split's realism accuracy, with the classifiers' spread when there were several."""
    if score is None:
        return "-"
    text = f"{score['accuracy']:.3f}"
    if len(score.get("accuracies", ())) > 1:
        text += f" (sd {score['accuracy_sd']:.3f}, {len(score['accuracies'])} classifiers)"
    return text


def results_table(results: dict) -> str:
    """The results as a table: per split its errors (estimator runs) and realism accuracy."""
    rows = []
    for split, summary in results["splits"].items():
        realism_text = _realism_text(summary.get("realism"))
        if "mean" in summary:
            within = summary["within"]
            rows.append([split, f"{summary['mean']:.2f}", f"{summary['median']:.2f}",
                         f"{within.get('5', float('nan')):.1f}%",
                         f"{within.get('10', float('nan')):.1f}%", realism_text])
        else:
            rows.append([split, realism_text])
    if rows and len(rows[0]) > 2:
        unit = next(iter(results["splits"].values()))["unit"]
        header = ["trained on", f"mean ({unit})", "median", "within 5", "within 10",
                  "realism accuracy"]
    else:
        header = ["split", f"realism accuracy vs {results['realism_split']} "
                           "(0.5: indistinguishable)"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def run():
    """The `simgan-evaluate` command (and `python evaluate.py` in a checkout)."""
    cli.list_flags_in_help(__name__)
    cli.run_main(main)


if __name__ == "__main__":
    run()
