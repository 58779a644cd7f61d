"""Training of a SimGAN run from a config: the library behind `train.py`.

`train(config, model_dir, strategy)` resolves the data, writes `config.json`, builds the
model in the strategy scope, restores the latest checkpoint of `model_dir` if there is one,
runs Algorithm 1 with `keras.Model.fit`, and exports the refiner.

Outputs in `model_dir`:
  config.json                    the resolved config (data folder filled in)
  checkpoints/ckpt-<step>        tf.train checkpoints (model, optimizers, buffer, step)
  logs/train/                    TensorBoard event files
  export/refiner/<step>/         the refiner SavedModel (TF Serving layout)
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from simgan_tf import builtin_data, callbacks, data, export, schema
from simgan_tf import config as config_lib
from simgan_tf.discriminator import build_discriminator
from simgan_tf.history import HistoryBuffer
from simgan_tf.model import SimGAN
from simgan_tf.refiner import build_refiner
from simgan_tf.schedule import Schedule

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
    """
    model: SimGAN
    config: config_lib.SimGANConfig
    step: int
    export_path: str | None
    history: object


def build_strategy(name: str) -> tf.distribute.Strategy:
    """Builds the distribution strategy named by `config.strategy`.

    `auto`: MirroredStrategy over all GPUs if there are several, else the default
    strategy; `one_device`: the first GPU or the CPU; `mirrored`: MirroredStrategy over
    the local devices (GPUs, else logical CPUs); `multi_worker`:
    MultiWorkerMirroredStrategy configured from `TF_CONFIG`.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Expected strategy in {config_lib.STRATEGIES}. Received: {name!r}")


def make_optimizer(config: config_lib.OptimizerConfig, learning_rate=None):
    """Builds a Keras optimizer from its config (`learning_rate` overrides the rate)."""
    rate = learning_rate if learning_rate is not None else config.learning_rate
    if config.name == "adam":
        return keras.optimizers.Adam(learning_rate=rate, beta_1=config.beta_1)
    if config.name == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=config.momentum)
    raise ValueError(f"Expected optimizer in {config_lib.OPTIMIZERS}. Received: {config.name!r}")


def build_simgan(config: config_lib.SimGANConfig) -> SimGAN:
    """Builds and compiles the SimGAN model. Call inside the strategy scope."""
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
    model.compile(
        refiner_optimizer=make_optimizer(config.refiner_optimizer, refiner_rate),
        discriminator_optimizer=make_optimizer(config.discriminator_optimizer))
    model(tf.zeros([1, *shape]))  # builds the wrapper model
    return model


def make_checkpoint(model: SimGAN) -> tf.train.Checkpoint:
    """The checkpoint of a run: networks, optimizers, history buffer, step counter."""
    return tf.train.Checkpoint(model=model, refiner_optimizer=model.refiner_optimizer,
                               discriminator_optimizer=model.discriminator_optimizer)


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
    where = builtin_data.simulator_data_dir(cache_dir or builtin_data.default_cache_dir(),
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
    return builtin_data.ensure_simulator_data(cache_dir, **counts)


def sample_images(data_dir: str, split: str, n: int) -> np.ndarray:
    """The first `n` images of a split (in file order), `[n, H, W, C]` in [-1, 1]."""
    dataset = data.read_split(data_dir, split).take(n).map(lambda e: e["image"])
    return np.stack(list(dataset.as_numpy_iterator()))


def write_config(config: config_lib.SimGANConfig, model_dir: str) -> str:
    """Writes `config.json`; refuses to resume a run whose networks differ."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = config_lib.SimGANConfig.from_json(json.load(f))
        for field in ("refiner", "discriminator", "data"):
            old, new = getattr(previous, field), getattr(config, field)
            if field == "data":
                old = dataclasses.replace(old, data_dir=None)
                new = dataclasses.replace(new, data_dir=None)
            if old != new:
                raise ValueError(
                    f"{path} was written for a different {field} config ({old}); this run "
                    f"asks for {new}. Use another --model_dir, or the same settings.")
    schema.write_json_atomic(path, config.to_json())
    return path


def train(config: config_lib.SimGANConfig, model_dir: str, *,
          strategy: tf.distribute.Strategy | None = None, cache_dir: str | None = None,
          verbose: int | str = "auto") -> TrainResult:
    """Trains (or resumes) a SimGAN run.

    Args:
      config: the run's config (validated here).
      model_dir: output folder; a run resumes from its latest checkpoint.
      strategy: distribution strategy (default: the current one). Models, optimizers and
        the history buffer are created in its scope.
      cache_dir: parent folder of the simulator data cache.
      verbose: Keras progress bar mode.

    Returns:
      A `TrainResult`.
    """
    config.validate()
    strategy = strategy or tf.distribute.get_strategy()
    t = config.train
    replicas = strategy.num_replicas_in_sync
    if t.batch_size % (2 * replicas):
        raise ValueError(
            f"train.batch_size must split into an even batch per replica: {t.batch_size} "
            f"over {replicas} replicas. Use a multiple of {2 * replicas}.")
    if t.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(t.seed)

    data_dir = resolve_data_dir(config, cache_dir)
    config = config_lib.override(config, {"data.data_dir": os.path.abspath(data_dir)})
    os.makedirs(model_dir, exist_ok=True)
    write_config(config, model_dir)

    dataset = data.training_dataset(
        data_dir, synthetic_split=config.data.synthetic_split,
        real_split=config.data.real_split, batch_size=t.batch_size,
        image_shape=config.image_shape, seed=t.seed,
        shuffle_buffer=config.data.shuffle_buffer, deterministic=t.deterministic)

    with strategy.scope():
        model = build_simgan(config)
        checkpoint = make_checkpoint(model)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(model_dir, CHECKPOINT_DIR), max_to_keep=t.keep_checkpoints,
        step_counter=model.step_counter)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("Resumed from %s at step %d.", manager.latest_checkpoint, model.step)

    total = model.schedule.total_steps
    remaining = total - model.step
    history = None
    if remaining > 0:
        logging.info(
            "Training %d updates (%d refiner pretraining, %d discriminator pretraining, "
            "%d iterations of %d refiner + %d discriminator updates); %d to go.",
            total, t.pretrain_refiner_steps, t.pretrain_discriminator_steps, t.steps, t.k_g,
            t.k_d, remaining)
        run_callbacks = [
            callbacks.PhaseLogger(),
            callbacks.SummaryCallback(
                os.path.join(model_dir, LOG_DIR),
                synthetic_samples=sample_images(data_dir, config.data.synthetic_split,
                                                NUM_SAMPLE_IMAGES),
                real_samples=sample_images(data_dir, config.data.real_split, 2 * NUM_SAMPLE_IMAGES),
                log_every=t.log_every, image_every=t.image_every,
                hparams=callbacks.flatten_hparams(config.to_json())),
            callbacks.CheckpointCallback(manager, t.checkpoint_every),
        ]
        history = model.fit(dataset, epochs=1, steps_per_epoch=remaining, shuffle=False,
                            callbacks=run_callbacks, verbose=verbose)
    else:
        logging.info("Nothing to train: %s is at step %d of %d.", model_dir, model.step, total)

    export_path = None
    if t.export:
        export_path = export.export_refiner(
            model.refiner, os.path.join(model_dir, EXPORT_DIR), model.step, config.image_shape,
            data_info=schema.read_dataset_info(data_dir), data_dir=config.data.data_dir,
            config=config.to_json())
        logging.info("Exported the refiner to %s", export_path)
    return TrainResult(model=model, config=config, step=model.step, export_path=export_path,
                       history=history)
