"""Keras callbacks of a SimGAN run: TensorBoard summaries, skipped records, phase log.

TensorBoard gets scalars (losses, accuracies, schedule), image grids (synthetic | refined |
difference, real images, and refined | the discriminator's per-patch probability of
"real"), a histogram of the refiner's output minus its input, and an HParams entry with
the run's config.

Side effects live here, not in `train_step`: the callbacks run on the host between steps
and read the model's step counter, so a resumed run continues its curves where the
interrupted one stopped. Checkpoints are not a callback: `checkpointing.CheckpointPolicy`
decides when they are written, and the training loop (`loop.run`) reports each update
to it after the callbacks ran.

A summary that cannot be written (no space, no permission) raises `RunWriteError` naming
the event folder, and the run stops (its latest checkpoint is kept).
"""

from __future__ import annotations

import json

import numpy as np
import keras
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hparams_api

from simgan_tf.modeling import refiner as refiner_lib
from simgan_tf.modeling.losses import REAL
from simgan_tf.modeling.simgan import BALANCE_METRIC, SKIPPED_KEY, SPECTRAL_METRIC, TASK_METRIC
from simgan_tf.write_errors import writing

SCALAR_TAGS = {
    "refiner_adv_loss": "refiner/adversarial_loss",
    "refiner_reg_loss": "refiner/regularization_loss",
    "refiner_l1_per_pixel": "refiner/l1_per_pixel",
    "disc_loss": "discriminator/loss",
    "disc_acc_real": "discriminator/accuracy_real",
    "disc_acc_refined": "discriminator/accuracy_refined",
    "disc_acc_fresh": "discriminator/accuracy_fresh_refined",
    TASK_METRIC: "refiner/task_consistency_loss",
    BALANCE_METRIC: "discriminator/learning_rate_scale",
    SPECTRAL_METRIC: "refiner/spectral_loss",
}
PHASE_TAG = "schedule/phase"
ITERATION_TAG = "schedule/iteration"
REFINED_IMAGES_TAG = "images/synthetic_refined_difference"
REAL_IMAGES_TAG = "images/real"
PROBABILITY_IMAGES_TAG = "images/refined_discriminator_real_probability"
DIFFERENCE_HISTOGRAM_TAG = "refiner/output_minus_input"
LIGHTING_TAG = "refiner/lighting_std/{}"
GLINT_TAG = "refiner/glint/{}"



def to_display(images: np.ndarray) -> np.ndarray:
    """Maps `[n, H, W, C]` images in [-1, 1] to [0, 1] for display."""
    return np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def comparison_grid(synthetic: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """One image of rows `synthetic | refined | |refined - synthetic|`.

    Args:
      synthetic, refined: `[n, H, W, C]` in [-1, 1].

    Returns:
      `[1, n * (H + 1), 3 * (W + 1), C]` float32 in [0, 1]. The difference column is
      scaled so that the largest difference in the grid is white (its maximum, in
      [-1, 1] units, is written in the summary's description).
    """
    synthetic = np.asarray(synthetic, np.float32)
    refined = np.asarray(refined, np.float32)
    difference = np.abs(refined - synthetic)
    scale = max(float(difference.max()), 1e-6)
    return _column_grid([to_display(synthetic), to_display(refined), difference / scale])


def probability_grid(refined: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """One image of rows `refined | P(real) per patch`.

    Args:
      refined: `[n, H, W, C]` in [-1, 1].
      probability: `[n, H, W, 1]` in [0, 1] (`real_probability_map`); white is 1.

    Returns:
      `[1, n * (H + 1), 2 * (W + 1), C]` float32 in [0, 1].
    """
    refined = np.asarray(refined, np.float32)
    probability = np.repeat(np.asarray(probability, np.float32), refined.shape[-1], -1)
    return _column_grid([to_display(refined), probability])


def _column_grid(columns):
    """Tiles columns of `[n, H, W, C]` images in [0, 1] into `[1, n(H+1), k(W+1), C]`."""
    n, height, width, channels = columns[0].shape
    grid = np.ones([n * (height + 1), len(columns) * (width + 1), channels], np.float32)
    for row in range(n):
        for col, images in enumerate(columns):
            grid[row * (height + 1): row * (height + 1) + height,
                 col * (width + 1): col * (width + 1) + width] = images[row]
    return grid[None]


def real_probability_map(discriminator: keras.Model, images) -> np.ndarray:
    """The discriminator's probability that each patch is real, at the image size.

    Args:
      discriminator: `[n, H, W, C]` images -> `[n, h, w, 2]` logits.
      images: `[n, H, W, C]` in [-1, 1].

    Returns:
      `[n, H, W, 1]` float32 in [0, 1]: softmax probability of class real per patch,
      upsampled (nearest neighbour, so each patch stays a flat block) to `H x W`.
    """
    images = np.asarray(images, np.float32)
    logits = keras.ops.convert_to_numpy(discriminator(images, training=False))
    probability = tf.nn.softmax(logits.astype(np.float32), axis=-1)[..., REAL:REAL + 1]
    return tf.image.resize(probability, images.shape[1:3], method="nearest").numpy()


def flatten_hparams(config_json: dict, prefix: str = "") -> dict:
    """The config as flat HParams: `{"train.batch_size": 32, ...}`.

    Nested dicts become dotted names; lists (the discriminator's layers) become JSON
    strings; `None` values are left out (HParams takes bool, int, float and str only).
    """
    flat = {}
    for key, value in config_json.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_hparams(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value, sort_keys=True)
        elif value is not None:
            flat[name] = value
    return flat


def image_row_grid(images: np.ndarray, per_row: int = 8) -> np.ndarray:
    """Tiles `[n, H, W, C]` images in [-1, 1] into `[1, rows*(H+1), per_row*(W+1), C]`."""
    images = to_display(images)
    n, height, width, channels = images.shape
    rows = -(-n // per_row)
    grid = np.ones([rows * (height + 1), per_row * (width + 1), channels], np.float32)
    for i in range(n):
        r, c = divmod(i, per_row)
        grid[r * (height + 1): r * (height + 1) + height,
             c * (width + 1): c * (width + 1) + width] = images[i]
    return grid[None]


def lighting_strengths(refiner: keras.Model) -> dict[str, float]:
    """`{term: standard deviation}` of the refiner's random lighting (`OutputLighting`,
    named `lighting`), or `{}` for a refiner without it."""
    try:
        layer = refiner.get_layer("lighting")
    except ValueError:
        return {}
    values = keras.ops.convert_to_numpy(layer.strengths)
    return {term: float(v) for term, v in zip(refiner_lib.LIGHTING_TERMS, values)}


def glint_shape(refiner: keras.Model) -> dict[str, float]:
    """`{"peak": a, "sigma": s}` of the refiner's learned glint (`OutputGlint`, named
    `glint`; the mean over channels), or `{}` for a refiner without it."""
    try:
        layer = refiner.get_layer("glint")
    except ValueError:
        return {}
    peak, sigma = layer.peak_and_sigma()
    return {"peak": float(np.mean(keras.ops.convert_to_numpy(peak))),
            "sigma": float(np.mean(keras.ops.convert_to_numpy(sigma)))}


class SummaryCallback(keras.callbacks.Callback):
    """Writes TensorBoard scalars and image grids, keyed by the model's step counter.

    Every `log_every` steps it writes the running means of the metrics the phases since
    the last write updated, the phase and the Algorithm 1 iteration, then resets those
    means (so each point averages one interval and the progress bar shows recent values).
    Every `image_every` steps (and at the end) it refines a fixed batch of synthetic
    images and writes `synthetic | refined | |refined - synthetic|`, the histogram of
    refined minus synthetic pixel values, and `refined | P(real)` with the
    discriminator's per-patch probability map; at the start it writes a grid of real
    images and the HParams entry.

    Args:
      log_dir: TensorBoard folder (event files go to `<log_dir>/train`).
      synthetic_samples: `[n, H, W, C]` fixed synthetic images in [-1, 1].
      real_samples: `[m, H, W, C]` real images in [-1, 1].
      log_every, image_every: intervals in steps.
      hparams: flat hyperparameters of the run (`flatten_hparams`), or `None`.
    """

    def __init__(self, log_dir: str, synthetic_samples: np.ndarray, real_samples: np.ndarray,
                 log_every: int, image_every: int, hparams: dict | None = None):
        super().__init__()
        self.hparams = hparams
        self.log_dir = log_dir
        self.synthetic_samples = np.asarray(synthetic_samples, np.float32)
        self.real_samples = np.asarray(real_samples, np.float32)
        self.log_every = log_every
        self.image_every = image_every
        self._writer = None
        self._updated = set()

    def on_train_begin(self, logs=None):
        with writing(f"{self.log_dir}/train"):
            self._writer = tf.summary.create_file_writer(f"{self.log_dir}/train")
            with self._writer.as_default(step=self.model.step):
                tf.summary.image(REAL_IMAGES_TAG, image_row_grid(self.real_samples),
                                 description="Real images the discriminator sees.")
                if self.hparams:
                    hparams_api.hparams(self.hparams)
        self._write_images(self.model.step)

    def on_train_batch_begin(self, batch, logs=None):
        step = self.model.step
        self._updated.update(self.model.phase_metrics(self.model.schedule.phase(step)))

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.step
        if step % self.log_every == 0:
            self._write_scalars(step, logs or {})
        if step % self.image_every == 0:
            self._write_images(step)

    def on_train_end(self, logs=None):
        step = self.model.step
        if step % self.image_every:
            self._write_images(step)
        if self._updated:
            self._write_scalars(step, {n: t.result() for n, t in self.model.trackers.items()})
        with writing(f"{self.log_dir}/train"):
            self._writer.flush()

    def _write_scalars(self, step, logs):
        schedule = self.model.schedule
        values = {SCALAR_TAGS[name]: float(logs[name]) for name in sorted(self._updated)
                  if name in logs}
        with writing(f"{self.log_dir}/train"), self._writer.as_default(step=step):
            for tag, value in values.items():
                tf.summary.scalar(tag, value)
            tf.summary.scalar(PHASE_TAG, int(schedule.phase(max(step - 1, 0))),
                              description="0 pretrain R, 1 pretrain D, 2 R update, 3 D update")
            tf.summary.scalar(ITERATION_TAG, schedule.iteration(step))
            for term, value in lighting_strengths(self.model.refiner).items():
                tf.summary.scalar(LIGHTING_TAG.format(term), value,
                                  description="Learned standard deviation of the refiner's "
                                              "random lighting term (OutputLighting).")
            for name, value in glint_shape(self.model.refiner).items():
                tf.summary.scalar(GLINT_TAG.format(name), value,
                                  description="Learned peak (image units) or radius "
                                              "(pixels) of the refiner's glint (OutputGlint).")
            self._writer.flush()
        self.model.reset_trackers(self._updated)
        self._updated = set()

    def _write_images(self, step):
        # The summaries must not draw from the training updates' random sequence: a
        # resumed run writes them at other steps than an uninterrupted one.
        with refiner_lib.KeepRandomState(self.model.refiner, self.model.inference_refiner):
            refined = self.model.inference_refiner(self.synthetic_samples, training=False)
            refined = keras.ops.convert_to_numpy(refined)
        max_difference = float(np.abs(refined - self.synthetic_samples).max())
        probability = real_probability_map(self.model.discriminator, refined)
        with writing(f"{self.log_dir}/train"), self._writer.as_default(step=step):
            tf.summary.image(
                REFINED_IMAGES_TAG, comparison_grid(self.synthetic_samples, refined),
                description=("Rows: synthetic | refined | |refined - synthetic| scaled to "
                             f"its maximum, {max_difference:.4f} in [-1, 1] units."))
            tf.summary.histogram(
                DIFFERENCE_HISTOGRAM_TAG, refined - self.synthetic_samples,
                description="Refined minus synthetic pixel values ([-1, 1] units) of the "
                            "fixed sample batch.")
            tf.summary.image(
                PROBABILITY_IMAGES_TAG, probability_grid(refined, probability),
                description=("Rows: refined | the discriminator's softmax probability that "
                             "each patch is real (white 1, black 0), one block per patch. "
                             f"Mean {float(probability.mean()):.3f}."))


class PhaseLogger(keras.callbacks.Callback):
    """Logs when a phase of Algorithm 1 ends, with the figures that tell it went well.

    At the end of refiner pretraining it reports the L1 distance per pixel between the
    refined and synthetic images (near 0 means the refiner learned the identity).
    """

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.step
        schedule = self.model.schedule
        logs = logs or {}
        if step == schedule.pretrain_refiner_steps and step > 0:
            l1 = float(logs.get("refiner_l1_per_pixel", float("nan")))
            logging.info(
                "Refiner pretraining done (%d steps): L1 per pixel |R(x) - x| = %.4f in "
                "[-1, 1] units (%.2f%% of the range; near 0 means R is the identity).",
                step, l1, l1 * 50.0)
        if step == schedule.adversarial_start and schedule.pretrain_discriminator_steps > 0:
            logging.info(
                "Discriminator pretraining done (%d steps): accuracy real %.3f, refined %.3f.",
                schedule.pretrain_discriminator_steps,
                float(logs.get("disc_acc_real", float("nan"))),
                float(logs.get("disc_acc_refined", float("nan"))))


SKIPPED_RECORDS_TAG = "data/skipped_records"


class SkippedRecordsSummary(keras.callbacks.Callback):
    """Counts the bad input records skipped (`skip_bad_records`), logs and writes them.

    Reads `logs["skipped"]` (records the input pipeline dropped so far), plus
    `unreadable`, records lost to truncated shards found by the validation pass: logs a
    warning when the count grows, and writes it to TensorBoard every `log_every` steps
    and at the end.

    Args:
      log_dir: TensorBoard folder (event files go to `<log_dir>/train`).
      log_every: interval in steps.
      unreadable: records found unreadable before training.

    Attributes:
      total: records skipped so far (`unreadable` before the first step).
    """

    def __init__(self, log_dir: str, log_every: int, unreadable: int = 0):
        super().__init__()
        self.log_dir = log_dir
        self.log_every = log_every
        self.unreadable = unreadable
        self.total = unreadable
        self._writer = None
        self._last = None

    def on_train_begin(self, logs=None):
        with writing(f"{self.log_dir}/train"):
            self._writer = tf.summary.create_file_writer(f"{self.log_dir}/train")

    def on_train_batch_end(self, batch, logs=None):
        if logs and SKIPPED_KEY in logs:
            self._last = self.unreadable + int(logs[SKIPPED_KEY])
            if self._last > self.total:
                logging.warning("Skipped %d bad input record(s) so far (skip_bad_records).",
                                self._last)
            self.total = self._last
            if self.model.step % self.log_every == 0:
                self._write()

    def on_train_end(self, logs=None):
        self._write()
        with writing(f"{self.log_dir}/train"):
            self._writer.flush()

    def _write(self):
        if self._last is None:
            return
        with writing(f"{self.log_dir}/train"), self._writer.as_default(step=self.model.step):
            tf.summary.scalar(SKIPPED_RECORDS_TAG, self._last,
                              description="Bad input records skipped so far.")
