"""An exponential moving average (EMA) of the refiner's weights.

Later GAN work (e.g. Karras et al., "Progressive Growing of GANs", ICLR 2018; Yazici et
al., "The Unusual Effectiveness of Averaging in GAN Training", ICLR 2019) refines with
a running average of the generator's weights rather than its latest weights: the
average follows the trained weights but smooths out the oscillation that the
adversarial game adds to them. The EMA refiner is not trained; the trained refiner
is, and after each of its updates (pretraining and adversarial alike)

    ema <- d_n * ema + (1 - d_n) * w,   d_n = min(decay, (1 + n) / (10 + n)),

with `w` the refiner's weights after the update and `n` the number of EMA updates done
before this one (the warm-up of `tf.train.ExponentialMovingAverage(num_updates=...)`:
d_0 = 0.1, d_90 = 0.91, so early weights, far from trained, are forgotten quickly).
The average starts as a copy of the refiner's initial weights.

Distribution: the average is a second refiner model (`keras.models.clone_model`, the
same layers and dtypes) whose variables are created in the strategy scope and saved in
checkpoints with the step counter `num_updates`. `update` runs on each replica after
the optimizer step, when the refiner's weights are identical on every replica; it
enters cross-replica context (`merge_call`) and updates each device's copy of the
average from that device's copy of the weights with `strategy.extended.update`, as
Keras 3's own optimizer EMA does (`keras/src/backend/tensorflow/optimizer.py`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

# d_n = min(decay, (1 + n) / (WARMUP + n)).
WARMUP = 10.0


class RefinerAverage(tf.Module):
    """The EMA of a refiner's weights, as a refiner model of its own.

    Create it inside the strategy scope, after the refiner is built.

    Args:
      refiner: the trained refiner (a built `keras.Model`).
      decay: the EMA decay, in (0, 1) (e.g. 0.999).
      name: variable scope name.

    Attributes:
      model: the averaged refiner, a non-trainable `keras.Model` like `refiner`.
      num_updates: int64 scalar variable, EMA updates done so far.
    """

    def __init__(self, refiner: keras.Model, decay: float, name: str = "refiner_ema"):
        super().__init__(name=name)
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"Expected an EMA decay between 0 and 1 (exclusive). "
                             f"Received: decay={decay!r}")
        self.decay = float(decay)
        self.model = keras.models.clone_model(refiner)
        self.model.trainable = False
        self.model.set_weights(refiner.get_weights())
        self.num_updates = tf.Variable(
            tf.constant(0, tf.int64), trainable=False, name="num_updates",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def current_decay(self) -> tf.Tensor:
        """d_n of the next update, float32 scalar (see the module docstring)."""
        n = tf.cast(self.num_updates.read_value(), tf.float32)
        return tf.minimum(tf.constant(self.decay, tf.float32), (1.0 + n) / (WARMUP + n))

    def update(self, refiner: keras.Model) -> None:
        """Moves the average toward `refiner`'s current weights. Runs on each replica.

        Call it after the refiner's optimizer step; the weights must correspond one to
        one with `model.weights` (the refiner this average was cloned from). Only
        floating-point weights are averaged.
        """
        decay = self.current_decay()
        # Floating-point weights only: an integer state (the seed of a noise layer)
        # is the average model's own and advances when that model draws.
        pairs = [(a.value, w.value) for a, w in zip(self.model.weights, refiner.weights)
                 if tf.as_dtype(a.dtype).is_floating]

        def assign(average, weight, d):
            d = tf.cast(d, average.dtype)
            return average.assign(d * average + (1.0 - d) * weight)

        def merge(strategy, decay):
            for average, weight in pairs:
                strategy.extended.update(average, assign, args=(weight, decay))

        tf.distribute.get_replica_context().merge_call(merge, args=(decay,))
        self.num_updates.assign_add(1)
