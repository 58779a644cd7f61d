"""The task-consistency term, its frozen task network, and the local-mean psi."""

import dataclasses
import functools
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.data import schema
from simgan_tf.evaluation import eval_lib
from simgan_tf.modeling import losses
from simgan_tf.modeling.schedule import Phase
from simgan_tf.training import run_config, task_network, train_lib
from test_model import batch
from test_stabilising import build, mirrored_step
from test_train import event_tags, tiny_config

SHAPE = (35, 55, 1)


def linear_task(seed=0, outputs=3):
    """A small frozen 'task network': a fixed random linear map of the image."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SHAPE)
    hidden = keras.layers.Dense(4, name="hidden")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(outputs, name="head")(hidden))
    model.trainable = False
    return model


# --- the losses ---------------------------------------------------------------------------

def test_task_consistency_is_zero_for_the_identity_refiner():
    x = batch()["synthetic"]
    f = linear_task()
    np.testing.assert_array_equal(losses.task_consistency_loss(f, x, x), np.zeros(8))


def test_task_consistency_is_the_l1_of_the_output_difference_and_flows_to_refined_only():
    data = batch()
    refined, synthetic = data["real"], data["synthetic"]
    f = linear_task()
    expected = np.abs(f(refined).numpy() - f(synthetic).numpy()).sum(axis=1)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([refined, synthetic])
        loss = losses.task_consistency_loss(f, refined, synthetic)
        total = tf.reduce_sum(loss)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)
    assert tape.gradient(total, synthetic) is None  # f(x) is a constant
    assert np.abs(tape.gradient(total, refined).numpy()).sum() > 0


def test_local_mean_is_the_block_mean_of_the_channel_mean():
    x = np.random.default_rng(0).uniform(-1, 1, (2, 7, 8, 3)).astype(np.float32)
    result = losses.local_mean(tf.constant(x), 3).numpy()
    assert result.shape == (2, 3, 3, 1)
    gray = x.mean(axis=-1)
    # TensorFlow's `same` pooling splits the padding: 7 rows get one padded row above and
    # below (blocks 0-1, 2-4, 5-6), 8 columns one on the right (0-2, 3-5, 6-7).
    for i, rows in enumerate((slice(0, 2), slice(2, 5), slice(5, 7))):
        for j, cols in enumerate((slice(0, 3), slice(3, 6), slice(6, 8))):
            np.testing.assert_allclose(result[:, i, j, 0], gray[:, rows, cols].mean(axis=(1, 2)),
                                       rtol=1e-5)  # border blocks average what is inside
    np.testing.assert_allclose(losses.local_mean(tf.constant(x), 1)[..., 0], gray, rtol=1e-6)
    with pytest.raises(ValueError, match="block size"):
        losses.local_mean(tf.constant(x), 0)


def test_the_local_mean_self_regularization_ignores_changes_that_keep_block_means():
    x = np.zeros((1, 6, 6, 1), np.float32)
    checker = np.indices((6, 6)).sum(axis=0) % 2 * 0.2 - 0.1  # zero mean on each 2x2 block
    y = x + checker[None, :, :, None].astype(np.float32)
    psi = functools.partial(losses.local_mean, size=2)
    assert float(losses.self_regularization_loss(y, x, psi)[0]) == pytest.approx(0, abs=1e-6)
    assert float(losses.self_regularization_loss(y, x)[0]) == pytest.approx(3.6, rel=1e-5)


# --- the task network --------------------------------------------------------------------

def test_the_task_comes_from_the_synthetic_labels(shifted_data_dir):
    info = schema.read_dataset_info(shifted_data_dir)
    assert task_network.task_of(info, shifted_data_dir, "synthetic") == "gaze"
    with pytest.raises(ValueError, match=r"real, which has none it knows: label fields \[\]"):
        task_network.task_of(info, shifted_data_dir, "real")


def test_features_are_the_input_of_the_last_layer():
    f = linear_task()
    x = batch()["synthetic"]
    outputs = task_network.features_function(f, "output")(x)
    features = task_network.features_function(f, "features")(x)
    assert outputs.shape == (8, 3) and features.shape == (8, 4)
    np.testing.assert_allclose(features, f.get_layer("hidden")(
        keras.layers.Flatten()(x)), rtol=1e-5)


def test_save_and_load_round_trip_and_refuse_what_does_not_fit(tmp_path):
    f = linear_task()
    path = str(tmp_path / "task.keras")
    task_network.save(f, path)
    assert os.listdir(tmp_path) == ["task.keras"]  # no temporary file left
    loaded = task_network.load(path, SHAPE)
    assert not loaded.trainable
    x = batch()["synthetic"]
    np.testing.assert_allclose(loaded(x), f(x), rtol=1e-6)
    with pytest.raises(ValueError, match=r"takes images of shape \(35, 55, 1\); this run's "
                                         r"images are \(64, 64, 3\)"):
        task_network.load(path, (64, 64, 3))
    (tmp_path / "text.keras").write_text("not a model")
    with pytest.raises(ValueError, match="text.keras is not a readable Keras model file"):
        task_network.load(str(tmp_path / "text.keras"), SHAPE)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        task_network.load(str(tmp_path / "missing.keras"), SHAPE)


# --- in the model -----------------------------------------------------------------------

def test_a_refiner_update_adds_the_weighted_consistency_of_its_refined_images():
    f = linear_task()
    data = batch(seed=3)
    model = build(task_features=f, task_weight=2.5)
    refined = model.refiner(data["synthetic"], training=True)  # before the update
    expected = 2.5 * np.abs(f(refined).numpy() - f(data["synthetic"]).numpy()).sum(axis=1)
    tf.function(functools.partial(model.train_step, phase=Phase.REFINER))(data)
    assert float(model.trackers["refiner_task_loss"].result()) == pytest.approx(
        expected.mean(), rel=1e-4)
    assert "refiner_task_loss" in model.phase_metrics(Phase.REFINER)
    assert "refiner_task_loss" not in model.phase_metrics(Phase.DISCRIMINATOR)
    # The frozen network is not the model's: not trained, not in its checkpoints.
    assert not any(v is w for v in model.variables for w in f.variables)


def test_the_consistency_term_changes_the_refiners_gradient():
    data = batch(seed=4)
    plain, consistent = build(), build(task_features=linear_task(), task_weight=50.0)
    for model in (plain, consistent):
        tf.function(functools.partial(model.train_step, phase=Phase.REFINER))(data)
    assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in
               zip(plain.refiner.trainable_variables, consistent.refiner.trainable_variables))


def test_the_consistency_term_on_two_replicas_equals_one(mirrored_strategy):
    data = batch(8, seed=5)
    single = build(task_features=linear_task(), task_weight=3.0)
    tf.function(functools.partial(single.train_step, phase=Phase.REFINER))(data)
    with mirrored_strategy.scope():
        mirrored = build(task_features=linear_task(), task_weight=3.0)
    mirrored_step(mirrored_strategy, mirrored, Phase.REFINER, data)
    for a, b in zip(single.trainable_variables, mirrored.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(single.trackers["refiner_task_loss"].result()),
                               float(mirrored.trackers["refiner_task_loss"].result()),
                               rtol=1e-4)


def test_build_simgan_needs_the_task_network_when_the_term_is_on(shifted_data_dir):
    config = tiny_config(shifted_data_dir, task_weight=1.0)
    with pytest.raises(ValueError, match="train.task_weight > 0 needs the frozen task network"):
        train_lib.build_simgan(config)


# --- in a run -------------------------------------------------------------------------------

def test_a_run_trains_saves_and_reuses_its_task_network(shifted_data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    config = tiny_config(shifted_data_dir, task_weight=0.5, task_steps=2,
                         reg_feature="local_mean", reg_feature_size=3)
    result = train_lib.train(config, model_dir, verbose=0)
    path = os.path.join(model_dir, task_network.TASK_NETWORK_FILE)
    trained = task_network.load(path, SHAPE)
    assert trained.name == "gaze_estimator" and trained.output_shape == (None, 3)
    tags = event_tags(os.path.join(model_dir, "logs"))
    assert "refiner/task_consistency_loss" in tags
    assert result.model.task_weight == 0.5 and result.model.feature_transform is not None
    # Resumed with more steps: the same file, not retrained.
    stamp = os.stat(path).st_mtime_ns
    longer = config_lib.override(config, {"train.steps": 3})
    resumed = train_lib.train(longer, model_dir, verbose=0)
    assert os.stat(path).st_mtime_ns == stamp
    x = batch()["synthetic"]
    np.testing.assert_allclose(resumed.model.task_features(x), trained(x), rtol=1e-5)


def test_style_augmentation_is_random_in_training_and_off_at_inference():
    x = batch(16)["synthetic"]
    for layer in task_network.style_augmentation(seed=3):
        np.testing.assert_array_equal(layer(x, training=False), x)
        assert np.abs(layer(x, training=True).numpy() - x.numpy()).mean() > 1e-3


def test_an_estimator_trained_through_augmentation_is_the_bare_network(shifted_data_dir):
    config = dataclasses.replace(eval_lib.PRESETS["gaze"], steps=3, batch_size=8,
                                 shuffle_buffer=32)
    plain = eval_lib.train_estimator(config, shifted_data_dir, "synthetic")
    styled = eval_lib.train_estimator(
        config, shifted_data_dir, "synthetic",
        augmentation=functools.partial(task_network.style_augmentation, 0))
    assert styled.name == "gaze_estimator" and styled.input_shape == (None, *SHAPE)
    assert styled.layers[0].name == "images"  # no augmentation layers in the network
    x = batch()["synthetic"]
    assert not np.allclose(styled(x), plain(x))  # it trained on other (augmented) images
    again = eval_lib.train_estimator(
        config, shifted_data_dir, "synthetic",
        augmentation=functools.partial(task_network.style_augmentation, 0))
    np.testing.assert_allclose(again(x), styled(x), rtol=1e-4, atol=1e-5)  # seeded


def test_a_given_task_network_is_copied_into_the_run(shifted_data_dir, tmp_path):
    given = str(tmp_path / "given.keras")
    task_network.save(linear_task(seed=9), given)
    model_dir = str(tmp_path / "run")
    config = tiny_config(shifted_data_dir, task_weight=0.5, task_network=given, steps=1)
    train_lib.train(config, model_dir, verbose=0)
    copy = task_network.load(os.path.join(model_dir, task_network.TASK_NETWORK_FILE), SHAPE)
    x = batch()["synthetic"]
    np.testing.assert_allclose(copy(x), linear_task(seed=9)(x), rtol=1e-5)


def test_resume_rules_of_the_options():
    assert {"train.reg_feature", "train.reg_feature_size", "train.task_output",
            "train.task_steps", "train.task_augment", "train.augment",
            "train.balance_target"} <= set(run_config.FIXED_FIELDS)
    assert {"train.task_weight", "train.task_network", "train.augment_probability",
            "train.balance_rate", "train.balance_max_scale"} <= set(run_config.ALLOWED_FIELDS)


@pytest.mark.parametrize("path, value, field", [
    ("train.reg_feature", "blur", "train.reg_feature"),
    ("train.reg_feature_size", 0, "train.reg_feature_size"),
    ("train.task_weight", -1.0, "train.task_weight"),
    ("train.task_output", "logits", "train.task_output"),
    ("train.task_steps", 0, "train.task_steps"),
    ("train.augment", "flip", "train.augment"),
    ("train.augment", "cutout,cutout", "train.augment"),
    ("train.augment_probability", 1.5, "train.augment_probability"),
    ("train.balance_target", 1.0, "train.balance_target"),
    ("train.balance_rate", 0.0, "train.balance_rate"),
    ("train.balance_max_scale", 0.5, "train.balance_max_scale"),
])
def test_config_refuses_out_of_range_option_values(path, value, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        config_lib.override(config_lib.get_preset("gaze_demo"), {path: value}).validate()


def test_options_are_reachable_by_flag_alias():
    overrides = config_lib.command_line_overrides(
        {"reg_feature": "local_mean", "task_weight": 2.0, "task_network": "f.keras",
         "augment": "translation,cutout", "balance_target": 0.4}, [])
    config = config_lib.override(config_lib.get_preset("gaze_demo"), overrides).validate()
    t = config.train
    assert (t.reg_feature, t.task_weight, t.task_network, t.augment, t.balance_target) == (
        "local_mean", 2.0, "f.keras", "translation,cutout", 0.4)
