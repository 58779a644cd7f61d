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

Option (`RefinerConfig.grain`, off by default): learned output grain (`OutputGrain`).
Noise channels at the input did not help (docs/results.md): the refiner never learnt to
use them. The reason is the shape of the losses near zero grain: the L1 term grows
linearly with the grain's amplitude, while the discriminator can only reward grain
through its energy, which grows quadratically, so no grain is a local minimum of the
refiner's loss. `OutputGrain` adds fresh noise at the output, with an amplitude the
network predicts per pixel from its last features (real camera grain depends on the
brightness) and a learned spatial filter (real grain is correlated by the camera's
processing), starting at `grain` rather than at zero; and the self-regularization and
task-consistency terms are taken on the noise-free image, so only the adversarial loss
sets the grain (`clean_view`).

Option (`RefinerConfig.lighting`, off by default): random lighting per image
(`OutputLighting`). Grain is random per pixel; a real camera's exposure, gain and
illumination are random per image, and a refiner that is a function of the synthetic
image cannot draw them: its brightness, contrast and light field follow the eye's content,
so an estimator trained on its output never sees the variety of real eyes
(`experiments/camera_effects.py` measures what that variety is worth to the estimator).
`OutputLighting` multiplies the refined intensity by a random smooth field and scales and
shifts it by a random gain and offset, each drawn per image with a standard deviation the
refiner learns, exempt from the self-regularization and task terms like the grain.

Option (`RefinerConfig.highlights`, off by default): learned highlights at a random
offset per image (`OutputHighlights`). A specular highlight, such as the corneal glint of
an eye, sits where the light source's reflection falls, which moves with the light from
image to image; a refiner that is a function of the synthetic image can only put it at a
fixed place relative to the eye, which makes it a cue for the label that real images do
not share. `OutputHighlights` adds a non-negative map the refiner predicts from its last
features, shifted by a random sub-pixel offset drawn per image, exempt from the
self-regularization and task terms.

Option (`RefinerConfig.glint`, off by default): a learned glint per image
(`OutputGlint`). The highlights map above never became a glint (docs/results.md): a
bright spot a pixel or two across has to appear in many weights of a per-pixel map at
once, which the adversarial gradient did not bring about. `OutputGlint` builds the shape
in: one Gaussian spot per image whose peak and radius are learned scalars, placed at a
position the refiner predicts from its last features (the expected position under a
softmax over pixels) plus a random offset drawn per image, exempt from the
self-regularization and task terms.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling.contraction import contract_last


PADDINGS = config_lib.PADDINGS


@keras.saving.register_keras_serializable(package="simgan_tf")
class ReflectionPadding2D(keras.layers.Layer):
    """Pads `[b, H, W, C]` by `size` pixels on each side with the image mirrored at its
    edge (the edge pixel not repeated: `tf.pad`'s REFLECT mode); needs H, W > `size`."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        if int(size) != size or size < 0:
            raise ValueError(f"Expected an integer size >= 0. Received: {size}")
        self.size = int(size)

    def call(self, images):
        p = self.size
        return tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda n: None if n is None else n + 2 * self.size  # noqa: E731
        return (b, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def conv(x, filters: int, kernel_size: int, name: str, padding: str = "zeros",
         activation=None):
    """A stride-1 `Conv2D` whose output keeps the input's size, padded with `padding`
    (`PADDINGS`): zeros (Keras' "same") or the image reflected at its edge (a
    `ReflectionPadding2D` named `{name}_pad`, then a "valid" convolution)."""
    if padding == "reflect" and kernel_size > 1:
        x = ReflectionPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        return keras.layers.Conv2D(filters, kernel_size, padding="valid",
                                   activation=activation, name=name)(x)
    return keras.layers.Conv2D(filters, kernel_size, padding="same", activation=activation,
                               name=name)(x)


def resnet_block(x, filters: int, kernel_size: int, name: str, padding: str = "zeros"):
    """Two convolutions with a ReLU between them, the input added back, then a ReLU.

    Args:
      x: `[batch, H, W, filters]` tensor.
      filters: channels (must equal the input's).
      kernel_size: square kernel size of both convolutions.
      name: layer name prefix.
      padding: `zeros` or `reflect` (see `conv`).

    Returns:
      `[batch, H, W, filters]` tensor.
    """
    y = conv(x, filters, kernel_size, f"{name}_conv1", padding, activation="relu")
    y = conv(y, filters, kernel_size, f"{name}_conv2", padding)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def fresh_normal(seed_generator: keras.random.SeedGenerator, shape, dtype) -> tf.Tensor:
    """Standard normal noise of `shape`, drawn with the next seed of `seed_generator`.

    Under a distribution strategy the replica's index is folded into the seed, so
    replicas draw different noise; the generator's state is a variable, so a restored
    checkpoint draws what the uninterrupted run would.
    """
    return tf.random.stateless_normal(shape, seed=replica_seed(seed_generator), dtype=dtype)


def replica_seed(seed_generator: keras.random.SeedGenerator) -> tf.Tensor:
    """The next seed of `seed_generator`, with the replica's index folded in (see
    `fresh_normal`)."""
    seed = tf.cast(seed_generator.next(), tf.int64)
    context = tf.distribute.get_replica_context()
    if context is not None:
        seed = tf.random.experimental.stateless_fold_in(
            seed, context.replica_id_in_sync_group)
    return seed


def softplus_inverse(y: float) -> float:
    """x with softplus(x) = y > 0: log(exp(y) - 1), written to stay finite for small y
    (the starting bias of a weight that enters through a softplus)."""
    return y + math.log(-math.expm1(-y))


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
        shape = tf.shape(images)
        noise = fresh_normal(self.seed_generator,
                             tf.stack([shape[0], shape[1], shape[2], self.channels]),
                             images.dtype)
        return tf.concat([images, noise], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "seed": self.seed}


@keras.saving.register_keras_serializable(package="simgan_tf")
class OutputGrain(keras.layers.Layer):
    """The refiner's output with learned grain, and without it.

    With `pre` the refiner's output before the tanh and `h` its last features,

        refined = tanh(pre + g * (s(h) n)),   clean = tanh(pre),

    where n is fresh `N(0, 1)` noise of the image's shape (drawn anew at every call, as
    in `NoiseChannels`), `s(h) = softplus(h W + b)` the grain's standard deviation per
    pixel and channel (a 1x1 convolution of the features; W starts at zero and b at
    softplus^-1(`initial_std`), so every pixel starts at `initial_std`), and `g *` a
    learned depthwise `kernel_size` x `kernel_size` filter per channel (starting as the
    identity), which lets the grain be spatially correlated.

    The grain's weights enter multiplied by `rate` (W and b as `rate * (h W + b)`, the
    filter as `identity + rate * offset`), the runtime scaling of Karras et al.'s
    equalized learning rate: Adam moves a weight by about its learning rate whatever the
    gradient's scale, so these move `rate` times faster than the refiner's convolutions.
    At the refiner's learning rate alone (2e-4) the grain's amplitude could change by only
    about 4% in the 200 refiner updates of the demo schedule.

    Args:
      initial_std: the grain's starting standard deviation, in the units of `pre`
        (about [-1, 1] image units where the tanh is near linear); > 0.
      kernel_size: odd size of the grain's filter.
      rate: multiplier of the grain's weights (> 0; see above).
      seed: seed of the noise generator (`None`: from Keras' global seed).
      padding: what the filter sees beyond the image's edge (`PADDINGS`): `zeros`, so
        the grain thins out over the outer `kernel_size // 2` pixels, or `reflect`:
        noise is drawn over the image grown by that margin, with the standard deviation
        map reflected into it, so the grain is as strong at the edge as inside.

    Call arguments:
      inputs: `[pre, features]`, `[b, H, W, C]` and `[b, H, W, F]`.

    Returns:
      `[refined, clean]`, both `[b, H, W, C]` in [-1, 1].
    """

    def __init__(self, initial_std: float, kernel_size: int = 3, rate: float = 10.0,
                 seed: int | None = None, padding: str = "zeros", **kwargs):
        super().__init__(**kwargs)
        if (not initial_std > 0 or int(kernel_size) != kernel_size or kernel_size % 2 != 1
                or not rate > 0 or padding not in PADDINGS):
            raise ValueError(
                f"Expected initial_std > 0, an odd kernel_size, rate > 0 and padding in "
                f"{PADDINGS}. Received: initial_std={initial_std}, "
                f"kernel_size={kernel_size}, rate={rate}, padding={padding!r}")
        self.padding = padding
        self.initial_std = float(initial_std)
        self.kernel_size = int(kernel_size)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.seed_state = self.seed_generator.state  # see NoiseChannels

    def build(self, input_shape):
        pre_shape, feature_shape = input_shape
        channels, features = pre_shape[-1], feature_shape[-1]
        bias = softplus_inverse(self.initial_std)
        self.scale_kernel = self.add_weight(
            shape=(features, channels), initializer="zeros", name="scale_kernel")
        self.scale_bias = self.add_weight(
            shape=(channels,), initializer=keras.initializers.Constant(bias / self.rate),
            name="scale_bias")
        self.filter_offset = self.add_weight(
            shape=(self.kernel_size, self.kernel_size, channels, 1), initializer="zeros",
            name="filter_offset")
        centre = self.kernel_size // 2
        self._identity = np.zeros((self.kernel_size, self.kernel_size, channels, 1),
                                  np.float32)
        self._identity[centre, centre] = 1.0

    @property
    def filter(self) -> tf.Tensor:
        """g: the grain's `[k, k, C, 1]` depthwise filter."""
        return self._identity + self.rate * self.filter_offset

    def grain_std(self, features):
        """`s(h)`: the grain's standard deviation before the filter, `[b, H, W, C]`."""
        return tf.nn.softplus(self.rate * (
            contract_last(features, self.scale_kernel) + self.scale_bias))

    def call(self, inputs):
        pre, features = inputs
        std = self.grain_std(features)
        if self.padding == "reflect":
            p = self.kernel_size // 2
            std = tf.pad(std, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
            noise = fresh_normal(self.seed_generator, tf.shape(std), pre.dtype)
            grain = tf.nn.depthwise_conv2d(std * noise, self.filter, strides=[1, 1, 1, 1],
                                           padding="VALID")
        else:
            noise = fresh_normal(self.seed_generator, tf.shape(pre), pre.dtype)
            grain = tf.nn.depthwise_conv2d(std * noise, self.filter, strides=[1, 1, 1, 1],
                                           padding="SAME")
        return [tf.tanh(pre + grain), tf.tanh(pre)]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[0]), tuple(input_shape[0])]

    def get_config(self):
        return {**super().get_config(), "initial_std": self.initial_std,
                "kernel_size": self.kernel_size, "rate": self.rate, "seed": self.seed,
                "padding": self.padding}


GLINT_PLACEMENTS = config_lib.GLINT_PLACEMENTS
LIGHTING_TERMS = ("brightness", "contrast", "x", "y", "x2", "y2", "xy")


def lighting_field(height: int, width: int) -> np.ndarray:
    """The smooth field's basis: `[H, W, 5]` polynomials of degree <= 2 over the image.

    With u, v the pixel centres' coordinates scaled to [-1, 1] (u across, v down):
    u, v, u^2 - m_u, v^2 - m_v, u v, where m is the mean of u^2 (v^2) over the pixels, so
    every term averages to zero over the image and the field does not change its mean
    brightness (`OutputLighting`'s offset does that).
    """
    v, u = np.meshgrid((np.arange(height) + 0.5) / height * 2.0 - 1.0,
                       (np.arange(width) + 0.5) / width * 2.0 - 1.0, indexing="ij")
    terms = np.stack([u, v, u * u - np.mean(u * u), v * v - np.mean(v * v), u * v], axis=-1)
    return terms.astype(np.float32)


def light(images: tf.Tensor, codes: tf.Tensor, field: tf.Tensor) -> tf.Tensor:
    """Lights `images` with per-image lighting `codes`.

    With i = (images + 1) / 2 the intensity in [0, 1] and a code
    `(b, c, f_1 .. f_5)` per image,

        i' = (0.5 + (1 + c) (i - 0.5) + b) (1 + sum_k f_k P_k),

    a brightness offset b, a contrast gain 1 + c about mid-grey and a multiplicative
    smooth light field with the basis P of `lighting_field`; the result is `2 i' - 1`
    clipped to [-1, 1] (a camera saturates), the same for every channel.

    Args:
      images: `[b, H, W, C]` in [-1, 1].
      codes: `[b, 7]` (the order of `LIGHTING_TERMS`).
      field: `[H, W, 5]` basis (`lighting_field`).

    Returns:
      `[b, H, W, C]` in [-1, 1].
    """
    intensity = (images + 1.0) * 0.5
    codes = codes[:, None, None, :]
    offset, gain = codes[..., 0:1], 1.0 + codes[..., 1:2]
    light_field = 1.0 + tf.reduce_sum(codes[..., 2:] * field, axis=-1, keepdims=True)
    lit = (0.5 + gain * (intensity - 0.5) + offset) * light_field
    return tf.clip_by_value(lit * 2.0 - 1.0, -1.0, 1.0)


@keras.saving.register_keras_serializable(package="simgan_tf")
class OutputLighting(keras.layers.Layer):
    """Random lighting per image, with learned strengths, at the refiner's output.

    Each call draws a code z ~ N(0, I_7) per image (fresh at every call, as in
    `NoiseChannels`) and lights the refined image with the code `s * z` (`light`): a
    brightness offset, a contrast gain and the five coefficients of a smooth light field,
    where s is a learned standard deviation per term (`LIGHTING_TERMS`). The clean image
    passes through unchanged, so the self-regularization and task terms, which see it,
    do not reach s: only the adversarial loss sets how much the lighting varies.

    The strengths are `s = softplus(rate * w)`, starting at `initial_std` for every term;
    `rate` speeds up their learning as `OutputGrain`'s does (Adam moves log s by about
    `rate` times the learning rate per update while s is small).

    Args:
      initial_std: every term's starting standard deviation (> 0), in intensity units
        for the offset, in relative units for the gain and the field's coefficients.
      rate: multiplier of the strengths' weights (> 0).
      seed: seed of the code generator (`None`: from Keras' global seed).

    Call arguments:
      inputs: `[refined, clean]`, both `[b, H, W, C]` in [-1, 1].

    Returns:
      `[lit, clean]`: the refined image lit, and the clean image.
    """

    def __init__(self, initial_std: float, rate: float = 10.0, seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if not initial_std > 0 or not rate > 0:
            raise ValueError("Expected initial_std > 0 and rate > 0. Received: "
                             f"initial_std={initial_std}, rate={rate}")
        self.initial_std = float(initial_std)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.seed_state = self.seed_generator.state  # see NoiseChannels

    def build(self, input_shape):
        height, width = input_shape[0][1], input_shape[0][2]
        self._field = lighting_field(height, width)
        bias = softplus_inverse(self.initial_std)
        self.strength_weights = self.add_weight(
            shape=(len(LIGHTING_TERMS),),
            initializer=keras.initializers.Constant(bias / self.rate), name="strengths")

    @property
    def strengths(self) -> tf.Tensor:
        """s: the standard deviation of each term of `LIGHTING_TERMS`, `[7]`."""
        return tf.nn.softplus(self.rate * self.strength_weights)

    def call(self, inputs):
        refined, clean = inputs
        codes = fresh_normal(self.seed_generator,
                             tf.stack([tf.shape(refined)[0], len(LIGHTING_TERMS)]),
                             refined.dtype)
        lit = light(refined, codes * tf.cast(self.strengths, refined.dtype),
                    tf.cast(self._field, refined.dtype))
        return [lit, tf.identity(clean)]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[0]), tuple(input_shape[1])]

    def get_config(self):
        return {**super().get_config(), "initial_std": self.initial_std, "rate": self.rate,
                "seed": self.seed}


def random_offsets(seed_generator: keras.random.SeedGenerator, batch_size, max_shift: float,
                   dtype) -> tuple[tf.Tensor, tf.Tensor]:
    """`(dy, dx)`, `[batch_size]` each: offsets drawn uniformly in `[-max_shift,
    max_shift]` pixels with the next seed of `seed_generator` (see `fresh_normal`)."""
    offsets = tf.random.stateless_uniform(
        tf.stack([2, batch_size]), seed=replica_seed(seed_generator),
        minval=-max_shift, maxval=max_shift, dtype=dtype)
    return offsets[0], offsets[1]


def shift_images(images: tf.Tensor, dy: tf.Tensor, dx: tf.Tensor) -> tf.Tensor:
    """Shifts each image by `(dy[i], dx[i])` pixels (real-valued), bilinearly.

    Output pixel (y, x) is the input at (y - dy, x - dx), interpolated linearly between
    the two neighbouring pixels along each axis; positions beyond the image read its
    nearest edge pixel, so a uniform image stays uniform. Gradients reach the images.

    Args:
      images: `[b, H, W, C]`.
      dy, dx: `[b]` shifts down and right, in pixels.
    """
    shape = tf.shape(images)

    def along(tensor, shift, size, axis):
        # Output index i reads source position i - shift: between floor and floor + 1.
        source = tf.cast(tf.range(size), shift.dtype)[None] - shift[:, None]  # [b, size]
        low = tf.floor(source)
        weight = source - low
        low = tf.cast(low, tf.int32)
        first = tf.gather(tensor, tf.clip_by_value(low, 0, size - 1), axis=axis,
                          batch_dims=1)
        second = tf.gather(tensor, tf.clip_by_value(low + 1, 0, size - 1), axis=axis,
                           batch_dims=1)
        weight = tf.reshape(weight, [-1, size, 1, 1] if axis == 1 else [-1, 1, size, 1])
        return first * (1.0 - weight) + second * weight

    return along(along(images, dy, shape[1], axis=1), dx, shape[2], axis=2)


@keras.saving.register_keras_serializable(package="simgan_tf")
class OutputHighlights(keras.layers.Layer):
    """Learned highlights, shifted by a random offset per image, at the refiner's output.

    With `h` the refiner's last features, the layer predicts a non-negative highlight map
    `m(h) = softplus(rate * (h W + b))` per pixel and channel (a 1x1 convolution; W
    starts at zero and b so that m starts at `initial` everywhere), shifts it by an
    offset drawn per image uniformly in `[-max_shift, max_shift]` pixels along each axis
    (fresh at every call, as in `NoiseChannels`; `shift_images`), and adds it to the
    refined image, saturating at 1 (white). The clean image passes through unchanged, so
    only the adversarial loss shapes the highlights. `rate` speeds up W and b's learning
    as `OutputGrain`'s does.

    Args:
      initial: the map's starting value everywhere, in [-1, 1] image units (> 0).
      max_shift: largest offset along each axis, in pixels (>= 0).
      rate: multiplier of the map's weights (> 0).
      seed: seed of the offset generator (`None`: from Keras' global seed).

    Call arguments:
      inputs: `[refined, clean, features]`: `[b, H, W, C]`, `[b, H, W, C]`, `[b, H, W, F]`.

    Returns:
      `[highlighted, clean]`, both `[b, H, W, C]`.
    """

    def __init__(self, initial: float, max_shift: float = 2.0, rate: float = 10.0,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not initial > 0 or not max_shift >= 0 or not rate > 0:
            raise ValueError("Expected initial > 0, max_shift >= 0 and rate > 0. Received: "
                             f"initial={initial}, max_shift={max_shift}, rate={rate}")
        self.initial = float(initial)
        self.max_shift = float(max_shift)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.seed_state = self.seed_generator.state  # see NoiseChannels

    def build(self, input_shape):
        channels, features = input_shape[0][-1], input_shape[2][-1]
        bias = softplus_inverse(self.initial)
        self.map_kernel = self.add_weight(
            shape=(features, channels), initializer="zeros", name="map_kernel")
        self.map_bias = self.add_weight(
            shape=(channels,), initializer=keras.initializers.Constant(bias / self.rate),
            name="map_bias")

    def highlight_map(self, features):
        """`m(h)`: the unshifted highlight map, `[b, H, W, C]`."""
        return tf.nn.softplus(self.rate * (
            contract_last(features, self.map_kernel) + self.map_bias))

    def call(self, inputs):
        refined, clean, features = inputs
        dy, dx = random_offsets(self.seed_generator, tf.shape(refined)[0], self.max_shift,
                                refined.dtype)
        shifted = shift_images(self.highlight_map(features), dy, dx)
        return [tf.minimum(refined + shifted, 1.0), tf.identity(clean)]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[0]), tuple(input_shape[1])]

    def get_config(self):
        return {**super().get_config(), "initial": self.initial,
                "max_shift": self.max_shift, "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="simgan_tf")
class OutputGlint(keras.layers.Layer):
    """A learned glint, one Gaussian spot per image at a random offset, at the output.

    With `h` the refiner's last features, the layer predicts where the spot goes: a
    location logit per pixel `l(h) = h w` (a 1x1 convolution, `w` starting at zero), a
    softmax over the image's pixels, and its expected row and column (a soft argmax; at
    the start, with `w = 0`, the image's centre). Each image's spot is centred there plus
    an offset drawn uniformly in `[-max_shift, max_shift]` pixels along each axis (fresh
    at every call, as in `NoiseChannels`), with peak `a` and radius (Gaussian standard
    deviation, pixels) `s`, learned scalars per channel: `a * exp(-d^2 / (2 s^2))` is
    added to the refined image, saturating at 1 (white). `a = softplus(rate * p)` and
    `s = softplus(rate * q)` start at `peak` and `sigma`; `rate` speeds their and `w`'s
    learning as `OutputGrain`'s does. The clean image passes through unchanged, so only
    the adversarial loss shapes the glint.

    With `placement="pupil"` the layer also takes the refiner's input image `x` and
    starts the spot at the eye's corneal reflection instead of the image's centre: the
    softmax's logits become `l(h) - temperature * mean_c(x)`, so it weighs the darkest
    pixels (an eye's pupil) most, and the spot's centre is the image's centre plus `k`
    times the pupil's displacement from it, with `k = rate * r` learned, starting at
    `pupil_ratio`. A light near the camera is reflected near the projection of the
    cornea's centre of curvature, which lies between the eye's centre of rotation and
    the pupil: in the Gullstrand-Le Grand eye model at about 5.7 mm and 9.9 mm from the
    centre of rotation, a ratio of about 0.6, the default. The image's centre stands for
    the eye's centre, as in gaze-normalized eye images.

    Args:
      peak: the spot's starting peak, in [-1, 1] image units (> 0).
      sigma: its starting radius, in pixels (> 0).
      max_shift: largest offset along each axis, in pixels (>= 0).
      rate: multiplier of the layer's weights (> 0).
      placement: `"features"` (where the features point, from the image's centre) or
        `"pupil"` (from the corneal reflection; see above).
      pupil_ratio: starting `k` of the `"pupil"` placement.
      temperature: weight of darkness in the `"pupil"` placement's logits, per [-1, 1]
        image unit (> 0); at the default 20 the soft argmax stays within a quarter
        pixel of the darkest pixels' centre on the built-in simulator's eyes.
      seed: seed of the offset generator (`None`: from Keras' global seed).

    Call arguments:
      inputs: `[refined, clean, features]`: `[b, H, W, C]`, `[b, H, W, C]`, `[b, H, W, F]`;
        with `placement="pupil"`, `[refined, clean, features, images]`, `images` the
        refiner's input `[b, H, W, C]`.

    Returns:
      `[glinted, clean]`, both `[b, H, W, C]`.
    """

    def __init__(self, peak: float, sigma: float = 1.0, max_shift: float = 2.0,
                 rate: float = 10.0, placement: str = "features", pupil_ratio: float = 0.6,
                 temperature: float = 20.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not peak > 0 or not sigma > 0 or not max_shift >= 0 or not rate > 0:
            raise ValueError("Expected peak > 0, sigma > 0, max_shift >= 0 and rate > 0. "
                             f"Received: peak={peak}, sigma={sigma}, "
                             f"max_shift={max_shift}, rate={rate}")
        if placement not in GLINT_PLACEMENTS or not temperature > 0:
            raise ValueError(f"Expected placement in {GLINT_PLACEMENTS} and temperature > 0. "
                             f"Received: placement={placement!r}, temperature={temperature}")
        self.peak = float(peak)
        self.sigma = float(sigma)
        self.max_shift = float(max_shift)
        self.rate = float(rate)
        self.placement = placement
        self.pupil_ratio = float(pupil_ratio)
        self.temperature = float(temperature)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.seed_state = self.seed_generator.state  # see NoiseChannels

    def build(self, input_shape):
        channels, features = input_shape[0][-1], input_shape[2][-1]
        self.location_kernel = self.add_weight(
            shape=(features,), initializer="zeros", name="location_kernel")
        self.peak_weight = self.add_weight(
            shape=(channels,), name="peak_weight", initializer=keras.initializers.Constant(
                softplus_inverse(self.peak) / self.rate))
        self.sigma_weight = self.add_weight(
            shape=(channels,), name="sigma_weight", initializer=keras.initializers.Constant(
                softplus_inverse(self.sigma) / self.rate))
        if self.placement == "pupil":
            self.pupil_ratio_weight = self.add_weight(
                shape=(), name="pupil_ratio_weight",
                initializer=keras.initializers.Constant(self.pupil_ratio / self.rate))

    def peak_and_sigma(self) -> tuple[tf.Tensor, tf.Tensor]:
        """`(a, s)`: the spot's peak and radius per channel, `[C]` each."""
        return (tf.nn.softplus(self.rate * self.peak_weight),
                tf.nn.softplus(self.rate * self.sigma_weight))

    def location(self, features, images=None):
        """The predicted centre `(row, column)` of each image's spot, `[b]` each (before
        the random offset); `images` (the refiner's input) for `placement="pupil"`."""
        logits = self.rate * contract_last(features, self.location_kernel[:, None])[..., 0]
        if self.placement == "pupil":
            logits -= self.temperature * tf.reduce_mean(tf.cast(images, logits.dtype), -1)
        shape = tf.shape(logits)
        weights = tf.reshape(tf.nn.softmax(tf.reshape(logits, [shape[0], -1])), shape)
        rows = tf.cast(tf.range(shape[1]), weights.dtype)
        cols = tf.cast(tf.range(shape[2]), weights.dtype)
        row = tf.reduce_sum(weights * rows[:, None], axis=[1, 2])
        col = tf.reduce_sum(weights * cols, axis=[1, 2])
        if self.placement == "pupil":
            ratio = self.rate * self.pupil_ratio_weight
            centre_row = tf.cast(shape[1] - 1, row.dtype) / 2.0
            centre_col = tf.cast(shape[2] - 1, col.dtype) / 2.0
            row = centre_row + ratio * (row - centre_row)
            col = centre_col + ratio * (col - centre_col)
        return row, col

    def call(self, inputs):
        refined, clean, features = inputs[:3]
        if (len(inputs) == 4) != (self.placement == "pupil"):
            raise ValueError("OutputGlint takes [refined, clean, features, images] with "
                             "placement='pupil' and [refined, clean, features] otherwise. "
                             f"Received {len(inputs)} inputs, placement={self.placement!r}")
        features = tf.cast(features, refined.dtype)
        row, col = self.location(features, inputs[3] if len(inputs) == 4 else None)
        dy, dx = random_offsets(self.seed_generator, tf.shape(refined)[0], self.max_shift,
                                refined.dtype)
        row, col = row + dy, col + dx
        shape = tf.shape(refined)
        ys = tf.cast(tf.range(shape[1]), refined.dtype)[None, :, None, None]
        xs = tf.cast(tf.range(shape[2]), refined.dtype)[None, None, :, None]
        distance2 = (ys - row[:, None, None, None]) ** 2 + (xs - col[:, None, None, None]) ** 2
        peak, sigma = self.peak_and_sigma()
        glint = peak * tf.exp(-distance2 / (2.0 * sigma ** 2))
        return [tf.minimum(refined + glint, 1.0), tf.identity(clean)]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[0]), tuple(input_shape[1])]

    def get_config(self):
        return {**super().get_config(), "peak": self.peak, "sigma": self.sigma,
                "max_shift": self.max_shift, "rate": self.rate, "placement": self.placement,
                "pupil_ratio": self.pupil_ratio, "temperature": self.temperature,
                "seed": self.seed}


def random_states(model: keras.Model) -> list:
    """The state variables of `model`'s seed generators (its output layers' and noise
    channels' randomness), in a fixed order; empty for a deterministic refiner."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


class KeepRandomState:
    """Context manager: calls of `models` inside it leave their seed generators' states
    as they were, so they draw nothing from the sequence the training updates draw.

    For calls outside the training updates (image summaries, inspection): a resumed run
    makes such calls at other steps than an uninterrupted one, and with them advancing
    the generators its later updates would draw other noise, offsets and lighting.
    """

    def __init__(self, *models: keras.Model):
        self.variables = [v for model in models for v in random_states(model)]

    def __enter__(self):
        self.saved = [tf.identity(v) for v in self.variables]
        return self

    def __exit__(self, *exc_info):
        for variable, value in zip(self.variables, self.saved):
            variable.assign(value)
        return False


def clean_view(refiner: keras.Model) -> keras.Model | None:
    """A model sharing `refiner`'s layers that returns `[refined, clean]`, or `None`.

    For a refiner with output grain, highlights, a glint or lighting (`OutputGrain` named
    `grain`, `OutputHighlights` named `highlights`, `OutputGlint` named `glint`,
    `OutputLighting` named `lighting`): one forward pass gives the refined image with
    them and the clean image the self-regularization compares with the input. `None` for
    a refiner with none.
    """
    for name in ("lighting", "glint", "highlights", "grain"):
        try:
            layer = refiner.get_layer(name)
        except ValueError:
            continue
        return keras.Model(refiner.inputs, layer.output, name=f"{refiner.name}_clean_view")
    return None


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
    ok, message = config_lib.refiner_check(config)
    if not ok:
        raise ValueError(message)
    inputs = keras.Input(shape=image_shape, name="images")
    x = inputs
    if config.noise_channels:
        x = NoiseChannels(config.noise_channels, name="noise")(x)
    x = conv(x, config.filters, config.kernel_size, "conv_in", config.padding,
             activation="relu")
    for i in range(config.num_blocks):
        x = resnet_block(x, config.filters, config.kernel_size, name=f"block{i + 1}",
                         padding=config.padding)
    features = x
    x = keras.layers.Conv2D(image_shape[-1], 1, padding="same", name="conv_out")(x)
    if config.grain:
        outputs, clean = OutputGrain(config.grain, rate=config.grain_rate,
                                     padding=config.padding, name="grain",
                                     dtype="float32")([x, features])
    else:
        outputs = clean = keras.layers.Activation("tanh", name="tanh", dtype="float32")(x)
    if config.highlights:
        outputs, clean = OutputHighlights(
            config.highlights, max_shift=config.highlight_shift, name="highlights",
            dtype="float32")([outputs, clean, features])
    if config.glint:
        glint_inputs = [outputs, clean, features]
        if config.glint_placement == "pupil":
            glint_inputs.append(inputs)
        outputs, clean = OutputGlint(
            config.glint, max_shift=config.glint_shift, placement=config.glint_placement,
            name="glint", dtype="float32")(glint_inputs)
    if config.lighting:
        outputs, _ = OutputLighting(config.lighting, rate=config.lighting_rate,
                                    name="lighting", dtype="float32")([outputs, clean])
    return keras.Model(inputs, outputs, name=name)
