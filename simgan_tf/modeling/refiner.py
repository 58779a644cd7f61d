"""The refiner R: a fully convolutional ResNet that maps synthetic to refined images.

Paper (Shrivastava et al. 2017, Appendix A), gaze: the input image is convolved with
3x3 filters that output 64 feature maps, passed through 4 ResNet blocks (each two 3x3
convolutions with 64 feature maps), and a 1x1 convolution produces one feature map, the
refined image. Hand: 7x7 kernels and 10 ResNet blocks at 224x224. Padding is `same`, so
the refined image has the input's shape; a tanh keeps it in [-1, 1], the range of the
input pipeline (`data.scale_image`).
"""

from __future__ import annotations

import keras

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
    if config.num_blocks < 0 or config.filters < 1 or config.kernel_size % 2 != 1:
        raise ValueError(
            "Expected filters >= 1, num_blocks >= 0 and an odd kernel_size. "
            f"Received: {config}")
    inputs = keras.Input(shape=image_shape, name="images")
    x = keras.layers.Conv2D(config.filters, config.kernel_size, padding="same",
                            activation="relu", name="conv_in")(inputs)
    for i in range(config.num_blocks):
        x = resnet_block(x, config.filters, config.kernel_size, name=f"block{i + 1}")
    x = keras.layers.Conv2D(image_shape[-1], 1, padding="same", name="conv_out")(x)
    outputs = keras.layers.Activation("tanh", name="tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)
