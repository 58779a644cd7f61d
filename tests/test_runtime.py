"""oneDNN by default, the same numbers with and without it, and bfloat16 detection."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from simgan_tf import runtime
from simgan_tf.training import train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs Algorithm 1 from a fixed initialization on fixed data: one refiner pretraining
# update, one discriminator pretraining update, then two refiner and one discriminator
# update; saves the refiner's output and the weights before training, and the weights
# after. SGD, so that the weights move by the gradients themselves (Adam divides by the
# gradients' magnitude and amplifies rounding differences of near-zero gradients).
_UPDATES = """
import json, sys
import simgan_tf
import numpy as np, keras, tensorflow as tf
from simgan_tf import config as config_lib, runtime
from simgan_tf.training import train_lib
out = sys.argv[1]
keras.utils.set_random_seed(0)
config = config_lib.override(config_lib.get_preset("gaze"), {
    "refiner.grain": 0.0, "refiner.lighting": 0.0, "refiner.glint": 0.0,  # the paper's
    "train.batch_size": 8, "train.pretrain_refiner_steps": 1,
    "train.pretrain_discriminator_steps": 1, "train.steps": 1, "train.history_size": 16,
    "train.pretrain_learning_rate": None,
    "refiner_optimizer": config_lib.OptimizerConfig(name="sgd", learning_rate=0.01),
    "discriminator_optimizer": config_lib.OptimizerConfig(name="sgd", learning_rate=0.01)})
model = train_lib.build_simgan(config)
rng = np.random.default_rng(0)
batch = {k: rng.uniform(-1, 1, (8, 35, 55, 1)).astype("float32") for k in ("synthetic", "real")}
before = model.refiner(batch["synthetic"]).numpy()
initial = {f"initial_{i}": v.numpy() for i, v in enumerate(model.trainable_variables)}
iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
train_function = model.make_train_function()
for _ in range(model.schedule.total_steps):
    train_function(iterator)
final = {f"final_{i}": v.numpy() for i, v in enumerate(model.trainable_variables)}
np.savez(out, before=before, **initial, **final)
print(json.dumps({"onednn": runtime.onednn_enabled(), "step": model.step,
                  "variable": __import__("os").environ.get("TF_ENABLE_ONEDNN_OPTS")}))
"""


def _run(code, *args, onednn=None):
    env = {k: v for k, v in os.environ.items() if k != runtime.ONEDNN_VARIABLE}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if onednn is not None:
        env[runtime.ONEDNN_VARIABLE] = onednn
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setting, expected", [(None, True), ("1", True), ("0", False)])
def test_importing_simgan_tf_first_turns_onednn_on_unless_the_user_chose(setting, expected):
    code = ("import json, os, simgan_tf; from simgan_tf import runtime; "
            "print(json.dumps({'onednn': runtime.onednn_enabled(), "
            "'variable': os.environ.get('TF_ENABLE_ONEDNN_OPTS')}))")
    report = _run(code, onednn=setting)
    assert report == {"onednn": expected, "variable": setting or "1"}


def test_request_after_tensorflow_was_imported_says_it_is_too_late(monkeypatch):
    import tensorflow  # noqa: F401  (already imported by conftest, as in a user's script)

    monkeypatch.delenv(runtime.ONEDNN_VARIABLE, raising=False)
    assert runtime.request_onednn() is False
    assert os.environ[runtime.ONEDNN_VARIABLE] == "1"
    monkeypatch.setenv(runtime.ONEDNN_VARIABLE, "0")
    assert runtime.request_onednn() is False
    assert os.environ[runtime.ONEDNN_VARIABLE] == "0"


def test_onednn_and_eigen_train_to_the_same_weights(tmp_path):
    fast, plain = tmp_path / "onednn.npz", tmp_path / "eigen.npz"
    report_fast = _run(_UPDATES, str(fast), onednn="1")
    report_plain = _run(_UPDATES, str(plain), onednn="0")
    assert report_fast["onednn"] is True and report_plain["onednn"] is False
    assert report_fast["step"] == report_plain["step"] == 1 + 1 + 3
    with np.load(fast) as a, np.load(plain) as b:
        assert sorted(a.files) == sorted(b.files) and len(a.files) > 20
        # Same initialization, so the same function before training, up to summation order.
        np.testing.assert_allclose(a["before"], b["before"], atol=1e-5)
        finals = [name for name in a.files if name.startswith("final_")]
        moved = differ = 0.0
        for name in finals:
            initial = a[name.replace("final_", "initial_")]
            np.testing.assert_array_equal(initial, b[name.replace("final_", "initial_")])
            np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)
            moved = max(moved, float(np.abs(a[name] - initial).max()))
            differ = max(differ, float(np.abs(a[name] - b[name]).max()))
        # Training moved the weights far more than the two kernel sets disagree.
        assert moved > 1000 * differ, (moved, differ)


def test_cpu_flags_and_bfloat16_detection(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\n"
                       "flags\t\t: fpu sse avx2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")
    flags = runtime.cpu_flags(str(cpuinfo))
    assert flags == frozenset({"fpu", "sse", "avx2", "avx512f", "avx512_bf16"})
    assert runtime.bfloat16_native(flags)
    assert runtime.bfloat16_native(frozenset({"amx_bf16", "avx2"}))
    assert not runtime.bfloat16_native(frozenset({"avx512f", "avx512bw"}))
    assert runtime.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_mixed_precision_warns_where_bfloat16_is_emulated(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "bfloat16_native", lambda flags=None: False)
    with caplog.at_level("WARNING"):
        with runtime.precision_policy(True):
            pass
    assert "no native bfloat16" in caplog.text
    caplog.clear()
    monkeypatch.setattr(runtime, "bfloat16_native", lambda flags=None: True)
    with caplog.at_level("WARNING"):
        with runtime.precision_policy(True):
            pass
    assert "no native bfloat16" not in caplog.text
