"""Let ``pytest`` run every MyST chapter notebook (``book/*.md``) through nbmake.

nbmake only collects ``*.ipynb``. This hook converts each MyST notebook (a ``.md`` file
whose front matter has a ``kernelspec``) with jupytext into a temporary ``.ipynb`` and
runs it with nbmake's own ``NotebookItem``, so ``--nbmake-timeout``, ``-n`` (xdist) and
nbmake's failure report behave as usual. The test is named after the ``.md`` file, so
a failing assertion names the chapter. Notebooks run in a temporary folder: they must
not read files by relative path.

A chapter that the book's build has just executed is not run a second time: when
``_build/jupyter_execute/book/<chapter>.ipynb`` holds exactly the chapter's code cells,
has no error output, and is newer than the chapter and than every file of ``companion``,
every assert in it has already passed in that build, and the test is skipped with that
reason. ``COMPANION_RUN_NOTEBOOKS=1`` runs them anyway.

The book's Sphinx extensions (``book/_ext``) import their helper module ``toc_order`` as
a top-level module, as Sphinx's ``local_extensions`` lets them; the folder is put on
``sys.path`` here too, so that pytest's doctest collection imports them the same way.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

_EXTENSIONS = str(Path(__file__).resolve().parent / "_ext")
if _EXTENSIONS not in sys.path:
    sys.path.insert(0, _EXTENSIONS)


def is_myst_notebook(path: Path) -> bool:
    """True for a Markdown file with jupytext front matter that names a kernel."""
    if path.suffix != ".md" or "_build" in path.parts:
        return False
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return False
    front_matter = text.split("---", 2)[1]
    return "kernelspec:" in front_matter


ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "_build" / "jupyter_execute" / "book"


def _code(notebook) -> list[str]:
    return [c.source.strip() for c in notebook.cells if c.cell_type == "code"]


def executed_by_the_build(path: Path, notebook) -> Path | None:
    """The build's executed copy of ``path`` if it proves the chapter ran cleanly, else None."""
    import nbformat

    executed = EXECUTED / f"{path.stem}.ipynb"
    if os.environ.get("COMPANION_RUN_NOTEBOOKS") or not executed.is_file():
        return None
    built = executed.stat().st_mtime
    sources = [path, *(ROOT / "companion").rglob("*.py")]
    if any(source.stat().st_mtime > built for source in sources):
        return None
    ran = nbformat.read(executed, as_version=4)
    errors = [
        o
        for c in ran.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    return executed if not errors and _code(ran) == _code(notebook) else None


class MystNotebookFile(pytest.File):
    def collect(self):
        import jupytext
        import nbformat
        from nbmake.pytest_items import NotebookItem

        notebook = jupytext.read(self.path)
        executed = executed_by_the_build(self.path, notebook)
        if executed is not None:
            pytest.skip(f"executed without error by the book's build: {executed}")
        folder = Path(tempfile.mkdtemp(prefix="nbmake-"))
        target = folder / f"{self.path.stem}.ipynb"
        nbformat.write(notebook, target)
        yield NotebookItem.from_parent(self, filename=str(target))


def pytest_collect_file(file_path: Path, parent):
    if is_myst_notebook(file_path):
        return MystNotebookFile.from_parent(parent, path=file_path)
    return None
