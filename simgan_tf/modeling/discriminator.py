"""The local discriminator D: a fully convolutional classifier of image patches.

Paper (Shrivastava et al. 2017, Sec. 2.2 and Appendix A), gaze: conv3x3/2 96,
conv3x3/2 64, maxpool3x3/1, conv3x3 32, conv1x1 32, conv1x1 2; hand: conv7x7/4 96,
conv5x5/2 64, maxpool3x3/2, conv3x3/2 32, conv1x1 32, conv1x1 2. Every convolution but the
last is followed by a ReLU; the last is **linear**: its two outputs per spatial position
are the logits of that patch being refined (class 0, `losses.REFINED`) or real (class 1,
`losses.REAL`). The output is a `[batch, h, w, 2]` map; each position sees one receptive
field ("patch") of the input.
Padding is `same` (for the gaze network at 35x55 the map is 9x14 = 126 patches).

Ablation (paper, Sec. 3.1, Fig. 8): with `config.output = "global"` the last layer is a
fully connected layer on the whole feature map instead of the 1x1 convolution, so D
classifies the whole image with one pair of logits. That pair is repeated over the h x w
map the local discriminator would output: the summed cross-entropy of `losses.py` then
weighs the global decision as much as the local one weighs its h x w patches, so the two
variants differ in what D sees, not in the balance of the loss against lambda.

With `config.output = "local+global"` (not in the paper) D keeps the local head and adds
the global one: the logits of each patch are the sum of its local logits (the 1x1
convolution) and the image's global logits (the fully connected layer on the whole last
hidden map), `log-odds(patch real) = local(patch) + global(image)`. The loss, its balance
against lambda and every metric stay those of the local map, but a cue spread over the
whole eye (the position of a glint, a light gradient across the image) now moves every
patch's decision, and the refiner's adversarial gradient carries it.

Spectral normalisation (`config.spectral_norm`, off by default; Miyato et al., ICLR 2018)
wraps every convolution (and the global dense layer) in `keras.layers.SpectralNormalization`
with one power iteration. Keras 3's wrapper works in place: each call with
`training=True` (every discriminator update calls D so) runs the power iteration on the
kernel reshaped to `[k * k * c_in, c_out]`, stores the new estimate of the leading
singular vector in its non-trainable `vector_u` (a weight of D, so in checkpoints), and
assigns the kernel divided by its estimated largest singular value sigma back to the
kernel before the convolution. The gradient then flows to the normalised kernel (not
through sigma, as in the paper), the optimizer step moves it slightly off norm 1, and
the next update normalises it again. Calls with `training=False` (the refiner's
adversarial loss, summaries) use the kernel as it is. The wrapper takes the layer's
dtype, so the logits stay float32 under mixed precision.
"""

from __future__ import annotations

import keras

from simgan_tf import config as config_lib


def build_discriminator(image_shape: tuple[int, int, int],
                        config: config_lib.DiscriminatorConfig = config_lib.DiscriminatorConfig(),
                        name: str = "discriminator") -> keras.Model:
    """Builds the discriminator.

    Args:
      image_shape: `(H, W, C)` of the images.
      config: the layer stack; must end with a 2-filter conv.
      name: model name.

    Returns:
      A `keras.Model` from `[batch, H, W, C]` images in [-1, 1] to float32 logits
      `[batch, h, w, 2]` (class 0 refined, class 1 real). Create it inside the strategy
      scope.
    """
    layers = config.layers
    if not layers or layers[-1].kind != "conv" or layers[-1].filters != 2:
        raise ValueError(
            "Expected the last discriminator layer to be a conv with 2 filters (per-patch "
            f"logits). Received: {layers[-1] if layers else None}")
    if config.output not in config_lib.DISCRIMINATOR_OUTPUTS:
        raise ValueError(f"Expected discriminator output in {config_lib.DISCRIMINATOR_OUTPUTS}. "
                         f"Received: {config.output!r}")
    wrap = _spectral_norm if config.spectral_norm else (lambda layer: layer)
    inputs = keras.Input(shape=image_shape, name="images")
    x = inputs
    for i, spec in enumerate(layers):
        last = i == len(layers) - 1
        if last and config.output in ("global", "local+global"):
            # One logit pair for the image, repeated over the local map's h x w.
            height = -(-x.shape[1] // spec.strides)
            width = -(-x.shape[2] // spec.strides)
            image = keras.layers.Flatten(name="flatten")(x)
            image = wrap(keras.layers.Dense(2, dtype="float32", name="global_logits"))(image)
            image = keras.layers.Reshape((1, 1, 2), name="as_map")(image)
            if config.output == "global":
                x = keras.layers.UpSampling2D((height, width), dtype="float32",
                                              name="logits")(image)
                break
            image = keras.layers.UpSampling2D((height, width), dtype="float32",
                                              name="global_map")(image)
            patches = wrap(keras.layers.Conv2D(
                spec.filters, spec.kernel_size, strides=spec.strides, padding="same",
                dtype="float32", name="local_logits"))(x)
            x = keras.layers.Add(dtype="float32", name="logits")([patches, image])
            break
        if spec.kind == "conv":
            x = wrap(keras.layers.Conv2D(
                spec.filters, spec.kernel_size, strides=spec.strides, padding="same",
                activation=None if last else "relu",
                dtype="float32" if last else None,
                name="logits" if last else f"conv{i + 1}"))(x)
        elif spec.kind == "maxpool":
            x = keras.layers.MaxPooling2D(spec.kernel_size, strides=spec.strides,
                                          padding="same", name=f"pool{i + 1}")(x)
        else:
            raise ValueError(f"Expected layer kind 'conv' or 'maxpool'. Received: {spec}")
    return keras.Model(inputs, x, name=name)


def _spectral_norm(layer: keras.layers.Layer) -> keras.layers.Layer:
    """`layer` wrapped in Keras' spectral normalisation, with `layer`'s dtype policy."""
    return keras.layers.SpectralNormalization(
        layer, power_iterations=1, dtype=layer.dtype_policy, name=f"{layer.name}_sn")
