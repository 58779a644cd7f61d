"""The SimGAN `keras.Model`: refiner, discriminator and history buffer trained by Algorithm 1.

Algorithm 1 of Shrivastava et al. (2017), with the schedule of `schedule.Schedule`:

    pretrain R on the self-regularization loss          (Phase.PRETRAIN_REFINER)
    pretrain D on fresh and history refined images      (Phase.PRETRAIN_DISCRIMINATOR)
    for each iteration:
        K_g times: update R on adversarial + lambda * L1  (Phase.REFINER)
        K_d times: update D                               (Phase.DISCRIMINATOR)

Each `train_step` performs one update and advances `step_counter`; its phase follows the
counter, which is saved in checkpoints. Each update draws its own mini-batch, as in the
paper: the dataset yields `{"synthetic": [b, H, W, C], "real": [b, H, W, C]}` per step.

Why one compiled function per phase: under a distribution strategy, the optimizer's
cross-replica gradient sum cannot sit inside a `tf.cond`, so the phase is chosen in Python
(`make_train_function`) and each phase has its own `tf.function`; so has a discriminator
update with the lazy R1 penalty, chosen the same way.

Stabilising and label-preserving options, all off by default (docs/training.md,
"Stabilising options"): an exponential moving average of the refiner's weights
(`ema.RefinerAverage`), which is then the refiner that `call` (and so export, image
summaries and refining) uses; the R1 penalty on real images (`losses.r1_penalty`) every
`r1_every` discriminator updates; a task-consistency term through a frozen task network
(`losses.task_consistency_loss`) beside the self-regularization; differentiable
augmentation of everything the discriminator sees (`augment.augment`); and the adaptive
balance of the discriminator's learning rate (`balance.DiscriminatorBalance`); and a
spectral term (`losses.spectral_loss`) that pulls the refined images' mean power spectrum
above a cutoff frequency to the real images' in every adversarial refiner update. Spectral
normalisation is a property of the discriminator network itself; so is learned output
grain of the refiner (`refiner.OutputGrain`), whose noise-free image the self-regularization
and task terms then compare with the input, while the discriminator sees the grain.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from simgan_tf.modeling import augment as augment_lib
from simgan_tf.modeling import losses
from simgan_tf.modeling.balance import DiscriminatorBalance
from simgan_tf.modeling.ema import RefinerAverage
from simgan_tf.modeling.history import HistoryBuffer
from simgan_tf.modeling.refiner import clean_view
from simgan_tf.modeling.schedule import Phase, Schedule

METRIC_NAMES = (
    "refiner_adv_loss",      # local adversarial loss of refined images, per image
    "refiner_reg_loss",      # lambda * ||R(x) - x||_1, per image
    "refiner_l1_per_pixel",  # mean |R(x) - x| per pixel, in [-1, 1] image units (R(x)
                             # without its grain when the refiner has OutputGrain)
    "disc_loss",             # discriminator loss (refined + real terms), per image pair
    "disc_acc_real",         # fraction of real patches classified real
    "disc_acc_refined",      # fraction of refined patches (fresh + history) classified refined
    "disc_acc_fresh",        # the same on the fresh half only: the current refiner's images,
                             # before this update (far below disc_acc_refined: D lags behind R)
)
# Metrics of the options, present only when their option is on.
TASK_METRIC = "refiner_task_loss"  # task weight * ||f(R(x)) - f(x)||_1, per image
BALANCE_METRIC = "disc_lr_scale"   # the balance's multiplier of D's learning rate
SPECTRAL_METRIC = "refiner_spectral_loss"  # spectral weight * the spectral loss, per update

# Optional dataset key: int64 `[b]`, bad records the input pipeline has skipped so far.
SKIPPED_KEY = "skipped"

# The metrics each phase updates (the others keep their values).
PHASE_METRICS = {
    Phase.PRETRAIN_REFINER: ("refiner_reg_loss", "refiner_l1_per_pixel"),
    Phase.REFINER: ("refiner_adv_loss", "refiner_reg_loss", "refiner_l1_per_pixel"),
    Phase.PRETRAIN_DISCRIMINATOR: ("disc_loss", "disc_acc_real", "disc_acc_refined",
                                   "disc_acc_fresh"),
    Phase.DISCRIMINATOR: ("disc_loss", "disc_acc_real", "disc_acc_refined", "disc_acc_fresh"),
}


class SimGAN(keras.Model):
    """SimGAN: a refiner trained against a local discriminator with a history buffer.

    Create it, and call `compile`, inside the strategy scope.

    Args:
      refiner: `keras.Model` from `[b, H, W, C]` images in [-1, 1] to refined images.
      discriminator: `keras.Model` from images to `[b, h, w, 2]` linear logits.
      history: the `HistoryBuffer` (size 0 for none).
      schedule: Algorithm 1's `Schedule`.
      reg_weight: lambda, weight of the self-regularization loss (>= 0).
      seed: seed of the history buffer's stateless random draws.
      feature_transform: psi of the self-regularization loss (identity when `None`).
      ema_decay: decay of the EMA of the refiner's weights, in [0, 1); `None` or 0 for
        none (then the model has no EMA variables).
      r1_weight: gamma of the R1 penalty on real images (>= 0; 0 for none).
      r1_every: apply R1 every this many discriminator updates (>= 1), weighted by
        `r1_weight * r1_every` (lazy regularization).
      task_features: f of the task-consistency term, a frozen network (or function) from
        images to `[b, ...]` outputs; `None` for none. It is held as a plain function,
        so its weights are neither trained nor saved in this model's checkpoints.
      task_weight: weight of the task-consistency term (>= 0; used when
        `task_features` is given).
      augment: transform names of `augment.TRANSFORMS` applied to every image the
        discriminator sees (empty: none).
      augment_probability: chance of each transform per image, in [0, 1].
      balance_target: accuracy on fresh refined patches that `DiscriminatorBalance`
        holds by scaling the discriminator's learning rate; `None` for no balance.
      balance_rate, balance_max_scale: the balance's step and bound.
      spectral_weight: weight of the spectral term in adversarial refiner updates (>= 0;
        0 for none): `losses.spectral_loss` between the mean `band_power` of the refined
        images (what the discriminator sees, grain included) and of the step's real
        images, both over the global batch.
      spectral_cutoff, spectral_bands: the term's lowest frequency (cycles per pixel) and
        number of bands (`losses.frequency_bands`).

    Call arguments:
      images: `[b, H, W, C]` synthetic images; returns the refined images: those of the
        EMA refiner when there is one and `training` is False, else of the refiner.
    """

    def __init__(self, refiner: keras.Model, discriminator: keras.Model,
                 history: HistoryBuffer, *, schedule: Schedule, reg_weight: float,
                 seed: int = 0, feature_transform=None, ema_decay: float | None = None,
                 r1_weight: float = 0.0, r1_every: int = 1, task_features=None,
                 task_weight: float = 0.0, augment=(), augment_probability: float = 1.0,
                 balance_target: float | None = None, balance_rate: float = 0.05,
                 balance_max_scale: float = 10.0, spectral_weight: float = 0.0,
                 spectral_cutoff: float = 0.15, spectral_bands: int = 8,
                 name: str = "simgan", **kwargs):
        super().__init__(name=name, **kwargs)
        if reg_weight < 0:
            raise ValueError(f"Expected reg_weight (lambda) >= 0. Received: {reg_weight}")
        if ema_decay is not None and not 0 <= ema_decay < 1:
            raise ValueError(f"Expected ema_decay in [0, 1) or None. Received: {ema_decay}")
        if r1_weight < 0 or int(r1_every) != r1_every or r1_every < 1:
            raise ValueError("Expected r1_weight >= 0 and an integer r1_every >= 1. "
                             f"Received: r1_weight={r1_weight}, r1_every={r1_every}")
        if task_weight < 0:
            raise ValueError(f"Expected task_weight >= 0. Received: {task_weight}")
        if spectral_weight < 0:
            raise ValueError(f"Expected spectral_weight >= 0. Received: {spectral_weight}")
        if spectral_weight > 0:  # the bands' own checks, before any image is seen
            losses.frequency_bands(16, 16, spectral_cutoff, 1)
            if int(spectral_bands) != spectral_bands or spectral_bands < 1:
                raise ValueError(f"Expected spectral_bands >= 1. Received: {spectral_bands}")
        if not 0.0 <= augment_probability <= 1.0:
            raise ValueError("Expected augment_probability in [0, 1]. "
                             f"Received: {augment_probability}")
        self.refiner = refiner
        # `[refined, clean]` from one pass when the refiner has output grain; not
        # tracked (its variables are the refiner's).
        self._clean_view = _untracked(clean_view(refiner))
        self.discriminator = discriminator
        self.history_buffer = history
        self.schedule = schedule
        self.reg_weight = float(reg_weight)
        self.seed = int(seed)
        self.feature_transform = feature_transform
        self.r1_weight = float(r1_weight)
        self.r1_every = int(r1_every)
        # Held in a closure, which Keras does not track: the frozen network's weights are
        # not this model's (not trained, not in its checkpoints).
        self._task_features = _untracked(task_features)
        self.task_weight = float(task_weight)
        self.spectral_weight = float(spectral_weight)
        self.spectral_cutoff = float(spectral_cutoff)
        self.spectral_bands = int(spectral_bands)
        self.augment_policy = augment_lib.parse_policy(augment)
        self.augment_probability = float(augment_probability)
        # Created here, in the strategy scope, only when on: no variables otherwise.
        self.ema = RefinerAverage(refiner, ema_decay) if ema_decay else None
        self.balance = (DiscriminatorBalance(balance_target, balance_rate, balance_max_scale)
                        if balance_target is not None else None)
        self.step_counter = tf.Variable(
            tf.constant(0, tf.int64), trainable=False, name="step_counter",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}
        self.refiner_optimizer = None
        self.discriminator_optimizer = None

    def call(self, images, training=False):
        refiner = self.refiner if training else self.inference_refiner
        return refiner(images, training=training)

    @property
    def task_features(self):
        """f of the task-consistency term, or `None`."""
        return self._task_features()

    @property
    def metric_names(self) -> tuple[str, ...]:
        """`METRIC_NAMES` plus the metrics of the options that are on."""
        names = METRIC_NAMES
        if self.task_features is not None:
            names += (TASK_METRIC,)
        if self.balance is not None:
            names += (BALANCE_METRIC,)
        if self.spectral_weight > 0:
            names += (SPECTRAL_METRIC,)
        return names

    def phase_metrics(self, phase: Phase) -> tuple[str, ...]:
        """The metrics an update of `phase` updates (`PHASE_METRICS` and the options')."""
        names = PHASE_METRICS[phase]
        if self.task_features is not None and phase in (Phase.PRETRAIN_REFINER, Phase.REFINER):
            names += (TASK_METRIC,)
        if self.balance is not None and phase == Phase.DISCRIMINATOR:
            names += (BALANCE_METRIC,)
        if self.spectral_weight > 0 and phase == Phase.REFINER:
            names += (SPECTRAL_METRIC,)
        return names

    @property
    def inference_refiner(self) -> keras.Model:
        """The refiner to refine with: the EMA refiner if there is one, else the refiner."""
        return self.refiner if self.ema is None else self.ema.model

    def r1_due(self, step: int) -> bool:
        """Whether update `step` is a discriminator update that adds the R1 penalty."""
        if self.r1_weight <= 0 or self.schedule.phase(step) not in (
                Phase.PRETRAIN_DISCRIMINATOR, Phase.DISCRIMINATOR):
            return False
        return self.schedule.discriminator_updates_before(step) % self.r1_every == 0

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, refiner_optimizer: keras.optimizers.Optimizer,
                discriminator_optimizer: keras.optimizers.Optimizer, **kwargs):
        """Sets one optimizer per network and creates their variables (in scope)."""
        super().compile(**kwargs)
        self.refiner_optimizer = refiner_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        refiner_optimizer.build(self.refiner.trainable_variables)
        discriminator_optimizer.build(self.discriminator.trainable_variables)

    @property
    def step(self) -> int:
        """Updates done so far (reads the step counter; not inside `tf.function`)."""
        return int(self.step_counter.numpy())

    # --- Algorithm 1 ---------------------------------------------------------------------

    def train_step(self, data, phase: Phase | None = None, r1: bool | None = None):
        """One update of Algorithm 1. Runs on each replica.

        Args:
          data: `{"synthetic": [b, H, W, C], "real": [b, H, W, C]}` in [-1, 1], b the
            per-replica batch (even).
          phase: the update to perform, a Python constant when traced; `None` reads the
            step counter, which works only eagerly.
          r1: whether a discriminator update adds the R1 penalty, a Python constant when
            traced; `None` reads the step counter (`r1_due`), only eagerly.

        Returns:
          Dict of the running means of `metric_names`.
        """
        if phase is None:
            phase = self.schedule.phase(self.step)
        if r1 is None:
            r1 = self.r1_weight > 0 and self.r1_due(self.step)
        synthetic, real = data["synthetic"], data["real"]
        if phase == Phase.PRETRAIN_REFINER:
            self._refiner_update(synthetic, real, adversarial=False)
        elif phase == Phase.REFINER:
            self._refiner_update(synthetic, real, adversarial=True)
        else:
            self._discriminator_update(synthetic, real, r1=r1,
                                       adversarial=phase == Phase.DISCRIMINATOR)
        self.step_counter.assign_add(1)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def _global_batch_size(self, images):
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        return tf.shape(images)[0] * replicas

    def _augment_seed(self, stream: int):
        """A `[2]` seed for the augmentation of this step and `stream`, the same on
        every replica (each uses the draws of its own rows of the global batch)."""
        return tf.stack([tf.constant(self.seed + stream, tf.int64),
                         self.step_counter.read_value()])

    def _augment(self, images, seed):
        """D's view of `images` (this replica's slice of the global batch): augmented
        when `augment` is on, else themselves."""
        context = tf.distribute.get_replica_context()
        batch = tf.shape(images)[0]
        return augment_lib.augment(
            images, self.augment_policy, seed, self.augment_probability,
            offset=context.replica_id_in_sync_group * batch,
            total=context.num_replicas_in_sync * batch)

    def _spectral_term(self, refined, real):
        """This replica's share of spectral weight * `losses.spectral_loss` over the
        global batch: the band powers are summed over each replica's images and
        all-reduced (the all-reduce passes gradients back to every replica), and the
        term is divided by the number of replicas, whose gradients the optimizer sums."""
        context = tf.distribute.get_replica_context()
        height, width = refined.shape[1], refined.shape[2]
        bands = losses.frequency_bands(height, width, self.spectral_cutoff,
                                       self.spectral_bands)
        refined_sum = tf.reduce_sum(losses.band_power(refined, bands), axis=0)
        real_sum = tf.stop_gradient(tf.reduce_sum(losses.band_power(real, bands), axis=0))
        refined_sum, real_sum = context.all_reduce(
            tf.distribute.ReduceOp.SUM, [refined_sum, real_sum])
        count = tf.cast(self._global_batch_size(real), tf.float32)
        term = self.spectral_weight * losses.spectral_loss(refined_sum / count,
                                                           real_sum / count)
        return term, term / context.num_replicas_in_sync

    def _refiner_update(self, synthetic, real, adversarial: bool):
        """Refiner update on lambda * L1 (+ the local adversarial loss and the spectral
        term if `adversarial`, + the task-consistency term when there is a task network).
        With output grain, the discriminator and the spectral term see the refined image
        and the other terms its clean one."""
        variables = self.refiner.trainable_variables
        view = self._clean_view()
        with tf.GradientTape() as tape:
            if view is None:
                refined = clean = self.refiner(synthetic, training=True)
            else:
                refined, clean = view(synthetic, training=True)
            logits = None
            if adversarial:
                seen = self._augment(refined, self._augment_seed(3))
                logits = self.discriminator(seen, training=False)
            adversarial_loss, regularization = losses.refiner_loss(
                logits, clean, synthetic, self.reg_weight, self.feature_transform)
            per_example = adversarial_loss + regularization
            if self.task_features is not None:
                task = self.task_weight * losses.task_consistency_loss(
                    self.task_features, clean, synthetic)
                per_example += task
            loss = losses.average_over_global_batch(
                per_example, self._global_batch_size(synthetic))
            spectral = None
            if adversarial and self.spectral_weight > 0:
                spectral, share = self._spectral_term(refined, real)
                loss += share
            scaled = self.refiner_optimizer.scale_loss(loss)  # mixed precision on GPU
        gradients = tape.gradient(scaled, variables)
        apply_gradients(self.refiner_optimizer, gradients, variables)
        if self.ema is not None:
            self.ema.update(self.refiner)
        if adversarial:
            self.trackers["refiner_adv_loss"].update_state(adversarial_loss)
        self.trackers["refiner_reg_loss"].update_state(regularization)
        if self.task_features is not None:
            self.trackers[TASK_METRIC].update_state(task)
        if spectral is not None:
            self.trackers[SPECTRAL_METRIC].update_state(spectral)
        self.trackers["refiner_l1_per_pixel"].update_state(
            tf.reduce_mean(tf.abs(tf.cast(clean, tf.float32) - synthetic), axis=[1, 2, 3]))

    def _discriminator_update(self, synthetic, real, r1: bool = False,
                              adversarial: bool = True):
        """Discriminator update on b/2 fresh + b/2 history refined images vs b real,
        plus the R1 penalty on the real images if `r1` (weighted by gamma * r1_every).
        With augmentation D sees (and R1 differentiates at) the augmented images; after
        an `adversarial` update (not in pretraining) the balance, if on, moves."""
        context = tf.distribute.get_replica_context()
        step = self.step_counter.read_value()
        replica = tf.cast(context.replica_id_in_sync_group, tf.int64)
        sample_seed = tf.stack([tf.constant(self.seed, tf.int64),
                                step * context.num_replicas_in_sync + replica])
        write_seed = tf.stack([tf.constant(self.seed + 1, tf.int64), step])
        refined = tf.cast(self.refiner(synthetic, training=False), tf.float32)
        mixed = self.history_buffer.mix(refined, sample_seed)
        if self.augment_policy:
            seeds = tf.random.experimental.stateless_split(self._augment_seed(2), 2)
            mixed = self._augment(mixed, seeds[0])
            real = self._augment(real, seeds[1])
        variables = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            refined_logits = self.discriminator(mixed, training=True)
            real_logits = self.discriminator(real, training=True)
            per_example = losses.discriminator_loss(refined_logits, real_logits)
            if r1:
                per_example += losses.r1_penalty(
                    functools.partial(self.discriminator, training=True), real,
                    self.r1_weight * self.r1_every)
            loss = losses.average_over_global_batch(per_example, self._global_batch_size(real))
            scaled = self.discriminator_optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        apply_gradients(self.discriminator_optimizer, gradients, variables)
        self.history_buffer.update(refined[: tf.shape(refined)[0] // 2], write_seed)
        self.trackers["disc_loss"].update_state(per_example)
        self.trackers["disc_acc_real"].update_state(
            losses.patch_accuracy(real_logits, losses.REAL))
        refined_accuracy = losses.patch_accuracy(refined_logits, losses.REFINED)
        self.trackers["disc_acc_refined"].update_state(refined_accuracy)
        # `mix` puts the fresh images first (all of them when there is no history).
        fresh = tf.shape(refined)[0] // 2 if self.history_buffer.enabled else tf.shape(refined)[0]
        self.trackers["disc_acc_fresh"].update_state(refined_accuracy[:fresh])
        if self.balance is not None and adversarial:
            self.trackers[BALANCE_METRIC].update_state(
                self.balance.update(refined_accuracy[:fresh]))

    # --- Keras integration ---------------------------------------------------------------

    def make_train_function(self, force=False):
        """Builds one compiled step per phase and a dispatcher choosing by step counter."""
        if self.train_function is not None and not force:
            return self.train_function
        strategy = self.distribute_strategy

        def build(phase, r1):
            step_fn = functools.partial(self.train_step, phase=phase, r1=r1)

            def one_step(iterator):
                data = next(iterator)
                if strategy.num_replicas_in_sync > 1 and not _is_distributed(data):
                    data = split_across_replicas(strategy, data)
                skipped = data.pop(SKIPPED_KEY, None) if isinstance(data, dict) else None
                strategy.run(step_fn, args=(data,))
                # Read the metrics in cross-replica context (aggregated over replicas);
                # only this phase's, so the progress bar keeps the others' last values.
                logs = {name: self.trackers[name].result()
                        for name in self.phase_metrics(phase)}
                if skipped is not None:
                    # Bad input records dropped so far by this worker's input pipeline
                    # (every row of every replica's slice holds the count).
                    local = strategy.experimental_local_results(skipped)[0]
                    logs[SKIPPED_KEY] = tf.reduce_max(local)
                return logs

            # No AutoGraph: the step has no Python control flow on tensors (the phase
            # and the options are Python constants, the buffer uses tf.cond), and
            # converting it cost about 0.7 s of tracing per run (bench/startup.py).
            return one_step if self.run_eagerly else tf.function(one_step, autograph=False)

        functions = {(phase, r1): build(phase, r1) for phase in Phase for r1 in (False, True)}

        def train_function(iterator):
            step = self.step
            return functions[(self.schedule.phase(step), self.r1_due(step))](iterator)

        self.train_function = train_function
        return train_function

    def reset_trackers(self, names=None):
        """Resets the running means (all, or the named ones)."""
        for name in names or self.trackers:
            self.trackers[name].reset_state()


def _untracked(value):
    """A function returning `value`: an attribute Keras and tf.train do not track."""
    return lambda: value


def apply_gradients(optimizer: keras.optimizers.Optimizer, gradients, variables) -> None:
    """`optimizer.apply_gradients` of the gradients of `optimizer.scale_loss(loss)`.

    Runs on each replica. A plain optimizer's `scale_loss` is the identity. A
    `keras.optimizers.LossScaleOptimizer` (float16) divides the gradients by its loss
    scale, or, if any is not finite, skips the update and halves the scale. Keras decides
    that from the first replica's gradients alone, before the inner optimizer sums them
    across replicas (Keras 3.15, `LossScaleOptimizer._tf_apply`): an overflow on another
    replica would reach the weights. So with several replicas the gradients are made
    non-finite on every replica when they are on any (`agree_on_overflow`). Variables
    whose gradient is `None` are not updated.
    """
    if (isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            and tf.distribute.get_replica_context().num_replicas_in_sync > 1):
        gradients = agree_on_overflow(gradients)
    # Variables no term reaches this update (output grain while the refiner is
    # pretrained on the self-regularization alone) are left as they are.
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(gradients, variables) if g is not None])


def agree_on_overflow(gradients: list) -> list:
    """The gradients, or NaN in all of them if any replica's are not all finite.

    Runs on each replica: one `all_reduce` (SUM) of a flag per replica.
    """
    context = tf.distribute.get_replica_context()
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g))
                            for g in gradients if g is not None])
    overflows = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                   1.0 - tf.cast(finite, tf.float32))
    return [None if g is None else
            tf.where(overflows > 0, tf.constant(float("nan"), g.dtype), g)
            for g in gradients]


def _is_distributed(data) -> bool:
    return any(isinstance(x, tf.distribute.DistributedValues) for x in tf.nest.flatten(data))


def split_across_replicas(strategy: tf.distribute.Strategy, data):
    """Splits a global batch (a structure of `[B, ...]` tensors) into per-replica slices.

    For input read by a plain (checkpointable) `tf.data` iterator rather than a
    distributed one: replica i receives rows `[i * B/N, (i + 1) * B/N)`, as
    `strategy.experimental_distribute_dataset` would give it.
    """
    def value_fn(context):
        n, i = context.num_replicas_in_sync, context.replica_id_in_sync_group

        def piece(x):
            size = tf.shape(x)[0] // n
            return x[i * size:(i + 1) * size]

        return tf.nest.map_structure(piece, data)

    return strategy.experimental_distribute_values_from_function(value_fn)
