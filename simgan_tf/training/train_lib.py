"""Training of a SimGAN run from a config: the library behind `train.py`.

`train(config, model_dir, strategy)` resolves and validates the data, writes
`config.json`, builds the model in the strategy scope, restores the latest intact
checkpoint of `model_dir` if there is one, runs Algorithm 1 with a `fit`-like loop over an
input iterator it owns (so that the iterator's position is checkpointed), and exports the
refiner.

Outputs in `model_dir` (written by the chief alone under multi-worker training):
  config.json                    the resolved config (data folder filled in)
  checkpoints/ckpt-<step>        tf.train checkpoints (model, optimizers, buffer, step,
                                 input iterator; see `checkpointing`)
  logs/train/                    TensorBoard event files
  export/refiner/<step>/         the refiner SavedModel (TF Serving layout)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import threading

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from simgan_tf.data import builtin, reader, validation
from simgan_tf.training import callbacks, checkpointing
from simgan_tf.serving import export
from simgan_tf import runtime
from simgan_tf.data import schema
from simgan_tf import config as config_lib
from simgan_tf.modeling.discriminator import build_discriminator
from simgan_tf.modeling.history import HistoryBuffer
from simgan_tf.modeling.simgan import SKIPPED_KEY, SimGAN
from simgan_tf.modeling.refiner import build_refiner
from simgan_tf.modeling.schedule import Schedule

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
EXPORT_DIR = os.path.join("export", "refiner")
NUM_SAMPLE_IMAGES = 8


@dataclasses.dataclass
class TrainResult:
    """What a run produced.

    Attributes:
      model: the trained `SimGAN`.
      config: the resolved config.
      step: updates done.
      export_path: SavedModel folder, or `None` if export was off.
      history: the `keras.callbacks.History` of this call (`None` if nothing ran).
      preempted: True if SIGTERM stopped the run early (after a final checkpoint).
      skipped_records: bad input records skipped (with `skip_bad_records`).
    """
    model: SimGAN
    config: config_lib.SimGANConfig
    step: int
    export_path: str | None
    history: object
    preempted: bool = False
    skipped_records: int = 0


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; no checkpoint was written after it."""


def build_strategy(name: str) -> tf.distribute.Strategy:
    """Builds the distribution strategy named by `config.strategy`.

    `auto`: MirroredStrategy over all GPUs if there are several, else the default
    strategy; `one_device`: the first GPU or the CPU; `mirrored`: MirroredStrategy over
    the local devices (GPUs, else logical CPUs); `multi_worker`:
    MultiWorkerMirroredStrategy configured from `TF_CONFIG`.
    """
    if name == "multi_worker":
        # Before anything else touches the devices: collectives are configured at startup.
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    raise ValueError(f"Expected strategy in {config_lib.STRATEGIES}. Received: {name!r}")


def make_optimizer(config: config_lib.OptimizerConfig, learning_rate=None):
    """Builds a Keras optimizer from its config (`learning_rate` overrides the rate)."""
    rate = learning_rate if learning_rate is not None else config.learning_rate
    if config.name == "adam":
        return keras.optimizers.Adam(learning_rate=rate, beta_1=config.beta_1)
    if config.name == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=config.momentum)
    raise ValueError(f"Expected optimizer in {config_lib.OPTIMIZERS}. Received: {config.name!r}")


def build_simgan(config: config_lib.SimGANConfig, loss_scale: bool = False) -> SimGAN:
    """Builds and compiles the SimGAN model. Call inside the strategy scope.

    Args:
      config: the run's config.
      loss_scale: wrap both optimizers in `keras.optimizers.LossScaleOptimizer` (float16
        mixed precision).
    """
    t = config.train
    shape = config.image_shape
    refiner = build_refiner(shape, config.refiner)
    discriminator = build_discriminator(shape, config.discriminator)
    history = HistoryBuffer(t.history_size, shape)
    schedule = Schedule(t.pretrain_refiner_steps, t.pretrain_discriminator_steps, t.k_g, t.k_d,
                        t.steps)
    model = SimGAN(refiner, discriminator, history, schedule=schedule,
                   reg_weight=t.reg_weight, seed=t.seed)
    refiner_rate = config.refiner_optimizer.learning_rate
    if t.pretrain_learning_rate is not None and t.pretrain_refiner_steps > 0:
        # The first `pretrain_refiner_steps` refiner updates are pretraining.
        refiner_rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            [t.pretrain_refiner_steps], [t.pretrain_learning_rate, refiner_rate])
    refiner_optimizer = make_optimizer(config.refiner_optimizer, refiner_rate)
    discriminator_optimizer = make_optimizer(config.discriminator_optimizer)
    if loss_scale:
        refiner_optimizer = keras.optimizers.LossScaleOptimizer(refiner_optimizer)
        discriminator_optimizer = keras.optimizers.LossScaleOptimizer(discriminator_optimizer)
    model.compile(refiner_optimizer=refiner_optimizer,
                  discriminator_optimizer=discriminator_optimizer)
    model(tf.zeros([1, *shape]))  # builds the wrapper model
    return model


def make_checkpoint(model: SimGAN, iterator=None) -> tf.train.Checkpoint:
    """The checkpoint of a run: networks, optimizers, history buffer, step counter and,
    when given, the input iterator's position."""
    objects = dict(model=model, refiner_optimizer=model.refiner_optimizer,
                   discriminator_optimizer=model.discriminator_optimizer)
    if iterator is not None:
        objects["iterator"] = iterator
    return tf.train.Checkpoint(**objects)


def resolve_data_dir(config: config_lib.SimGANConfig, cache_dir: str | None = None) -> str:
    """The data folder of a run: `config.data.data_dir`, or the simulator's cached data."""
    if config.data.data_dir:
        if not os.path.isdir(config.data.data_dir):
            raise FileNotFoundError(f"--data_dir does not exist: {config.data.data_dir}")
        return config.data.data_dir
    d = config.data
    counts = dict(num_synthetic=d.simulator_num_synthetic, num_real=d.simulator_num_real,
                  num_real_test=d.simulator_num_real_test, kind=d.simulator,
                  size=d.image_height)
    where = builtin.simulator_data_dir(cache_dir or builtin.default_cache_dir(),
                                            **counts)
    if d.simulator == "eyes":
        logging.info(
            "No data folder given: using the built-in eye simulator (synthetic and 'real' "
            "eyes rendered procedurally) in %s. To train on UnityEyes and MPIIGaze, "
            "convert them with `python -m data_prep.unityeyes` and `python -m "
            "data_prep.mpiigaze` and pass --data_dir (see README).", where)
    else:
        logging.info(
            "No data folder given: using the built-in hand depth simulator at a reduced "
            "resolution of %dx%d with reduced networks, so the run finishes in minutes on "
            "a CPU, in %s. To train the paper's 224x224 networks on NYU hand, convert it "
            "with `python -m data_prep.nyu_hand` and pass --data_dir (see README).",
            d.image_height, d.image_width, where)
    return builtin.ensure_simulator_data(cache_dir, **counts)


def sample_images(data_dir: str, split: str, n: int,
                  skip_bad_records: bool = False) -> np.ndarray:
    """The first `n` (good) images of a split, in file order: `[n, H, W, C]` in [-1, 1]."""
    return reader.load_arrays(data_dir, split, count=n, require_count=False,
                            skip_bad_records=skip_bad_records)["image"]


def write_config(config: config_lib.SimGANConfig, model_dir: str, write: bool = True) -> str:
    """Writes `config.json` (if `write`); refuses to resume a run whose networks differ."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = config_lib.SimGANConfig.from_json(json.load(f))
        for field in ("refiner", "discriminator", "data"):
            old, new = getattr(previous, field), getattr(config, field)
            if field == "data":  # where the data comes from may change, not what it is
                neutral = dict(data_dir=None, data_service=None, skip_bad_records=False)
                old = dataclasses.replace(old, **neutral)
                new = dataclasses.replace(new, **neutral)
            if old != new:
                raise ValueError(
                    f"{path} was written for a different {field} config ({old}); this run "
                    f"asks for {new}. Use another --model_dir, or the same settings.")
    if write:
        schema.write_json_atomic(path, config.to_json())
    return path


@contextlib.contextmanager
def precision_policy(mixed: bool):
    """Builds layers under Keras' mixed precision policy while active.

    bfloat16 on CPU (no loss scaling needed: bfloat16 has float32's exponent range),
    float16 on GPU. Yields whether loss scaling is needed. The refiner's tanh and the
    discriminator's logits layer are float32 layers, so R's output, D's logits, the
    losses and the history buffer stay float32.
    """
    if not mixed:
        yield False
        return
    previous = keras.config.dtype_policy()
    float16 = bool(tf.config.list_logical_devices("GPU"))
    if not float16 and not runtime.bfloat16_native():
        logging.warning(
            "--mixed_precision: this CPU has no native bfloat16 (AVX512_BF16 or AMX), so "
            "bfloat16 is emulated and training runs several times slower than in float32 "
            "(BUILD.md, 'Speed'). Leave --mixed_precision off on this machine.")
    keras.config.set_dtype_policy("mixed_float16" if float16 else "mixed_bfloat16")
    try:
        yield float16
    finally:
        keras.config.set_dtype_policy(previous)


class _Preemption:
    """Records SIGTERM (preemption notice) while active; the loop checks it each step."""

    def __init__(self):
        self.received = False
        self._previous = None

    def _handler(self, signum, frame):
        logging.warning("Received SIGTERM: saving a checkpoint after this step and stopping.")
        self.received = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _make_agreement(strategy):
    """A function telling, on every worker, whether any worker got a stop request."""
    if strategy.extended._in_multi_worker_mode():  # pylint: disable=protected-access
        @tf.function
        def agree(flag):
            per_replica = strategy.run(tf.identity, args=(flag,))
            return strategy.reduce("SUM", per_replica, axis=None)

        return lambda flag: int(agree(tf.constant(int(flag))).numpy()) > 0
    return bool


def fast_forward(iterator, batches: int) -> None:
    """Draws and drops `batches` batches: restores a position that was not checkpointed.

    Used by multi-worker runs, whose per-worker input positions are not in the chief's
    checkpoint. With a deterministic pipeline (`--deterministic`) the iterator ends where
    the interrupted run's was; it costs reading and decoding those batches again.
    """
    logging.info("Fast-forwarding this worker's input pipeline by %d batches to the "
                 "restored step.", batches)
    for _ in range(batches):
        next(iterator)


def train(config: config_lib.SimGANConfig, model_dir: str, *,
          strategy: tf.distribute.Strategy | None = None, cache_dir: str | None = None,
          verbose: int | str = "auto") -> TrainResult:
    """Trains (or resumes) a SimGAN run.

    Before any long work the data folder is validated (`validation.validate_split`).
    Training is a loop over `SimGAN.make_train_function()` (one compiled step per phase)
    driving Keras callbacks, over an input iterator this function owns, so that the
    iterator's position is saved in every checkpoint (see `checkpointing`). A NaN or
    infinite loss stops training with `NonFiniteLossError` before anything is written.
    SIGTERM makes the run save a checkpoint after the current step and return with
    `preempted=True`.

    Args:
      config: the run's config (validated here).
      model_dir: output folder; a run resumes from its latest intact checkpoint.
      strategy: distribution strategy (default: the current one). Models, optimizers and
        the history buffer are created in its scope. Under `MultiWorkerMirroredStrategy`
        only the chief writes summaries, checkpoints, the config and the export.
      cache_dir: parent folder of the simulator data cache.
      verbose: Keras progress bar mode (0 silent, 1 bar, 2 one line per epoch).

    Returns:
      A `TrainResult`.
    """
    config.validate()
    strategy = strategy or tf.distribute.get_strategy()
    t, d = config.train, config.data
    replicas = strategy.num_replicas_in_sync
    if t.batch_size % (2 * replicas):
        raise ValueError(
            f"train.batch_size must split into an even batch per replica: {t.batch_size} "
            f"over {replicas} replicas. Use a multiple of {2 * replicas}.")
    if t.deterministic:
        tf.config.experimental.enable_op_determinism()
    if not tf.config.list_logical_devices("GPU") and not runtime.onednn_enabled():
        logging.warning(
            "TensorFlow runs without its oneDNN CPU kernels (%s=%r, or TensorFlow was "
            "imported before simgan_tf): convolutions may run about 2x slower (BUILD.md, "
            "'Speed').", runtime.ONEDNN_VARIABLE, os.environ.get(runtime.ONEDNN_VARIABLE))
    keras.utils.set_random_seed(t.seed)
    chief = checkpointing.is_chief(strategy)
    multi_worker = strategy.extended._in_multi_worker_mode()  # pylint: disable=protected-access

    data_dir = resolve_data_dir(config, cache_dir)
    config = config_lib.override(config, {"data.data_dir": os.path.abspath(data_dir)})
    splits = (d.synthetic_split, d.real_split)
    info = schema.read_dataset_info(data_dir)
    reader.check_image_shape(info, data_dir, config.image_shape)
    unreadable = 0
    for split in splits:
        reports = validation.validate_split(data_dir, split, info,
                                            skip_bad_records=d.skip_bad_records)
        for report in reports:
            if report.unreadable:
                logging.warning("Skipping %d unreadable record(s) of %s (truncated or "
                                "empty shard).", report.unreadable, report.path)
        unreadable += validation.total_unreadable(reports)
    os.makedirs(model_dir, exist_ok=True)
    write_config(config, model_dir, write=chief)

    dataset = reader.training_dataset(
        data_dir, synthetic_split=d.synthetic_split, real_split=d.real_split,
        batch_size=t.batch_size, image_shape=config.image_shape, seed=t.seed,
        shuffle_buffer=d.shuffle_buffer, deterministic=t.deterministic,
        skip_bad_records=d.skip_bad_records)
    if d.data_service:
        dataset = reader.use_data_service(dataset, d.data_service, job_name=f"simgan-{t.seed}")
    if multi_worker:  # shards the files across workers (auto-shard policy FILE)
        iterator = iter(strategy.experimental_distribute_dataset(dataset))
    else:  # a plain iterator can be checkpointed; each step splits its global batch
        iterator = iter(dataset)
    # The iterator's position is saved with the model unless it cannot be: tf.data
    # service iterators cannot be saved, and under multi-worker training the chief's
    # checkpoint cannot hold the other workers' iterators; those replay their input
    # pipeline up to the restored step instead (exact with `deterministic`).
    save_iterator = not d.data_service and not multi_worker
    if d.data_service:
        logging.warning("The input position is not checkpointed (tf.data service): a "
                        "resumed run restarts its input pipeline from the seed.")

    with precision_policy(t.mixed_precision) as loss_scale:
        with strategy.scope():
            model = build_simgan(config, loss_scale=loss_scale)
    checkpoint = make_checkpoint(model, iterator if save_iterator else None)
    checkpoint_dir = os.path.join(model_dir, CHECKPOINT_DIR)
    scratch = None if chief else checkpointing.worker_scratch_dir(model_dir, strategy)
    run_checkpoint = checkpointing.RunCheckpoint(
        checkpoint, checkpoint_dir, max_to_keep=t.keep_checkpoints,
        finite_check=model.trainable_variables,
        write_directory=None if chief else os.path.join(scratch, CHECKPOINT_DIR))
    restored = run_checkpoint.restore_latest()
    if restored:
        logging.info("Resumed from %s at step %d.", restored, model.step)
        if multi_worker and not d.data_service:
            fast_forward(iterator, model.step)

    total = model.schedule.total_steps
    remaining = total - model.step
    history = None
    preempted = False
    skipped = unreadable
    if remaining > 0:
        logging.info(
            "Training %d updates (%d refiner pretraining, %d discriminator pretraining, "
            "%d iterations of %d refiner + %d discriminator updates); %d to go.",
            total, t.pretrain_refiner_steps, t.pretrain_discriminator_steps, t.steps, t.k_g,
            t.k_d, remaining)
        run_callbacks = [callbacks.PhaseLogger()]
        # Every worker runs the same callbacks, since reading and resetting the metrics
        # of a multi-worker run are collective operations; workers other than the chief
        # write their summaries into their scratch folder, deleted at the end.
        log_dir = os.path.join(model_dir if chief else scratch, LOG_DIR)
        try:
            synthetic_samples = sample_images(data_dir, d.synthetic_split, NUM_SAMPLE_IMAGES,
                                              d.skip_bad_records)
            real_samples = sample_images(data_dir, d.real_split, 2 * NUM_SAMPLE_IMAGES,
                                         d.skip_bad_records)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            _raise_data_error(error, data_dir, splits, info)
            raise
        run_callbacks.append(callbacks.SummaryCallback(
            log_dir, synthetic_samples=synthetic_samples, real_samples=real_samples,
            log_every=t.log_every, image_every=t.image_every,
            hparams=callbacks.flatten_hparams(config.to_json())))
        if d.skip_bad_records:
            run_callbacks.append(callbacks.SkippedRecordsSummary(
                log_dir, log_every=t.log_every, unreadable=unreadable))
        run_callbacks.append(callbacks.CheckpointCallback(run_checkpoint, t.checkpoint_every))
        history, preempted, skipped = _fit(
            model, iterator, remaining, run_callbacks, verbose=verbose, strategy=strategy,
            run_checkpoint=run_checkpoint, data_dir=data_dir, splits=splits, info=info,
            unreadable=unreadable)
    else:
        logging.info("Nothing to train: %s is at step %d of %d.", model_dir, model.step, total)

    export_path = None
    if t.export and not preempted:
        base = os.path.join(model_dir if chief else scratch, EXPORT_DIR)
        export_path = export.export_refiner(
            model.refiner, base, model.step, config.image_shape,
            data_info=schema.read_dataset_info(data_dir), data_dir=config.data.data_dir,
            config=config.to_json())
        if chief:
            logging.info("Exported the refiner to %s", export_path)
        else:  # every worker takes part in saving; only the chief's copy is kept
            export_path = None
    if not chief:
        shutil.rmtree(scratch, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last worker out removes the parent
            os.rmdir(os.path.dirname(scratch))
    return TrainResult(model=model, config=config, step=model.step, export_path=export_path,
                       history=history, preempted=preempted, skipped_records=skipped)


def _fit(model, iterator, steps, run_callbacks, *, verbose, strategy, run_checkpoint,
         data_dir, splits, info, unreadable):
    """Runs `steps` updates with Keras callbacks; returns (history, preempted, skipped).

    The equivalent of `model.fit(..., epochs=1, steps_per_epoch=steps)` over an iterator
    owned by the caller (and saved in its checkpoints).
    """
    if verbose == "auto":
        verbose = 1
    callback_list = keras.callbacks.CallbackList(
        run_callbacks, add_history=True, add_progbar=verbose != 0, model=model,
        verbose=verbose, epochs=1, steps=steps)
    train_function = model.make_train_function()
    any_worker = _make_agreement(strategy)
    model.stop_training = False
    preempted = False
    skipped = unreadable
    logs = {}
    with _Preemption() as preemption:
        callback_list.on_train_begin()
        callback_list.on_epoch_begin(0)
        for batch in range(steps):
            callback_list.on_train_batch_begin(batch)
            try:
                step_logs = train_function(iterator)
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
                _raise_data_error(error, data_dir, splits, info)
                raise
            logs = {name: float(value) for name, value in step_logs.items()}
            bad = {name: value for name, value in logs.items() if not np.isfinite(value)}
            if bad:
                raise NonFiniteLossError(
                    f"Non-finite loss at step {model.step} (phase "
                    f"{model.schedule.phase(model.step - 1).name}): {bad}. Training stopped "
                    f"without writing a checkpoint; the latest good one in "
                    f"{run_checkpoint.directory} is kept. Lower the learning rates or "
                    "--reg_weight, or check the data.")
            if SKIPPED_KEY in logs:
                now = unreadable + int(logs[SKIPPED_KEY])
                if now > skipped:
                    logging.warning("Skipped %d bad input record(s) so far (--skip_bad_records).",
                                    now)
                skipped = now
            callback_list.on_train_batch_end(batch, logs)
            if any_worker(preemption.received) and batch + 1 < steps:
                path = run_checkpoint.save(checkpoint_number=model.step)
                logging.warning("Preempted at step %d: saved %s; run the same command "
                                "again to resume.", model.step,
                                path or "the checkpoint (written by the chief)")
                preempted = True
                break
            if model.stop_training:
                break
        if not preempted:
            callback_list.on_epoch_end(0, logs)
            callback_list.on_train_end(logs)
    history = next((c for c in callback_list.callbacks
                    if isinstance(c, keras.callbacks.History)), None)
    return history, preempted, skipped


def _raise_data_error(error, data_dir, splits, info):
    """Raises `BadRecordError` naming the file (and record) of an input error, if found."""
    message = getattr(error, "message", str(error))
    marker = "Bad input data in"
    if marker in message:
        detail = message[message.index(marker):].split(reader.ERROR_END)[0]
        raise validation.BadRecordError.from_message(detail) from None
    logging.error("Training failed on the input data (%s); reading %s record by record to "
                  "find the bad record.", " ".join(message.split())[:200], data_dir)
    validation.find_bad_record(data_dir, splits, info)
