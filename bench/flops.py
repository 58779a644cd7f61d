"""Floating-point operations of SimGAN's networks and of one round of Algorithm 1.

Counts are analytic, per example: every multiply-add of a convolution or dense layer is 2
FLOPs; biases, activations, pooling, losses and optimizer updates are not counted (they
are well under 1% of the refiner's convolutions). Backward passes count what a gradient
needs and TensorFlow computes, layer by layer:

  * weight gradient of a layer: as many multiply-adds as its forward pass;
  * input gradient of a layer: as many multiply-adds as its forward pass, and not needed
    for the layers reading the model's input unless the gradient must flow further back
    (the discriminator's input gradient feeds the refiner during a refiner update).

These figures turn measured throughput into achieved FLOP/s (`bench.train_speed`).
The paper's gaze refiner costs 1.138 GFLOP per 35x55 image forward, eight 64->64 3x3
convolutions making 99.8% of it.
"""

from __future__ import annotations

import dataclasses
import math

import keras


def layer_forward_flops(layer: keras.layers.Layer) -> int:
    """FLOPs of one example through `layer` (0 for layers without multiply-adds).

    Raises:
      ValueError: for a convolution or dense layer that has not been built.
    """
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and not layer.built:
        raise ValueError(f"Layer {layer.name!r} is not built; build the model first.")
    if isinstance(layer, keras.layers.Conv2D):
        kernel_h, kernel_w, in_per_group, out_channels = layer.kernel.shape
        out_h, out_w = layer.output.shape[1:3]
        return 2 * out_h * out_w * kernel_h * kernel_w * in_per_group * out_channels
    if isinstance(layer, keras.layers.Dense):
        inputs, units = layer.kernel.shape
        positions = math.prod(d for d in layer.output.shape[1:-1])
        return 2 * positions * inputs * units
    return 0


def _reads_model_input(model: keras.Model, layer: keras.layers.Layer) -> bool:
    inputs = {id(t) for t in model.inputs}
    return any(id(node_input) in inputs
               for node in layer._inbound_nodes  # pylint: disable=protected-access
               for node_input in node.input_tensors)


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one example through `model`'s forward pass."""
    return sum(layer_forward_flops(layer) for layer in model.layers)


def backward_flops(model: keras.Model, *, weight_gradients: bool = True,
                   input_gradient: bool = False) -> int:
    """FLOPs of one example through `model`'s backward pass.

    Args:
      model: a built functional `keras.Model`.
      weight_gradients: the gradient of the loss with respect to the weights is needed.
      input_gradient: the gradient with respect to the model's input is needed (it flows
        into another network); otherwise the layers reading the input skip theirs.
    """
    total = 0
    for layer in model.layers:
        flops = layer_forward_flops(layer)
        if weight_gradients:
            total += flops
        if input_gradient or not _reads_model_input(model, layer):
            total += flops
    return total


@dataclasses.dataclass(frozen=True)
class Algorithm1Flops:
    """FLOPs per example of the updates of Algorithm 1.

    Attributes:
      refiner_forward: R(x) of one image (inference, export).
      refiner_update: one refiner update (`Phase.REFINER`): R forward and backward, D
        forward and its input gradient, per synthetic image.
      discriminator_update: one discriminator update: R forward (no gradient), D forward
        and backward on one refined/history image and on one real image.
      k_g, k_d: updates per iteration.
    """
    refiner_forward: int
    refiner_update: int
    discriminator_update: int
    k_g: int
    k_d: int

    @property
    def per_iteration(self) -> int:
        """One iteration (K_g refiner + K_d discriminator updates), per batch element."""
        return self.k_g * self.refiner_update + self.k_d * self.discriminator_update

    @property
    def per_counted_image(self) -> int:
        """Per synthetic image through a refiner update, the unit of throughput figures
        (an iteration at batch b counts K_g * b images)."""
        return self.per_iteration // self.k_g


def algorithm1_flops(refiner: keras.Model, discriminator: keras.Model, *, k_g: int = 2,
                     k_d: int = 1) -> Algorithm1Flops:
    """FLOPs of Algorithm 1's updates for built refiner and discriminator models."""
    if k_g < 1 or k_d < 1:
        raise ValueError(f"Expected k_g >= 1 and k_d >= 1. Received: k_g={k_g}, k_d={k_d}")
    r_forward = forward_flops(refiner)
    d_forward = forward_flops(discriminator)
    refiner_update = (r_forward + backward_flops(refiner)
                      + d_forward + backward_flops(discriminator, weight_gradients=False,
                                                   input_gradient=True))
    discriminator_update = r_forward + 2 * (d_forward + backward_flops(discriminator))
    return Algorithm1Flops(refiner_forward=r_forward, refiner_update=refiner_update,
                           discriminator_update=discriminator_update, k_g=k_g, k_d=k_d)
