"""docs/notebooks/tour.ipynb runs end to end on a demo cluster and shows tables and the timeline."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("pandas")

DOCS = Path(__file__).resolve().parent.parent / "docs"
NOTEBOOK = DOCS / "notebooks" / "tour.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tour, executed in a temporary copy with the python3 kernel."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:  # pragma: no cover - a broken environment, said plainly
        pytest.fail("no python3 kernel: pip install ipykernel (or python -m ipykernel install --user)")
    work = tmp_path_factory.mktemp("nb")
    copy = work / "tour.ipynb"
    shutil.copy(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(work)}})
    client.execute()
    nbformat.write(nb, copy)
    return nb


def _outputs(nb: Any) -> list[dict[str, Any]]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def test_committed_without_outputs() -> None:
    """The committed notebook is clean: no outputs or execution counts to go stale."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == []
            assert cell.execution_count is None


def test_runs_without_errors(executed: Any) -> None:
    """Every cell ran, and none raised."""
    errors = [o for o in _outputs(executed) if o["output_type"] == "error"]
    assert errors == []
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)


def test_shows_kubepki_tables_and_the_timeline(executed: Any) -> None:
    """The outputs hold kubepki's HTML tables (inventory, plans, results) and the timeline PNG."""
    html = [o["data"]["text/html"] for o in _outputs(executed) if "text/html" in o.get("data", {})]
    assert sum('class="kubepki"' in h for h in html) >= 3  # inventories, verify report, restore plan
    assert any("Renewal plan" in h and "<table" in h for h in html)
    assert any("Renewal of" in h and "<table" in h for h in html)
    assert any('class="dataframe"' in h for h in html)  # to_dataframe()
    pngs = [o["data"]["image/png"] for o in _outputs(executed) if "image/png" in o.get("data", {})]
    assert len(pngs) == 1
    assert len(pngs[0]) > 20_000


def test_html_export_shows_them(executed: Any) -> None:
    """Converted to HTML (as a reader sees it), the page has the tables and the picture."""
    nbconvert = pytest.importorskip("nbconvert")
    body, _ = nbconvert.HTMLExporter().from_notebook_node(executed)
    assert body.count('<table class="kubepki"') >= 3
    assert re.search(r'<img[^>]+src="data:image/png;base64,', body)


def test_docs_page_shows_every_code_cell() -> None:
    """docs/notebook.md repeats the notebook's code cells, in order, so the page cannot drift."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c.source.strip() for c in nb.cells if c.cell_type == "code"]
    page = (DOCS / "notebook.md").read_text(encoding="utf-8").split("## The tour notebook", 1)[1]
    blocks = [b.strip() for b in re.findall(r"```python\n(.*?)```", page, re.S)]
    assert blocks == cells
