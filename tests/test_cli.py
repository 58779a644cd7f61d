"""The entry points' shared behaviour: TensorFlow's start-up chatter filtered, nothing else."""

import os
import subprocess
import sys

import simgan_tf_cli as cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_DRIVER = "I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
CUINIT = "E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"


def test_known_chatter_is_dropped_and_anything_else_kept():
    lines = ["WARNING: All log messages before absl::InitializeLog() is called are written "
             "to STDERR\n", NO_DRIVER, CUINIT,
             "I0000 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n",
             "To enable the following instructions: AVX2 FMA, in other operations\n",
             "E0000 something.cc:1] a real problem\n"]
    assert cli.drop_chatter(lines) == ["E0000 something.cc:1] a real problem\n"]


def test_a_failing_cuinit_is_kept_where_there_is_a_cuda_driver():
    assert cli.drop_chatter([CUINIT]) == [CUINIT]
    assert cli.drop_chatter([NO_DRIVER, CUINIT]) == []


def test_tensorflow_starts_quietly_in_a_fresh_process():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("import logging, sys; import simgan_tf_cli as cli; cli.start_tensorflow_quietly(); "
            "print(logging.getLogger('tensorflow').level); "
            "sys.stderr.write('after start-up\\n')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "30"  # logging.WARNING
    for line in cli.STARTUP_CHATTER:
        assert line not in result.stderr
    assert result.stderr.endswith("after start-up\n")  # stderr works again afterwards
