"""FLOP counts checked against hand computations."""

import keras
import pytest

from simgan_tf import config as config_lib
from bench import flops
from simgan_tf.modeling.discriminator import build_discriminator
from simgan_tf.modeling.refiner import build_refiner

GAZE = (35, 55, 1)
# Hand counts, 2 FLOPs per multiply-add, 35 x 55 = 1925 output positions:
CONV_IN = 2 * 1925 * 9 * 1 * 64             # 1 -> 64, 3x3
CONV_64 = 2 * 1925 * 9 * 64 * 64            # 64 -> 64, 3x3 (8 of them in 4 blocks)
CONV_OUT = 2 * 1925 * 64 * 1                # 64 -> 1, 1x1
REFINER = CONV_IN + 8 * CONV_64 + CONV_OUT  # 1,137,875,200
# Discriminator, 'same' padding: 35x55 -> /2 -> 18x28 -> /2 -> 9x14 (126 patches).
D_CONV1 = 2 * 18 * 28 * 9 * 1 * 96
D_CONV2 = 2 * 126 * 9 * 96 * 64
D_CONV3 = 2 * 126 * 9 * 64 * 32
D_CONV4 = 2 * 126 * 32 * 32
D_LOGITS = 2 * 126 * 32 * 2
DISCRIMINATOR = D_CONV1 + D_CONV2 + D_CONV3 + D_CONV4 + D_LOGITS


@pytest.fixture(scope="module")
def networks():
    return build_refiner(GAZE), build_discriminator(GAZE)


def test_forward_flops_of_the_paper_gaze_networks(networks):
    refiner, discriminator = networks
    assert REFINER == 1_137_875_200
    assert flops.forward_flops(refiner) == REFINER
    assert flops.forward_flops(discriminator) == DISCRIMINATOR
    assert flops.layer_forward_flops(refiner.get_layer("block3_conv2")) == CONV_64
    assert flops.layer_forward_flops(refiner.get_layer("tanh")) == 0


def test_backward_skips_the_input_gradient_of_the_first_layer(networks):
    refiner, discriminator = networks
    assert flops.backward_flops(refiner) == 2 * REFINER - CONV_IN
    assert flops.backward_flops(refiner, input_gradient=True) == 2 * REFINER
    assert flops.backward_flops(discriminator, weight_gradients=False,
                                input_gradient=True) == DISCRIMINATOR
    assert flops.backward_flops(discriminator, weight_gradients=False) == DISCRIMINATOR - D_CONV1


def test_algorithm1_round(networks):
    refiner, discriminator = networks
    counts = flops.algorithm1_flops(refiner, discriminator, k_g=2, k_d=1)
    refiner_update = (REFINER + 2 * REFINER - CONV_IN) + (DISCRIMINATOR + DISCRIMINATOR)
    discriminator_update = REFINER + 2 * (DISCRIMINATOR + 2 * DISCRIMINATOR - D_CONV1)
    assert counts.refiner_forward == REFINER
    assert counts.refiner_update == refiner_update
    assert counts.discriminator_update == discriminator_update
    assert counts.per_iteration == 2 * refiner_update + discriminator_update
    assert counts.per_counted_image == (2 * refiner_update + discriminator_update) // 2
    # About 4.08 GFLOP per synthetic image through a refiner update.
    assert 4.07e9 < counts.per_counted_image < 4.09e9
    with pytest.raises(ValueError, match="k_g=0"):
        flops.algorithm1_flops(refiner, discriminator, k_g=0)


def test_dense_layers_and_the_global_discriminator():
    discriminator = build_discriminator(
        GAZE, config_lib.DiscriminatorConfig(output="global"))
    # The fully connected logits read the 9 x 14 x 32 map: 4032 inputs, 2 outputs.
    expected = D_CONV1 + D_CONV2 + D_CONV3 + D_CONV4 + 2 * 4032 * 2
    assert flops.forward_flops(discriminator) == expected
    inputs = keras.Input((7, 5))
    dense = keras.layers.Dense(3)
    keras.Model(inputs, dense(inputs))
    assert flops.layer_forward_flops(dense) == 2 * 7 * 5 * 3


def test_unbuilt_layer_is_rejected():
    with pytest.raises(ValueError, match="'lonely' is not built"):
        flops.layer_forward_flops(keras.layers.Conv2D(4, 3, name="lonely"))
