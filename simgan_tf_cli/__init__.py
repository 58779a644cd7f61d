"""The command-line entry points: `simgan-train`, `simgan-refine`, `simgan-evaluate`,
`simgan-refine-images` and `simgan-turing-test` (console scripts of the package), and
`python train.py` etc. in a checkout, which call the same `run()`.

Each module parses its absl flags, turns them into the library's typed arguments and
calls one library function. They live in this package, beside `simgan_tf`, so that no
module of the library reads flags. Import one module per process: each defines its flags
at import.
"""

import json
import logging
import os
import sys
import tempfile

from absl import app, flags
from absl import logging as absl_logging

import simgan_tf  # noqa: F401  before TensorFlow: asks it for oneDNN (simgan_tf.runtime)


def list_flags_in_help(*module_names: str) -> None:
    """Makes `--help` list the flags these modules define.

    absl's `--help` lists the key flags of the program's main module (`sys.argv[0]`):
    `train.py` in a checkout, the `simgan-train` script when installed. The flags are
    defined here, in `simgan_tf_cli`, so they are declared key flags of that program.
    """
    for name in module_names:
        for flag in flags.FLAGS.get_key_flags_for_module(name):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


# TensorFlow's own start-up lines that say nothing about the run (printed by its C++
# runtime straight to the stderr file descriptor, which TF_CPP_MIN_LOG_LEVEL does not
# silence before its logging is initialised).
STARTUP_CHATTER = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "cudart_stub.cc",                      # no CUDA driver: "GPU will not be used"
    "cuda_platform.cc:52] failed call to cuInit",
    "cpu_feature_guard.cc",                # "optimized to use available CPU instructions"
    "To enable the following instructions:",
    "oneDNN custom operations are on",     # simgan_tf asks for them (runtime.py)
)


def start_tensorflow_quietly() -> None:
    """Imports TensorFlow and lists its devices with its start-up chatter filtered out.

    TensorFlow's Python logger is set to WARNING. What its C++ runtime writes to stderr
    meanwhile is captured and passed through `drop_chatter`, so only the known lines of
    `STARTUP_CHATTER` are dropped and nothing unexpected is hidden. With
    `TF_CPP_MIN_LOG_LEVEL` set by the user, the C++ output is left alone.
    """
    # TensorFlow's Python INFO lines (checkpoint sharding, SavedModel assets and
    # fingerprint) are about its internals; its warnings and errors still show.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        import tensorflow as tf  # noqa: F401
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"  # TensorFlow's INFO lines after start-up
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf
            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.write("".join(drop_chatter(lines)))
            sys.stderr.flush()


def drop_chatter(lines: list[str]) -> list[str]:
    """`lines` without those of `STARTUP_CHATTER`; a failing cuInit is kept on a machine
    that has a CUDA driver (no "Could not find cuda drivers" line), where it is news."""
    chatter = STARTUP_CHATTER
    if not any("Could not find cuda drivers" in line for line in lines):
        chatter = tuple(c for c in chatter if "cuInit" not in c)
    return [line for line in lines if not any(c in line for c in chatter)]


def run_main(main) -> None:
    """`absl.app.run(main)`, then ends the process at once with main's exit status.

    Python's finalization of a process that used TensorFlow (tearing down its modules
    and the C++ objects behind them) takes seconds (4-5 s on 2 loaded cores,
    `bench/startup.py`'s `exit`) and does nothing for the user: every file of a run is
    written and closed by then (checkpoints, the export, event files flushed at the end
    of training, the run lock released). So once `main` has returned or exited, the
    output streams and absl's log are flushed and the process ends with `os._exit`.
    Exceptions other than `SystemExit` (a second Ctrl-C's `KeyboardInterrupt`) and
    multi-worker runs (`TF_CONFIG` with a cluster, whose collectives shut down with the
    interpreter) exit the ordinary way.
    """
    try:
        app.run(main)
        code = 0
    except SystemExit as stop:
        code = stop.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): print it, status 1
        print(code, file=sys.stderr)
        code = 1
    if _in_cluster():
        sys.exit(code)
    absl_logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def _in_cluster() -> bool:
    """Whether `TF_CONFIG` names a cluster (multi-worker training)."""
    try:
        return bool(json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster"))
    except (ValueError, AttributeError):
        return False
