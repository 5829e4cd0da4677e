"""notebooks/evaluation.ipynb runs from top to bottom on the real corpus, so it never rots."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "evaluation.ipynb"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_committed_notebook_has_no_outputs():
    """Committed clean: no corpus-derived output or stale numbers in git."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert nb.metadata.kernelspec.name == "python3"


@pytest.fixture
def python3_kernel() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        pytest.fail("no 'python3' Jupyter kernel: install ipykernel (the [test] extra) and run "
                    "`python -m ipykernel install --sys-prefix`")
    return "python3"


def outputs_of(nb) -> list:
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]


def test_the_evaluation_notebook_runs_and_shows_every_picture(spamassassin_index, python3_kernel, tmp_path,
                                                              monkeypatch):
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    # The kernel inherits our environment: unpack nothing, reuse the session's corpus.
    monkeypatch.setenv("SPAMLEARN_CORPUS_DIR", str(spamassassin_index.parents[2]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # IPC sockets in our temporary folder rather than TCP ports on the host.
    kernel = KernelManager(kernel_name=python3_kernel, transport="ipc", ip=str(tmp_path / "kernel"))
    client = NotebookClient(nb, km=kernel, timeout=600, kernel_name=python3_kernel,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    try:
        # Raises CellExecutionError, with the cell and its traceback, if a cell fails.
        # cleanup_kc: we own the kernel manager, so nbclient would leave the kernel running.
        client.execute(cleanup_kc=True)
    finally:
        if kernel.has_kernel and kernel.is_alive():
            kernel.shutdown_kernel(now=True)

    outputs = outputs_of(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    stderr = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert stderr == [], f"the notebook wrote to stderr (a warning?): {stderr}"

    pictures = [base64.b64decode(o.data["image/png"]) for o in outputs
                if o.output_type in ("display_data", "execute_result") and "image/png" in o.data]
    # ROC, score histogram, learning curve, clues, comparison ROC.
    assert len(pictures) == 5
    assert all(png[:8] == PNG_MAGIC and len(png) > 10_000 for png in pictures)

    tables = [o.data["text/markdown"] for o in outputs
              if o.output_type == "display_data" and "text/markdown" in o.data]
    figures, comparison = tables
    roca = float(re.search(r"\(1-ROCA\)%: area above the ROC curve \| ([0-9.]+) \|", figures).group(1))
    # A floor, not a benchmark: far worse means the pipeline behind the pictures broke.
    assert 0 < roca < 1.0
    rows = [line for line in comparison.splitlines()[2:] if line.startswith("|")]
    assert len(rows) == 9
    for model in ("ChiSquareNB (spamlearn)", "MultinomialNB", "ComplementNB", "MultinomialNB (alpha=0.01)"):
        assert sum(f"| {model} |" in row for row in rows) == 2, model
    assert sum(row.startswith("| plain word counts |") for row in rows) == 4
