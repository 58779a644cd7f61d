"""The docs say what the code does: every flag they name exists (on the command it is
given to), the presets table holds the presets' values, and README's commands are the
ones CI runs."""

import ast
import functools
import glob
import os
import re

import pytest

from simgan_tf import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = sorted({*glob.glob(os.path.join(ROOT, "*.md")), *glob.glob(os.path.join(ROOT, "docs", "*.md")),
               *glob.glob(os.path.join(ROOT, "*", "README.md"))} - {
                   os.path.join(ROOT, "CHANGELOG.md")})
# Programs of ours -> the files whose flag definitions they parse.
PROGRAMS = {
    "train.py": ["simgan_tf_cli/train.py"], "simgan-train": ["simgan_tf_cli/train.py"],
    "refine.py": ["simgan_tf_cli/refine.py"], "simgan-refine": ["simgan_tf_cli/refine.py"],
    "evaluate.py": ["simgan_tf_cli/evaluate.py"],
    "simgan-evaluate": ["simgan_tf_cli/evaluate.py"],
    "refine_images.py": ["simgan_tf_cli/refine_images.py", "simgan_tf_cli/refine.py"],
    "simgan-refine-images": ["simgan_tf_cli/refine_images.py", "simgan_tf_cli/refine.py"],
    "turing_test.py": ["simgan_tf_cli/turing_test.py"],
    "simgan-turing-test": ["simgan_tf_cli/turing_test.py"],
}
SHARED = {"data_prep": "data_prep/common.py", "experiments": "experiments/common.py",
          "bench": "bench/common.py"}
ABSL = {"help", "helpfull", "helpshort", "helpxml", "flagfile", "undefok", "verbosity",
        "logtostderr", "alsologtostderr", "v"}
# Flags of other programs the docs show (pip, docker, tensorboard, saved_model_cli, curl,
# pytest, git, apt, jupyter, tf.data service).
OTHERS = {"rm", "mount", "logdir", "all", "dir", "no-deps", "no-build-isolation", "port",
          "tag_set", "signature_def", "quiet", "bind_all", "net", "name", "reload_interval",
          "durations", "maxfail", "execute", "to", "inplace", "output", "user", "upgrade",
          "model_base_path", "model_name", "rest_api_port", "env"}
COMMAND = re.compile(r"(?:python(?:3(?:\.\d+)?)?\s+(?:-m\s+)?|\b)((?:simgan-[a-z-]+)|"
                     r"(?:[a-z_]+\.py)|(?:(?:data_prep|experiments|bench)\.[a-z_]+))\b")
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*)")


def _defined_flags(path):
    tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
    names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr.startswith("DEFINE_") and node.args
                and isinstance(node.args[0], ast.Constant)):
            names.add(node.args[0].value)
    return names


def _program_flags(program):
    if program in PROGRAMS:
        files = PROGRAMS[program]
    else:
        package, module = program.split(".")
        files = [f"{package}/{module}.py", SHARED[package]]
    flags = set()
    for path in files:
        if os.path.exists(os.path.join(ROOT, path)):
            flags |= _defined_flags(path)
    return flags


@functools.lru_cache(maxsize=None)
def _all_flags():
    names = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("runs", "build")]
        for name in files:
            if name.endswith(".py"):
                names |= _defined_flags(os.path.relpath(os.path.join(folder, name), ROOT))
    return frozenset(names)


def _commands(text):
    """(program, flags) of each command line in `text`, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", text)
    for line in text.splitlines():
        for match in COMMAND.finditer(line):
            program = match.group(1)
            if program in PROGRAMS or program.split(".")[0] in SHARED:
                rest = line[match.end():]
                following = COMMAND.search(rest)  # `a.py ... && b.py ...`
                rest = rest[:following.start()] if following else rest
                yield program, FLAG.findall(rest.split("`")[0] if "`" in line else rest)


def _known(flag, names):
    return flag in names or (flag.startswith("no") and flag[2:] in names)


@pytest.mark.parametrize("doc", [os.path.relpath(d, ROOT) for d in DOCS])
def test_every_flag_a_command_is_given_exists_on_that_command(doc):
    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    wrong = []
    for program, flags in _commands(text):
        names = _program_flags(program) | ABSL
        if program.startswith("bench.") or program.startswith("experiments."):
            names = names | _all_flags()  # the drivers pass flags on to the entry points
        wrong += [f"{program} --{flag}" for flag in flags if not _known(flag, names)]
    assert not wrong, f"{doc}: flags the commands do not define: {sorted(set(wrong))}"


@pytest.mark.parametrize("doc", [os.path.relpath(d, ROOT) for d in DOCS])
def test_every_flag_the_docs_name_exists(doc):
    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    names = _all_flags() | ABSL | OTHERS
    unknown = sorted({f for f in FLAG.findall(text) if not _known(f, names)})
    assert not unknown, f"{doc} names flags no program defines: {unknown}"


def test_the_command_parser_sees_commands_and_their_flags():
    text = ("python train.py --dataset=gaze \\\n    --steps=3 && python -m data_prep.images "
            "--size=3x3\n`simgan-refine --saved_model=x`")
    assert list(_commands(text)) == [("train.py", ["dataset", "steps"]),
                                     ("data_prep.images", ["size"]),
                                     ("simgan-refine", ["saved_model"])]
    assert "k_d" in _program_flags("train.py") and "size" in _program_flags("data_prep.images")
    assert "output_dir" in _program_flags("data_prep.images")  # from data_prep/common.py


def test_the_presets_table_holds_the_presets_values():
    text = open(os.path.join(ROOT, "docs", "training.md"), encoding="utf-8").read()
    rows = {m.group(1): [c.strip() for c in m.group(2).split("|")]
            for m in re.finditer(r"^\| `(\w+)` \|(.*)\|$", text, re.M)}
    assert {"gaze", "gaze_demo", "hand", "hand_demo"} <= set(rows)
    for name in ("gaze", "gaze_demo", "hand", "hand_demo"):
        preset, row = config_lib.PRESETS[name], rows[name]
        t, r = preset.train, preset.refiner
        assert row[0] == "x".join(map(str, preset.image_shape))
        assert row[1] == f"{r.filters}, {r.kernel_size}, {r.num_blocks}"
        assert row[3] == str(t.batch_size)
        assert row[4] == f"{t.pretrain_refiner_steps} / {t.pretrain_discriminator_steps}"
        assert row[5] == f"{t.steps} ({t.k_g}, {t.k_d})"
        assert row[7] == str(t.history_size)
        layers = [f"{l.kind}{l.kernel_size}/{l.strides}" + (f" {l.filters}" if l.kind == "conv"
                                                           else "")
                  for l in preset.discriminator.layers]
        assert row[2] == ", ".join(layers)


def test_ci_runs_readmes_test_command_and_quick_start():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    for marker in ("<!-- test-command -->", "<!-- quick-start -->"):
        assert marker in readme and marker in ci
    quick = readme.split("<!-- quick-start -->")[1].split("```bash\n")[1].split("\n")[0]
    assert quick == "python train.py --dataset=gaze"
