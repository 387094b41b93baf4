"""The book's documents in reading order, shared by the ``chapter_number`` and
``departures`` extensions (a helper module, not an extension)."""

from __future__ import annotations

from typing import Any


def reading_order(env: Any) -> list[str]:
    """Every document of the toctree, depth first from the root document."""
    order: list[str] = []

    def visit(docname: str) -> None:
        if docname in order:
            return
        order.append(docname)
        for child in env.toctree_includes.get(docname, []):
            visit(child)

    visit(env.config.root_doc)
    return order
