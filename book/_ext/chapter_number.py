"""Number the book as chapter 6: sections 6.1 ... 6.5, figures 6.2.1, Lemma 6.2.1, (6.2.1).

Sphinx numbers a toctree from 1. The sections of this book are sections of the chapter
*6 More advanced optimization ideas*, so every section, figure, equation and proof
number of the numbered part gets the chapter number ``chapter_number`` (default 6) in
front. The numbers are assigned afresh on every build (``env-get-updated``); this
handler runs right after Sphinx's own assignment and prefixes them.
"""

from __future__ import annotations

from docutils import nodes


def _prefix(numbers: tuple[int, ...], chapter: int) -> tuple[int, ...]:
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
    for kinds in env.toc_fignumbers.values():
        for ids in kinds.values():
            for node_id, numbers in ids.items():
                ids[node_id] = _prefix(numbers, chapter)
    return []


def setup(app):
    app.add_config_value("chapter_number", 6, "env")
    app.connect("env-get-updated", _prefix_numbers, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
