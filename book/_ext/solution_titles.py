"""Solution titles read "Solution to Exercise 6.2.1", the link starting at "Exercise".

sphinx-exercise builds the title as the text "Solution to" and a link whose text starts
with a space, " Exercise 6.2.1 (...)": the underline of the link then starts on that
space. This moves the space out of the link.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform


def move_leading_space_out_of_links(title: nodes.Element) -> bool:
    """In a title "text" + link(" text"), end the text with the space instead."""
    for index in range(1, len(title)):
        before, link = title[index - 1], title[index]
        if not (isinstance(before, nodes.Text) and isinstance(link, nodes.reference)):
            continue
        first = link[0] if len(link) else None
        if isinstance(first, nodes.Text) and first.astext()[:1].isspace():
            link.replace(first, nodes.Text(first.astext().lstrip()))
            title.replace(before, nodes.Text(before.astext().rstrip() + " "))
            return True
    return False


class SolutionTitleSpace(SphinxPostTransform):
    default_priority = 900  # after sphinx-exercise resolves the titles (21)

    def run(self, **kwargs) -> None:
        from sphinx_exercise.nodes import solution_node

        for solution in self.document.findall(solution_node):
            if len(solution) and isinstance(solution[0], nodes.title):
                move_leading_space_out_of_links(solution[0])


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_post_transform(SolutionTitleSpace)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
