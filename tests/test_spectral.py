"""The spectral term: frequency bands, band powers, the loss, and SimGAN's use of it."""

import functools
import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling import losses, simgan as simgan_lib
from simgan_tf.modeling.schedule import Phase
from simgan_tf.training import run_config, train_lib
from test_model import batch  # the same random synthetic and real batch
from test_stabilising import SHAPE, build, mirrored_step
from test_train import event_tags, tiny_config


# --- Bands and band powers -------------------------------------------------------------

def test_bands_partition_the_frequencies_above_the_cutoff_and_average_them():
    bands = losses.frequency_bands(35, 55, 0.15, 8)
    assert bands.shape == (35, 55, 8) and bands.dtype == np.float32
    np.testing.assert_allclose(bands.sum(axis=(0, 1)), np.ones(8), rtol=1e-5)
    support = bands > 0
    assert support.sum(axis=-1).max() == 1  # no frequency in two bands
    radius = np.hypot(np.fft.fftfreq(35)[:, None], np.fft.fftfreq(55)[None, :])
    np.testing.assert_array_equal(support.any(axis=-1), radius >= 0.15)
    # Band k holds the radii between its edges, in order.
    edges = np.linspace(0.15, np.sqrt(0.5), 9)
    for k in range(8):
        assert radius[support[..., k]].min() >= edges[k] - 1e-12
        assert radius[support[..., k]].max() <= edges[k + 1] + 1e-9


@pytest.mark.parametrize("cutoff, bins, match", [
    (-0.1, 4, "cutoff"), (0.5, 4, "cutoff"), (0.1, 0, "bins"), (0.1, 2.5, "bins"),
    (0.0, 400, "no frequency")])
def test_bands_refuse_bad_arguments(cutoff, bins, match):
    with pytest.raises(ValueError, match=match):
        losses.frequency_bands(8, 8, cutoff, bins)


def test_radial_bands_follow_their_edges_and_frequency_bands_are_equal_width_ones():
    bands = losses.radial_bands(35, 55, [0.02, 0.05, 0.15, 0.3, 0.71])
    assert bands.shape == (35, 55, 4)
    np.testing.assert_allclose(bands.sum(axis=(0, 1)), np.ones(4), rtol=1e-5)
    radius = np.hypot(np.fft.fftfreq(35)[:, None], np.fft.fftfreq(55)[None, :])
    for k, (lo, hi) in enumerate([(0.02, 0.05), (0.05, 0.15), (0.15, 0.3), (0.3, 0.71)]):
        np.testing.assert_array_equal(bands[..., k] > 0, (radius >= lo) & (radius < hi))
    # The last band includes its upper edge: here the corner frequency sqrt(0.5).
    corner = losses.radial_bands(8, 8, [0.7, np.sqrt(0.5)])
    assert corner[4, 4, 0] > 0 and np.count_nonzero(corner) == 1
    np.testing.assert_array_equal(
        losses.frequency_bands(35, 55, 0.15, 8),
        losses.radial_bands(35, 55, np.linspace(0.15, np.sqrt(0.5), 9)))


@pytest.mark.parametrize("edges, match", [
    ([0.1], "at least 2"), ([0.3, 0.2], "increasing"), ([-0.1, 0.2], ">= 0"),
    ([0.1, 0.1, 0.3], "increasing"), ([0.01, 0.02, 0.7], r"\[0.01, 0.02\)")])
def test_radial_bands_refuse_bad_edges(edges, match):
    with pytest.raises(ValueError, match=match):
        losses.radial_bands(8, 8, edges)


def test_band_power_is_the_periodogram_averaged_over_each_band():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 9, 12, 2)).astype(np.float32)
    bands = losses.frequency_bands(9, 12, 0.0, 4)
    power = losses.band_power(images, bands).numpy()
    assert power.shape == (3, 2, 4)
    for i in range(3):
        for c in range(2):
            x = images[i, :, :, c].astype(np.float64)
            periodogram = np.abs(np.fft.fft2(x - x.mean())) ** 2 / x.size
            np.testing.assert_allclose(power[i, c],
                                       np.einsum("hw,hwk->k", periodogram, bands),
                                       rtol=1e-4)


def test_white_noise_has_its_variance_in_every_band_and_a_cosine_only_in_its_own():
    noise = np.random.default_rng(1).normal(0, 0.1, (256, 35, 55, 1)).astype(np.float32)
    bands = losses.frequency_bands(35, 55, 0.15, 8)
    mean_power = losses.band_power(noise, bands).numpy().mean(axis=0)[0]
    np.testing.assert_allclose(mean_power, np.full(8, 0.01), rtol=0.06)
    # A cosine of 0.4 cycles per pixel across (22 periods over 55 pixels).
    u = np.arange(55)
    cosine = np.broadcast_to(np.cos(2 * np.pi * 22 * u / 55), (35, 55))[None, :, :, None]
    power = losses.band_power(cosine.astype(np.float32), bands).numpy()[0, 0]
    radius = np.hypot(np.fft.fftfreq(35)[:, None], np.fft.fftfreq(55)[None, :])
    band = int(np.argmax(bands[0, 22]))  # the band of frequency (0, 22/55)
    assert radius[0, 22] == pytest.approx(0.4)
    assert power[band] > 0 and np.count_nonzero(power > 1e-6) == 1


def test_band_power_ignores_the_mean_brightness():
    images = np.random.default_rng(2).uniform(-1, 1, (2, 16, 16, 1)).astype(np.float32)
    bands = losses.frequency_bands(16, 16, 0.0, 3)
    np.testing.assert_allclose(losses.band_power(images + 0.3, bands).numpy(),
                               losses.band_power(images, bands).numpy(), rtol=1e-4, atol=1e-7)


# --- The loss ----------------------------------------------------------------------------

def test_spectral_loss_is_the_mean_squared_log_ratio():
    real = tf.constant([[0.02, 0.01, 0.005]])
    assert float(losses.spectral_loss(real, real)) == pytest.approx(0.0, abs=1e-9)
    refined = real * tf.constant([[np.e, 1.0, 1.0 / np.e]], tf.float32)
    assert float(losses.spectral_loss(refined, real)) == pytest.approx(2.0 / 3.0, rel=1e-4)
    # More power than real pushes the power down, less pushes it up.
    with tf.GradientTape() as tape:
        tape.watch(refined)
        loss = losses.spectral_loss(refined, real)
    gradient = tape.gradient(loss, refined).numpy()[0]
    assert gradient[0] > 0 and gradient[1] == pytest.approx(0.0, abs=1e-6) and gradient[2] < 0


# --- In SimGAN ---------------------------------------------------------------------------

def spectral_by_hand(model, data, weight, cutoff=0.15, bands=8):
    """weight * spectral_loss of the refiner's current refined images against real."""
    plane = losses.frequency_bands(SHAPE[0], SHAPE[1], cutoff, bands)
    refined = model.refiner(data["synthetic"], training=True)
    return weight * float(losses.spectral_loss(
        tf.reduce_mean(losses.band_power(refined, plane), axis=0),
        tf.reduce_mean(losses.band_power(data["real"], plane), axis=0)))


def test_an_adversarial_refiner_update_adds_the_weighted_spectral_loss():
    data = batch(8, seed=3)
    with_term, without = build(spectral_weight=2.0), build()
    expected = spectral_by_hand(with_term, data, 2.0)
    assert expected > 0.1  # the test batch's real images are darker and flatter
    tf.function(functools.partial(with_term.train_step, phase=Phase.REFINER))(data)
    tf.function(functools.partial(without.train_step, phase=Phase.REFINER))(data)
    tracked = float(with_term.trackers[simgan_lib.SPECTRAL_METRIC].result())
    assert tracked == pytest.approx(expected, rel=1e-4)
    # The term changes the update: the refiners now differ.
    assert any(not np.allclose(a.numpy(), b.numpy())
               for a, b in zip(with_term.refiner.weights, without.refiner.weights))
    assert simgan_lib.SPECTRAL_METRIC in with_term.metric_names
    assert simgan_lib.SPECTRAL_METRIC not in without.metric_names
    assert simgan_lib.SPECTRAL_METRIC in with_term.phase_metrics(Phase.REFINER)
    assert simgan_lib.SPECTRAL_METRIC not in with_term.phase_metrics(Phase.PRETRAIN_REFINER)


def test_the_spectral_term_lowers_itself_over_refiner_updates():
    data = batch(8, seed=4)
    model = build(spectral_weight=5.0)
    # Adam, as training uses: plain SGD at 0.05 overshoots the log-ratio into flat images.
    model.compile(refiner_optimizer=keras.optimizers.Adam(2e-3),
                  discriminator_optimizer=keras.optimizers.SGD(0.05))
    model.reg_weight = 0.0  # the term alone moves the refiner: no L1, and a discriminator
    for variable in model.discriminator.weights:  # of zeros has constant logits
        variable.assign(tf.zeros_like(variable))
    step = tf.function(functools.partial(model.train_step, phase=Phase.REFINER))
    before = spectral_by_hand(model, data, 5.0)
    for _ in range(12):
        step(data)
    assert spectral_by_hand(model, data, 5.0) < 0.1 * before


def test_pretraining_leaves_the_spectral_term_out():
    data = batch(8, seed=5)
    with_term, without = build(spectral_weight=2.0), build()
    for model in (with_term, without):
        tf.function(functools.partial(model.train_step, phase=Phase.PRETRAIN_REFINER))(data)
    for a, b in zip(with_term.refiner.weights, without.refiner.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert float(with_term.trackers[simgan_lib.SPECTRAL_METRIC].result()) == 0.0


def test_spectral_term_two_replicas_equal_one(mirrored_strategy):
    """The term is a statistic of the global batch: the band powers are all-reduced, and
    a 2-replica update (4 images each) equals the 1-replica update on all 8."""
    data = batch(8, seed=9)
    single = build(spectral_weight=3.0)
    tf.function(functools.partial(single.train_step, phase=Phase.REFINER))(data)
    with mirrored_strategy.scope():
        mirrored = build(spectral_weight=3.0)
    mirrored_step(mirrored_strategy, mirrored, Phase.REFINER, data)
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        float(single.trackers[simgan_lib.SPECTRAL_METRIC].result()),
        float(mirrored.trackers[simgan_lib.SPECTRAL_METRIC].result()), rtol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(spectral_weight=-1.0), "spectral_weight"),
    (dict(spectral_weight=1.0, spectral_cutoff=0.6), "cutoff"),
    (dict(spectral_weight=1.0, spectral_bands=0), "spectral_bands")])
def test_simgan_refuses_bad_spectral_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


# --- Config, flags, runs -----------------------------------------------------------------

@pytest.mark.parametrize("path, value", [
    ("train.spectral_weight", -0.5), ("train.spectral_cutoff", 0.5),
    ("train.spectral_cutoff", -0.01), ("train.spectral_bands", 0)])
def test_config_refuses_out_of_range_spectral_values(path, value):
    config = config_lib.override(config_lib.get_preset("gaze"), {path: value})
    with pytest.raises(ValueError, match=path.split(".")[1]):
        config.validate()


def test_the_term_is_off_in_every_preset_and_reachable_by_flag():
    for name in config_lib.PRESETS:
        assert config_lib.get_preset(name).train.spectral_weight == 0
    overrides = config_lib.command_line_overrides({"spectral_weight": 20.0},
                                                  ["train.spectral_cutoff=0.2"])
    config = config_lib.override(config_lib.get_preset("gaze"), overrides).validate()
    assert config.train.spectral_weight == 20.0 and config.train.spectral_cutoff == 0.2
    assert config.train.spectral_bands == 8


def test_resume_allows_the_weight_and_refuses_the_bands():
    saved = config_lib.get_preset("gaze")
    for path, value in (("train.spectral_cutoff", 0.2), ("train.spectral_bands", 4)):
        with pytest.raises(ValueError, match=path.replace(".", r"\.")):
            run_config.check_resume(saved, config_lib.override(saved, {path: value}),
                                    checkpoint_step=10, path="config.json")
    changes = run_config.check_resume(
        saved, config_lib.override(saved, {"train.spectral_weight": 10.0}),
        checkpoint_step=10, path="config.json")
    assert changes == [dict(step=10, field="train.spectral_weight", old=0.0, new=10.0)]


def test_a_run_with_the_spectral_term_logs_it(shifted_data_dir, tmp_path):
    config = config_lib.override(tiny_config(shifted_data_dir),
                                 {"train.spectral_weight": 10.0})
    result = train_lib.train(config, str(tmp_path / "run"), verbose=0)
    assert result.step == 2 + 1 + 2 * 3
    tags = event_tags(str(tmp_path / "run" / "logs"))
    assert "refiner/spectral_loss" in tags, sorted(tags)
    values = []
    for path in glob.glob(str(tmp_path / "run" / "logs" / "**" / "events.out.tfevents.*"),
                          recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            values += [float(tf.make_ndarray(v.tensor)) for v in event.summary.value
                       if v.tag == "refiner/spectral_loss"]
    assert values and all(np.isfinite(v) and v > 0 for v in values)
