"""Keep the punctuation that follows an inline formula on the formula's line.

A browser may break a line between an inline formula (MathJax renders it as an
inline block) and the comma, period or semicolon right after it, which then starts the
next line: "... $s = \\mathbb E[g_t]$. Show that" read ". Show that". Each inline math
node followed by text that starts with punctuation is wrapped, with that punctuation,
in a ``<span class="nowrap">`` (``white-space: nowrap`` in ``book.css``), and so is an
opening bracket right before one: "... [Pedregosa et al.] (" then "$J = 10$" on the next.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

PUNCTUATION = ".,;:!?)]}…’”"
OPENING = "([{‘“"


def glue_punctuation(document: nodes.Node) -> int:
    """Wrap each inline math node with the punctuation that touches it; return how many.

    The punctuation after it (``$x$,``) and an opening bracket or quote right before it
    (``($x$``), which would otherwise be left alone at the end of a line.
    """
    glued = 0
    for math in list(document.findall(nodes.math)):
        parent = math.parent
        if parent is None or "nowrap" in parent.get("classes", ()):
            continue
        index = parent.index(math)
        before = parent[index - 1] if index > 0 else None
        after = parent[index + 1] if index + 1 < len(parent) else None
        head = before.astext() if isinstance(before, nodes.Text) else ""
        tail = after.astext() if isinstance(after, nodes.Text) else ""
        lead = head[len(head.rstrip(OPENING)) :]
        trail = tail[: len(tail) - len(tail.lstrip(PUNCTUATION))]
        if not (lead or trail):
            continue
        # By position: a Text node is a str, so docutils' replace and remove, which look
        # a child up by equality, would take the first sibling with the same text.
        group = nodes.inline(classes=["nowrap"])
        parent[index] = group
        if lead:
            group += nodes.Text(lead)
        group += math
        if trail:
            group += nodes.Text(trail)
            if tail[len(trail) :]:
                parent[index + 1] = nodes.Text(tail[len(trail) :])
            else:
                del parent[index + 1]
        if lead:
            if head[: -len(lead)]:
                parent[index - 1] = nodes.Text(head[: -len(lead)])
            else:
                del parent[index - 1]
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
