import dataclasses

import keras
import numpy as np
import pytest

from simgan_tf import config as config_lib
from simgan_tf.modeling.discriminator import build_discriminator
from simgan_tf.modeling.refiner import build_refiner


def _conv_layers(model):
    return [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]


def test_gaze_refiner_is_the_papers():
    refiner = build_refiner((35, 55, 1))
    convs = _conv_layers(refiner)
    # conv3x3 64, 4 blocks of two conv3x3 64, conv1x1 1.
    assert len(convs) == 1 + 4 * 2 + 1
    assert [c.filters for c in convs] == [64] * 9 + [1]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 9 + [(1, 1)]
    assert convs[0].activation.__name__ == "relu"
    assert sum(isinstance(l, keras.layers.Add) for l in refiner.layers) == 4
    assert refiner.layers[-1].activation.__name__ == "tanh"
    x = np.random.default_rng(0).uniform(-1, 1, (2, 35, 55, 1)).astype(np.float32)
    y = keras.ops.convert_to_numpy(refiner(x))
    assert y.shape == (2, 35, 55, 1) and np.all(np.abs(y) <= 1.0)


def test_hand_refiner_uses_7x7_kernels_and_10_blocks():
    hand = config_lib.get_preset("hand")
    refiner = build_refiner(hand.image_shape, hand.refiner)
    convs = _conv_layers(refiner)
    assert len(convs) == 1 + 10 * 2 + 1
    assert all(c.kernel_size == (7, 7) for c in convs[:-1])
    assert refiner.output_shape == (None, 224, 224, 1)


def test_gaze_discriminator_is_the_papers_with_linear_logits():
    d = build_discriminator((35, 55, 1))
    convs = _conv_layers(d)
    assert [(c.filters, c.kernel_size[0], c.strides[0]) for c in convs] == [
        (96, 3, 2), (64, 3, 2), (32, 3, 1), (32, 1, 1), (2, 1, 1)]
    pools = [l for l in d.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert len(pools) == 1 and pools[0].pool_size == (3, 3) and pools[0].strides == (1, 1)
    assert [c.activation.__name__ for c in convs] == ["relu"] * 4 + ["linear"]
    assert d.output_shape == (None, 9, 14, 2)
    # Linear logits take values outside [0, 1] and of both signs.
    x = np.random.default_rng(1).uniform(-1, 1, (4, 35, 55, 1)).astype(np.float32) * 50
    logits = keras.ops.convert_to_numpy(d(x))
    assert logits.min() < 0 < logits.max()


def test_hand_discriminator_shape():
    hand = config_lib.get_preset("hand")
    d = build_discriminator(hand.image_shape, hand.discriminator)
    convs = _conv_layers(d)
    assert [(c.filters, c.kernel_size[0], c.strides[0]) for c in convs] == [
        (96, 7, 4), (64, 5, 2), (32, 3, 2), (32, 1, 1), (2, 1, 1)]
    assert d.output_shape == (None, 7, 7, 2)  # 224 /4 /2 /2 /2


def test_configurable_depth_and_width():
    small = build_refiner((35, 55, 1), config_lib.RefinerConfig(filters=8, kernel_size=5,
                                                                num_blocks=2))
    assert [c.filters for c in _conv_layers(small)] == [8] * 5 + [1]
    rgb = build_refiner((16, 16, 3), config_lib.RefinerConfig(filters=4, num_blocks=1))
    assert rgb.output_shape == (None, 16, 16, 3)


def test_bad_network_configs_are_rejected():
    with pytest.raises(ValueError, match="odd kernel_size"):
        build_refiner((35, 55, 1), config_lib.RefinerConfig(kernel_size=4))
    layers = config_lib.GAZE_DISCRIMINATOR[:-1] + (config_lib.ConvSpec("conv", 1, 1, 1),)
    with pytest.raises(ValueError, match="2 filters"):
        build_discriminator((35, 55, 1), dataclasses.replace(
            config_lib.DiscriminatorConfig(), layers=layers))


def test_global_discriminator_repeats_one_decision_over_the_local_map():
    local = build_discriminator((35, 55, 1))
    config = config_lib.DiscriminatorConfig(output="global")
    d = build_discriminator((35, 55, 1), config)
    assert d.output_shape == local.output_shape == (None, 9, 14, 2)
    dense = [l for l in d.layers if isinstance(l, keras.layers.Dense)]
    assert len(dense) == 1 and dense[0].units == 2
    assert dense[0].activation is keras.activations.linear
    # The last conv of the local stack is replaced, the hidden ones are kept.
    assert [c.filters for c in _conv_layers(d)] == [96, 64, 32, 32]
    images = np.random.default_rng(0).uniform(-1, 1, (3, 35, 55, 1)).astype("float32")
    logits = d(images).numpy()
    np.testing.assert_array_equal(logits, np.broadcast_to(logits[:, :1, :1], logits.shape))
    assert not np.allclose(logits[0], logits[1])  # one decision per image
    with pytest.raises(ValueError, match="output"):
        build_discriminator((35, 55, 1), config_lib.DiscriminatorConfig(output="patch"))
    with pytest.raises(ValueError, match="discriminator.output"):
        config_lib.override(config_lib.get_preset("gaze"),
                            {"discriminator.output": "both"}).validate()


def test_local_plus_global_discriminator_adds_one_image_decision_to_every_patch():
    config = config_lib.DiscriminatorConfig(output="local+global")
    d = build_discriminator((35, 55, 1), config)
    assert d.output_shape == (None, 9, 14, 2)
    # The local stack is kept whole (its last conv gives the patch logits) ...
    assert [c.filters for c in _conv_layers(d)] == [96, 64, 32, 32, 2]
    dense = [l for l in d.layers if isinstance(l, keras.layers.Dense)]
    assert len(dense) == 1 and dense[0].units == 2 and dense[0].kernel.shape == (9 * 14 * 32, 2)
    images = np.random.default_rng(0).uniform(-1, 1, (3, 35, 55, 1)).astype("float32")
    logits = d(images).numpy()
    # ... and the logits are the local ones plus one global pair per image, by hand.
    hidden = keras.Model(d.input, d.get_layer("conv5").output)(images).numpy()
    conv = d.get_layer("local_logits")
    local = np.einsum("bhwc,ck->bhwk", hidden, conv.kernel.numpy()[0, 0]) + conv.bias.numpy()
    image = hidden.reshape(3, -1) @ dense[0].kernel.numpy() + dense[0].bias.numpy()
    np.testing.assert_allclose(logits, local + image[:, None, None, :], rtol=1e-4, atol=1e-4)
    assert not np.allclose(logits, np.broadcast_to(logits[:, :1, :1], logits.shape))


def test_only_the_global_head_lets_a_far_pixel_move_every_patch():
    images = np.zeros((1, 35, 55, 1), "float32")
    moved = images.copy()
    moved[0, 0, 0, 0] = 1.0  # the top-left pixel
    changed = {}
    for output in ("local", "local+global"):
        d = build_discriminator((35, 55, 1), config_lib.DiscriminatorConfig(output=output))
        change = np.abs(d(moved).numpy() - d(images).numpy()).max(axis=-1)[0]
        changed[output] = change
    # The bottom-right patch does not see the top-left pixel through the local head.
    assert changed["local"][-1, -1] == 0 and changed["local"][0, 0] > 0
    assert np.all(changed["local+global"] > 0)
