"""Adaptive balance: the discriminator's learning rate follows its accuracy on fresh images.

With K_d = 1 the discriminator falls behind the refiner (its accuracy on the current
refiner's images, `accuracy_fresh_refined`, drops to about 0.05 late in training), and
the refiner then trains against a critic it has already fooled; a larger fixed K_d
keeps it up but lets the refiner move the images' content. The balance holds the
discriminator's accuracy on fresh refined patches near a target instead, the way ADA
(Karras et al., NeurIPS 2020) holds its overfitting heuristic near a target by
adjusting its augmentation probability: after every adversarial discriminator update,

    log s <- clip(log s + rate * (target - a), -log max_scale, log max_scale),

where `a` is that update's accuracy on the fresh half of the refined batch (before the
update, averaged over the global batch) and `s` multiplies the discriminator's learning
rate (`ScaledLearningRate`). A discriminator that is fooled (a < target) learns faster;
one that wins (a > target) slower. Pretraining leaves `s` alone.

Distribution: `scale` is a variable with `ONLY_FIRST_REPLICA` aggregation created in the
strategy scope (saved in checkpoints); every replica computes the same new value from
the all-reduced accuracy, so its copies stay equal.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


class DiscriminatorBalance(tf.Module):
    """The multiplier of the discriminator's learning rate and its update rule.

    Create it inside the strategy scope.

    Args:
      target: the accuracy on fresh refined patches to hold, in (0, 1).
      rate: step of log(scale) per unit of accuracy error, > 0.
      max_scale: bound of the scale, >= 1: it stays in [1/max_scale, max_scale].

    Attributes:
      scale: float32 scalar variable, the current multiplier (starts at 1).
    """

    def __init__(self, target: float, rate: float = 0.05, max_scale: float = 10.0,
                 name: str = "discriminator_balance"):
        super().__init__(name=name)
        if not 0.0 < float(target) < 1.0 or not float(rate) > 0 or not float(max_scale) >= 1:
            raise ValueError("Expected target in (0, 1), rate > 0 and max_scale >= 1. "
                             f"Received: target={target}, rate={rate}, max_scale={max_scale}")
        self.target = float(target)
        self.rate = float(rate)
        self.max_scale = float(max_scale)
        self.scale = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="scale",
                                 aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def next_scale(self, accuracy: tf.Tensor) -> tf.Tensor:
        """The scale after an update whose global fresh accuracy is `accuracy`."""
        bound = math.log(self.max_scale)
        log_scale = tf.math.log(self.scale.read_value()) + self.rate * (
            self.target - tf.cast(accuracy, tf.float32))
        return tf.exp(tf.clip_by_value(log_scale, -bound, bound))

    def update(self, fresh_accuracy: tf.Tensor) -> tf.Tensor:
        """Moves the scale after a discriminator update. Runs on each replica.

        Args:
          fresh_accuracy: `[b]` per-example patch accuracy on this replica's fresh
            refined images (replicas hold equal numbers of them).

        Returns:
          The new scale (float32 scalar, the same on every replica).
        """
        context = tf.distribute.get_replica_context()
        accuracy = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                      tf.reduce_mean(tf.cast(fresh_accuracy, tf.float32)))
        scale = self.next_scale(accuracy)
        self.scale.assign(scale)
        return scale


class ScaledLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate `base * scale`, `scale` a variable read at every update.

    Args:
      base: the configured learning rate (a float).
      scale: float32 scalar variable (`DiscriminatorBalance.scale`).

    The variable is saved by the checkpoint of the model that owns it, not by this
    schedule's config (`get_config` gives the base rate alone).
    """

    def __init__(self, base: float, scale: tf.Variable):
        self.base = float(base)
        self.scale = scale

    def __call__(self, step):
        return self.base * tf.cast(self.scale, tf.float32)

    def get_config(self):
        return {"base": self.base}
