"""Keep the punctuation that follows an inline formula on the formula's line.

A browser may break a line between an inline formula (MathJax renders it as an
inline block) and the comma, period or semicolon right after it, which then starts the
next line: "... $s = \\mathbb E[g_t]$. Show that" read ". Show that". Each inline math
node followed by text that starts with punctuation is wrapped, with that punctuation,
in a ``<span class="nowrap">`` (``white-space: nowrap`` in ``book.css``).
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

PUNCTUATION = ".,;:!?)]}…’”"


def glue_punctuation(document: nodes.Node) -> int:
    """Wrap each inline math node and the punctuation after it; return how many."""
    glued = 0
    for math in list(document.findall(nodes.math)):
        parent = math.parent
        if parent is None or "nowrap" in parent.get("classes", ()):
            continue
        index = parent.index(math)
        following = parent[index + 1] if index + 1 < len(parent) else None
        if not isinstance(following, nodes.Text):
            continue
        text = following.astext()
        marks = len(text) - len(text.lstrip(PUNCTUATION))
        if marks == 0:
            continue
        group = nodes.inline(classes=["nowrap"])
        parent.replace(math, group)
        group += math
        group += nodes.Text(text[:marks])
        if text[marks:]:
            parent.replace(following, nodes.Text(text[marks:]))
        else:
            parent.remove(following)
        glued += 1
    return glued


class GlueMathPunctuation(SphinxPostTransform):
    """HTML only: other builders have no line breaking to correct."""

    default_priority = 900
    formats = ("html",)

    def run(self, **kwargs) -> None:
        glue_punctuation(self.document)


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_post_transform(GlueMathPunctuation)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
