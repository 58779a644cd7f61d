"""The paper's evaluation: train a task network on one split, test it on real images.

`evaluate(config, data_dir, train_splits, test_split, output_dir)` trains one estimator
per training split (for example `synthetic` and `refined`) with the same settings and
seed, tests each on the labelled real split, and writes

  results.json   per training split: mean, median, "% within d" for d in
                 `config.thresholds`, image counts, and (optionally) the realism score
  curves.png     the cumulative curves of all training splits on one figure
  logs/          TensorBoard: the curves as an image (`evaluation/curves`), and per
                 training split the mean and median error and the realism accuracy

`evaluate_realism(config, data_dir, candidate_splits, realism_split, output_dir)` is the
realism score alone, for any data (no labels needed, any image shape): results.json and
the realism accuracies in logs/, no curves.

Tasks: `gaze` (paper's gaze estimator, angular error in degrees, needs `label/gaze`) and
`hand` (stacked hourglass, joint error in image pixels, needs `label/joints_uvd`). The
estimator is built and trained in the given distribution strategy's scope; `fit`
splits each global batch across replicas.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from simgan_tf import runtime
from simgan_tf.data import reader, schema, task_data
from simgan_tf.evaluation import estimators, metrics, realism
from simgan_tf.evaluation import progress as progress_lib

TASKS = ("gaze", "hand")
RESULTS_FILE = "results.json"
CURVES_FILE = "curves.png"
LOG_DIR = "logs"
CURVES_TAG = "evaluation/curves"
_LABEL = {"gaze": schema.LABEL_GAZE, "hand": schema.LABEL_JOINTS_UVD}


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How an estimator is trained and tested.

    Attributes:
      task: `gaze` or `hand`.
      batch_size: global batch size.
      learning_rate: Adam step size.
      steps: training steps.
      seed: initialization and data order (the same for every training split).
      shuffle_buffer: records in the shuffle buffer.
      hourglass: the hand estimator's sizes (`hand` only).
      thresholds: d values of the cumulative curve (degrees or pixels).
      realism: settings of the realism classifier.
      mixed_precision: train the estimators in bfloat16 on CPU (float16 with loss scaling
        on GPU); their outputs stay float32 (`runtime.precision_policy`). Fast only where
        the CPU computes bfloat16 natively (`runtime.bfloat16_native`).
    """
    task: str = "gaze"
    batch_size: int = 64
    learning_rate: float = 1e-4
    steps: int = 1500
    seed: int = 0
    shuffle_buffer: int = 10_000
    hourglass: estimators.HourglassConfig = estimators.HourglassConfig()
    thresholds: tuple = metrics.DEFAULT_THRESHOLDS
    realism: realism.RealismConfig = realism.RealismConfig()
    mixed_precision: bool = False

    def validate(self) -> "EvalConfig":
        checks = [
            (self.task in TASKS, f"task must be one of {TASKS}. Received: {self.task!r}"),
            (self.batch_size >= 1, f"batch_size must be >= 1. Received: {self.batch_size}"),
            (self.learning_rate > 0, f"learning_rate must be > 0. Received: {self.learning_rate}"),
            (self.steps >= 1, f"steps must be >= 1. Received: {self.steps}"),
            (len(self.thresholds) >= 1 and all(d > 0 for d in self.thresholds),
             f"thresholds must be positive numbers. Received: {self.thresholds}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.task == "hand":
            self.hourglass.validate()
        self.realism.validate()
        return self


PRESETS = {
    "gaze": EvalConfig(task="gaze"),
    "hand": EvalConfig(task="hand", batch_size=16, learning_rate=2.5e-4, steps=3000,
                       shuffle_buffer=2_000),
    # The built-in hand simulator's 64x64 depth images: 16x16 heatmaps, smaller network.
    "hand_demo": EvalConfig(task="hand", batch_size=32, learning_rate=1e-3, steps=1500,
                            shuffle_buffer=2_000,
                            hourglass=estimators.HourglassConfig(heatmap_size=16, depth=3,
                                                                 filters=64)),
}
# Images smaller than this use the `<task>_demo` preset when it exists.
DEMO_BELOW = {"hand": 128}


def preset_for(task: str, image_height: int) -> str:
    """The preset name for a task and image size (`hand_demo` for small depth images)."""
    if task not in TASKS:
        raise ValueError(f"Expected task in {TASKS}. Received: {task!r}")
    if task in DEMO_BELOW and image_height < DEMO_BELOW[task]:
        return f"{task}_demo"
    return task


def _check_labels(info: schema.DatasetInfo, data_dir: str, split: str, task: str):
    """`task_data.label_names`' check of the task's label field, naming the task."""
    try:
        task_data.label_names(data_dir, split, _LABEL[task], info=info)
    except ValueError as error:
        raise ValueError(f"{error} The {task} evaluation needs {_LABEL[task]}.") from None


def _targets(config: EvalConfig, image_size: int):
    """Maps `(image, label)` to (image, training target)."""
    if config.task == "gaze":
        return lambda image, gaze: (image, metrics.gaze_to_vector(gaze))
    hg = config.hourglass

    def hand(image, joints_uvd):
        uv = tf.reshape(joints_uvd, [-1, 3])[:, :2]
        maps = estimators.joint_heatmaps(uv[None], image_size, hg.heatmap_size, hg.sigma)[0]
        return image, maps
    return hand


def build_estimator(config: EvalConfig, image_shape) -> keras.Model:
    """Builds and compiles the task's estimator. Call inside the strategy scope."""
    if config.task == "gaze":
        model = estimators.build_gaze_estimator(image_shape)
        loss = estimators.gaze_loss
    else:
        model = estimators.build_hand_estimator(image_shape, config.hourglass)
        loss = estimators.heatmap_loss
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss)
    return model


def train_estimator(config: EvalConfig, data_dir: str, split: str, *,
                    strategy: tf.distribute.Strategy | None = None,
                    verbose: int = 0, callbacks: list | None = None,
                    augmentation=None) -> keras.Model:
    """Trains a fresh estimator on one labelled split for `config.steps` steps
    (`callbacks`: Keras callbacks of its `fit`, e.g. a progress bar).

    `augmentation`, a function returning Keras layers that are active in training only
    (e.g. `keras.layers.GaussianNoise`), puts those layers before the estimator while it
    trains; the estimator returned is the bare network."""
    config.validate()
    info = schema.read_dataset_info(data_dir)
    _check_labels(info, data_dir, split, config.task)
    strategy = strategy or tf.distribute.get_strategy()
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(f"batch_size {config.batch_size} does not split over "
                         f"{strategy.num_replicas_in_sync} replicas.")
    keras.utils.set_random_seed(config.seed)
    dataset = task_data.task_dataset(
        data_dir, split, _LABEL[config.task], batch_size=config.batch_size, shuffle=True,
        repeat=True, seed=config.seed, shuffle_buffer=config.shuffle_buffer,
        preprocess=_targets(config, info.image_height), info=info)
    with runtime.precision_policy(config.mixed_precision), strategy.scope():
        model = build_estimator(config, info.image_shape)
        trained = model
        if augmentation is not None:
            trained = keras.Sequential([keras.Input(info.image_shape), *augmentation(), model],
                                       name=f"augmented_{model.name}")
            # The estimator's own optimizer and loss: the layers before it have no
            # weights, so the wrapper trains exactly the estimator's variables.
            trained.compile(optimizer=model.optimizer, loss=model.loss)
    trained.fit(dataset, epochs=1, steps_per_epoch=config.steps, shuffle=False,
                verbose=verbose, callbacks=callbacks)
    return model


def test_estimator(config: EvalConfig, model: keras.Model, data_dir: str, split: str) -> dict:
    """Tests a trained estimator on a labelled split; returns `metrics.summarize`."""
    info = schema.read_dataset_info(data_dir)
    _check_labels(info, data_dir, split, config.task)
    label = _LABEL[config.task]
    arrays = reader.load_arrays(data_dir, split, ("image", label), info=info)
    images, labels = arrays["image"], arrays[label]
    predictions = model.predict(images, batch_size=256, verbose=0)
    if config.task == "gaze":
        errors = metrics.angular_errors(metrics.gaze_to_vector(labels), predictions)
        return metrics.summarize(errors, config.thresholds, unit="degrees")
    joints = estimators.heatmaps_to_joints(predictions[:, -1], info.image_height).numpy()
    true_uv = labels.reshape(len(labels), -1, 3)[..., :2]
    errors = metrics.joint_errors(true_uv, joints)
    return metrics.summarize(errors, config.thresholds, per_image=errors.max(axis=1),
                                unit="pixels")


def evaluate(config: EvalConfig, data_dir: str, train_splits: list[str], test_split: str,
             output_dir: str, *, realism_split: str | None = None,
             strategy: tf.distribute.Strategy | None = None, verbose: int = 0,
             progress: bool = False) -> dict:
    """Trains on each training split, tests on `test_split`, writes the results.

    Args:
      config: estimator settings (validated here).
      data_dir: data folder holding every split.
      train_splits: labelled splits to train on, e.g. `["synthetic", "refined"]`.
      test_split: labelled real split to test on, e.g. `real_test`.
      output_dir: where results.json and curves.png go (created).
      realism_split: real split the realism classifier compares each training split
        with (`None`: no realism score).
      strategy: distribution strategy (default: the current one).
      verbose: Keras progress bar mode of training.
      progress: a tqdm bar per trained network (estimators, realism classifiers).

    Returns:
      The results dict written to results.json.
    """
    config.validate()
    if not train_splits:
        raise ValueError("Expected at least one training split. Received none.")
    info = schema.read_dataset_info(data_dir)  # FileNotFoundError names a missing folder
    # Check every split before any long work.
    for split in [*train_splits, test_split]:
        _check_labels(info, data_dir, split, config.task)
    if realism_split:
        info.get_split(realism_split, data_dir)
    os.makedirs(output_dir, exist_ok=True)

    real_images = None
    if realism_split:
        count = _realism_count(config.realism, info, realism_split, train_splits)
        real_images = realism.load_images(data_dir, realism_split, count)
    summaries = {}
    for number, split in enumerate(train_splits, 1):
        logging.info("Training split %d of %d: %s (%d images).", number, len(train_splits),
                     split, info.splits[split].count)
        summaries[split] = evaluate_split(config, data_dir, split, test_split, info,
                                          real_images=real_images, strategy=strategy,
                                          verbose=verbose, progress=progress)
    results = {
        "task": config.task,
        "data_dir": os.path.abspath(data_dir),
        "train_splits": list(train_splits),
        "test_split": test_split,
        "test_images": info.splits[test_split].count,
        "realism_split": realism_split,
        "config": dataclasses.asdict(config),
        "splits": summaries,
    }
    write_outputs(output_dir, results)
    return results


def _realism_count(config: realism.RealismConfig, info: schema.DatasetInfo,
                   realism_split: str, splits) -> int:
    """Images of each set the realism classifier uses: as many as every split has."""
    return min(config.num_images, info.splits[realism_split].count,
               *(info.splits[s].count for s in splits))


def synthetic_domain_splits(info: schema.DatasetInfo) -> list[str]:
    """The splits of a folder that are not real images (synthetic, refined, ...), sorted."""
    return sorted(name for name, split in info.splits.items() if split.domain != "real")


def evaluate_realism(config: realism.RealismConfig, data_dir: str,
                     candidate_splits: list[str] | None, realism_split: str,
                     output_dir: str, *, strategy: tf.distribute.Strategy | None = None,
                     progress: bool = False) -> dict:
    """The realism score alone, for any data: no labels, any image shape.

    For each candidate split, a fresh classifier learns to tell its first images from
    `realism_split`'s and is tested on held-out halves (`realism.realism_score`).

    Args:
      config: the realism classifier's settings (validated here).
      data_dir: data folder holding the splits.
      candidate_splits: splits to score; `None`: every split that is not real
        (`synthetic_domain_splits`).
      realism_split: the real split to compare with, e.g. `real_test`.
      output_dir: where results.json and the TensorBoard summaries (`logs/`) go.
      strategy: distribution strategy of the classifier (default: the current one).
      progress: a tqdm bar per classifier.

    Returns:
      The results dict written to results.json: `splits` maps each candidate to
      `{"realism": score, "train_images": images in the split}`.

    Raises:
      ValueError, FileNotFoundError: a missing folder or split, no candidate, or a
        split too small for the score.
    """
    config.validate()
    info = schema.read_dataset_info(data_dir)
    candidates = (synthetic_domain_splits(info) if candidate_splits is None
                  else list(candidate_splits))
    if not candidates:
        raise ValueError(f"{data_dir} has no split to score against {realism_split!r}: "
                         f"its splits are {sorted(info.splits)}, all real.")
    for split in [realism_split, *candidates]:
        info.get_split(split, data_dir)  # names the folder and the splits it has
    count = _realism_count(config, info, realism_split, candidates)
    real_images = realism.load_images(data_dir, realism_split, count)
    summaries = {}
    for split in candidates:
        score = realism.realism_score(
            real_images, realism.load_images(data_dir, split, count), config,
            strategy=strategy, callbacks=progress_lib.fit_callbacks(
                progress, config.steps, f"realism classifier: {split} vs {realism_split}"))
        summaries[split] = {"realism": score, "train_images": info.splits[split].count}
        logging.info("Realism of %s against %s: accuracy %.3f (50%% = indistinguishable).",
                     split, realism_split, score["accuracy"])
    results = {
        "task": "realism",
        "data_dir": os.path.abspath(data_dir),
        "candidate_splits": candidates,
        "realism_split": realism_split,
        "realism_images": count,
        "config": dataclasses.asdict(config),
        "splits": summaries,
    }
    os.makedirs(output_dir, exist_ok=True)
    metrics.write_results(os.path.join(output_dir, RESULTS_FILE), results)
    write_summaries(os.path.join(output_dir, LOG_DIR), summaries)
    return results


def evaluate_split(config: EvalConfig, data_dir: str, split: str, test_split: str,
                   info: schema.DatasetInfo, *, real_images: np.ndarray | None = None,
                   strategy: tf.distribute.Strategy | None = None, verbose: int = 0,
                   progress: bool = False) -> dict:
    """Trains an estimator on `split`, tests it on `test_split`: that split's summary.

    With `real_images`, the summary also holds the realism score of `split`'s first
    `len(real_images)` images against them (`realism.realism_score`).
    """
    start = time.perf_counter()
    model = train_estimator(config, data_dir, split, strategy=strategy, verbose=verbose,
                            callbacks=progress_lib.fit_callbacks(
                                progress, config.steps, f"{config.task} estimator on {split}"))
    summary = test_estimator(config, model, data_dir, test_split)
    summary["train_images"] = info.splits[split].count
    summary["train_seconds"] = round(time.perf_counter() - start, 1)
    if real_images is not None:
        candidate = realism.load_images(data_dir, split, len(real_images))
        summary["realism"] = realism.realism_score(
            real_images, candidate, config.realism, strategy=strategy,
            callbacks=progress_lib.fit_callbacks(progress, config.realism.steps,
                                                 f"realism classifier: {split} vs real"))
    logging.info("Trained on %s, tested on %s: mean %.3f %s, median %.3f%s.", split,
                 test_split, summary["mean"], summary["unit"], summary["median"],
                 f", realism accuracy {summary['realism']['accuracy']:.3f}"
                 if "realism" in summary else "")
    return summary


def write_outputs(output_dir: str, results: dict) -> None:
    """Writes results.json, the curves plot and the TensorBoard summaries of `results`."""
    summaries, task = results["splits"], results["task"]
    metrics.write_results(os.path.join(output_dir, RESULTS_FILE), results)
    unit = "degrees" if task == "gaze" else "pixels"
    curves = metrics.plot_curves(
        summaries, os.path.join(output_dir, CURVES_FILE),
        title=f"{task}: trained on each split, tested on {results['test_split']}",
        xlabel=f"distance from ground truth ({unit})" + (
            "; all joints within" if task == "hand" else ""))
    write_summaries(os.path.join(output_dir, LOG_DIR), summaries, curves)


def write_summaries(log_dir: str, summaries: dict, curves_png: str | None = None) -> None:
    """Writes the evaluation to TensorBoard (step 0): the curves image (when given) and
    per split the errors (when the split has them) and the realism accuracy."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        if curves_png:
            with open(curves_png, "rb") as f:
                image = tf.io.decode_png(f.read(), channels=4)
            tf.summary.image(CURVES_TAG, image[None], step=0, description=(
                "Cumulative % of test images within d, per training split."))
        for split, summary in summaries.items():
            if "mean" in summary:
                tf.summary.scalar(f"evaluation/{split}/mean_error", summary["mean"], step=0)
                tf.summary.scalar(f"evaluation/{split}/median_error", summary["median"],
                                  step=0)
            if "realism" in summary:
                tf.summary.scalar(f"evaluation/{split}/realism_accuracy",
                                  summary["realism"]["accuracy"], step=0)
    writer.close()
