import dataclasses
import json
import os
import typing

import pytest

from simgan_tf import config as config_lib

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")


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


def test_the_eye_presets_refine_with_grain_lighting_and_a_glint_at_the_pupil():
    # The paper's refiner plus the output layers that won on Table 2; hand keeps the
    # paper's, and flags set back to zero give the paper's refiner for eyes too.
    for name in ("gaze", "gaze_demo"):
        refiner = config_lib.get_preset(name).refiner
        assert (refiner.grain, refiner.lighting, refiner.glint, refiner.glint_placement) == (
            0.03, 0.05, 1.0, "pupil")
        assert (refiner.filters, refiner.kernel_size, refiner.num_blocks) == (64, 3, 4)
    assert config_lib.PAPER_REFINER == config_lib.RefinerConfig()
    assert config_lib.PAPER_REFINER.grain == config_lib.PAPER_REFINER.glint == 0
    for name in ("hand", "hand_demo"):
        hand = config_lib.get_preset(name).refiner
        assert hand.grain == hand.lighting == hand.glint == hand.highlights == 0
    overrides = config_lib.command_line_overrides(
        {"refiner_grain": 0.0, "refiner_lighting": 0.0, "refiner_glint": 0.0}, [])
    paper = config_lib.override(config_lib.get_preset("gaze"), overrides).refiner
    assert dataclasses.replace(paper, glint_placement="features") == config_lib.PAPER_REFINER


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
    ("strategy", "tpu", "runtime.strategy must be one of .*Received: 'tpu'"),
    ("runtime.strategy", "tpu", "Received: 'tpu'"),
])
def test_validate_says_what_was_received(path, value, message):
    with pytest.raises(ValueError, match=message):
        config_lib.override(config_lib.get_preset("gaze"), {path: value}).validate()


# --- Every field from the command line -------------------------------------------------

def leaf_fields(cls, prefix=""):
    """(dotted path, declared type) of every non-dataclass field below `cls`."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            yield from leaf_fields(hint, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", hint


def get_path(config, path):
    for part in path.split("."):
        config = getattr(config, part)
    return config


def other_value(hint, current):
    """A command-line string for a value unlike `current`, and the value it means."""
    if current is None:  # an optional field that is unset: set it
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return other_value(inner, inner(1))
    if isinstance(current, bool):
        return str(not current).lower(), not current
    if isinstance(current, int):
        return str(current + 3), current + 3
    if isinstance(current, float):
        if type(None) in typing.get_args(hint):
            return "null", None
        return repr(current * 2 + 1), current * 2 + 1
    if isinstance(current, str):
        return current + "_x", current + "_x"
    layers = [{"kind": "conv", "filters": 16, "kernel_size": 3, "strides": 2},
              {"kind": "conv", "filters": 2, "kernel_size": 1}]
    return json.dumps(layers), (config_lib.ConvSpec("conv", 16, 3, 2),
                                config_lib.ConvSpec("conv", 2, 1, 1))


ALL_FIELDS = list(leaf_fields(config_lib.SimGANConfig))


def test_every_field_is_reachable_and_aliases_name_fields():
    paths = [path for path, _ in ALL_FIELDS]
    assert len(paths) == 75 and "runtime.strategy" in paths and "data.simulator" in paths
    aliased = set()
    for target in config_lib.FLAG_ALIASES.values():
        aliased.update(target if isinstance(target, tuple) else (target,))
    assert aliased <= set(paths) and len(aliased) == 46  # the named flags reach 46 of 75


@pytest.mark.parametrize("path, hint", ALL_FIELDS, ids=[p for p, _ in ALL_FIELDS])
def test_every_field_can_be_set_from_the_command_line(path, hint):
    preset = config_lib.get_preset("gaze")
    text, expected = other_value(hint, get_path(preset, path))
    overrides = config_lib.parse_overrides([f"{path}={text}"])
    assert list(overrides) == [path]
    config = config_lib.override(preset, overrides)
    assert get_path(config, path) == expected
    assert type(get_path(config, path)) is type(expected)


@pytest.mark.parametrize("arg, path, value", [
    ("refiner.kernel_size=5", "refiner.kernel_size", 5),
    ("train.reg_weight=1e-2", "train.reg_weight", 0.01),
    ("train.reg_weight=1", "train.reg_weight", 1.0),
    ("train.export=False", "train.export", False),
    ("train.export=yes", "train.export", True),
    ("runtime.deterministic=1", "runtime.deterministic", True),
    ("data.data_dir=/data/a=b", "data.data_dir", "/data/a=b"),  # split at the first =
    ("data.data_dir=None", "data.data_dir", None),
    ("train.pretrain_learning_rate=null", "train.pretrain_learning_rate", None),
    ("train.pretrain_learning_rate=0.5", "train.pretrain_learning_rate", 0.5),
    ("refiner_optimizer.name=sgd", "refiner_optimizer.name", "sgd"),
    # The old paths of the runtime settings set the new ones.
    ("strategy=mirrored", "runtime.strategy", "mirrored"),
    ("train.deterministic=true", "runtime.deterministic", True),
    ("train.mixed_precision=true", "runtime.mixed_precision", True),
])
def test_parse_overrides_parses_by_field_type(arg, path, value):
    assert config_lib.parse_overrides([arg]) == {path: value}


@pytest.mark.parametrize("arg, message", [
    ("train.k_d=two", "Config field 'train.k_d' expects int. Received: 'train.k_d=two'"),
    ("train.k_d=2.5", "'train.k_d' expects int"),
    ("train.k_d=null", "'train.k_d' expects int"),  # not an optional field
    ("train.reg_weight=much", "'train.reg_weight' expects float. Received: "
                              "'train.reg_weight=much'"),
    ("train.export=maybe", "'train.export' expects bool \\(true or false\\). "
                           "Received: 'train.export=maybe'"),
    ("train.pretrain_learning_rate=fast", "expects float or null"),
    ("discriminator.layers=conv", "expects a JSON list of ConvSpec objects with keys "
                                  "kind, filters, kernel_size, strides"),
    ('discriminator.layers=[{"kind": "conv", "filters": 2.5, "kernel_size": 1}]',
     "2.5 is not int"),
    ('discriminator.layers=[{"kind": "conv", "filters": 2, "size": 1}]',
     "ConvSpec has no field \\['size'\\]"),
    ('discriminator.layers={"kind": "conv"}', "expects a JSON list"),
    ("train.nope=1", "Unknown config field 'train.nope': TrainConfig has .*'k_d'.*"
                     "Received: 'train.nope=1'"),
    ("trian.k_d=1", "Unknown config field 'trian.k_d': SimGANConfig has"),
    ("train.k_d.x=1", "'train.k_d' is int, not a section"),
    ("refiner=5", "'refiner' is a section \\(RefinerConfig\\): set one of its fields"),
    ("train.k_d", "PATH=VALUE, e.g. train.k_d=2. Received: 'train.k_d'"),
    ("=2", "PATH=VALUE"),
])
def test_parse_overrides_errors_name_path_value_and_type(arg, message):
    with pytest.raises(ValueError, match=message):
        config_lib.parse_overrides([arg])


def test_config_strings_apply_after_named_flags():
    values = {flag: None for flag in config_lib.FLAG_ALIASES}
    values.update(k_d=3, steps=5, optimizer="sgd")
    overrides = config_lib.command_line_overrides(
        values, ["train.k_d=2", "refiner.filters=4", "refiner.filters=6"])
    assert overrides == {"train.k_d": 2, "train.steps": 5, "refiner.filters": 6,
                         "refiner_optimizer.name": "sgd",
                         "discriminator_optimizer.name": "sgd"}


# --- Runtime settings and the old config.json layout -----------------------------------

def old_layout(config):
    """`config.to_json()` as written before the runtime settings were grouped."""
    data = config.to_json()
    runtime = data.pop("runtime")
    data["strategy"] = runtime["strategy"]
    data["train"].update(deterministic=runtime["deterministic"],
                         mixed_precision=runtime["mixed_precision"])
    return data


def test_runtime_settings_are_grouped_apart_from_the_schedule():
    config = config_lib.override(config_lib.get_preset("gaze_demo"), {
        "runtime.strategy": "mirrored", "runtime.deterministic": True,
        "runtime.mixed_precision": True})
    assert config.runtime == config_lib.RuntimeConfig("mirrored", True, True)
    data = config.to_json()
    assert data["runtime"] == {"strategy": "mirrored", "deterministic": True,
                               "mixed_precision": True}
    assert "deterministic" not in data["train"] and "mixed_precision" not in data["train"]
    assert "strategy" not in data
    # The schedule section no longer carries them, not even as a copy.
    assert not hasattr(config.train, "deterministic")
    assert not hasattr(config, "strategy")
    # The old paths still set the new fields.
    old = config_lib.override(config_lib.get_preset("gaze_demo"), {
        "strategy": "one_device", "train.deterministic": True,
        "train.mixed_precision": True})
    assert old.runtime == config_lib.RuntimeConfig("one_device", True, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.runtime.deterministic = False


def test_old_config_json_layout_loads():
    config = config_lib.override(config_lib.get_preset("hand_demo"), {
        "runtime.strategy": "one_device", "runtime.deterministic": True})
    data = old_layout(config)
    assert data["train"]["deterministic"] is True and data["strategy"] == "one_device"
    restored = config_lib.SimGANConfig.from_json(json.loads(json.dumps(data)))
    assert restored == config and restored.runtime.deterministic is True
    assert data["train"]["deterministic"] is True  # the caller's dict is not changed
    # A value at the new path wins over one at the old path.
    data["runtime"] = {"deterministic": False}
    assert config_lib.SimGANConfig.from_json(data).runtime.deterministic is False


def test_config_json_of_an_earlier_release_loads():
    with open(os.path.join(TESTDATA, "checkpoint_v0", "config.json"), encoding="utf-8") as f:
        data = json.load(f)
    assert "strategy" in data and "deterministic" in data["train"]  # the old layout
    config = config_lib.SimGANConfig.from_json(data).validate()
    assert config.runtime == config_lib.RuntimeConfig(
        data["strategy"], data["train"]["mixed_precision"], data["train"]["deterministic"])
    assert config.train.batch_size == data["train"]["batch_size"] == 8
    assert config_lib.SimGANConfig.from_json(config.to_json()) == config


# --- The demo preset rule --------------------------------------------------------------

def test_resolve_preset_runs_demos_without_a_data_folder(monkeypatch):
    name, note = config_lib.resolve_preset("gaze", None)
    assert name == "gaze_demo" and "dataset='gaze' without data_dir" in note
    name, note = config_lib.resolve_preset("hand", None)
    assert name == "hand_demo" and "'hand' simulator" in note
    assert config_lib.resolve_preset("gaze", "/data/eyes") == ("gaze", None)
    assert config_lib.resolve_preset("hand_demo", None) == ("hand_demo", None)
    assert config_lib.resolve_preset("gaze_demo", "/data/eyes") == ("gaze_demo", None)
    with pytest.raises(ValueError, match="Unknown preset.*Received: dataset='faces'"):
        config_lib.resolve_preset("faces", None)
    monkeypatch.setitem(config_lib.PRESETS, "faces", config_lib.get_preset("gaze"))
    with pytest.raises(ValueError, match="Received: dataset='faces', data_dir=None"):
        config_lib.resolve_preset("faces", None)
    assert config_lib.resolve_preset("faces", "/data/faces") == ("faces", None)
