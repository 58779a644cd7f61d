"""An automatic realism score: how well a fresh classifier tells real from candidate images.

The machine version of the paper's visual Turing test (Sec. 3.1, Table 1): a classifier
that never saw SimGAN's discriminator or its training is trained to separate real images
from candidate images (refined, or raw synthetic), on the first half of each set, and its
accuracy is measured on the second, held-out half. 50% means the two sets cannot be told
apart by it; 100% means they always can. No labels are needed.

The classifier is a small CNN (three strided 3x3 convolutions of 32, 64, 128 channels with
ReLU, global average pooling, one logit), trained with Adam and binary cross-entropy for a
fixed number of steps on balanced batches. Because it is trained the same way for every
candidate set, the accuracies of several candidates against the same real images are
comparable: lower is more realistic. Held-out cross-entropy is reported as well, since two
candidates can both reach 100% accuracy at different margins.

One short-trained classifier's accuracy depends on its seed: on the refined eyes of six
SimGAN runs on the gaze simulator, five seeds of the classifier on the same images gave
accuracies 3 to 23 points apart (standard deviation 1.3 to 8.5 points).
`RealismConfig.repeats` trains that many classifiers (seeds `seed`, `seed + 1`, ...) on
the same halves and reports their mean, with each accuracy and their standard deviation.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from simgan_tf import runtime
from simgan_tf.data import reader


@dataclasses.dataclass(frozen=True)
class RealismConfig:
    """How the realism classifier is trained.

    Attributes:
      num_images: images taken from each set (the first ones in file order); half train
        the classifier, half test it.
      steps: training steps.
      batch_size: images per step (half real, half candidate).
      learning_rate: Adam step size.
      seed: initialization and batch order (of the first classifier, with `repeats`).
      repeats: classifiers trained, with seeds `seed`, `seed + 1`, ...; the score is their
        mean.
      mixed_precision: train in bfloat16 on CPU (float16 with loss scaling on GPU); the
        logit stays float32 (`runtime.precision_policy`).
    """
    num_images: int = 4000
    steps: int = 600
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    repeats: int = 1
    mixed_precision: bool = False

    def validate(self) -> "RealismConfig":
        if (self.num_images < 4 or self.steps < 1 or self.batch_size < 2 or self.batch_size % 2
                or self.repeats < 1):
            raise ValueError(
                "realism needs num_images >= 4, steps >= 1, an even batch_size >= 2 and "
                f"repeats >= 1. Received: {self}")
        if self.learning_rate <= 0:
            raise ValueError(f"realism learning_rate must be > 0. Received: {self.learning_rate}")
        return self


def build_classifier(image_shape: tuple[int, int, int], name: str = "realism_classifier"):
    """The realism classifier: `[batch, H, W, C]` in [-1, 1] -> `[batch, 1]` logits of real."""
    inputs = keras.Input(shape=image_shape, name="images")
    x = inputs
    for i, filters in enumerate((32, 64, 128)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu",
                                name=f"conv{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(1, dtype="float32", name="logit")(x)
    return keras.Model(inputs, outputs, name=name)


def load_images(data_dir: str, split: str, count: int) -> np.ndarray:
    """The first `count` images of a split (file order), `[n, H, W, C]` float32 in [-1, 1].

    Raises:
      ValueError: if the split holds fewer than `count` images.
    """
    return reader.load_arrays(data_dir, split, count=count)["image"]


def train_classifier(images: np.ndarray, labels: np.ndarray,
                     config: RealismConfig = RealismConfig(), *,
                     strategy: tf.distribute.Strategy | None = None,
                     callbacks: tuple = ()) -> keras.Model:
    """Trains a fresh realism classifier for `config.steps` steps.

    Args:
      images: `[n, H, W, C]` float32 in [-1, 1].
      labels: `[n]` float32, 1 for real, 0 for candidate.
      config: training settings (`num_images` is ignored).
      strategy: distribution strategy (default: the current one).
      callbacks: Keras callbacks passed to `fit` (a progress bar; `bench/estimator_speed.py`
        times steps).

    Returns:
      The trained classifier.
    """
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(config.seed)
    with runtime.precision_policy(config.mixed_precision), strategy.scope():
        model = build_classifier(images.shape[1:])
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True))
    train = (tf.data.Dataset.from_tensor_slices((images, labels))
             .shuffle(len(images), seed=config.seed, reshuffle_each_iteration=True)
             .repeat().batch(config.batch_size, drop_remainder=True)
             .prefetch(tf.data.AUTOTUNE))
    model.fit(train, epochs=1, steps_per_epoch=config.steps, shuffle=False, verbose=0,
              callbacks=list(callbacks))
    return model


def realism_score(real: np.ndarray, candidate: np.ndarray,
                  config: RealismConfig = RealismConfig(), *,
                  strategy: tf.distribute.Strategy | None = None,
                  callbacks: list | None = None) -> dict:
    """Trains fresh classifiers on half of each set and tests them on the other half.

    Args:
      real: `[n, H, W, C]` real images in [-1, 1].
      candidate: `[n, H, W, C]` refined or synthetic images in [-1, 1] (same shape).
      config: training settings (`num_images` is ignored: all given images are used);
        `config.repeats` classifiers are trained, with seeds `config.seed`,
        `config.seed + 1`, ...
      strategy: distribution strategy for training (default: the current one).
      callbacks: Keras callbacks of each classifier's `fit` (e.g. a progress bar).

    Returns:
      `{"accuracy", "real_accuracy", "candidate_accuracy", "cross_entropy",
      "test_images", "accuracies", "accuracy_sd"}`: held-out figures, accuracy in [0, 1]
      over a balanced test set, each the mean over the classifiers; `accuracies` holds
      each classifier's accuracy in seed order, `accuracy_sd` their sample standard
      deviation (0 for one classifier).
    """
    config.validate()
    real = np.asarray(real, np.float32)
    candidate = np.asarray(candidate, np.float32)
    if real.shape[1:] != candidate.shape[1:]:
        raise ValueError(f"Real and candidate images differ in shape: {real.shape[1:]} and "
                         f"{candidate.shape[1:]}.")
    n = min(len(real), len(candidate))
    if n < 4:
        raise ValueError(f"The realism score needs at least 4 images of each set. Received: {n}")
    half = n // 2
    train_x = np.concatenate([real[:half], candidate[:half]])
    train_y = np.concatenate([np.ones(half), np.zeros(half)]).astype(np.float32)
    test_x = np.concatenate([real[half:n], candidate[half:n]])
    test_y = np.concatenate([np.ones(n - half), np.zeros(n - half)]).astype(np.float32)

    scores = []
    for repeat in range(config.repeats):
        one = dataclasses.replace(config, seed=config.seed + repeat)
        model = train_classifier(train_x, train_y, one, strategy=strategy,
                                 callbacks=callbacks or ())
        logits = model.predict(test_x, batch_size=256, verbose=0)[:, 0]
        scores.append(_held_out(logits, test_y))
    accuracies = [score["accuracy"] for score in scores]
    return {
        **{key: float(np.mean([score[key] for score in scores])) for key in scores[0]},
        "test_images": int(len(test_x)),
        "accuracies": accuracies,
        "accuracy_sd": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
    }


def _held_out(logits: np.ndarray, test_y: np.ndarray) -> dict:
    """One classifier's held-out accuracy (overall, per set) and cross-entropy."""
    predicted_real = logits > 0
    correct = predicted_real == (test_y > 0.5)
    probability = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    eps = 1e-7
    cross_entropy = -np.mean(test_y * np.log(probability + eps)
                             + (1 - test_y) * np.log(1 - probability + eps))
    return {
        "accuracy": float(np.mean(correct)),
        "real_accuracy": float(np.mean(correct[test_y > 0.5])),
        "candidate_accuracy": float(np.mean(correct[test_y < 0.5])),
        "cross_entropy": float(cross_entropy),
    }
