"""Let ``pytest`` run every MyST chapter notebook (``book/*.md``) through nbmake.

nbmake only collects ``*.ipynb``. This hook converts each MyST notebook (a ``.md`` file
whose front matter has a ``kernelspec``) with jupytext into a temporary ``.ipynb`` and
runs it with nbmake's own ``NotebookItem``, so ``--nbmake-timeout``, ``-n`` (xdist) and
nbmake's failure report behave as usual. The test is named after the ``.md`` file, so
a failing assertion names the chapter. Notebooks run in a temporary folder: they must
not read files by relative path.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


def is_myst_notebook(path: Path) -> bool:
    """True for a Markdown file with jupytext front matter that names a kernel."""
    if path.suffix != ".md" or "_build" in path.parts:
        return False
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return False
    front_matter = text.split("---", 2)[1]
    return "kernelspec:" in front_matter


class MystNotebookFile(pytest.File):
    def collect(self):
        import jupytext
        import nbformat
        from nbmake.pytest_items import NotebookItem

        notebook = jupytext.read(self.path)
        folder = Path(tempfile.mkdtemp(prefix="nbmake-"))
        target = folder / f"{self.path.stem}.ipynb"
        nbformat.write(notebook, target)
        yield NotebookItem.from_parent(self, filename=str(target))


def pytest_collect_file(file_path: Path, parent):
    if is_myst_notebook(file_path):
        return MystNotebookFile.from_parent(parent, path=file_path)
    return None
