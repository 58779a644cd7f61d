"""The history buffer of refined images (Shrivastava et al. 2017, Sec. 2.3).

To keep the discriminator from forgetting what earlier refiners produced, each
discriminator update sees a mini-batch of b/2 freshly refined images and b/2 refined
images drawn at random from a buffer of size B; after the update, b/2 of the buffer's
images are replaced by the fresh ones. Our buffer fills its empty slots first and then
replaces random slots, so it holds no never-written (zero) images once sampling starts.

Contract (as TF-GAN's image pool, which also cites SimGAN): size 0 disables the history
(the mini-batch is all fresh images and nothing is stored); otherwise the size must be at
least half a batch.

Distribution: the images and the fill counter are non-trainable variables created in the
strategy scope with `ONLY_FIRST_REPLICA` aggregation and saved in checkpoints. Each replica
samples its own history images (its own random draw); the fresh images of **all** replicas
are gathered before writing and the slots are drawn from a seed every replica shares, so
the buffer is identical on every replica after each update. Randomness is stateless, a
function of (seed, step), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import tensorflow as tf

_ONLY_FIRST = tf.VariableAggregation.ONLY_FIRST_REPLICA


class HistoryBuffer(tf.Module):
    """A fixed-size buffer of refined images.

    Args:
      size: number of images B; 0 disables the buffer.
      image_shape: `(H, W, C)` of the images.
      name: variable scope name.

    Attributes:
      images: `[size, H, W, C]` float32 variable.
      fill: int64 scalar variable, number of slots written so far (at most `size`).
    """

    def __init__(self, size: int, image_shape: tuple[int, int, int], name: str = "history"):
        super().__init__(name=name)
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"Expected a history buffer size >= 0. Received: size={size!r}")
        self.size = size
        self.image_shape = tuple(int(d) for d in image_shape)
        with self.name_scope:
            self.images = tf.Variable(
                tf.zeros([size, *self.image_shape], tf.float32), trainable=False,
                aggregation=_ONLY_FIRST, name="images")
            self.fill = tf.Variable(tf.constant(0, tf.int64), trainable=False,
                                    aggregation=_ONLY_FIRST, name="fill")

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def mix(self, fresh: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """The discriminator's mini-batch of refined images. Runs on each replica.

        Args:
          fresh: `[b, H, W, C]` refined images of this replica (b even).
          seed: int32/int64 `[2]` stateless seed, different per replica and step.

        Returns:
          `[b, H, W, C]`: `fresh[:b/2]` followed by b/2 images drawn uniformly with
          replacement from the filled part of the buffer, or `fresh[b/2:]` while the
          buffer is empty or disabled.
        """
        if not self.enabled:
            return fresh
        half = tf.shape(fresh)[0] // 2
        fill = self.fill.read_value()

        def sample():
            indices = tf.random.stateless_uniform(
                [tf.shape(fresh)[0] - half], seed=seed, minval=0, maxval=tf.maximum(fill, 1),
                dtype=tf.int64)
            return tf.gather(self.images, indices)

        history = tf.cond(fill > 0, sample, lambda: fresh[half:])
        return tf.concat([fresh[:half], history], axis=0)

    def update(self, fresh_half: tf.Tensor, seed: tf.Tensor) -> None:
        """Writes the fresh images of all replicas into the buffer. Runs on each replica.

        Empty slots are filled first, in order; once the buffer is full, random distinct
        slots (drawn from `seed`, which must be the same on every replica) are replaced.

        Args:
          fresh_half: `[b/2, H, W, C]` fresh refined images of this replica.
          seed: `[2]` stateless seed, identical on every replica.
        """
        if not self.enabled:
            return
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            fresh_half = context.all_gather(fresh_half, axis=0)
        n = tf.cast(tf.shape(fresh_half)[0], tf.int64)
        tf.debugging.assert_less_equal(
            n, tf.constant(self.size, tf.int64),
            message="History buffer smaller than the images written in one step")
        size = tf.constant(self.size, tf.int64)
        fill = self.fill.read_value()
        position = tf.range(n, dtype=tf.int64)
        # Random distinct slots among those already filled before this step.
        keys = tf.random.stateless_uniform([self.size], seed=seed)
        keys += tf.where(tf.range(size) < fill, 0.0, 2.0)
        permutation = tf.argsort(keys, stable=True)
        replace_index = tf.clip_by_value(position - (size - fill), 0, size - 1)
        random_slots = tf.gather(tf.cast(permutation, tf.int64), replace_index)
        slots = tf.where(fill + position < size, fill + position, random_slots)
        self.images.scatter_update(tf.IndexedSlices(fresh_half, slots))
        self.fill.assign(tf.minimum(fill + n, size))
