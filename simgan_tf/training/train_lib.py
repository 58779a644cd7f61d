"""Training of a SimGAN run from a config: the library behind `train.py`.

`train(config, model_dir, strategy)` runs these steps, each a function of this module:

1. `set_up_runtime`: checks the batch splits over the replicas, op determinism, seeds.
2. The chief takes the folder's run lock (`run_lock.RunLock`), so a second run on the
   folder fails at once. `prepare_data`: resolves the data folder (or the simulator's
   cached data) and validates it (`validation.validate_split`);
   `run_config.write_config` refuses a resume that would change what the run's updates
   mean, then writes `config.json`.
3. `build_input`: the training dataset and the iterator this module owns, and whether
   its position is saved in the checkpoints.
4. `task_network.prepare_task_network`: with `train.task_weight > 0`, the frozen task
   network of the task-consistency term (the run's own, a given one, or trained here).
   `build_model`: the `SimGAN` model, in the strategy scope, under the precision policy.
5. `restore_checkpoint`: restores the latest intact checkpoint, if any, and returns the
   `CheckpointPolicy` that decides when the next ones are written.
6. `make_callbacks`: summaries, phase log and skipped-record counts.
7. `loop.run`: Algorithm 1, a `fit`-like loop over the iterator.
8. `export_and_clean_up`: exports the refiner; workers delete their scratch folder.

Outputs in `model_dir` (any `tf.io.gfile` path; written by the chief alone under
multi-worker training):
  config.json                    the resolved config (data folder filled in) and the
                                 `changes` a resume made (see `run_config`)
  task_network.keras             the frozen task network (with `train.task_weight > 0`)
  run.lock                       held by the running process (see `run_lock`)
  checkpoints/ckpt-<step>        tf.train checkpoints (model, optimizers, buffer, step,
                                 input iterator; see `checkpointing`)
  logs/train/                    TensorBoard event files
  export/refiner/<step>/         the refiner SavedModel (TF Serving layout)

This module is over 400 lines: it is the list of a run's steps, each a short function,
kept in one file in the order `train` calls them so that a reader follows a run top to
bottom; the loop, callbacks, checkpointing and distribution are modules of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from simgan_tf import config as config_lib
from simgan_tf import distribute, runtime
from simgan_tf.data import builtin, reader, schema, validation
from simgan_tf.modeling import balance
from simgan_tf.modeling.discriminator import build_discriminator
from simgan_tf.modeling.history import HistoryBuffer
from simgan_tf.modeling.refiner import build_refiner
from simgan_tf.modeling.schedule import Schedule
from simgan_tf.modeling.simgan import SimGAN
from simgan_tf.serving import export
from simgan_tf.modeling import losses
from simgan_tf.training import callbacks, checkpointing, loop, run_config, run_lock
from simgan_tf.training import task_network as task_network_lib
from simgan_tf.training.loop import NonFiniteLossError  # noqa: F401  raised by `train`
from simgan_tf.training.run_lock import RunLockedError  # noqa: F401  raised by `train`
from simgan_tf.write_errors import RunWriteError  # noqa: F401  raised by `train`
from simgan_tf.write_errors import writing

CONFIG_FILE = run_config.CONFIG_FILE
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
      preempted: True if SIGTERM or SIGINT stopped the run early (after a final
        checkpoint).
      skipped_records: bad input records skipped (with `skip_bad_records`).
      stop_signal: the signal number that stopped it early (`signal.SIGTERM`,
        `signal.SIGINT`), `None` if none did or it reached another worker.
    """
    model: SimGAN
    config: config_lib.SimGANConfig
    step: int
    export_path: str | None
    history: object
    preempted: bool = False
    skipped_records: int = 0
    stop_signal: int | None = None


@dataclasses.dataclass(frozen=True)
class RunData:
    """The validated data folder of a run.

    Attributes:
      data_dir: the folder, as given (or the simulator cache).
      info: its `dataset.json`.
      splits: `(synthetic split, real split)`.
      unreadable: records lost to truncated shards (skipped with `skip_bad_records`).
      on_input_error: `validation.raise_for_input_error` bound to this data: raises the
        `BadRecordError` behind a TensorFlow error of the input, if it finds one.
    """
    data_dir: str
    info: schema.DatasetInfo
    splits: tuple[str, str]
    unreadable: int
    on_input_error: Callable[[Exception], None]


@dataclasses.dataclass(frozen=True)
class RunInput:
    """The training input of a run.

    Attributes:
      iterator: over `reader.training_dataset` batches (distributed under multi-worker).
      position_saved: whether the iterator's position is in the checkpoints.
      replay_on_resume: whether a resumed run fast-forwards the iterator instead.
    """
    iterator: object
    position_saved: bool
    replay_on_resume: bool


@dataclasses.dataclass(frozen=True)
class RunFolders:
    """Where this process reads and writes.

    Attributes:
      model_dir: the run folder (checkpoints are restored from here).
      write_dir: `model_dir` on the chief; the worker's scratch folder on other workers.
    """
    model_dir: str
    write_dir: str

    @property
    def chief(self) -> bool:
        return self.write_dir == self.model_dir


def make_optimizer(config: config_lib.OptimizerConfig, learning_rate=None):
    """Builds a Keras optimizer from its config (`learning_rate` overrides the rate)."""
    rate = learning_rate if learning_rate is not None else config.learning_rate
    if config.name == "adam":
        return keras.optimizers.Adam(learning_rate=rate, beta_1=config.beta_1)
    if config.name == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=config.momentum)
    raise ValueError(f"Expected optimizer in {config_lib.OPTIMIZERS}. "
                     f"Received: name={config.name!r}")


def build_simgan(config: config_lib.SimGANConfig, loss_scale: bool = False, *,
                 loss_scale_growth_steps: int = 2000,
                 task_network: keras.Model | None = None) -> SimGAN:
    """Builds and compiles the SimGAN model. Call inside the strategy scope.

    Args:
      config: the run's config.
      task_network: the frozen task network of the task-consistency term
        (`task_network.prepare_task_network`); needed when `train.task_weight > 0`.
      loss_scale: wrap both optimizers in `keras.optimizers.LossScaleOptimizer` (float16
        mixed precision): dynamic loss scale from 2**15, halved on a step whose
        gradients overflow (the step is skipped), doubled after
        `loss_scale_growth_steps` finite steps in a row.
      loss_scale_growth_steps: Keras' `dynamic_growth_steps` (its default, 2000).
    """
    t = config.train
    shape = config.image_shape
    refiner = build_refiner(shape, config.refiner)
    discriminator = build_discriminator(shape, config.discriminator)
    history = HistoryBuffer(t.history_size, shape)
    schedule = Schedule(t.pretrain_refiner_steps, t.pretrain_discriminator_steps, t.k_g, t.k_d,
                        t.steps)
    if t.task_weight > 0 and task_network is None:
        raise ValueError("train.task_weight > 0 needs the frozen task network "
                         "(task_network.prepare_task_network). Received: task_network=None")
    task_features = (task_network_lib.features_function(task_network, t.task_output)
                     if t.task_weight > 0 else None)
    feature_transform = (functools.partial(losses.local_mean, size=t.reg_feature_size)
                         if t.reg_feature == "local_mean" else None)
    model = SimGAN(refiner, discriminator, history, schedule=schedule,
                   reg_weight=t.reg_weight, seed=t.seed, ema_decay=t.ema_decay,
                   r1_weight=t.r1_weight, r1_every=t.r1_every,
                   feature_transform=feature_transform, task_features=task_features,
                   task_weight=t.task_weight, augment=t.augment,
                   augment_probability=t.augment_probability,
                   balance_target=t.balance_target, balance_rate=t.balance_rate,
                   balance_max_scale=t.balance_max_scale,
                   spectral_weight=t.spectral_weight, spectral_cutoff=t.spectral_cutoff,
                   spectral_bands=t.spectral_bands)
    refiner_rate = config.refiner_optimizer.learning_rate
    if t.pretrain_learning_rate is not None and t.pretrain_refiner_steps > 0:
        # The first `pretrain_refiner_steps` refiner updates are pretraining.
        refiner_rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            [t.pretrain_refiner_steps], [t.pretrain_learning_rate, refiner_rate])
    refiner_optimizer = make_optimizer(config.refiner_optimizer, refiner_rate)
    discriminator_rate = config.discriminator_optimizer.learning_rate
    if model.balance is not None:  # the adaptive balance scales D's learning rate
        discriminator_rate = balance.ScaledLearningRate(discriminator_rate, model.balance.scale)
    discriminator_optimizer = make_optimizer(config.discriminator_optimizer, discriminator_rate)
    if loss_scale:
        if int(loss_scale_growth_steps) < 1:
            raise ValueError("Expected loss_scale_growth_steps >= 1. Received: "
                             f"loss_scale_growth_steps={loss_scale_growth_steps}")
        refiner_optimizer, discriminator_optimizer = (
            keras.optimizers.LossScaleOptimizer(
                optimizer, dynamic_growth_steps=int(loss_scale_growth_steps))
            for optimizer in (refiner_optimizer, discriminator_optimizer))
    model.compile(refiner_optimizer=refiner_optimizer,
                  discriminator_optimizer=discriminator_optimizer)
    model(tf.zeros([1, *shape]))  # builds the wrapper model
    return model


def make_checkpoint(model: SimGAN, iterator=None) -> tf.train.Checkpoint:
    """The checkpoint of a run: networks, optimizers, history buffer, step counter, the
    EMA refiner and its update count when `train.ema_decay` is on (attributes of
    `model`), and, when given, the input iterator's position."""
    objects = dict(model=model, refiner_optimizer=model.refiner_optimizer,
                   discriminator_optimizer=model.discriminator_optimizer)
    if iterator is not None:
        objects["iterator"] = iterator
    return tf.train.Checkpoint(**objects)


def resolve_data_dir(config: config_lib.SimGANConfig, cache_dir: str | None = None) -> str:
    """The data folder of a run: `config.data.data_dir`, or the simulator's cached data.

    Raises:
      FileNotFoundError: if `config.data.data_dir` is set but does not exist.
    """
    if config.data.data_dir:
        if not tf.io.gfile.isdir(config.data.data_dir):
            raise FileNotFoundError(
                f"Data folder does not exist. Received: data_dir={config.data.data_dir!r}")
        return config.data.data_dir
    d = config.data
    counts = dict(num_synthetic=d.simulator_num_synthetic, num_real=d.simulator_num_real,
                  num_real_test=d.simulator_num_real_test, kind=d.simulator,
                  size=d.image_height)
    where = builtin.simulator_data_dir(cache_dir or builtin.default_cache_dir(), **counts)
    if d.simulator == "eyes":
        logging.info(
            "No data folder given: using the built-in eye simulator (synthetic and 'real' "
            "eyes rendered procedurally) in %s. To train on UnityEyes and MPIIGaze, "
            "convert them with `python -m data_prep.unityeyes` and `python -m "
            "data_prep.mpiigaze` and set the data folder (see README).", where)
    else:
        logging.info(
            "No data folder given: using the built-in hand depth simulator at a reduced "
            "resolution of %dx%d with reduced networks, so the run finishes in minutes on "
            "a CPU, in %s. To train the paper's 224x224 networks on NYU hand, convert it "
            "with `python -m data_prep.nyu_hand` and set the data folder (see README).",
            d.image_height, d.image_width, where)
    return builtin.ensure_simulator_data(cache_dir, **counts)


def sample_images(data_dir: str, split: str, n: int,
                  skip_bad_records: bool = False) -> np.ndarray:
    """The first `n` (good) images of a split, in file order: `[n, H, W, C]` in [-1, 1]."""
    return reader.load_arrays(data_dir, split, count=n, require_count=False,
                              skip_bad_records=skip_bad_records)["image"]


def set_up_runtime(config: config_lib.SimGANConfig, strategy: tf.distribute.Strategy) -> None:
    """Checks the batch splits over the replicas, sets op determinism and the seeds.

    Raises:
      ValueError: if the batch does not split into an even batch per replica.
    """
    batch_size, replicas = config.train.batch_size, strategy.num_replicas_in_sync
    if batch_size % (2 * replicas):
        raise ValueError(
            f"train.batch_size must split into an even batch per replica: {batch_size} "
            f"over {replicas} replicas. Use a multiple of {2 * replicas}. "
            f"Received: batch_size={batch_size}")
    if config.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    if not tf.config.list_logical_devices("GPU") and not runtime.onednn_enabled():
        logging.warning(
            "TensorFlow runs without its oneDNN CPU kernels (%s=%r, or TensorFlow was "
            "imported before simgan_tf): convolutions may run about 2x slower "
            "(docs/benchmarks.md).", runtime.ONEDNN_VARIABLE, os.environ.get(runtime.ONEDNN_VARIABLE))
    keras.utils.set_random_seed(config.train.seed)


def run_folders(model_dir: str, strategy: tf.distribute.Strategy) -> RunFolders:
    """Where this process writes: `model_dir` (chief) or its scratch folder (others)."""
    if distribute.is_chief(strategy):
        return RunFolders(model_dir, model_dir)
    return RunFolders(model_dir, distribute.worker_scratch_dir(model_dir, strategy))


def _absolute(path: str) -> str:
    """A local path made absolute; a URL (`gs://...`, `ram://...`) as it is."""
    return path if "://" in path else os.path.abspath(path)


def prepare_data(config: config_lib.SimGANConfig, cache_dir: str | None = None
                 ) -> tuple[config_lib.SimGANConfig, RunData]:
    """Resolves and validates the data folder of a run.

    Returns:
      The config with `data.data_dir` set (absolute) and the `RunData`.

    Raises:
      FileNotFoundError, ValueError, BadRecordError: naming the folder or file.
    """
    d = config.data
    data_dir = resolve_data_dir(config, cache_dir)
    config = config_lib.override(config, {"data.data_dir": _absolute(data_dir)})
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
    on_input_error = functools.partial(validation.raise_for_input_error, data_dir=data_dir,
                                       splits=splits, info=info)
    return config, RunData(data_dir, info, splits, unreadable, on_input_error)


def build_input(config: config_lib.SimGANConfig, data: RunData,
                strategy: tf.distribute.Strategy) -> RunInput:
    """The training dataset's iterator, and whether its position can be checkpointed.

    The position is saved with the model unless it cannot be: tf.data service iterators
    cannot be saved, and under multi-worker training the chief's checkpoint cannot hold
    the other workers' iterators; those replay their input pipeline up to the restored
    step instead (exact with `runtime.deterministic`).
    """
    t, d = config.train, config.data
    dataset = reader.training_dataset(
        data.data_dir, synthetic_split=d.synthetic_split, real_split=d.real_split,
        batch_size=t.batch_size, image_shape=config.image_shape, seed=t.seed,
        shuffle_buffer=d.shuffle_buffer, deterministic=config.runtime.deterministic,
        skip_bad_records=d.skip_bad_records)
    if d.data_service:
        dataset = reader.use_data_service(dataset, d.data_service, job_name=f"simgan-{t.seed}")
    multi_worker = distribute.in_multi_worker_mode(strategy)
    if multi_worker:  # shards the files across workers (auto-shard policy FILE)
        iterator = iter(strategy.experimental_distribute_dataset(dataset))
    else:  # a plain iterator can be checkpointed; each step splits its global batch
        iterator = iter(dataset)
    if d.data_service:
        logging.warning("The input position is not checkpointed (tf.data service): a "
                        "resumed run restarts its input pipeline from the seed.")
    return RunInput(iterator, position_saved=not d.data_service and not multi_worker,
                    replay_on_resume=multi_worker and not d.data_service)


def build_model(config: config_lib.SimGANConfig, strategy: tf.distribute.Strategy,
                task_network: keras.Model | None = None) -> SimGAN:
    """`build_simgan` in the strategy scope, under the run's precision policy."""
    with runtime.precision_policy(config.runtime.mixed_precision) as loss_scale:
        with strategy.scope():
            return build_simgan(config, loss_scale=loss_scale, task_network=task_network)


def restore_checkpoint(model: SimGAN, run_input: RunInput, config: config_lib.SimGANConfig,
                       folders: RunFolders) -> checkpointing.CheckpointPolicy:
    """Restores the run's latest intact checkpoint, if any, into `model` and the input.

    Returns:
      The `CheckpointPolicy` that writes the next checkpoints.
    """
    t = config.train
    checkpoint = make_checkpoint(model, run_input.iterator if run_input.position_saved
                                 else None)
    run_checkpoint = checkpointing.RunCheckpoint(
        checkpoint, os.path.join(folders.model_dir, CHECKPOINT_DIR),
        max_to_keep=t.keep_checkpoints, finite_check=model.trainable_variables,
        write_directory=None if folders.chief else os.path.join(folders.write_dir,
                                                                CHECKPOINT_DIR))
    restored = run_checkpoint.restore_latest()
    if restored:
        logging.info("Resumed from %s at step %d.", restored, model.step)
        if run_input.replay_on_resume:
            loop.fast_forward(run_input.iterator, model.step)
    return checkpointing.CheckpointPolicy(run_checkpoint, t.checkpoint_every)


def make_callbacks(config: config_lib.SimGANConfig, data: RunData,
                   folders: RunFolders) -> list[keras.callbacks.Callback]:
    """The run's callbacks: phase log, TensorBoard summaries, skipped-record counts.

    Every worker runs the same callbacks, since reading and resetting the metrics of a
    multi-worker run are collective operations; workers other than the chief write their
    summaries into their scratch folder, deleted at the end.
    """
    t, d = config.train, config.data
    log_dir = os.path.join(folders.write_dir, LOG_DIR)
    run_callbacks = [callbacks.PhaseLogger()]
    try:
        synthetic_samples = sample_images(data.data_dir, d.synthetic_split, NUM_SAMPLE_IMAGES,
                                          d.skip_bad_records)
        real_samples = sample_images(data.data_dir, d.real_split, 2 * NUM_SAMPLE_IMAGES,
                                     d.skip_bad_records)
    except tf.errors.OpError as error:
        data.on_input_error(error)
        raise
    run_callbacks.append(callbacks.SummaryCallback(
        log_dir, synthetic_samples=synthetic_samples, real_samples=real_samples,
        log_every=t.log_every, image_every=t.image_every,
        hparams=callbacks.flatten_hparams(config.to_json())))
    if d.skip_bad_records:
        run_callbacks.append(callbacks.SkippedRecordsSummary(
            log_dir, log_every=t.log_every, unreadable=data.unreadable))
    return run_callbacks


def export_and_clean_up(model: SimGAN, config: config_lib.SimGANConfig, data: RunData,
                        folders: RunFolders, *, export_refiner: bool) -> str | None:
    """Exports the refiner (if `export_refiner`); workers delete their scratch folder.

    The refiner exported is `model.inference_refiner`: the EMA refiner when
    `train.ema_decay` is on, else the trained refiner.

    Returns:
      The SavedModel folder on the chief, else `None`.
    """
    export_path = None
    if export_refiner:
        path = export.export_refiner(
            model.inference_refiner, os.path.join(folders.write_dir, EXPORT_DIR), model.step,
            config.image_shape, data_info=data.info, data_dir=config.data.data_dir,
            config=config.to_json())
        if folders.chief:  # every worker takes part in saving; only the chief's copy is kept
            logging.info("Exported the refiner to %s", path)
            export_path = path
    if not folders.chief:
        distribute.remove_worker_scratch_dir(folders.write_dir)
    return export_path


def train(config: config_lib.SimGANConfig, model_dir: str, *,
          strategy: tf.distribute.Strategy | None = None, cache_dir: str | None = None,
          verbose: int | str = "auto") -> TrainResult:
    """Trains (or resumes) a SimGAN run: the steps of the module docstring, in order.

    Before any long work the data folder is validated and, on resume, the config is
    checked against `config.json` (`run_config`). A NaN or infinite loss stops training
    with `NonFiniteLossError` before anything is written. SIGTERM or SIGINT (Ctrl-C) make
    the run save a checkpoint after the current step and return with `preempted=True`; a
    second SIGINT raises `KeyboardInterrupt` at once.

    Args:
      config: the run's config (validated here).
      model_dir: output folder (any `tf.io.gfile` path); a run resumes from its latest
        intact checkpoint.
      strategy: distribution strategy (default: the current one). Models, optimizers and
        the history buffer are created in its scope. Under `MultiWorkerMirroredStrategy`
        only the chief writes summaries, checkpoints, the config and the export, and
        holds the run lock.
      cache_dir: parent folder of the simulator data cache.
      verbose: Keras progress bar mode (0 silent, 1 bar, 2 one line per epoch).

    Returns:
      A `TrainResult`.

    Raises:
      RunLockedError: another running process holds `model_dir`'s run lock.
      ValueError: bad settings, or a resume that would change the run's meaning.
      RunWriteError: a checkpoint, summary, `config.json` or export could not be written
        (the previous checkpoint stays the latest).
    """
    config.validate()
    strategy = strategy or tf.distribute.get_strategy()
    set_up_runtime(config, strategy)
    folders = run_folders(model_dir, strategy)
    with writing(model_dir):
        tf.io.gfile.makedirs(model_dir)
    # The lock first: a second run on the folder fails at once, before any data work.
    lock = run_lock.RunLock(model_dir) if folders.chief else contextlib.nullcontext()
    with lock:
        config, data = prepare_data(config, cache_dir)
        run_config.write_config(config, model_dir, write=folders.chief,
                                checkpoint_dir=os.path.join(model_dir, CHECKPOINT_DIR))
        return _train_in(config, data, folders, strategy, verbose)


def _train_in(config: config_lib.SimGANConfig, data: RunData, folders: RunFolders,
              strategy: tf.distribute.Strategy, verbose: int | str) -> TrainResult:
    """`train` once the folder is this run's and `config.json` is written."""
    run_input = build_input(config, data, strategy)
    task_network = task_network_lib.prepare_task_network(
        config, data.data_dir, data.info, folders.model_dir, write=folders.chief,
        strategy=strategy)
    if task_network is not None:  # its training drew from the global seeds: reset them
        keras.utils.set_random_seed(config.train.seed)
    model = build_model(config, strategy, task_network)
    checkpoints = restore_checkpoint(model, run_input, config, folders)
    t, remaining = config.train, model.schedule.total_steps - model.step
    history, stop_signal, skipped = None, None, data.unreadable
    preempted = False
    if remaining > 0:
        logging.info(
            "Training %d updates (%d refiner pretraining, %d discriminator pretraining, "
            "%d iterations of %d refiner + %d discriminator updates); %d to go.",
            model.schedule.total_steps, t.pretrain_refiner_steps,
            t.pretrain_discriminator_steps, t.steps, t.k_g, t.k_d, remaining)
        run_callbacks = make_callbacks(config, data, folders)
        result = loop.run(model, run_input.iterator, remaining, run_callbacks,
                          checkpoints=checkpoints, on_input_error=data.on_input_error,
                          any_worker=distribute.make_stop_agreement(strategy),
                          verbose=verbose)
        history, preempted, stop_signal = result.history, result.preempted, result.stop_signal
        skipped = next((c.total for c in run_callbacks
                        if isinstance(c, callbacks.SkippedRecordsSummary)), skipped)
    else:
        logging.info("Nothing to train: %s is at step %d of %d.", folders.model_dir,
                     model.step, model.schedule.total_steps)
    export_path = export_and_clean_up(model, config, data, folders,
                                      export_refiner=t.export and not preempted)
    return TrainResult(model=model, config=config, step=model.step, export_path=export_path,
                       history=history, preempted=preempted, skipped_records=skipped,
                       stop_signal=stop_signal)
