"""Execute notebooks/train.ipynb then notebooks/run_model.ipynb top to bottom (small settings)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ORDER = ["train.ipynb", "run_model.ipynb"]  # run_model uses the run that train makes


def test_notebooks_are_committed_without_outputs():
    for name in ORDER:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{name}: strip outputs before committing"


def test_notebooks_run_top_to_bottom(tmp_path, monkeypatch):
    src = str(Path(__file__).resolve().parents[1] / "src")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("HAPPYSAD_NB_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("HAPPYSAD_NB_N", "60")
    monkeypatch.setenv("HAPPYSAD_NB_EPOCHS", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("HAPPYSAD_MODEL", raising=False)
    for name in ORDER:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{name}: {errors}"
    assert list((tmp_path / "work" / "runs" / "train").glob("*/model.onnx")), "train.ipynb exports ONNX"
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "labels agree with Keras: True" in text
