"""Executes the notebooks top to bottom; any error in a cell fails the test."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")


def execute(name, cwd, monkeypatch, cache_dir):
    """Runs `notebooks/<name>` in a fresh kernel with `cwd` as working directory."""
    notebook = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
    # The kernel imports simgan_tf from this checkout and caches simulator data in tmp.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("SIMGAN_TF_CACHE", str(cache_dir))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return notebook


def outputs(notebook):
    """(text, number of PNG images) of all code cells' outputs."""
    text, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text.append(output["text"])
            elif "data" in output:
                text.append(output["data"].get("text/plain", ""))
                images += "image/png" in output["data"]
    return "".join(text), images


def check_inspect_run(notebook, cwd):
    text, images = outputs(notebook)
    total = 40 + 10 + 10 * 3
    assert f"runs/notebook_inspect: {total} updates" in text
    assert f"restored step {total}" in text
    assert f"training steps {total}" in text
    assert "export vs checkpoint: max |difference|" in text
    assert "refiner/regularization_loss:" in text
    assert images == 3  # the image grid, the probability maps, the loss curves
    assert os.path.isdir(os.path.join(cwd, "runs", "notebook_inspect", "export", "refiner",
                                      str(total)))


def check_evaluation(notebook, cwd):
    text, images = outputs(notebook)
    assert "trained on synthetic, refined; tested on 256 images of real_test" in text
    assert "trained on synthetic: mean" in text and "trained on refined: mean" in text
    markdown = [output["data"]["text/markdown"] for cell in notebook.cells
                for output in cell.get("outputs", []) if "text/markdown" in output.get("data", {})]
    assert len(markdown) == 1 and markdown[0].startswith("| training set | mean error |")
    assert len(markdown[0].splitlines()) == 4  # header, rule, synthetic and refined rows
    assert images == 1  # the curves
    results = os.path.join(cwd, "runs", "notebook_eval", "eval", "results.json")
    assert os.path.exists(results)
    assert os.path.exists(os.path.join(os.path.dirname(results), "curves.png"))


# What each notebook must show besides running without error (optional per notebook).
CHECKS = {"inspect_run.ipynb": check_inspect_run, "evaluation.ipynb": check_evaluation}
NOTEBOOKS = sorted(n for n in os.listdir(NOTEBOOK_DIR) if n.endswith(".ipynb"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    notebook = execute(name, tmp_path, monkeypatch, tmp_path / "cache")
    CHECKS.get(name, lambda notebook, cwd: None)(notebook, str(tmp_path))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_without_outputs(name):
    notebook = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (name, cell.source[:80])
