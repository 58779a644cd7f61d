"""Differentiable augmentation of the discriminator's inputs.

DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training",
NeurIPS 2020) and ADA (Karras et al., "Training Generative Adversarial Networks with
Limited Data", NeurIPS 2020) augment every image the discriminator sees, real and
generated alike, with transforms that are differentiable, so the generator is trained
through them too: D(T(R(x))) in the refiner's adversarial loss, D(T(refined)) and
D(T(real)) in the discriminator's loss. The discriminator then cannot memorise a small
real set, and since both domains get the same distribution of transforms, the refiner is
not asked to imitate the augmentation.

Transforms (`TRANSFORMS`), on images in [-1, 1], each drawn independently per image and
applied with probability `probability` (ADA's p; 1.0 is DiffAugment):

- `translation`: a shift of up to 1/8 of the height and width (whole pixels, uniform in
  [-H/8, H/8] and [-W/8, W/8]); pixels shifted in are 0 (mid-gray, DiffAugment's
  zero padding).
- `cutout`: a rectangle of half the height and width, centred uniformly in the image
  (clipped at the border), set to 0.
- `brightness`: a per-image offset uniform in [-0.5, 0.5] added to every pixel.
- `contrast`: (x - mean) * c + mean, the image's mean over pixels and channels, c
  uniform in [0.5, 1.5].

Outputs are not clipped (as in DiffAugment): the discriminator sees the transformed
values. Randomness is stateless, a function of a `[2]` seed the caller derives from the
step, so a resumed run augments exactly as an uninterrupted one would. Under a
distribution strategy every replica draws the random numbers of the whole global batch
from the same seed and uses the rows of its own slice (`offset`, `total`): image i of
the global batch gets the same transform however many replicas share the batch.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

TRANSFORMS = ("translation", "cutout", "brightness", "contrast")
TRANSLATION_FRACTION = 0.125
CUTOUT_FRACTION = 0.5


def parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    """The transforms of a comma-separated policy string (`""`: none), in their order.

    Raises:
      ValueError: for an unknown or repeated name, naming it and the known ones.
    """
    names = policy.split(",") if isinstance(policy, str) else list(policy)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"Expected augmentations from {TRANSFORMS}, each at most once, "
                         f"comma-separated. Received: {','.join(names)!r}")
    return tuple(names)


def augment(images: tf.Tensor, policy: Sequence[str], seed: tf.Tensor,
            probability: float = 1.0, offset=0, total=None) -> tf.Tensor:
    """Applies the `policy`'s transforms, in order, each per image with `probability`.

    Differentiable with respect to `images`. Runs anywhere; under a strategy each
    replica passes the same `seed` and its slice's place in the global batch.

    Args:
      images: `[batch, H, W, C]` float images in [-1, 1].
      policy: transform names from `TRANSFORMS` (see `parse_policy`); empty: identity.
      seed: int32/int64 `[2]` stateless seed.
      probability: chance in [0, 1] that each transform is applied to each image.
      offset: index of `images[0]` in the global batch (int scalar).
      total: size of the global batch (int scalar); `None`: `batch` (one replica).

    Returns:
      `[batch, H, W, C]` float32 (the input itself when `policy` is empty).
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"Expected probability in [0, 1]. Received: {probability}")
    if not policy:
        return images
    images = tf.cast(images, tf.float32)
    rows = _Rows(offset, tf.shape(images)[0] if total is None else total)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), len(policy))
    for index, name in enumerate(parse_policy(policy)):
        images = _FUNCTIONS[name](images, seeds[index], probability, rows)
    return images


class _Rows:
    """Which rows of the global batch's draws belong to this slice of images."""

    def __init__(self, offset, total):
        self.offset, self.total = offset, total

    def draws(self, images, seed, count, probability):
        """`[count, batch]` uniform [0, 1) draws and the `[batch]` float32 mask of the
        images the transform applies to, for this slice's rows."""
        batch = tf.shape(images)[0]
        seeds = tf.random.experimental.stateless_split(seed, 2)
        uniforms = tf.random.stateless_uniform([count, self.total], seed=seeds[0])
        applied = tf.random.stateless_uniform([self.total], seed=seeds[1]) < probability
        uniforms = uniforms[:, self.offset:self.offset + batch]
        return uniforms, tf.cast(applied[self.offset:self.offset + batch], tf.float32)


def _part(size, fraction):
    """round(size * fraction) as an int32 tensor."""
    return tf.cast(tf.round(tf.cast(size, tf.float32) * fraction), tf.int32)


def translation(images, seed, probability=1.0, rows=None):
    """Shifts each image by whole pixels, up to 1/8 of its size; 0 shifted in."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    draws, applied = (rows or _Rows(0, shape[0])).draws(images, seed, 2, probability)
    pad_y, pad_x = _part(height, TRANSLATION_FRACTION), _part(width, TRANSLATION_FRACTION)
    # Shifts uniform over the integers in [-pad, pad]; 0 where not applied.
    shift_y = tf.cast(tf.floor(draws[0] * tf.cast(2 * pad_y + 1, tf.float32)), tf.int32) - pad_y
    shift_x = tf.cast(tf.floor(draws[1] * tf.cast(2 * pad_x + 1, tf.float32)), tf.int32) - pad_x
    shift_y = shift_y * tf.cast(applied, tf.int32)
    shift_x = shift_x * tf.cast(applied, tf.int32)
    padded = tf.pad(images, [[0, 0], [pad_y, pad_y], [pad_x, pad_x], [0, 0]])
    # Output pixel (i, j) reads padded pixel (i + pad - shift, j + pad - shift).
    rows = tf.range(height)[None] + pad_y - shift_y[:, None]
    cols = tf.range(width)[None] + pad_x - shift_x[:, None]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, cols, axis=2, batch_dims=1)


def cutout(images, seed, probability=1.0, rows=None):
    """Sets a rectangle of half each side, centred uniformly, to 0 in each image."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    draws, applied = (rows or _Rows(0, shape[0])).draws(images, seed, 2, probability)
    size_y, size_x = _part(height, CUTOUT_FRACTION), _part(width, CUTOUT_FRACTION)
    centre_y = tf.cast(tf.floor(draws[0] * tf.cast(height, tf.float32)), tf.int32)
    centre_x = tf.cast(tf.floor(draws[1] * tf.cast(width, tf.float32)), tf.int32)
    top, left = centre_y - size_y // 2, centre_x - size_x // 2
    y = tf.range(height)[None]
    x = tf.range(width)[None]
    inside_y = (y >= top[:, None]) & (y < top[:, None] + size_y)    # [batch, H]
    inside_x = (x >= left[:, None]) & (x < left[:, None] + size_x)  # [batch, W]
    inside = tf.cast(inside_y[:, :, None] & inside_x[:, None, :], tf.float32)
    keep = 1.0 - inside * applied[:, None, None]
    return images * keep[..., None]


def brightness(images, seed, probability=1.0, rows=None):
    """Adds a per-image offset uniform in [-0.5, 0.5]."""
    draws, applied = (rows or _Rows(0, tf.shape(images)[0])).draws(images, seed, 1,
                                                                   probability)
    offset = (draws[0] - 0.5) * applied
    return images + offset[:, None, None, None]


def contrast(images, seed, probability=1.0, rows=None):
    """Scales each image about its mean by a factor uniform in [0.5, 1.5]."""
    draws, applied = (rows or _Rows(0, tf.shape(images)[0])).draws(images, seed, 1,
                                                                   probability)
    factor = 1.0 + (draws[0] - 0.5) * applied
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - mean) * factor[:, None, None, None] + mean


_FUNCTIONS = {"translation": translation, "cutout": cutout, "brightness": brightness,
              "contrast": contrast}
