import json

import pytest

from simgan_tf import config as config_lib


@pytest.mark.parametrize("name", sorted(config_lib.PRESETS))
def test_presets_validate_and_round_trip_through_json(name):
    preset = config_lib.get_preset(name).validate()
    restored = config_lib.SimGANConfig.from_json(json.loads(preset.to_json_string()))
    assert restored == preset


def test_paper_settings_in_presets():
    gaze, hand = config_lib.get_preset("gaze"), config_lib.get_preset("hand")
    assert (gaze.train.pretrain_refiner_steps, gaze.train.pretrain_discriminator_steps) == (1000, 200)
    assert (gaze.train.k_g, gaze.train.k_d, gaze.train.batch_size) == (2, 1, 512)
    assert gaze.image_shape == (35, 55, 1)
    assert (hand.train.pretrain_refiner_steps, hand.train.pretrain_discriminator_steps) == (500, 200)
    assert (hand.refiner.kernel_size, hand.refiner.num_blocks) == (7, 10)
    assert hand.image_shape == (224, 224, 1)
    assert config_lib.DEMO_PRESETS == {"gaze": "gaze_demo", "hand": "hand_demo"}
    assert config_lib.get_preset("hand_demo").data.simulator == "hand"
    assert config_lib.get_preset("gaze_demo").refiner == gaze.refiner


def test_override_dotted_paths():
    c = config_lib.override(config_lib.get_preset("gaze"),
                            {"train.steps": 7, "refiner_optimizer.learning_rate": 0.5})
    assert c.train.steps == 7 and c.refiner_optimizer.learning_rate == 0.5
    with pytest.raises(ValueError, match="Unknown config field 'train.nope'"):
        config_lib.override(c, {"train.nope": 1})
    with pytest.raises(ValueError, match="Unknown preset"):
        config_lib.get_preset("faces")


@pytest.mark.parametrize("path, value, message", [
    ("train.steps", -1, "steps must be >= 0. Received: -1"),
    ("train.batch_size", 7, "even number >= 2. Received: 7"),
    ("train.reg_weight", -0.1, "lambda.*Received: -0.1"),
    ("train.history_size", 3, r"at least half a batch \(256\). Received: 3"),
    ("train.k_g", 0, "k_g must be >= 1. Received: 0"),
    ("refiner_optimizer.learning_rate", 0.0, "learning_rate must be > 0"),
    ("refiner_optimizer.name", "rmsprop", "rmsprop"),
    ("strategy", "tpu", "'tpu'"),
])
def test_validate_says_what_was_received(path, value, message):
    with pytest.raises(ValueError, match=message):
        config_lib.override(config_lib.get_preset("gaze"), {path: value}).validate()
