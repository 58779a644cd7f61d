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


def _run_main(body, env=None):
    """Runs `cli.run_main` on a main with `body` in a fresh process."""
    code = ("import sys, atexit, simgan_tf_cli as cli\n"
            "atexit.register(lambda: print('finalized', flush=True))\n"
            f"def main(argv):\n{body}\n"
            "cli.run_main(main)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)


def test_run_main_ends_the_process_with_mains_status_and_flushed_output():
    result = _run_main("    sys.stdout.write('no newline')\n    sys.exit(3)")
    assert result.returncode == 3 and result.stdout == "no newline"  # no finalization
    result = _run_main("    print('done')")
    assert result.returncode == 0 and result.stdout == "done\n"
    result = _run_main("    sys.exit('bad input')")
    assert result.returncode == 1 and "bad input" in result.stderr
    result = _run_main("    raise KeyboardInterrupt")  # a second Ctrl-C: the usual way out
    assert result.returncode != 0 and "KeyboardInterrupt" in result.stderr


def test_run_main_exits_the_ordinary_way_in_a_cluster():
    env = dict(os.environ, TF_CONFIG='{"cluster": {"worker": ["localhost:1"]}, '
                                     '"task": {"type": "worker", "index": 0}}')
    result = _run_main("    print('done')", env=env)
    assert result.returncode == 0 and result.stdout == "done\nfinalized\n"
