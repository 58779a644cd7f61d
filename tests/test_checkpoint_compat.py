"""A checkpoint written by an earlier release of simgan-tf restores into today's model.

`testdata/checkpoint_v0/` holds a model-and-optimizers checkpoint (no input iterator) of
a tiny deterministic run (refiner of 8 filters and 1 block, history buffer of 8 images,
23 updates), written before the package was split into subpackages, with its config and
the refiner's weights as saved. Moving or renaming modules must not change checkpoint
keys: every saved value has to find its variable again.
"""

import json
import os

import numpy as np

from simgan_tf import config as config_lib
from simgan_tf.training import checkpointing, train_lib

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata",
                        "checkpoint_v0")
PREFIX = os.path.join(TESTDATA, "ckpt")
SAVED_STEP = 23


def _load_config():
    with open(os.path.join(TESTDATA, "config.json"), encoding="utf-8") as f:
        return config_lib.SimGANConfig.from_json(json.load(f)).validate()


def test_v0_checkpoint_restores_every_value_into_todays_model():
    model = train_lib.build_simgan(_load_config())
    checkpoint = train_lib.make_checkpoint(model)
    status = checkpoint.read(PREFIX)
    status.assert_consumed()  # every saved value matched a variable, and vice versa
    assert model.step == SAVED_STEP
    saved = np.load(os.path.join(TESTDATA, "refiner_weights.npz"))
    weights = [v.numpy() for v in model.refiner.weights]
    assert len(weights) == len(saved.files)
    for i, value in enumerate(weights):
        np.testing.assert_array_equal(value, saved[f"arr_{i}"])


def test_v0_checkpoint_keys_are_todays_keys(tmp_path):
    model = train_lib.build_simgan(_load_config())
    prefix = train_lib.make_checkpoint(model).write(str(tmp_path / "ckpt"))
    today = set(checkpointing.read_tensors(prefix))
    saved = set(checkpointing.read_tensors(PREFIX))
    assert today == saved
