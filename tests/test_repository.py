"""The repository stands alone: no file points outside it, the docs' links resolve, and
the benchmarks' PyTorch reference trains the networks of the simgan-tf preset."""

import ast
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".git", ".venv", "__pycache__", "runs", "build", "dist", ".ipynb_checkpoints",
             ".pytest_cache"}
TEXT = (".py", ".md", ".ipynb", ".txt", ".cfg", ".toml", ".json", ".cff", ".yml", ".yaml")
# Two ".." path parts in a row (from a file one folder deep, that leaves the repository),
# and relative paths written in text, resolved against the file's folder.
TWO_UP = re.compile(r"\"\.\.\",\s*\"\.\.\"|'\.\.',\s*'\.\.'")
RELATIVE = re.compile(r"(?<![\w./])((?:\.\./)+[\w.-]+)")
# Any whitespace, line breaks included, may separate the words of a mention.
MENTIONS = re.compile(r"\b(issues?|tickets?)\s*#?\d+|\btickets?\b|\bthe\s+issue\b"
                      r"|\bissue's\b", re.IGNORECASE)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _project_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            if name.endswith(TEXT) or folder.endswith(".ci"):
                path = os.path.join(folder, name)
                if os.path.relpath(path, ROOT).startswith(os.path.join("tests", "testdata")):
                    continue  # genuine third-party files, kept unchanged
                yield path


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def test_the_scan_sees_the_project():
    names = {os.path.relpath(p, ROOT) for p in _project_files()}
    assert {"README.md", "BUILD.md", "train.py", os.path.join(".ci", "run"),
            os.path.join("tests", "conftest.py"),
            os.path.join("bench", "train_speed.py")} <= names


def _points_outside(path, line):
    if TWO_UP.search(line):
        return True
    folder = os.path.dirname(path)
    return any(not os.path.normpath(os.path.join(folder, target)).startswith(ROOT + os.sep)
               for target in RELATIVE.findall(line))


def test_no_file_points_outside_the_repository():
    found = [f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}"
             for path in _project_files() if path != os.path.abspath(__file__)
             for number, line in enumerate(_read(path).splitlines(), 1)
             if _points_outside(path, line)]
    assert not found, "paths outside the repository:\n" + "\n".join(found)


def _mentions(text):
    """(line number, words) of each mention in `text`, also when a line break splits it."""
    return [(text.count("\n", 0, match.start()) + 1, " ".join(match.group().split()))
            for match in MENTIONS.finditer(text)]


def test_no_file_mentions_issues_or_tickets():
    found = [f"{os.path.relpath(path, ROOT)}:{number}: {words}"
             for path in _project_files() if path != os.path.abspath(__file__)
             for number, words in _mentions(_read(path))]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("text, expected", [
    ("The question was whether the\nsimulator was at fault.", []),
    ("Fixed in issue #12.", [(1, "issue #12")]),
    ("one line\nThe\nissue asked to find out.", [(2, "The issue")]),
    ("see the   issue's\nthread", [(1, "the issue")]),
    ("read an issue's\nthread", [(1, "issue's")]),
    ("as the ticket\nsays", [(1, "ticket")]),
    ("skin tissue and an issued\nlicence", []),
])
def test_the_mentions_check(text, expected):
    assert _mentions(text) == expected


def test_relative_links_of_the_docs_resolve_inside_the_repository():
    broken = []
    for path in _project_files():
        if not path.endswith(".md"):
            continue
        text = re.sub(r"```.*?```", "", _read(path), flags=re.DOTALL)  # code, not links
        text = re.sub(r"`[^`\n]*`", "", text)
        for target in LINK.findall(text):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
            if not resolved.startswith(ROOT + os.sep) or not os.path.exists(resolved):
                broken.append(f"{os.path.relpath(path, ROOT)}: {target}")
    assert not broken, "\n".join(broken)


HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
ANCHORED_LINK = re.compile(r"\]\(([^)#\s]*)#([^)\s]+)\)")


def _anchor(heading):
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()  # a link's text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path):
    text = re.sub(r"```.*?```", "", _read(path), flags=re.DOTALL)
    anchors, seen = set(), {}
    for heading in HEADING.findall(text):
        anchor = _anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.add(anchor if count == 0 else f"{anchor}-{count}")
    return anchors


def test_anchors_of_the_docs_links_name_a_heading():
    broken = []
    for path in _project_files():
        if not path.endswith(".md"):
            continue
        text = re.sub(r"```.*?```", "", _read(path), flags=re.DOTALL)
        text = re.sub(r"`[^`\n]*`", "", text)
        for target, anchor in ANCHORED_LINK.findall(text):
            if "://" in target:
                continue
            linked = os.path.normpath(os.path.join(os.path.dirname(path), target)) \
                if target else path
            if linked.endswith(".md") and os.path.exists(linked) \
                    and anchor not in _anchors(linked):
                broken.append(f"{os.path.relpath(path, ROOT)}: {target}#{anchor}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("heading, anchor", [
    ("Train on your data", "train-on-your-data"),
    ("`data_prep.nyu_hand` → `synthetic/`, `real/`, `real_test/`",
     "data_prepnyu_hand--synthetic-real-real_test"),
    ("See [the data](docs/data.md): v2.1", "see-the-data-v21"),
])
def test_the_anchor_of_a_heading(heading, anchor):
    assert _anchor(heading) == anchor


UP = ".."  # the fixtures below are built, so that this file names no outside path


@pytest.mark.parametrize("where, line, bad", [
    ("tests/x.py", f'SAMPLES = os.path.join(HERE, "{UP}", "{UP}", "elsewhere")', True),
    ("README.md", f"see {UP}/elsewhere/NOTES.md", True),
    ("docs/x.md", f"see [it]({UP}/data_prep/README.md)", False),
    ("docs/x.md", f"see {UP}/{UP}/elsewhere", True),
    ("tests/x.py", f'ROOT = os.path.join(HERE, "{UP}")', False),
])
def test_the_outside_check(where, line, bad):
    assert _points_outside(os.path.join(ROOT, where), line) == bad


def test_the_pytorch_reference_trains_the_networks_of_the_gaze_preset():
    """`bench/torch_simgan_step.py` needs torch (not installed here): its default networks
    are read from its source and compared with what `bench.train_speed` passes it."""
    from bench import train_speed

    source = ast.parse(_read(os.path.join(ROOT, "bench", "torch_simgan_step.py")))
    default = next(ast.literal_eval(node.value) for node in source.body
                   if isinstance(node, ast.Assign) and node.targets[0].id == "GAZE_SPEC")
    assert json.loads(train_speed.torch_spec("gaze")) == default
    hand = json.loads(train_speed.torch_spec("hand"))
    assert hand["image_shape"] == [224, 224, 1] and hand["discriminator"][0] == [
        "conv", 96, 7, 4]
    imports = {alias.name.split(".")[0] for node in ast.walk(source)
               if isinstance(node, (ast.Import, ast.ImportFrom))
               for alias in node.names} | {node.module.split(".")[0] for node in
                                          ast.walk(source) if isinstance(node, ast.ImportFrom)}
    assert "simgan_tf" not in imports and "tensorflow" not in imports


# BUILD.md's table: which parts of simgan_tf each part may import.
ALLOWED_IMPORTS = {
    "config": set(), "runtime": set(), "write_errors": set(),
    "distribute": {"config"},
    "simulators": set(),
    "data": {"simulators"},
    "modeling": {"config"},
    "serving": {"data", "write_errors"},
    "evaluation": {"data", "runtime"},
    "training": {"config", "runtime", "distribute", "write_errors", "data", "modeling",
                 "serving", "evaluation"},
}


def _imported_parts(path):
    tree = ast.parse(_read(path))
    parts = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "simgan_tf":
                names = [f"simgan_tf.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        parts |= {name.split(".")[1] for name in names
                  if name.startswith("simgan_tf.") and len(name.split(".")) > 1}
    return parts


def test_each_part_of_the_package_imports_only_what_build_md_allows():
    package = os.path.join(ROOT, "simgan_tf")
    wrong = []
    for folder, _, files in os.walk(package):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, package).split(os.sep)
            part = relative[0][:-3] if len(relative) == 1 else relative[0]
            if part == "__init__":
                continue  # the package root
            extra = _imported_parts(path) - ALLOWED_IMPORTS[part] - {part}
            wrong += [f"simgan_tf/{'/'.join(relative)} imports simgan_tf.{p}" for p in extra]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_module_of_the_library_reads_flags():
    """Flags belong to the entry points (`simgan_tf_cli`, `data_prep`, `bench`, ...)."""
    readers = []
    for folder, _, files in os.walk(os.path.join(ROOT, "simgan_tf")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                tree = ast.parse(_read(path))
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom) and node.module == "absl" and any(
                            alias.name == "flags" for alias in node.names):
                        readers.append(os.path.relpath(path, ROOT))
    assert not readers, readers
