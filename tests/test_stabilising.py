"""Stabilising options: EMA refiner, spectral normalisation of D, the R1 penalty."""

import functools
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling import losses, simgan as simgan_lib
from simgan_tf.modeling.discriminator import build_discriminator
from simgan_tf.modeling.ema import RefinerAverage
from simgan_tf.modeling.history import HistoryBuffer
from simgan_tf.modeling.refiner import build_refiner
from simgan_tf.modeling.schedule import Phase, Schedule
from simgan_tf.modeling.simgan import SimGAN
from simgan_tf.serving import export
from simgan_tf.training import run_config, train_lib
from test_model import batch  # the same random synthetic and real batch
from test_train import tiny_config

SHAPE = (35, 55, 1)


def build(*, ema_decay=None, spectral_norm=False, output="local", r1_weight=0.0, r1_every=1,
          schedule=Schedule(2, 2, k_g=2, k_d=1, iterations=2), seed=0,
          refiner_config=config_lib.RefinerConfig(filters=8, num_blocks=1), **options):
    """A small SimGAN with SGD; `options`: further `SimGAN` arguments."""
    keras.utils.set_random_seed(seed)
    model = SimGAN(
        build_refiner(SHAPE, refiner_config),
        build_discriminator(SHAPE, config_lib.DiscriminatorConfig(spectral_norm=spectral_norm,
                                                                  output=output)),
        HistoryBuffer(0, SHAPE), schedule=schedule, reg_weight=0.05, seed=seed,
        ema_decay=ema_decay, r1_weight=r1_weight, r1_every=r1_every, **options)
    model.compile(refiner_optimizer=keras.optimizers.SGD(0.05),
                  discriminator_optimizer=keras.optimizers.SGD(0.05))
    model(tf.zeros([1, *SHAPE]))
    return model


def weights(model):
    return [v.numpy().copy() for v in model.weights]


def mirrored_step(strategy, model, phase, data, r1=False):
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(8)
    distributed = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def run(d):
        strategy.run(functools.partial(model.train_step, phase=phase, r1=r1), args=(d,))
    run(distributed)


# --- EMA refiner -----------------------------------------------------------------------

PHASES = [Phase.PRETRAIN_REFINER, Phase.PRETRAIN_REFINER, Phase.PRETRAIN_DISCRIMINATOR,
          Phase.REFINER, Phase.REFINER, Phase.DISCRIMINATOR]


def numpy_ema(initial, recorded, decay):
    average = [w.astype(np.float64) for w in initial]
    for n, step_weights in enumerate(recorded):
        d = min(decay, (1 + n) / (10 + n))
        average = [d * a + (1 - d) * w for a, w in zip(average, step_weights)]
    return average


def test_ema_after_updates_equals_numpy_from_the_recorded_weights():
    decay = 0.5  # reached after the warm-up's first updates: both branches of min()
    model = build(ema_decay=decay)
    initial = weights(model.refiner)
    np.testing.assert_array_equal(weights(model.ema.model)[0], initial[0])
    recorded = []
    for i, phase in enumerate(PHASES):
        tf.function(functools.partial(model.train_step, phase=phase))(batch(seed=i))
        if phase in (Phase.PRETRAIN_REFINER, Phase.REFINER):  # D updates leave it alone
            recorded.append(weights(model.refiner))
    assert int(model.ema.num_updates.numpy()) == 4
    expected = numpy_ema(initial, recorded, decay)
    for got, want in zip(weights(model.ema.model), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(a, b) for a, b in zip(weights(model.ema.model), recorded[-1]))
    assert not model.ema.model.trainable_variables
    assert len(model.trainable_variables) == len(build().trainable_variables)


@pytest.mark.parametrize("phase", [Phase.PRETRAIN_REFINER, Phase.REFINER])
def test_ema_two_replicas_equal_one(phase, mirrored_strategy):
    data = batch(8, seed=3)
    single = build(ema_decay=0.9)
    tf.function(functools.partial(single.train_step, phase=phase))(data)
    with mirrored_strategy.scope():
        mirrored = build(ema_decay=0.9)
    mirrored_step(mirrored_strategy, mirrored, phase, data)
    for a, b in zip(single.ema.model.weights, mirrored.ema.model.weights):
        copies = mirrored_strategy.experimental_local_results(b.value)
        np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())
        np.testing.assert_allclose(a.numpy(), copies[0].numpy(), rtol=1e-4, atol=1e-6)
    assert int(mirrored.ema.num_updates.numpy()) == 1


def test_ema_checkpoint_round_trip_is_exact(tmp_path):
    model = build(ema_decay=0.9)
    for i in range(3):
        tf.function(functools.partial(model.train_step, phase=Phase.PRETRAIN_REFINER))(
            batch(seed=i))
    path = train_lib.make_checkpoint(model).save(str(tmp_path / "ckpt"))
    restored = build(ema_decay=0.9, seed=1)
    train_lib.make_checkpoint(restored).restore(path).assert_existing_objects_matched()
    for a, b in zip(model.ema.model.weights, restored.ema.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(restored.ema.num_updates.numpy()) == 3
    names = [name for name, _ in tf.train.list_variables(path)]
    assert any("num_updates" in name for name in names)


def test_ema_off_means_no_ema_variables_and_the_refiner_refines(tmp_path):
    model = build()
    assert model.ema is None and model.inference_refiner is model.refiner
    path = train_lib.make_checkpoint(model).save(str(tmp_path / "ckpt"))
    names = [name for name, _ in tf.train.list_variables(path)]
    assert not any("ema" in name or "num_updates" in name for name in names)
    on = build(ema_decay=0.9)
    on_path = train_lib.make_checkpoint(on).save(str(tmp_path / "on"))
    assert len(tf.train.list_variables(on_path)) > len(names)
    images = batch(seed=4)["synthetic"]
    np.testing.assert_array_equal(model(images).numpy(), model.refiner(images).numpy())


def test_ema_decay_is_validated():
    with pytest.raises(ValueError, match="decay"):
        RefinerAverage(build_refiner(SHAPE, config_lib.RefinerConfig(8, 3, 1)), 1.0)
    with pytest.raises(ValueError, match="ema_decay"):
        build(ema_decay=-0.1)


def test_a_run_with_every_option_exports_the_ema_refiner(shifted_data_dir, tmp_path):
    config = tiny_config(shifted_data_dir, ema_decay=0.9, r1_weight=1.0, r1_every=2)
    config = config_lib.override(config, {"discriminator.spectral_norm": True})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    assert result.step == 2 + 1 + 2 * 3
    model = result.model
    assert model.inference_refiner is model.ema.model
    images = batch(4, seed=7)["synthetic"]
    ema_out = model.ema.model(images).numpy()
    trained_out = model.refiner(images).numpy()
    assert np.abs(ema_out - trained_out).max() > 1e-4
    refine = export.load_refiner(result.export_path)
    np.testing.assert_allclose(np.asarray(refine(images)), ema_out, atol=1e-5)
    np.testing.assert_allclose(model(images).numpy(), ema_out, atol=1e-6)
    assert os.path.isdir(os.path.join(str(tmp_path / "run"), "logs", "train"))


# --- Spectral normalisation ------------------------------------------------------------

def spectral_layers(discriminator):
    return [layer for layer in discriminator.layers
            if isinstance(layer, keras.layers.SpectralNormalization)]


@pytest.mark.parametrize("output", ["local", "global", "local+global"])
def test_spectral_norm_keeps_the_output_shape_and_wraps_every_linear_layer(output):
    plain = build_discriminator(SHAPE, config_lib.DiscriminatorConfig(output=output))
    normed = build_discriminator(
        SHAPE, config_lib.DiscriminatorConfig(output=output, spectral_norm=True))
    images = batch(2)["real"]
    assert normed(images).shape == plain(images).shape
    assert normed(images, training=True).dtype == tf.float32
    # global replaces the last conv by a dense layer; local+global has both.
    linear = (sum(spec.kind == "conv" for spec in config_lib.GAZE_DISCRIMINATOR)
              + (output == "local+global"))
    assert len(spectral_layers(normed)) == linear
    assert not spectral_layers(plain)
    assert sum("vector_u" in w.path for w in normed.non_trainable_weights) == linear


def test_normalised_kernels_have_largest_singular_value_near_one():
    discriminator = build_discriminator(SHAPE, config_lib.DiscriminatorConfig(
        spectral_norm=True))
    images = batch(4)["real"]
    before = [np.linalg.svd(np.reshape(layer.kernel.numpy(), [-1, layer.kernel.shape[-1]]),
                            compute_uv=False)[0] for layer in spectral_layers(discriminator)]
    assert max(abs(s - 1) for s in before) > 0.1  # Glorot kernels are not normalised
    call = tf.function(functools.partial(discriminator, training=True))
    for _ in range(100):  # one power iteration per training call
        call(images)
    for layer in spectral_layers(discriminator):
        kernel = layer.kernel.numpy()
        sigma = np.linalg.svd(np.reshape(kernel, [-1, kernel.shape[-1]]), compute_uv=False)
        # The power iteration's estimate is at most the true value: sigma[0] >= 1.
        assert -1e-4 < sigma[0] - 1 < 1e-2, (layer.name, sigma[0])


def test_spectral_norm_vectors_are_checkpointed(tmp_path):
    model = build(spectral_norm=True)
    tf.function(functools.partial(model.train_step, phase=Phase.PRETRAIN_DISCRIMINATOR))(
        batch())
    path = train_lib.make_checkpoint(model).save(str(tmp_path / "ckpt"))
    restored = build(spectral_norm=True, seed=3)
    train_lib.make_checkpoint(restored).restore(path).assert_existing_objects_matched()
    for a, b in zip(spectral_layers(model.discriminator),
                    spectral_layers(restored.discriminator)):
        np.testing.assert_array_equal(a.vector_u.numpy(), b.vector_u.numpy())


@pytest.mark.parametrize("output", ["local", "local+global"])
@pytest.mark.parametrize("phase", [Phase.PRETRAIN_DISCRIMINATOR, Phase.REFINER])
def test_spectral_norm_two_replicas_equal_one(phase, output, mirrored_strategy):
    data = batch(8, seed=5)
    single = build(spectral_norm=True, output=output)
    before = weights(single)
    tf.function(functools.partial(single.train_step, phase=phase))(data)
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, single.weights))
    with mirrored_strategy.scope():
        mirrored = build(spectral_norm=True, output=output)
    mirrored_step(mirrored_strategy, mirrored, phase, data)
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


# --- R1 penalty ------------------------------------------------------------------------

def linear_patch_discriminator(kernel, square=False):
    """logits = 1x1 conv (no bias) of x, or of x**2: gradients known in closed form."""
    def discriminator(x):
        features = tf.square(x) if square else x
        return tf.nn.conv2d(features, kernel, strides=1, padding="SAME")
    return discriminator


def test_r1_of_a_linear_conv_is_the_closed_form():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(1, 1, 3, 2)).astype(np.float32)
    real = rng.uniform(-1, 1, (4, 5, 6, 3)).astype(np.float32)
    gamma = 3.0
    got = losses.r1_penalty(linear_patch_discriminator(kernel), real, gamma).numpy()
    # grad_x S = (k_real - k_refined) at every pixel: gamma/2 * H * W * ||k_r - k_f||^2.
    difference = kernel[0, 0, :, losses.REAL] - kernel[0, 0, :, losses.REFINED]
    want = gamma / 2 * 5 * 6 * np.sum(difference ** 2)
    np.testing.assert_allclose(got, np.full(4, want), rtol=1e-5)


def test_r1_depends_on_each_image_through_its_own_gradient():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(1, 1, 1, 2)).astype(np.float32)
    real = rng.uniform(-1, 1, (3, 4, 4, 1)).astype(np.float32)
    got = losses.r1_penalty(linear_patch_discriminator(kernel, square=True), real, 2.0)
    # S = sum_p (k_r - k_f) x_p^2, so grad = 2 (k_r - k_f) x_p.
    difference = kernel[0, 0, 0, losses.REAL] - kernel[0, 0, 0, losses.REFINED]
    want = 1.0 * np.sum((2 * difference * real) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    assert len(set(np.round(want, 4))) == 3


def test_r1_is_due_on_every_nth_discriminator_update_only():
    schedule = Schedule(1, 2, k_g=1, k_d=1, iterations=3)
    model = build(r1_weight=1.0, r1_every=2, schedule=schedule)
    due = [model.r1_due(step) for step in range(schedule.total_steps)]
    # Steps: R, D0, D1, R, D2, R, D3, R, D4 (D numbered over pretraining and iterations).
    assert due == [False, True, False, False, True, False, False, False, True]
    assert not any(build(schedule=schedule).r1_due(s) for s in range(schedule.total_steps))


def test_r1_enters_the_discriminator_loss_on_its_steps(monkeypatch):
    schedule = Schedule(1, 2, k_g=1, k_d=1, iterations=3)
    model = build(r1_weight=2.0, r1_every=2, schedule=schedule)
    calls = tf.Variable(0)
    original = losses.r1_penalty

    def counted(*args, **kwargs):
        calls.assign_add(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(simgan_lib.losses, "r1_penalty", counted)
    dataset = tf.data.Dataset.from_tensors(batch()).repeat()
    iterator, train_function = iter(dataset), model.make_train_function()
    for _ in range(schedule.total_steps):
        train_function(iterator)
    assert int(calls.numpy()) == 3


def test_r1_adds_its_weighted_mean_to_the_discriminator_loss():
    data = batch(seed=6)
    with_r1, without = build(r1_weight=0.5, r1_every=4), build()
    penalty = losses.r1_penalty(functools.partial(with_r1.discriminator, training=True),
                                data["real"], 0.5 * 4)
    tf.function(functools.partial(with_r1.train_step, phase=Phase.DISCRIMINATOR, r1=True))(data)
    tf.function(functools.partial(without.train_step, phase=Phase.DISCRIMINATOR))(data)
    difference = (float(with_r1.trackers["disc_loss"].result())
                  - float(without.trackers["disc_loss"].result()))
    assert float(np.mean(penalty)) > 0
    np.testing.assert_allclose(difference, float(np.mean(penalty)), rtol=1e-4)
    skipped = build(r1_weight=0.5, r1_every=4)
    tf.function(functools.partial(skipped.train_step, phase=Phase.DISCRIMINATOR, r1=False))(data)
    for a, b in zip(skipped.weights, without.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_r1_two_replicas_equal_one(mirrored_strategy):
    data = batch(8, seed=8)
    single = build(r1_weight=5.0)
    tf.function(functools.partial(single.train_step, phase=Phase.DISCRIMINATOR, r1=True))(data)
    with mirrored_strategy.scope():
        mirrored = build(r1_weight=5.0)
    mirrored_step(mirrored_strategy, mirrored, Phase.DISCRIMINATOR, data, r1=True)
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(single.trackers["disc_loss"].result()),
                               float(mirrored.trackers["disc_loss"].result()), rtol=1e-4)


# --- Config and flags ------------------------------------------------------------------

@pytest.mark.parametrize("path, value, field", [
    ("train.ema_decay", 1.0, "ema_decay"), ("train.ema_decay", -0.5, "ema_decay"),
    ("train.r1_weight", -1.0, "r1_weight"), ("train.r1_every", 0, "r1_every")])
def test_config_refuses_out_of_range_values(path, value, field):
    config = config_lib.override(config_lib.get_preset("gaze"), {path: value})
    with pytest.raises(ValueError, match=field):
        config.validate()


def test_options_are_off_by_default_and_reachable_by_flag_and_path():
    for name in config_lib.PRESETS:
        preset = config_lib.get_preset(name)
        assert preset.train.ema_decay is None and preset.train.r1_weight == 0
        assert preset.train.r1_every == 1 and not preset.discriminator.spectral_norm
    overrides = config_lib.command_line_overrides(
        {"ema_decay": 0.999, "spectral_norm": True, "r1_weight": 10.0, "r1_every": 16},
        ["train.r1_every=4"])
    config = config_lib.override(config_lib.get_preset("gaze"), overrides).validate()
    assert config.train.ema_decay == 0.999 and config.discriminator.spectral_norm
    assert config.train.r1_weight == 10.0 and config.train.r1_every == 4
    parsed = config_lib.parse_overrides(["train.ema_decay=null",
                                         "discriminator.spectral_norm=false"])
    assert parsed == {"train.ema_decay": None, "discriminator.spectral_norm": False}
    built = train_lib.build_simgan(config_lib.override(
        config, {"refiner.filters": 4, "refiner.num_blocks": 0}))
    assert built.ema is not None and built.r1_every == 4 and built.r1_weight == 10.0
    assert spectral_layers(built.discriminator)


def test_resume_refuses_ema_spectral_norm_and_r1_every_and_allows_r1_weight():
    saved = config_lib.get_preset("gaze")
    for path, value in (("train.ema_decay", 0.999), ("discriminator.spectral_norm", True),
                        ("train.r1_every", 4)):
        with pytest.raises(ValueError, match=path.replace(".", r"\.")):
            run_config.check_resume(saved, config_lib.override(saved, {path: value}),
                                    checkpoint_step=10, path="config.json")
    changes = run_config.check_resume(
        saved, config_lib.override(saved, {"train.r1_weight": 1.0}), checkpoint_step=10,
        path="config.json")
    assert changes == [dict(step=10, field="train.r1_weight", old=0.0, new=1.0)]

