"""The camera-effect ablation of the eye simulator (`experiments.camera_effects`)."""

import dataclasses
import os
import re

import numpy as np
import pytest

from experiments import camera_effects
from simgan_tf.data import builtin, reader, schema
from simgan_tf.simulators import eyes


@pytest.mark.parametrize("effect", sorted(camera_effects.EFFECTS))
def test_leaving_out_an_effect_changes_only_its_own_fields(effect):
    default = dataclasses.asdict(eyes.SimulatorConfig())
    changed = dataclasses.asdict(camera_effects.config_without(effect))
    differing = {name for name in default if default[name] != changed[name]}
    assert differing == set(camera_effects.EFFECTS[effect])


def test_effects_joined_by_plus_are_left_out_together():
    config = camera_effects.config_without("glint+illumination")
    assert config.glint_range == (0.0, 0.0) and config.illumination_strength == 0.0
    assert config.blur_sigma_range == eyes.SimulatorConfig().blur_sigma_range
    assert camera_effects.split_name("glint+illumination") == (
        "real_without_glint_and_illumination")


@pytest.mark.parametrize("effect", ["lens_flare", "glint+lens_flare"])
def test_an_unknown_effect_is_named_in_the_error(effect):
    with pytest.raises(ValueError, match=re.escape(f"'lens_flare' in '{effect}'")):
        camera_effects.config_without(effect)


def small_real_split(data_dir, count=6, seed=2):
    builtin.write_simulator_split(data_dir, "real", "real", count, seed)


def test_the_split_without_an_effect_has_the_real_splits_eyes_and_labels(tmp_path):
    data_dir = str(tmp_path)
    small_real_split(data_dir)
    split = camera_effects.render_without(data_dir, "noise", 6, seed=2)
    assert split == "real_without_noise"
    info = schema.read_dataset_info(data_dir)
    assert info.splits[split].count == 6 and info.splits[split].domain == "real"
    real = reader.load_arrays(data_dir, "real", ("image", schema.LABEL_GAZE))
    quiet = reader.load_arrays(data_dir, split, ("image", schema.LABEL_GAZE))
    np.testing.assert_array_equal(quiet[schema.LABEL_GAZE], real[schema.LABEL_GAZE])
    # The same eyes without sensor noise (images in [-1, 1]): the pixels differ by about
    # the noise's size, and neighbouring pixels differ by half as much as in the real ones.
    difference = np.abs(quiet["image"] - real["image"]).mean()
    assert 0.01 < difference < 0.06

    def roughness(images):
        return np.abs(np.diff(images, axis=2)).mean()

    assert roughness(quiet["image"]) < 0.6 * roughness(real["image"])


def test_a_finished_render_is_not_repeated(tmp_path):
    data_dir = str(tmp_path)
    small_real_split(data_dir)
    camera_effects.render_without(data_dir, "glint", 6, seed=2)
    folder = os.path.join(data_dir, "real_without_glint")
    before = {name: os.stat(os.path.join(folder, name)).st_mtime_ns
              for name in os.listdir(folder)}
    camera_effects.render_without(data_dir, "glint", 6, seed=2)
    after = {name: os.stat(os.path.join(folder, name)).st_mtime_ns
             for name in os.listdir(folder)}
    assert after == before


def test_the_table_gives_each_rows_rise_over_the_oracle_and_share_of_the_gap():
    table = camera_effects.format_table(
        [("real (the oracle)", 2.0, 0.5), ("real without glint", 3.0, 0.9),
         ("synthetic", 4.0, None)], oracle=2.0, synthetic=4.0)
    lines = table.splitlines()
    assert lines[2] == "| real (the oracle) | 2.00 | +0.00 | 0% | 50.0% |"
    assert lines[3] == "| real without glint | 3.00 | +1.00 | 50% | 90.0% |"
    assert lines[4] == "| synthetic | 4.00 | +2.00 | 100% | - |"
