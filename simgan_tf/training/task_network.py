"""The frozen task network f of the task-consistency term (`train.task_weight > 0`).

psi of the paper's Eq. 4 may be any feature transform; with `train.task_weight` the run
adds ||f(R(x)) - f(x)||_1 to the refiner's loss (`losses.task_consistency_loss`), f a
network trained on the synthetic split's labels and then frozen. f is the task's
estimator of the evaluation (`evaluation.eval_lib`): the paper's gaze estimator on
`label/gaze`, the stacked hourglass on `label/joints_uvd`, chosen by the labels the
synthetic split carries, trained with the task's evaluation preset for
`train.task_steps` steps with seed `train.seed`; with `train.task_augment` (the
default) on synthetic images whose rendering style is randomised
(`style_augmentation`: blur, contrast, brightness, noise), so that f reads the label
from the image's content. A synthetic-only f is sensitive to style: the refiner is meant
to change the style, and an f that reads the style too would penalise exactly that.

Where f comes from, in order (`prepare_task_network`):
1. `<model_dir>/task_network.keras`: the run's own, saved when it was first made, so a
   resumed run uses the same f;
2. `train.task_network`: a Keras file trained elsewhere (e.g. another run's
   `task_network.keras`), copied into the run folder;
3. otherwise the run trains f on the synthetic split before anything else, in the
   strategy scope (every worker takes part, the chief saves it).

The file is written through a temporary name and a rename, so it is whole or absent.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import uuid

import keras
import tensorflow as tf
from absl import logging

from simgan_tf import config as config_lib
from simgan_tf.data import schema
from simgan_tf.evaluation import eval_lib
from simgan_tf.write_errors import writing

TASK_NETWORK_FILE = "task_network.keras"
_TASK_OF_LABEL = {schema.LABEL_GAZE: "gaze", schema.LABEL_JOINTS_UVD: "hand"}


def task_of(info: schema.DatasetInfo, data_dir: str, split: str) -> str:
    """The task (`gaze` or `hand`) whose labels `split` carries.

    Raises:
      ValueError: if the split has neither `label/gaze` nor `label/joints_uvd`, naming
        the folder, the split and the label fields it has.
    """
    fields = info.splits[split].label_fields if split in info.splits else {}
    for label, task in _TASK_OF_LABEL.items():
        if label in fields:
            return task
    raise ValueError(
        f"The task-consistency term (train.task_weight > 0) needs a task network trained "
        f"on the labels of the synthetic split, {data_dir}/{split}, which has none it "
        f"knows: label fields {sorted(fields)}. Expected one of {sorted(_TASK_OF_LABEL)}, "
        "or give a trained network with train.task_network.")


def style_augmentation(seed: int = 0) -> list[keras.layers.Layer]:
    """Random changes of rendering style, active while f trains: a Gaussian blur (5x5,
    sigma up to 1 pixel), contrast (factor in [0.6, 1.4]), brightness (offset up to 0.1
    of the range) and additive Gaussian noise (sigma 0.05), on images in [-1, 1]."""
    return [
        keras.layers.RandomGaussianBlur(factor=1.0, kernel_size=5, sigma=1.0,
                                        value_range=(-1, 1), seed=seed),
        keras.layers.RandomContrast(0.4, value_range=(-1, 1), seed=seed + 1),
        keras.layers.RandomBrightness(0.1, value_range=(-1, 1), seed=seed + 2),
        keras.layers.GaussianNoise(0.05, seed=seed + 3),
    ]


def task_eval_config(config: config_lib.SimGANConfig, task: str) -> eval_lib.EvalConfig:
    """How the run trains f: the task's evaluation preset with the run's steps and seed."""
    preset = eval_lib.PRESETS[eval_lib.preset_for(task, config.data.image_height)]
    return dataclasses.replace(preset, steps=config.train.task_steps, seed=config.train.seed)


def save(model: keras.Model, path: str) -> None:
    """Saves `model` as a `.keras` file at `path` (any `tf.io.gfile` path), atomically.

    Raises:
      RunWriteError: naming `path`, if it cannot be written.
    """
    folder = os.path.dirname(path)
    temporary = os.path.join(folder, f".tmp-{uuid.uuid4().hex[:8]}-{TASK_NETWORK_FILE}")
    with writing(path), tempfile.TemporaryDirectory() as local:
        local_file = os.path.join(local, TASK_NETWORK_FILE)
        model.save(local_file)
        try:
            tf.io.gfile.copy(local_file, temporary, overwrite=True)
            tf.io.gfile.rename(temporary, path, overwrite=True)
        finally:
            if tf.io.gfile.exists(temporary):
                tf.io.gfile.remove(temporary)


def load(path: str, image_shape: tuple[int, int, int]) -> keras.Model:
    """Loads a task network (any `tf.io.gfile` path), frozen; call in the strategy scope.

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: if it is not a Keras model file, or its input shape is not
        `image_shape`.
    """
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"No task network file. Received: task_network={path!r}")
    with tempfile.TemporaryDirectory() as local:
        local_file = os.path.join(local, TASK_NETWORK_FILE)
        tf.io.gfile.copy(path, local_file, overwrite=True)
        try:
            model = keras.models.load_model(local_file, compile=False)
        except Exception as error:  # Keras raises several types for a bad file
            raise ValueError(f"{path} is not a readable Keras model file (.keras): "
                             f"{type(error).__name__}: {error}") from None
    shape = tuple(model.input_shape[1:])
    if shape != tuple(image_shape):
        raise ValueError(f"The task network {path} takes images of shape {shape}; this run's "
                         f"images are {tuple(image_shape)}.")
    model.trainable = False
    return model


def features_function(model: keras.Model, output: str):
    """f as the task-consistency term reads it: the network's predictions (`output`) or
    the input of its last layer (`features`), called with `training=False`."""
    if output not in config_lib.TASK_OUTPUTS:
        raise ValueError(f"Expected output in {config_lib.TASK_OUTPUTS}. Received: {output!r}")
    if output == "features":
        model = keras.Model(model.inputs, model.layers[-1].input,
                            name=f"{model.name}_features")
        model.trainable = False

    def features(images):
        return model(images, training=False)
    return features


def prepare_task_network(config: config_lib.SimGANConfig, data_dir: str,
                         info: schema.DatasetInfo, model_dir: str, *, write: bool,
                         strategy: tf.distribute.Strategy):
    """f of the run's task-consistency term, frozen, or `None` when the term is off.

    Args:
      config: the run's config (`train.task_*`).
      data_dir: the run's data folder; f is trained on its synthetic split.
      info: its `dataset.json`.
      model_dir: the run folder, where `task_network.keras` is read or written.
      write: whether this process writes it (the chief).
      strategy: the run's strategy; f is built (and trained) in its scope.

    Returns:
      The frozen `keras.Model`, or `None`.

    Raises:
      ValueError: the synthetic split has no task labels, or a given network does not
        fit the images; FileNotFoundError: `train.task_network` does not exist;
      RunWriteError: the file could not be written.
    """
    t = config.train
    if t.task_weight <= 0:
        return None
    own = os.path.join(model_dir, TASK_NETWORK_FILE)
    if tf.io.gfile.exists(own):
        logging.info("Task-consistency term: the run's task network %s.", own)
        with strategy.scope():
            return load(own, config.image_shape)
    if t.task_network:
        logging.info("Task-consistency term: the task network %s, copied to %s.",
                     t.task_network, own)
        with strategy.scope():
            model = load(t.task_network, config.image_shape)
    else:
        split = config.data.synthetic_split
        task = task_of(info, data_dir, split)
        eval_config = task_eval_config(config, task)
        logging.info("Task-consistency term: training the %s estimator on %s/%s for %d "
                     "steps (batch %d%s), then freezing it.", task, data_dir, split,
                     eval_config.steps, eval_config.batch_size,
                     ", random rendering style" if t.task_augment else "")
        augmentation = (functools.partial(style_augmentation, t.seed) if t.task_augment
                        else None)
        model = eval_lib.train_estimator(eval_config, data_dir, split, strategy=strategy,
                                         augmentation=augmentation)
        model.trainable = False
    if write:
        save(model, own)
    return model
