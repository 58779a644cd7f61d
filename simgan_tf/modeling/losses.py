"""SimGAN's losses as pure functions (Shrivastava et al., CVPR 2017, Eqs. 1-4).

Reductions, stated once for all of them:
  * over patches: the local adversarial loss **sums** the cross-entropy of the
    discriminator's w x h patches (paper, Sec. 2.2: "the sum of the cross-entropy losses
    over the local patches");
  * over pixels: the self-regularization loss **sums** |psi(R(x)) - psi(x)| over pixels
    and channels (the L1 norm of Eq. 4);
  * over the batch: each function returns one value **per example**, shape `[batch]`;
  * over replicas: `average_over_global_batch` divides the per-example sum of a replica
    by the global batch size, so that summing gradients across replicas (what the
    optimizer's all-reduce does) gives the gradient of the mean over the global batch.
    On one replica it is the plain batch mean.

The optional task-consistency term (`task_consistency_loss`) **sums** |f(R(x)) - f(x)|
over the task network's outputs, one value per example, like the self-regularization.
The optional R1 penalty (`r1_penalty`) follows the same rules: the discriminator's score
of an image is **summed** over patches before its gradient is taken, and it returns one
value per example, added to the discriminator's per-example loss.

The optional spectral term (`spectral_loss`) is the one statistic of a whole batch: it
compares the **mean** power spectrum of the refined images with that of the real images,
so its caller sums `band_power` over each replica's batch, all-reduces the sums and
divides by the global batch (`SimGAN` does; on one replica it is the plain batch mean).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from simgan_tf.modeling.contraction import contract_last

# The discriminator's two classes: index of each in its `[..., 2]` logits.
REFINED = 0
REAL = 1


def local_adversarial_loss(logits: tf.Tensor, target: int) -> tf.Tensor:
    """Cross-entropy of every patch against one class, summed over patches.

    loss_i = sum_{patches j} -log softmax(logits_ij)[target]

    With `target=REAL` on refined images this is the refiner's realism loss
    l_real(theta) = -sum_j log(1 - D_j(R(x_i))) of Eq. 3 (where D_j is the probability of
    "refined"); with `target=REFINED` / `REAL` it is the discriminator's Eq. 2.

    Args:
      logits: `[batch, h, w, 2]` per-patch logits (class 0 refined, class 1 real).
      target: `REFINED` (0) or `REAL` (1).

    Returns:
      `[batch]` float32, the sum over the h x w patches of each example.
    """
    if target not in (REFINED, REAL):
        raise ValueError(f"Expected target {REFINED} or {REAL}. Received: {target}")
    logits = tf.cast(logits, tf.float32)
    labels = tf.fill(tf.shape(logits)[:-1], target)
    per_patch = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(per_patch, axis=[1, 2])


def self_regularization_loss(refined: tf.Tensor, synthetic: tf.Tensor,
                             feature_transform: Callable[[tf.Tensor], tf.Tensor] | None = None
                             ) -> tf.Tensor:
    """L1 distance between the refined and synthetic images in a feature space.

    loss_i = || psi(R(x_i)) - psi(x_i) ||_1 (Eq. 4), psi the identity by default.

    Args:
      refined: `[batch, H, W, C]` refined images R(x).
      synthetic: `[batch, H, W, C]` synthetic images x.
      feature_transform: psi, any function of a `[batch, ...]` image batch (e.g. a mean
        of color channels or a feature extractor); identity when `None`.

    Returns:
      `[batch]` float32, the sum over pixels (and channels) of each example, unweighted:
      the caller multiplies by lambda.
    """
    psi = feature_transform or (lambda x: x)
    difference = tf.cast(psi(refined), tf.float32) - tf.cast(psi(synthetic), tf.float32)
    return tf.reduce_sum(tf.abs(tf.reshape(difference, [tf.shape(difference)[0], -1])), axis=1)


def local_mean(images: tf.Tensor, size: int) -> tf.Tensor:
    """psi of a local-mean self-regularization: block means of the channel mean.

    The paper's Eq. 4 allows psi to be any feature transform and names "the mean of color
    channels" as one. This one averages the channels, then non-overlapping `size x size`
    blocks (placed as TensorFlow's `same` pooling places them, the padding split between
    both borders; a border block averages only the pixels inside the image):
    the refiner may change texture and grain inside a block freely, while the image's
    layout at the scale of `size` pixels (where a pupil is) is held. `size=1` is the
    channel mean alone.

    Args:
      images: `[batch, H, W, C]`.
      size: block side in pixels, >= 1.

    Returns:
      `[batch, ceil(H / size), ceil(W / size), 1]` float32.
    """
    if int(size) != size or size < 1:
        raise ValueError(f"Expected an integer block size >= 1. Received: size={size}")
    gray = tf.reduce_mean(tf.cast(images, tf.float32), axis=-1, keepdims=True)
    if size == 1:
        return gray
    return tf.nn.avg_pool2d(gray, ksize=int(size), strides=int(size), padding="SAME")


def task_consistency_loss(task_features: Callable[[tf.Tensor], tf.Tensor],
                          refined: tf.Tensor, synthetic: tf.Tensor) -> tf.Tensor:
    """L1 distance between a frozen task network's outputs for R(x) and for x.

    loss_i = || f(R(x_i)) - f(x_i) ||_1, summed over the outputs (or features) of f,

    the paper's Eq. 4 with psi = f, a network trained on the synthetic images' labels
    and then frozen: the refiner may change anything the task network does not read,
    and is held to keep what it reads (a gaze, the joints). This is the semantic
    consistency of CyCADA (Hoffman et al., ICML 2018) and the gaze consistency of FP-GAN
    (Lee et al., 2018) with an L1 distance. f(x) is a constant: no gradient flows to the
    synthetic images, nor to f's weights (the caller keeps f frozen).

    Args:
      task_features: f, from `[batch, H, W, C]` images to `[batch, ...]` outputs.
      refined: `[batch, H, W, C]` refined images R(x).
      synthetic: `[batch, H, W, C]` synthetic images x.

    Returns:
      `[batch]` float32, unweighted: the caller multiplies by its weight.
    """
    target = tf.stop_gradient(tf.cast(task_features(synthetic), tf.float32))
    difference = tf.cast(task_features(refined), tf.float32) - target
    return tf.reduce_sum(tf.abs(tf.reshape(difference, [tf.shape(difference)[0], -1])), axis=1)


def refiner_loss(refined_logits: tf.Tensor | None, refined: tf.Tensor, synthetic: tf.Tensor,
                 reg_weight: float,
                 feature_transform: Callable[[tf.Tensor], tf.Tensor] | None = None
                 ) -> tuple[tf.Tensor, tf.Tensor]:
    """The refiner's per-example losses of Eq. 4, split in its two terms.

    Args:
      refined_logits: `[batch, h, w, 2]` discriminator logits of the refined images, or
        `None` while the refiner is pretrained on the self-regularization loss alone.
      refined: `[batch, H, W, C]` refined images R(x).
      synthetic: `[batch, H, W, C]` synthetic images x.
      reg_weight: lambda.
      feature_transform: psi of `self_regularization_loss`.

    Returns:
      `(adversarial, regularization)`, each `[batch]` float32: the local adversarial loss
      of the refined images against class REAL (zeros when `refined_logits` is `None`),
      and lambda times the self-regularization loss. Their sum is the refiner's loss.
    """
    regularization = reg_weight * self_regularization_loss(refined, synthetic, feature_transform)
    if refined_logits is None:
        return tf.zeros_like(regularization), regularization
    return local_adversarial_loss(refined_logits, REAL), regularization


def discriminator_loss(refined_logits: tf.Tensor, real_logits: tf.Tensor) -> tf.Tensor:
    """The discriminator's per-example loss of Eq. 2.

    loss_i = sum_j -log D_j(refined_i) + sum_j -log(1 - D_j(real_i)), i.e. the local
    adversarial loss of refined images against REFINED plus that of real images against
    REAL. Example i of each batch forms pair i, so both batches must have the same size.

    Returns:
      `[batch]` float32.
    """
    return (local_adversarial_loss(refined_logits, REFINED)
            + local_adversarial_loss(real_logits, REAL))


def r1_penalty(discriminator: Callable[[tf.Tensor], tf.Tensor], real: tf.Tensor,
               weight: float) -> tf.Tensor:
    """R1 gradient penalty on real images (Mescheder et al., ICML 2018, Eq. 9).

    penalty_i = weight / 2 * || grad_x S(x) |_{x = real_i} ||^2,
    S(x) = sum_{patches j} (logits_j(x)[REAL] - logits_j(x)[REFINED]),

    the squared L2 norm over pixels and channels of the gradient of the image's score.
    The score of a patch is its log-odds of being real: the softmax of two logits
    depends on them only through their difference, which is the logit of a one-output
    (sigmoid) discriminator as in the paper. The scores are **summed** over patches, as
    the adversarial loss sums its cross-entropies (so one gradient per image, not one
    per patch; patches overlap, so this is not the sum of per-patch squared norms).
    Examples do not interact in D, so the gradient of the batch's summed score gives
    each image's own gradient. For the lazy form of StyleGAN2 (Karras et al., CVPR
    2020), the caller applies it every N discriminator updates with `weight` = gamma*N.

    Args:
      discriminator: a function from `[batch, H, W, C]` images to `[batch, h, w, 2]`
        logits (class 0 refined, class 1 real), e.g. D called with `training=True`.
      real: `[batch, H, W, C]` real images.
      weight: gamma (>= 0), times N when applied every N updates.

    Returns:
      `[batch]` float32; differentiable with respect to D's weights (double backprop).
    """
    real = tf.cast(real, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(real)
        logits = tf.cast(discriminator(real), tf.float32)
        score = tf.reduce_sum(logits[..., REAL] - logits[..., REFINED])
    gradients = tape.gradient(score, real)
    return 0.5 * weight * tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3])


def radial_bands(height: int, width: int, edges) -> np.ndarray:
    """Radial frequency bands of an `height x width` image's 2D DFT, `[H, W, K]`.

    The radial frequency of DFT bin (k, l) is `sqrt(fy^2 + fx^2)` in cycles per pixel
    (`np.fft.fftfreq`; at most `sqrt(0.5)`). Band k holds the frequencies in
    `[edges[k], edges[k + 1])`, the last band also its upper edge; its plane is
    `1 / count_k` on its frequencies and 0 elsewhere, so `sum_{h, w}(power * plane_k)`
    is the mean power over the band.

    Raises:
      ValueError: if `edges` has fewer than 2 values, is not increasing, starts below 0,
        or a band holds no frequency (too narrow a band for a small image).
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or edges[0] < 0 or np.any(np.diff(edges) <= 0):
        raise ValueError("Expected at least 2 increasing band edges >= 0, in cycles per "
                         f"pixel. Received: {edges.tolist()}")
    radius = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :])
    upper = edges[1:].copy()
    upper[-1] += 1e-9  # the last band includes its upper edge
    planes = np.stack([(radius >= lo) & (radius < hi) for lo, hi in zip(edges[:-1], upper)],
                      axis=-1).astype(np.float64)
    counts = planes.sum(axis=(0, 1))
    if np.any(counts == 0):
        empty = [f"[{edges[k]:g}, {edges[k + 1]:g})" for k in np.flatnonzero(counts == 0)]
        raise ValueError(f"A {height}x{width} image has no frequency in the band(s) "
                         f"{', '.join(empty)} (cycles per pixel): use fewer or wider bands.")
    return (planes / counts).astype(np.float32)


def frequency_bands(height: int, width: int, cutoff: float, bins: int) -> np.ndarray:
    """`radial_bands` of `bins` bands of equal width from `cutoff` to `sqrt(0.5)` cycles
    per pixel (the corner frequency, the highest an image has), `[H, W, bins]`.

    Raises:
      ValueError: if `cutoff` is outside [0, 0.5), `bins < 1`, or a band holds no
        frequency (too many bands for a small image).
    """
    if not 0.0 <= cutoff < 0.5 or int(bins) != bins or bins < 1:
        raise ValueError("Expected cutoff in [0, 0.5) and an integer bins >= 1. Received: "
                         f"cutoff={cutoff}, bins={bins}")
    return radial_bands(height, width, np.linspace(cutoff, np.sqrt(0.5), int(bins) + 1))


def band_power(images: tf.Tensor, bands: np.ndarray | tf.Tensor) -> tf.Tensor:
    """Each image's mean power in each frequency band, per channel.

    power(k, l) = |DFT(x - mean(x))(k, l)|^2 / (H W), the periodogram of the image with
    its mean removed, per channel; white noise of standard deviation s has power s^2 at
    every frequency. Averaged over each band of `frequency_bands`.

    Args:
      images: `[b, H, W, C]` (any float dtype; computed in float32).
      bands: `[H, W, K]` from `frequency_bands` or `radial_bands`.

    Returns:
      `[b, C, K]` float32.
    """
    x = tf.cast(images, tf.float32)
    x = x - tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    x = tf.transpose(x, [0, 3, 1, 2])  # fft2d transforms the two innermost axes
    spectrum = tf.signal.fft2d(tf.complex(x, tf.zeros_like(x)))
    size = tf.cast(tf.shape(x)[2] * tf.shape(x)[3], tf.float32)
    power = tf.math.real(spectrum * tf.math.conj(spectrum)) / size
    bands = tf.cast(bands, tf.float32)
    flat_power = tf.reshape(power, tf.concat([tf.shape(power)[:2], [-1]], 0))
    return contract_last(flat_power, tf.reshape(bands, [-1, bands.shape[-1]]))


def spectral_loss(refined_power: tf.Tensor, real_power: tf.Tensor,
                  epsilon: float = 1e-8) -> tf.Tensor:
    """Squared log-ratio of the refined and real images' mean band powers.

    loss = mean_{c, k} (log(P_refined(c, k) + eps) - log(P_real(c, k) + eps))^2,

    with P the mean over a batch of `band_power`. In the log, a band whose power is off
    by a factor costs the same whether it is a strong band (structure) or a weak one
    (grain); the real images' side is a target (its gradient is not used by the caller).
    In the spirit of the spectral regularization of Durall et al. (CVPR 2020), which
    compares azimuthally averaged spectra of generated and real images; here restricted
    to the bands above a cutoff, where sensor noise, blur and compression live.

    Args:
      refined_power, real_power: `[C, K]` (or any equal shapes) mean band powers.
      epsilon: added before the log (powers are in squared [-1, 1] image units).

    Returns:
      A scalar float32; 0 when the two match.
    """
    refined_power = tf.cast(refined_power, tf.float32)
    real_power = tf.cast(real_power, tf.float32)
    return tf.reduce_mean(tf.square(tf.math.log(refined_power + epsilon)
                                    - tf.math.log(real_power + epsilon)))


def average_over_global_batch(per_example_loss: tf.Tensor, global_batch_size: int) -> tf.Tensor:
    """Sum of a replica's per-example losses divided by the global batch size.

    Runs on each replica. Summing the resulting gradients over replicas gives the
    gradient of the mean loss over the global batch.
    """
    return tf.nn.compute_average_loss(per_example_loss, global_batch_size=global_batch_size)


def patch_accuracy(logits: tf.Tensor, target: int) -> tf.Tensor:
    """Fraction of patches classified as `target`, per example (`[batch]` in [0, 1])."""
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.reduce_mean(tf.cast(tf.equal(predicted, target), tf.float32), axis=[1, 2])
