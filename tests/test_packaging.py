"""Packaging: the wheel holds the packages and console scripts only, one version
everywhere, and the commands work both installed and as `python train.py` in a checkout."""

import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

import simgan_tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {"simgan-train": "train", "simgan-refine": "refine",
            "simgan-evaluate": "evaluate", "simgan-refine-images": "refine_images",
            "simgan-turing-test": "turing_test"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from the checkout (no network: the venv's setuptools)."""
    out = str(tmp_path_factory.mktemp("wheel"))
    source = str(tmp_path_factory.mktemp("source"))  # setuptools builds in the source tree
    for name in ("setup.py", "README.md", "LICENSE", "simgan_tf", "simgan_tf_cli", "data_prep"):
        copy = shutil.copytree if os.path.isdir(os.path.join(ROOT, name)) else shutil.copy
        copy(os.path.join(ROOT, name), os.path.join(source, name))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation",
         "-w", out, "-q"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = glob.glob(os.path.join(out, "simgan_tf-*.whl"))
    return zipfile.ZipFile(path)


def _metadata(wheel, name):
    (path,) = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(path).decode()


def test_the_wheel_installs_packages_not_top_level_scripts(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert {"simgan_tf", "simgan_tf_cli", "data_prep"} <= tops
    assert not tops & {"train.py", "refine.py", "evaluate.py", "refine_images.py",
                       "turing_test.py", "tests", "bench", "experiments"}, tops
    assert "simgan_tf_cli/train.py" in wheel.namelist()


def test_one_version_and_the_pythons_tensorflow_supports(wheel):
    metadata = _metadata(wheel, "METADATA")
    assert re.search(rf"^Version: {re.escape(simgan_tf.__version__)}$", metadata, re.M)
    (requires,) = re.findall(r"^Requires-Python: (.*)$", metadata, re.M)
    assert set(requires.replace(" ", "").split(",")) == {">=3.10", "<3.14"}
    assert "License: Apache-2.0" in metadata or "License-Expression: Apache-2.0" in metadata
    assert "Provides-Extra: gpu" in metadata and "Provides-Extra: notebooks" in metadata
    assert "torch" not in metadata.lower()
    assert "# simgan-tf" not in metadata  # a paragraph, not the README
    with open(os.path.join(ROOT, "CITATION.cff"), encoding="utf-8") as f:
        assert f"version: {simgan_tf.__version__}" in f.read()
    with open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8") as f:
        assert f"## {simgan_tf.__version__}" in f.read()


def test_the_console_scripts_point_at_the_cli_modules(wheel):
    entry_points = _metadata(wheel, "entry_points.txt")
    for command, module in COMMANDS.items():
        assert f"{command} = simgan_tf_cli.{module}:run" in entry_points


@pytest.mark.parametrize("command, module", sorted(COMMANDS.items()))
def test_installed_command_and_checkout_script_list_the_same_flags(command, module):
    installed = shutil.which(command, path=os.path.dirname(sys.executable))
    assert installed, f"{command} is not installed next to {sys.executable}"
    helps = []
    for argv in ([installed, "--help"], [sys.executable, os.path.join(ROOT, f"{module}.py"),
                                        "--help"]):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert "Try --helpfull" in result.stdout, result.stderr[-2000:]  # absl exits 1
        helps.append(sorted(re.findall(r"^  --(?:\[no\])?(\w+)", result.stdout, re.M)))
    assert helps[0] == helps[1] and len(helps[0]) >= 3, helps
