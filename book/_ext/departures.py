"""Collect the folded "Departure from the draft" notes into one appendix page.

A note is an admonition with the class ``departure`` and a label (``(departure-63-x)=``
right before it). The ``departures`` directive, on the appendix page, becomes a list of
every note in reading order: the section it sits in, its first sentence, and a link.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective
from toc_order import reading_order


class departure_list(nodes.General, nodes.Element):
    """Placeholder, replaced by the list once every page has been read."""


class DeparturesDirective(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        return [departure_list()]


# A sentence ends at . ! or ? before a space or the end, but not in "et al." "e.g." "i.e."
_SENTENCE_END = re.compile(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)[.!?](?=\s|$)")


def first_sentence(note: nodes.Element) -> list[nodes.Node]:
    """The note's first sentence: copies of its first paragraph's nodes up to the first
    sentence end, math and cross-references included (they are rendered, and resolved,
    on the listing's page)."""
    paragraph = next(iter(note.findall(nodes.paragraph)), None)
    if paragraph is None:
        return [nodes.Text(note.astext())]
    out: list[nodes.Node] = []
    for child in paragraph.children:
        if isinstance(child, nodes.Text):
            end = _SENTENCE_END.search(child.astext())
            if end:
                out.append(nodes.Text(child.astext()[: end.end()]))
                return out
            out.append(nodes.Text(child.astext()))
        else:
            out.append(child.deepcopy())
    return out


def _collect(app: Sphinx, doctree: nodes.document) -> None:
    notes = app.env.departure_notes = getattr(app.env, "departure_notes", {})
    found = []
    for node in doctree.findall(nodes.Element):
        if "departure" not in node.get("classes", ()) or not node.get("ids"):
            continue
        labels = [i for i in node["ids"] if i.startswith("departure-")]
        parent = node.parent
        while parent is not None and not isinstance(parent, nodes.section):
            parent = parent.parent
        title = parent[0].astext() if parent is not None else ""
        found.append((labels[0] if labels else node["ids"][0], title, first_sentence(node)))
    notes[app.env.docname] = found


def _purge(app: Sphinx, env: Any, docname: str) -> None:
    getattr(env, "departure_notes", {}).pop(docname, None)


def _merge(app: Sphinx, env: Any, docnames: Any, other: Any) -> None:
    env.departure_notes = getattr(env, "departure_notes", {})
    env.departure_notes.update(getattr(other, "departure_notes", {}))


class DepartureListing(SphinxPostTransform):
    """Replace the placeholder by the list, before the page's references are resolved
    (priority 10): those of the copied sentences then resolve from this page."""

    default_priority = 5

    def run(self, **kwargs: Any) -> None:
        for placeholder in list(self.document.findall(departure_list)):
            listing = _listing(self.app, self.env.docname)
            if any(True for _ in listing.findall(nodes.math)):  # the page then loads MathJax
                self.env.get_domain("math").data["has_equations"][self.env.docname] = True
            placeholder.replace_self(listing)


def _listing(app: Sphinx, fromdocname: str) -> nodes.Node:
    notes = getattr(app.env, "departure_notes", {})
    order = {doc: i for i, doc in enumerate(reading_order(app.env))}
    listing = nodes.bullet_list()
    for docname in sorted(notes, key=lambda d: order.get(d, len(order))):
        for label, title, sentence in notes[docname]:
            uri = app.builder.get_relative_uri(fromdocname, docname) + "#" + label
            para = nodes.paragraph()
            page = app.env.titles[docname].astext() if docname in app.env.titles else docname
            where = f"{page} › {title}" if title and title != page else page
            para += nodes.reference("", where, internal=True, refuri=uri)
            para += nodes.Text(" — ")
            for node in sentence:
                copy = node.deepcopy()
                for xref in copy.findall(addnodes.pending_xref, include_self=True):
                    xref["refdoc"] = fromdocname  # resolved from here, not from the note's page
                para += copy
            listing += nodes.list_item("", para)
    return listing if len(listing) else nodes.paragraph(text="(none)")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_node(departure_list)
    app.add_directive("departures", DeparturesDirective)
    app.connect("doctree-read", _collect)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.add_post_transform(DepartureListing)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 2}
