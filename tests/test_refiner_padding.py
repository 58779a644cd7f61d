"""The refiner's padding: zeros (Keras' "same") or the image reflected at its edge."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling.refiner import OutputGrain, ReflectionPadding2D, build_refiner
from simgan_tf.serving import export
from simgan_tf.training import run_config, train_lib
from test_refiner_grain import assert_every_phase_runs_and_replicas_stay_in_sync
from test_train import tiny_config

SHAPE = (35, 55, 1)
SMALL = config_lib.RefinerConfig(filters=8, num_blocks=2)


def test_reflection_padding_mirrors_without_repeating_the_edge():
    images = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
    padded = ReflectionPadding2D(2)(images).numpy()
    assert padded.shape == (2, 8, 9, 3)
    np.testing.assert_array_equal(
        padded, np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect"))
    # Row -1 is row 1, not row 0.
    np.testing.assert_array_equal(padded[:, 1, 2:-2], images[:, 1])
    layer = ReflectionPadding2D.from_config(ReflectionPadding2D(3, name="p").get_config())
    assert layer.size == 3 and layer.compute_output_shape((None, 4, 5, 1)) == (None, 10, 11, 1)
    with pytest.raises(ValueError, match="size"):
        ReflectionPadding2D(-1)


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_a_reflecting_refiner_maps_a_flat_image_to_a_flat_image(kernel_size):
    """Mirroring a flat image gives the same flat image, so every pixel, the edge's
    included, sees the same neighbourhood; zero padding makes the edge differ."""
    config = dataclasses.replace(SMALL, kernel_size=kernel_size)
    flat = np.full((1, *SHAPE), 0.3, np.float32)
    for padding, flat_out in (("reflect", True), ("zeros", False)):
        keras.utils.set_random_seed(0)
        refiner = build_refiner(SHAPE, dataclasses.replace(config, padding=padding))
        out = refiner(flat).numpy()
        assert out.shape == (1, *SHAPE)
        spread = out.max() - out.min()
        assert (spread < 1e-5) == flat_out, (padding, spread)


def test_both_paddings_have_the_same_weights_and_agree_away_from_the_edge():
    keras.utils.set_random_seed(1)
    zeros = build_refiner(SHAPE, SMALL)
    reflect = build_refiner(SHAPE, dataclasses.replace(SMALL, padding="reflect"))
    assert [w.path for w in zeros.weights] == [w.path for w in reflect.weights]
    reflect.set_weights(zeros.get_weights())
    images = np.random.default_rng(0).uniform(-1, 1, (2, *SHAPE)).astype(np.float32)
    a, b = zeros(images).numpy(), reflect(images).numpy()
    # Receptive field of conv_in + 2 blocks of two 3x3 convolutions: 5 pixels each way.
    np.testing.assert_allclose(a[:, 5:-5, 5:-5], b[:, 5:-5, 5:-5], atol=1e-5)
    assert np.abs(a[:, 0] - b[:, 0]).max() > 1e-3


@pytest.mark.parametrize("padding, edge_ratio", [("reflect", 1.0), ("zeros", 2.0 / 3.0)])
def test_reflected_grain_is_as_strong_at_the_edge_as_inside(padding, edge_ratio):
    """With a 3x3 box filter the grain sums 9 noise values inside; at a corner, zero
    padding leaves 4 of them (standard deviation 2/3 of inside), reflection all 9."""
    layer = OutputGrain(0.1, rate=1.0, padding=padding, seed=3)
    pre = tf.zeros((2000, 6, 7, 1))
    features = tf.zeros((2000, 6, 7, 4))
    layer([pre, features])
    box = np.full((3, 3, 1, 1), 1.0 / 9.0, np.float32)
    layer.filter_offset.assign(box - layer._identity)
    refined, clean = layer([pre, features])
    grain = np.arctanh(np.clip(refined.numpy(), -0.999999, 0.999999))[..., 0]
    np.testing.assert_array_equal(clean.numpy(), 0.0)
    inside = grain[:, 2:4, 2:5].std()
    assert inside == pytest.approx(0.1 / 3.0, rel=0.05)
    assert grain[:, 0, 0].std() / inside == pytest.approx(edge_ratio, rel=0.08)


def test_grain_refuses_an_unknown_padding():
    with pytest.raises(ValueError, match="padding"):
        OutputGrain(0.1, padding="wrap")


def test_every_phase_runs_with_reflected_grain_and_replicas_stay_in_sync(mirrored_strategy):
    config = dataclasses.replace(config_lib.RefinerConfig(filters=8, num_blocks=1),
                                 grain=0.05, padding="reflect")
    assert_every_phase_runs_and_replicas_stay_in_sync(config, "grain", OutputGrain,
                                                      mirrored_strategy)


def test_a_reflecting_run_exports_the_refiner_it_trained(shifted_data_dir, tmp_path):
    config = config_lib.override(tiny_config(shifted_data_dir), {"refiner.padding": "reflect"})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    assert isinstance(result.model.refiner.get_layer("conv_in_pad"), ReflectionPadding2D)
    images = np.random.default_rng(2).uniform(-1, 1, (3, *SHAPE)).astype(np.float32)
    refine = export.load_refiner(result.export_path)
    np.testing.assert_allclose(np.asarray(refine(images)), result.model(images).numpy(),
                               atol=1e-5)


def test_padding_flag_config_errors_and_resume():
    overrides = config_lib.command_line_overrides({"refiner_padding": "reflect"}, [])
    assert overrides == {"refiner.padding": "reflect"}
    for name in config_lib.PRESETS:
        assert config_lib.get_preset(name).refiner.padding == "zeros"
    bad = config_lib.override(config_lib.get_preset("gaze"), {"refiner.padding": "wrap"})
    with pytest.raises(ValueError, match="padding"):
        bad.validate()
    with pytest.raises(ValueError, match="padding"):
        build_refiner(SHAPE, dataclasses.replace(SMALL, padding="wrap"))
    saved = config_lib.get_preset("gaze")
    with pytest.raises(ValueError, match=r"refiner\.padding"):
        run_config.check_resume(saved, config_lib.override(saved, overrides),
                                checkpoint_step=10, path="config.json")
