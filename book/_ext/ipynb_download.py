"""Offer each executed chapter as an .ipynb download (no launch button needed).

sphinx-book-theme only adds the ``.ipynb`` entry to the download menu when a launch
provider is configured. This extension runs just before the theme's header buttons
(priority 400 < 501): it copies the executed notebook that MyST-NB wrote to
``_build/jupyter_execute`` into ``_sources`` and sets ``ipynb_source`` on the page.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def _add_ipynb_source(app, pagename, templatename, context, doctree) -> None:
    if not str(context.get("sourcename", "")).endswith((".md", ".md.txt")):
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app):
    app.connect("html-page-context", _add_ipynb_source, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
