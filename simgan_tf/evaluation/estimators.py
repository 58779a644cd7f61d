"""The task networks SimGAN is judged by: a gaze estimator and a hand pose estimator.

Gaze (paper, Sec. 3.1, "Appearance-based Gaze Estimation"): a CNN on 35x55 grayscale eye
images with `valid` convolutions

    conv3x3 32, conv3x3 32, conv3x3 64, maxpool3x3/2, conv3x3 80, conv3x3 192,
    maxpool2x2/2, FC 9600, FC 1000, FC 3

where "FC 9600" is the flattened 5x10x192 feature map the valid convolutions leave of a
35x55 input, so the layers with weights are the seven convolutions and two dense layers
(9600 -> 1000 -> 3). The output is the 3D gaze vector, trained with the Euclidean loss
against the label's unit vector (`gaze_loss`). Every layer but the last has a ReLU.

Hands (paper, Sec. 3.2): a stacked hourglass network (Newell et al. 2016) predicting one
heatmap per NYU joint. Ours is compact: a stem that brings the depth image to the heatmap
resolution (64x64 for the paper's 224x224 input), `num_stacks` hourglasses of
`depth` levels with residual blocks of `filters` channels, and intermediate supervision
(every stack's heatmaps enter the loss). Heatmap targets are Gaussians of `sigma`
heatmap pixels centred on the joints' (u, v); `heatmaps_to_joints` reads joints back with
a sub-pixel soft-argmax around the maximum.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

GAZE_INPUT_SHAPE = (35, 55, 1)


@dataclasses.dataclass(frozen=True)
class HourglassConfig:
    """The hand pose estimator.

    Attributes:
      num_joints: heatmaps predicted (NYU: 14).
      heatmap_size: side of the square heatmaps (paper setup: 64).
      num_stacks: hourglasses in sequence, each supervised.
      depth: down-sampling levels of each hourglass.
      filters: channels of the residual blocks.
      sigma: standard deviation of the target Gaussians, in heatmap pixels.
    """
    num_joints: int = 14
    heatmap_size: int = 64
    num_stacks: int = 2
    depth: int = 4
    filters: int = 128
    sigma: float = 1.5

    def validate(self, image_shape=None) -> "HourglassConfig":
        checks = [
            (self.num_joints >= 1, f"num_joints must be >= 1. Received: {self.num_joints}"),
            (self.num_stacks >= 1, f"num_stacks must be >= 1. Received: {self.num_stacks}"),
            (self.depth >= 1, f"depth must be >= 1. Received: {self.depth}"),
            (self.filters >= 2 and self.filters % 2 == 0,
             f"filters must be an even number >= 2. Received: {self.filters}"),
            (self.sigma > 0, f"sigma must be > 0. Received: {self.sigma}"),
            (self.heatmap_size % 2 ** self.depth == 0,
             f"heatmap_size must be divisible by 2**depth = {2 ** self.depth}. "
             f"Received: heatmap_size={self.heatmap_size}, depth={self.depth}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self


def build_gaze_estimator(input_shape: tuple[int, int, int] = GAZE_INPUT_SHAPE,
                         name: str = "gaze_estimator") -> keras.Model:
    """Builds the paper's gaze estimator.

    Args:
      input_shape: `(35, 55, 1)` for the paper's network (the flattened feature is then
        9600 wide); other sizes build the same layers with another flatten size.
      name: model name.

    Returns:
      A `keras.Model` from `[batch, 35, 55, 1]` images in [-1, 1] to `[batch, 3]`
      unnormalized gaze vectors. Create it inside the strategy scope.
    """
    conv = lambda filters, name: keras.layers.Conv2D(  # noqa: E731
        filters, 3, padding="valid", activation="relu", name=name)
    inputs = keras.Input(shape=input_shape, name="images")
    x = conv(32, "conv1")(inputs)
    x = conv(32, "conv2")(x)
    x = conv(64, "conv3")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = conv(80, "conv4")(x)
    x = conv(192, "conv5")(x)
    x = keras.layers.MaxPooling2D(2, strides=2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(1000, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(3, dtype="float32", name="gaze_vector")(x)
    return keras.Model(inputs, outputs, name=name)


def gaze_loss(gaze_vectors: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
    """Euclidean loss of the paper's gaze estimator.

    `L = 1/2 ||v - v_hat||^2` per example, summed over the 3 vector components, where v is
    the label's unit gaze vector and v_hat the (unnormalized) prediction.

    Args:
      gaze_vectors: `[batch, 3]` label unit vectors.
      predictions: `[batch, 3]` network outputs.

    Returns:
      `[batch]` per-example losses (Keras averages them over the global batch).
    """
    diff = tf.cast(predictions, tf.float32) - tf.cast(gaze_vectors, tf.float32)
    return 0.5 * tf.reduce_sum(tf.square(diff), axis=-1)


def _residual(x, filters, name):
    """Pre-activation bottleneck residual block (Newell et al.), `filters` channels out."""
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, name=f"{name}_proj")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(x)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(filters // 2, 1, name=f"{name}_conv1")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(filters // 2, 3, padding="same", name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn3")(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(filters, 1, name=f"{name}_conv3")(y)
    return keras.layers.Add(name=f"{name}_add")([shortcut, y])


def _hourglass(x, depth, filters, name):
    up = _residual(x, filters, f"{name}_up{depth}")
    low = keras.layers.MaxPooling2D(2, name=f"{name}_pool{depth}")(x)
    low = _residual(low, filters, f"{name}_low{depth}a")
    if depth > 1:
        low = _hourglass(low, depth - 1, filters, name)
    else:
        low = _residual(low, filters, f"{name}_bottom")
    low = _residual(low, filters, f"{name}_low{depth}b")
    low = keras.layers.UpSampling2D(2, name=f"{name}_upsample{depth}")(low)
    return keras.layers.Add(name=f"{name}_merge{depth}")([up, low])


def build_hand_estimator(input_shape: tuple[int, int, int],
                         config: HourglassConfig = HourglassConfig(),
                         name: str = "hand_estimator") -> keras.Model:
    """Builds the stacked-hourglass hand pose estimator.

    The stem is a 7x7 convolution of `filters / 2` channels and a residual block; the
    input is first resized (bilinear) to `4 * heatmap_size` pixels and the stem halves the
    resolution twice (strided convolution, max pooling), so the hourglasses run at the
    heatmap resolution whatever the input size.

    Args:
      input_shape: `(H, W, C)` of the depth images (square).
      config: network sizes.
      name: model name.

    Returns:
      A `keras.Model` from `[batch, H, W, C]` images in [-1, 1] to heatmaps
      `[batch, num_stacks, heatmap_size, heatmap_size, num_joints]`, one set per stack
      (the last is the prediction). Create it inside the strategy scope.
    """
    config.validate()
    height, width, _ = input_shape
    if height != width:
        raise ValueError(f"Expected square depth images. Received: input_shape={input_shape}")
    size = config.heatmap_size
    f = config.filters
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    if height != 4 * size:
        x = keras.layers.Resizing(4 * size, 4 * size, interpolation="bilinear",
                                  name="resize")(x)
    x = keras.layers.Conv2D(f // 2, 7, strides=2, padding="same", name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    x = _residual(x, f, "stem_res1")
    x = keras.layers.MaxPooling2D(2, name="stem_pool")(x)
    x = _residual(x, f, "stem_res2")
    outputs = []
    for s in range(config.num_stacks):
        y = _hourglass(x, config.depth, f, f"hg{s}")
        y = _residual(y, f, f"hg{s}_out")
        y = keras.layers.Conv2D(f, 1, name=f"hg{s}_lin")(y)
        y = keras.layers.BatchNormalization(name=f"hg{s}_lin_bn")(y)
        y = keras.layers.ReLU()(y)
        heatmaps = keras.layers.Conv2D(config.num_joints, 1, dtype="float32",
                                       name=f"hg{s}_heatmaps")(y)
        outputs.append(heatmaps)
        if s < config.num_stacks - 1:
            x = keras.layers.Add(name=f"hg{s}_next")([
                x, keras.layers.Conv2D(f, 1, name=f"hg{s}_feat")(y),
                keras.layers.Conv2D(f, 1, name=f"hg{s}_remap")(heatmaps)])
    stacked = keras.layers.Lambda(lambda t: tf.stack(t, axis=1), name="stacks")(outputs)
    return keras.Model(inputs, stacked, name=name)


def joint_heatmaps(joints_uv: tf.Tensor, image_size: int, heatmap_size: int,
                   sigma: float) -> tf.Tensor:
    """Gaussian target heatmaps of joints.

    Pixel centres: image pixel i covers [i, i+1), so u in image pixels maps to heatmap
    coordinate `u * heatmap_size / image_size - 0.5` in heatmap pixel-centre units.

    Args:
      joints_uv: `[batch, J, 2]` (u, v) in image pixels (u along columns, v along rows).
      image_size: side of the (square) image.
      heatmap_size: side of the heatmaps.
      sigma: Gaussian standard deviation in heatmap pixels.

    Returns:
      `[batch, heatmap_size, heatmap_size, J]` with peak 1 at each joint.
    """
    joints = tf.cast(joints_uv, tf.float32) * (heatmap_size / image_size) - 0.5
    grid = tf.range(heatmap_size, dtype=tf.float32)
    du = grid[None, None, :] - joints[..., 0:1]  # [b, J, W]
    dv = grid[None, None, :] - joints[..., 1:2]  # [b, J, H]
    gu = tf.exp(-tf.square(du) / (2.0 * sigma ** 2))
    gv = tf.exp(-tf.square(dv) / (2.0 * sigma ** 2))
    maps = gv[:, :, :, None] * gu[:, :, None, :]  # [b, J, H, W]
    return tf.transpose(maps, [0, 2, 3, 1])


def heatmap_loss(target_heatmaps: tf.Tensor, stacked_heatmaps: tf.Tensor) -> tf.Tensor:
    """Intermediate-supervision heatmap loss of the hourglass network.

    Mean squared error over heatmap pixels and joints, summed over the stacks.

    Args:
      target_heatmaps: `[batch, S, S, J]` (`joint_heatmaps`).
      stacked_heatmaps: `[batch, num_stacks, S, S, J]` predictions.

    Returns:
      `[batch]` per-example losses.
    """
    diff = tf.cast(stacked_heatmaps, tf.float32) - tf.cast(target_heatmaps, tf.float32)[:, None]
    return tf.reduce_sum(tf.reduce_mean(tf.square(diff), axis=[2, 3, 4]), axis=1)


def heatmaps_to_joints(heatmaps: tf.Tensor, image_size: int, window: int = 2) -> tf.Tensor:
    """Reads joint positions from heatmaps (inverse of `joint_heatmaps`' mapping).

    Takes each heatmap's maximum and refines it with the soft-argmax (weights clipped at
    0) over the `(2 window + 1)^2` pixels around it.

    Args:
      heatmaps: `[batch, S, S, J]`.
      image_size: side of the image the joints are in.
      window: half-size of the refinement window, heatmap pixels.

    Returns:
      `[batch, J, 2]` (u, v) in image pixels.
    """
    heatmaps = tf.cast(heatmaps, tf.float32)
    size = heatmaps.shape[1]
    maps = tf.transpose(heatmaps, [0, 3, 1, 2])  # [b, J, S, S]
    flat = tf.reshape(maps, [tf.shape(maps)[0], tf.shape(maps)[1], -1])
    index = tf.argmax(flat, axis=-1, output_type=tf.int32)
    peak_v = tf.cast(index // size, tf.float32)
    peak_u = tf.cast(index % size, tf.float32)
    grid = tf.range(size, dtype=tf.float32)
    near_u = tf.cast(tf.abs(grid[None, None, :] - peak_u[..., None]) <= window, tf.float32)
    near_v = tf.cast(tf.abs(grid[None, None, :] - peak_v[..., None]) <= window, tf.float32)
    weights = tf.nn.relu(maps) * near_v[..., :, None] * near_u[..., None, :]
    total = tf.reduce_sum(weights, axis=[2, 3])
    u = tf.reduce_sum(weights * grid[None, None, None, :], axis=[2, 3])
    v = tf.reduce_sum(weights * grid[None, None, :, None], axis=[2, 3])
    safe = total > 1e-12
    u = tf.where(safe, u / tf.maximum(total, 1e-12), peak_u)
    v = tf.where(safe, v / tf.maximum(total, 1e-12), peak_v)
    scale = image_size / size
    return tf.stack([(u + 0.5) * scale, (v + 0.5) * scale], axis=-1)

