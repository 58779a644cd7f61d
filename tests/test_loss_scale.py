"""The float16 path of `--mixed_precision` (GPU), run on CPU: `mixed_float16` layers with
`keras.optimizers.LossScaleOptimizer` on both networks (train_lib.build_simgan) and the
SimGAN train steps that scale the loss and apply the unscaled gradients."""

import contextlib
import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling import simgan as simgan_lib
from simgan_tf.modeling.schedule import Phase
from simgan_tf.training import train_lib

SHAPE = (35, 55, 1)
GROWTH_STEPS = 3
# Finite in float32, beyond float16's largest value (65504): inf once cast to float16.
HUGE = 1e5
PHASES = [Phase.PRETRAIN_REFINER, Phase.REFINER, Phase.DISCRIMINATOR]


@contextlib.contextmanager
def dtype_policy(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build(optimizer="sgd", policy="mixed_float16", loss_scale=True, seed=0):
    config = config_lib.override(config_lib.get_preset("gaze_demo"), {
        # The paper's refiner: its output is a function of its input.
        "refiner.grain": 0.0, "refiner.lighting": 0.0, "refiner.glint": 0.0,
        "refiner.filters": 8, "refiner.num_blocks": 1, "train.batch_size": 8,
        "train.history_size": 0, "train.pretrain_learning_rate": None,
        "refiner_optimizer.name": optimizer, "refiner_optimizer.learning_rate": 1e-3,
        "discriminator_optimizer.name": optimizer,
        "discriminator_optimizer.learning_rate": 1e-3})
    keras.utils.set_random_seed(seed)
    with dtype_policy(policy):
        return train_lib.build_simgan(config, loss_scale=loss_scale,
                                      loss_scale_growth_steps=GROWTH_STEPS)


def batch(seed=0, huge_row=None):
    """8 synthetic and 8 real images in [-1, 1]; `huge_row` set to HUGE in both."""
    rng = np.random.default_rng(seed)
    synthetic = rng.uniform(-1, 1, (8, *SHAPE)).astype(np.float32)
    real = (rng.uniform(-1, 1, (8, *SHAPE)) * 0.5 - 0.3).astype(np.float32)
    if huge_row is not None:
        synthetic[huge_row] = real[huge_row] = HUGE
    return {"synthetic": tf.constant(synthetic), "real": tf.constant(real)}


def optimizer_of(model, phase):
    if phase in (Phase.PRETRAIN_REFINER, Phase.REFINER):
        return model.refiner_optimizer
    return model.discriminator_optimizer


def network_of(model, phase):
    if phase in (Phase.PRETRAIN_REFINER, Phase.REFINER):
        return model.refiner
    return model.discriminator


def local(value, strategy=None):
    """The per-replica copies of a (Keras) variable as numpy arrays."""
    value = getattr(value, "value", value)
    strategy = strategy or tf.distribute.get_strategy()
    return [v.numpy() for v in strategy.experimental_local_results(value)]


def set_scale(optimizer, scale):
    optimizer.dynamic_scale.assign(scale)
    optimizer.step_counter.assign(0)


def snapshot(variables):
    return [np.array(v.numpy()).copy() for v in variables]


class Stepper:
    """Runs compiled `train_step`s of one phase (one tf.function per phase, as `fit`)."""

    def __init__(self, model, strategy=None):
        self.model, self.strategy, self.functions = model, strategy, {}

    def __call__(self, phase, data):
        if phase not in self.functions:
            step = functools.partial(self.model.train_step, phase=phase)
            if self.strategy is None:
                self.functions[phase] = tf.function(step)
            else:
                self.functions[phase] = tf.function(
                    lambda d: self.strategy.run(step, args=(d,)))
        if self.strategy is not None:  # Replica 0 gets rows 0-3, replica 1 rows 4-7.
            dataset = tf.data.Dataset.from_tensor_slices(data).batch(8)
            data = next(iter(self.strategy.experimental_distribute_dataset(dataset)))
        self.functions[phase](data)


def test_float16_layers_run_on_cpu():
    model = build()
    conv = model.refiner.get_layer("block1_conv1")
    assert (conv.compute_dtype, conv.variable_dtype) == ("float16", "float32")
    probe = keras.Model(model.refiner.inputs, conv.output)
    features = probe(batch()["synthetic"])
    assert features.dtype == tf.float16 and bool(tf.reduce_all(tf.math.is_finite(features)))
    # The refiner's tanh and D's logits are float32 layers.
    refined = model.refiner(batch()["synthetic"])
    assert refined.dtype == tf.float32
    assert model.discriminator(refined).dtype == tf.float32
    assert isinstance(model.refiner_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.discriminator_optimizer, keras.optimizers.LossScaleOptimizer)
    # Every op of every phase (float16 Conv2D, its gradients, ...) has a CPU kernel.
    stepper = Stepper(model)
    for phase in (*PHASES, Phase.PRETRAIN_DISCRIMINATOR):
        stepper(phase, batch())
    assert all(np.all(np.isfinite(v)) for v in snapshot(model.trainable_variables))


@pytest.mark.parametrize("phase", PHASES)
def test_scale_grows_after_growth_steps_of_finite_gradients(phase):
    model = build()
    optimizer = optimizer_of(model, phase)
    set_scale(optimizer, 256.0)
    stepper = Stepper(model)
    seen = []
    for step in range(2 * GROWTH_STEPS):
        stepper(phase, batch(seed=step))
        seen.append((float(optimizer.dynamic_scale.numpy()),
                     int(optimizer.step_counter.numpy())))
    assert seen == [(256.0, 1), (256.0, 2), (512.0, 0), (512.0, 1), (512.0, 2), (1024.0, 0)]


@pytest.mark.parametrize("phase", PHASES)
def test_overflowing_step_is_skipped_and_training_continues(phase):
    model = build(optimizer="adam")
    optimizer = optimizer_of(model, phase)
    set_scale(optimizer, 1024.0)
    stepper = Stepper(model)
    stepper(phase, batch(seed=1))  # Adam's moments and iterations are not zero now.
    assert int(optimizer.step_counter.numpy()) == 1
    weights = snapshot(model.weights)
    state = snapshot(optimizer.inner_optimizer.variables)
    stepper(phase, batch(seed=2, huge_row=2))
    # Skipped: no weight and no optimizer variable moved; the scale halved.
    for before, after in zip(weights, snapshot(model.weights)):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(state, snapshot(optimizer.inner_optimizer.variables)):
        np.testing.assert_array_equal(before, after)
    assert float(optimizer.dynamic_scale.numpy()) == 512.0
    assert int(optimizer.step_counter.numpy()) == 0
    assert int(optimizer.iterations.numpy()) == 1
    # Training goes on at the halved scale, and the scale grows back.
    network = network_of(model, phase)
    before = snapshot(network.trainable_variables)
    for step in range(GROWTH_STEPS):
        stepper(phase, batch(seed=3 + step))
    after = snapshot(network.trainable_variables)
    assert all(np.all(np.isfinite(v)) for v in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert float(optimizer.dynamic_scale.numpy()) == 1024.0
    assert int(optimizer.iterations.numpy()) == 1 + GROWTH_STEPS


def _update(model, phase, data, stepper):
    network = network_of(model, phase)
    before = snapshot(network.trainable_variables)
    stepper(phase, data)
    return [b - a for a, b in zip(before, snapshot(network.trainable_variables))]


def _relative_error(deltas, reference):
    error = np.sqrt(sum(np.sum((d - r) ** 2) for d, r in zip(deltas, reference)))
    return error / np.sqrt(sum(np.sum(r ** 2) for r in reference))


@pytest.mark.parametrize("phase", PHASES)
def test_update_is_unscaled(phase, mirrored_strategy):
    """One SGD step under loss scale 2**10 (one device and two replicas) moves the
    weights as the float32 step does: a scale left in, or applied twice, would not."""
    reference_model = build(policy="float32", loss_scale=False)
    reference = _update(reference_model, phase, batch(seed=4), Stepper(reference_model))
    model = build()
    set_scale(optimizer_of(model, phase), 1024.0)
    single = _update(model, phase, batch(seed=4), Stepper(model))
    with mirrored_strategy.scope():
        mirrored_model = build()
    set_scale(optimizer_of(mirrored_model, phase), 1024.0)
    mirrored = _update(mirrored_model, phase, batch(seed=4),
                       Stepper(mirrored_model, mirrored_strategy))
    assert np.sqrt(sum(np.sum(r ** 2) for r in reference)) > 0
    assert _relative_error(single, reference) < 0.02
    assert _relative_error(mirrored, reference) < 0.02


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("huge_row", [1, 6], ids=["replica0", "replica1"])
def test_overflow_on_one_replica_skips_the_step_on_all(phase, huge_row, mirrored_strategy):
    strategy = mirrored_strategy
    with strategy.scope():
        model = build()
    optimizer = optimizer_of(model, phase)
    set_scale(optimizer, 1024.0)
    stepper = Stepper(model, strategy)
    weights = snapshot(model.weights)
    stepper(phase, batch(seed=5, huge_row=huge_row))
    for before, after in zip(weights, snapshot(model.weights)):
        np.testing.assert_array_equal(before, after)
    for variable in model.trainable_variables:
        first, second = local(variable, strategy)
        np.testing.assert_array_equal(first, second)
    assert [float(s) for s in local(optimizer.dynamic_scale, strategy)] == [512.0, 512.0]
    stepper(phase, batch(seed=6))  # Goes on, the same on both replicas.
    assert [int(c) for c in local(optimizer.step_counter, strategy)] == [1, 1]
    assert [float(s) for s in local(optimizer.dynamic_scale, strategy)] == [512.0, 512.0]
    for variable in network_of(model, phase).trainable_variables:
        first, second = local(variable, strategy)
        assert np.all(np.isfinite(first))
        np.testing.assert_array_equal(first, second)


def test_agree_on_overflow_spreads_a_non_finite_gradient(mirrored_strategy):
    strategy = mirrored_strategy

    def replica_fn():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        bad = tf.where(tf.equal(replica, 1), np.inf, 1.0)
        return simgan_lib.agree_on_overflow([tf.fill([2], bad), tf.ones([3]), None])

    first, second, third = strategy.run(tf.function(replica_fn))
    for values in (*local(first, strategy), *local(second, strategy)):
        assert np.all(np.isnan(values))
    assert third is None

    def finite_fn():
        return simgan_lib.agree_on_overflow([tf.constant([1.5, -0.0])])

    (same,) = strategy.run(tf.function(finite_fn))
    for values in local(same, strategy):
        np.testing.assert_array_equal(values, [1.5, -0.0])


def test_checkpoint_round_trips_the_loss_scale(tmp_path):
    model = build(optimizer="adam")
    stepper = Stepper(model)
    set_scale(model.refiner_optimizer, 1024.0)
    set_scale(model.discriminator_optimizer, 1024.0)
    stepper(Phase.PRETRAIN_REFINER, batch(seed=7, huge_row=0))  # refiner: 512
    stepper(Phase.PRETRAIN_REFINER, batch(seed=8))  # refiner counter 1
    stepper(Phase.DISCRIMINATOR, batch(seed=9))
    stepper(Phase.DISCRIMINATOR, batch(seed=10))  # discriminator: 1024, counter 2
    saved = {name: (float(opt.dynamic_scale.numpy()), int(opt.step_counter.numpy()))
             for name, opt in (("refiner", model.refiner_optimizer),
                               ("discriminator", model.discriminator_optimizer))}
    assert saved == {"refiner": (512.0, 1), "discriminator": (1024.0, 2)}
    path = train_lib.make_checkpoint(model).save(str(tmp_path / "ckpt"))
    fresh = build(optimizer="adam", seed=1)
    assert float(fresh.refiner_optimizer.dynamic_scale.numpy()) == 2.0**15
    train_lib.make_checkpoint(fresh).restore(path).assert_existing_objects_matched()
    restored = {name: (float(opt.dynamic_scale.numpy()), int(opt.step_counter.numpy()))
                for name, opt in (("refiner", fresh.refiner_optimizer),
                                  ("discriminator", fresh.discriminator_optimizer))}
    assert restored == saved
    for a, b in zip(snapshot(model.weights), snapshot(fresh.weights)):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.refiner_optimizer.iterations.numpy()) == 1
    # The restored scale is the one used next: a finite step counts on from 1.
    Stepper(fresh)(Phase.PRETRAIN_REFINER, batch(seed=11))
    assert int(fresh.refiner_optimizer.step_counter.numpy()) == 2
    assert float(fresh.refiner_optimizer.dynamic_scale.numpy()) == 512.0
