"""Number the book as chapter 6: sections 6.1 ... 6.5, figures 6.2.1, Lemma 6.2.1, (6.2.1).

Sphinx numbers a toctree from 1. The sections of this book are sections of the chapter
*6 More advanced optimization ideas*, so every section, figure, equation and proof
number of the numbered part gets the chapter number ``chapter_number`` (default 6) in
front; the figures and tables of an unnumbered page (the appendix) get a letter instead,
"Fig. A.1". The numbers are assigned afresh on every build (``env-get-updated``); this
handler runs right after Sphinx's own assignment and prefixes them.
"""

from __future__ import annotations

from docutils import nodes
from toc_order import reading_order


def _prefix(numbers: tuple[int, ...], chapter: int | str) -> tuple[int | str, ...]:
    return (chapter, *numbers) if numbers else numbers


def _prefix_numbers(app, env) -> list[str]:
    chapter = app.config.chapter_number
    for docname, anchors in env.toc_secnumbers.items():
        for anchor, numbers in anchors.items():
            anchors[anchor] = _prefix(numbers, chapter)
        # the numbers the navigation shows live on the toc's reference nodes and the title
        for reference in env.tocs[docname].findall(nodes.reference):
            if reference.get("secnumber"):
                reference["secnumber"] = [chapter, *reference["secnumber"]]
        title = env.titles.get(docname)
        if title is not None and title.get("secnumber"):
            title["secnumber"] = [chapter, *title["secnumber"]]
    letters = _appendix_letters(env)
    for docname, kinds in env.toc_fignumbers.items():
        prefix = letters.get(docname, chapter)
        for ids in kinds.values():
            for node_id, numbers in ids.items():
                ids[node_id] = _prefix(numbers, prefix)
    return []


def _appendix_letters(env) -> dict[str, str]:
    """A, B, ... for the unnumbered documents that number figures or tables, in reading
    order: their "Fig. 1" becomes "Fig. A.1", never a "Fig. 6.1" that reads as section 6.1's."""
    numbered = {doc for doc, anchors in env.toc_secnumbers.items() if anchors}
    with_numbers = {doc for doc, kinds in env.toc_fignumbers.items() if any(kinds.values())}
    unnumbered = [d for d in reading_order(env) if d in with_numbers and d not in numbered]
    return {doc: chr(ord("A") + i) for i, doc in enumerate(unnumbered)}


def setup(app):
    app.add_config_value("chapter_number", 6, "env")
    app.connect("env-get-updated", _prefix_numbers, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
