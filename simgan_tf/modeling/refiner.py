"""The refiner R: a fully convolutional ResNet that maps synthetic to refined images.

Paper (Shrivastava et al. 2017, Appendix A), gaze: the input image is convolved with
3x3 filters that output 64 feature maps, passed through 4 ResNet blocks (each two 3x3
convolutions with 64 feature maps), and a 1x1 convolution produces one feature map, the
refined image. Hand: 7x7 kernels and 10 ResNet blocks at 224x224. Padding is `same`, so
the refined image has the input's shape; a tanh keeps it in [-1, 1], the range of the
input pipeline (`data.scale_image`).

Option (`RefinerConfig.noise_channels`, off by default): the paper's R is deterministic,
so it can only reshape what the synthetic image holds; the grain of a real camera is
fresh random noise, which `experiments/realism_cues.py` shows is what a realism
classifier keys on once blur and contrast match. With `noise_channels = k`, the first
convolution also sees k channels of fresh standard normal noise (`NoiseChannels`),
drawn anew at every call (training, summaries, export), so R can add grain of its own.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from simgan_tf import config as config_lib


def resnet_block(x, filters: int, kernel_size: int, name: str):
    """Two convolutions with a ReLU between them, the input added back, then a ReLU.

    Args:
      x: `[batch, H, W, filters]` tensor.
      filters: channels (must equal the input's).
      kernel_size: square kernel size of both convolutions.
      name: layer name prefix.

    Returns:
      `[batch, H, W, filters]` tensor.
    """
    y = keras.layers.Conv2D(filters, kernel_size, padding="same", activation="relu",
                            name=f"{name}_conv1")(x)
    y = keras.layers.Conv2D(filters, kernel_size, padding="same", name=f"{name}_conv2")(y)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


@keras.saving.register_keras_serializable(package="simgan_tf")
class NoiseChannels(keras.layers.Layer):
    """Concatenates `channels` channels of fresh N(0, 1) noise to the images.

    Every call draws new noise: the seed advances a `keras.random.SeedGenerator` (its
    state is a variable of the layer, so checkpoints hold it and a resumed run draws
    what the uninterrupted one would), and under a distribution strategy the replica's
    index is folded into it, so replicas draw different noise.

    Args:
      channels: noise channels, >= 1.
      seed: seed of the generator (`None`: from Keras' global seed).

    Call arguments:
      images: `[batch, H, W, C]`; returns `[batch, H, W, C + channels]`.
    """

    def __init__(self, channels: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if int(channels) != channels or channels < 1:
            raise ValueError(f"Expected channels >= 1. Received: channels={channels}")
        self.channels = int(channels)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # TensorFlow's checkpoints follow attributes that are trackable, and a
        # SeedGenerator is not: hold its state variable as an attribute too.
        self.seed_state = self.seed_generator.state

    def call(self, images):
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        context = tf.distribute.get_replica_context()
        if context is not None:
            seed = tf.random.experimental.stateless_fold_in(
                seed, context.replica_id_in_sync_group)
        shape = tf.shape(images)
        noise = tf.random.stateless_normal(
            tf.stack([shape[0], shape[1], shape[2], self.channels]), seed=seed,
            dtype=images.dtype)
        return tf.concat([images, noise], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "seed": self.seed}


def build_refiner(image_shape: tuple[int, int, int],
                  config: config_lib.RefinerConfig = config_lib.RefinerConfig(),
                  name: str = "refiner") -> keras.Model:
    """Builds the refiner.

    Args:
      image_shape: `(H, W, C)` of the images, e.g. `(35, 55, 1)`.
      config: filters, kernel size and number of ResNet blocks.
      name: model name.

    Returns:
      A `keras.Model` from `[batch, H, W, C]` float32 in [-1, 1] to refined images of the
      same shape in [-1, 1]. Create it inside the strategy scope.
    """
    if (config.num_blocks < 0 or config.filters < 1 or config.kernel_size % 2 != 1
            or config.noise_channels < 0):
        raise ValueError(
            "Expected filters >= 1, num_blocks >= 0, an odd kernel_size and "
            f"noise_channels >= 0. Received: {config}")
    inputs = keras.Input(shape=image_shape, name="images")
    x = inputs
    if config.noise_channels:
        x = NoiseChannels(config.noise_channels, name="noise")(x)
    x = keras.layers.Conv2D(config.filters, config.kernel_size, padding="same",
                            activation="relu", name="conv_in")(x)
    for i in range(config.num_blocks):
        x = resnet_block(x, config.filters, config.kernel_size, name=f"block{i + 1}")
    x = keras.layers.Conv2D(image_shape[-1], 1, padding="same", name="conv_out")(x)
    outputs = keras.layers.Activation("tanh", name="tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)
