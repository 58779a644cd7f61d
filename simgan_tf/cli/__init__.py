"""The command-line entry points: `simgan-train`, `simgan-refine`, `simgan-evaluate`,
`simgan-refine-images` and `simgan-turing-test` (console scripts of the package), and
`python train.py` etc. in a checkout, which call the same `run()`.

Each module parses its absl flags, turns them into the library's typed arguments and
calls one library function; the library itself never reads flags. Import one module per
process: each defines its flags at import.
"""

import sys

from absl import flags


def list_flags_in_help(*module_names: str) -> None:
    """Makes `--help` list the flags these modules define.

    absl's `--help` lists the key flags of the program's main module (`sys.argv[0]`):
    `train.py` in a checkout, the `simgan-train` script when installed. The flags are
    defined here, in `simgan_tf.cli`, so they are declared key flags of that program.
    """
    for name in module_names:
        for flag in flags.FLAGS.get_key_flags_for_module(name):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
