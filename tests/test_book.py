"""The book as a product: notebooks round-trip, failures fail, the built pages render.

The browser check needs a built book (``_build/html``) and Debian's ``chromium``; it is
skipped with a reason when either is missing, except in CI (``CI=true``), where a
missing build or browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
HTML = ROOT / "_build" / "html"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _load_book_conftest():
    import importlib.util

    spec = importlib.util.spec_from_file_location("book_conftest", BOOK / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_ext(name: str):
    """One of the book's Sphinx extensions (book/_ext), loaded as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, BOOK / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


is_myst_notebook = _load_book_conftest().is_myst_notebook

CHAPTERS = sorted(p for p in BOOK.glob("*.md") if is_myst_notebook(p))


def test_every_notebook_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    assert CHAPTERS, "no MyST notebooks found in book/"
    for chapter in CHAPTERS:
        assert f"book/{chapter.stem}" in toc, f"{chapter.name} is not listed in _toc.yml"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_jupytext_round_trip_keeps_every_cell(chapter, tmp_path):
    import jupytext

    original = jupytext.read(chapter)
    ipynb = tmp_path / f"{chapter.stem}.ipynb"
    jupytext.write(original, ipynb)
    back_md = tmp_path / chapter.name
    jupytext.write(jupytext.read(ipynb), back_md, fmt="md:myst")
    again = jupytext.read(back_md)

    def cells(nb):
        return [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]

    assert len(original.cells) == len(again.cells)
    assert cells(original) == cells(again)


BROKEN = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter with a broken cell

```{code-cell} ipython3
x = 1 + 1
```

```{code-cell} ipython3
assert x == 3, "deliberately broken cell"
```
"""


def test_code_a_reader_can_open_fits_the_column():
    """The column holds 88 characters of code at 1280 px (book.css): a visible or folded
    (``hide-input``) cell never needs sideways scrolling once opened."""
    long_lines = []
    for chapter in CHAPTERS:
        tags, inside = "", False
        for number, line in enumerate(chapter.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```{code-cell}"):
                tags, inside = "", True
            elif inside and line.startswith("```"):
                inside = False
            elif inside and line.startswith(":tags:"):
                tags = line
            elif inside and len(line) > 88 and not line.startswith(":") and "remove" not in tags:
                long_lines.append(f"{chapter.name}:{number}: {len(line)} characters")
    assert long_lines == []


def test_no_directive_fence_carries_a_backtick_in_its_argument():
    """CommonMark forbids a backtick in a backtick fence's info string: such a line opens
    no directive, and the next fence then swallows the cells after it (as a caption with
    {eq}`...` in it did: the notebook ran without its import cell)."""
    broken = [
        f"{chapter.name}:{number}"
        for chapter in CHAPTERS
        for number, line in enumerate(chapter.read_text(encoding="utf-8").splitlines(), 1)
        if re.match(r"\s*```+\{", line) and "`" in line.lstrip().lstrip("`")
    ]
    assert broken == []


def test_code_cell_options_are_valid_yaml():
    """A cell's ``:key: value`` lines are YAML: a caption with ": " in it is a mapping
    there, and myst-nb refuses the notebook (the build fails after minutes)."""
    yaml = pytest.importorskip("yaml")
    cell = re.compile(r"```\{code-cell\}[^\n]*\n((?::[^\n]*\n)+)")
    bad = []
    for chapter in CHAPTERS:
        text = chapter.read_text(encoding="utf-8")
        for match in cell.finditer(text):
            options = "".join(line[1:] + "\n" for line in match.group(1).splitlines())
            try:
                parsed = yaml.safe_load(options)
            except yaml.YAMLError as error:
                bad.append(f"{chapter.name}:{text.count(chr(10), 0, match.start()) + 1}: {error}")
                continue
            assert isinstance(parsed, dict), (chapter.name, options)
    assert bad == []


def test_a_broken_cell_fails_the_notebook_run(tmp_path):
    shutil.copy(BOOK / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "broken_chapter.md").write_text(BROKEN)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "broken_chapter.md"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "broken_chapter.md" in output
    assert "deliberately broken cell" in output


MINI_CONFIG = """
title: mini
only_build_toc_files: true
execute:
  execute_notebooks: force
  raise_on_error: true
bibtex_bibfiles: [refs.bib]
sphinx:
  extra_extensions: [sphinx_proof]
"""
MINI_TOC = """
format: jb-book
root: index
chapters:
  - file: bad_cite
  - file: bad_ref
"""
MINI_BIB = "@misc{known2020, author={A. Author}, title={Known}, year={2020}}\n"


def _failing_build_output(folder: Path) -> str:
    """Build the book in ``folder`` as CI does (-W); assert it fails; return its output."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    run = subprocess.run(
        [str(jupyter_book), "build", "--all", "-W", "--keep-going", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    return output


def test_missing_citation_and_broken_reference_fail_the_build(tmp_path):
    (tmp_path / "_config.yml").write_text(MINI_CONFIG)
    (tmp_path / "_toc.yml").write_text(MINI_TOC)
    (tmp_path / "refs.bib").write_text(MINI_BIB)
    (tmp_path / "index.md").write_text("# Mini\n\nA page that cites {cite:t}`known2020`.\n")
    (tmp_path / "bad_cite.md").write_text("# Cite\n\nSee {cite:t}`no_such_key_2099`.\n")
    (tmp_path / "bad_ref.md").write_text("# Ref\n\nSee {numref}`fig-that-does-not-exist`.\n")
    output = _failing_build_output(tmp_path)
    assert re.search(r"bad_cite\.md.*no_such_key_2099", output), output
    assert re.search(r"bad_ref\.md.*fig-that-does-not-exist", output), output


def test_a_failing_chapter_fails_the_build(tmp_path):
    (tmp_path / "_config.yml").write_text(MINI_CONFIG.replace("bibtex_bibfiles: [refs.bib]\n", ""))
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: index\nchapters:\n  - file: broken_chapter\n"
    )
    (tmp_path / "index.md").write_text("# Mini\n")
    (tmp_path / "broken_chapter.md").write_text(BROKEN)
    output = _failing_build_output(tmp_path)
    assert "broken_chapter" in output and "deliberately broken cell" in output, output


# --------------------------------------------------------------------------- built HTML


def _built_pages() -> list[Path]:
    if not HTML.is_dir():
        if IN_CI:
            pytest.fail("the book is not built: run the README's build command before the tests")
        pytest.skip("the book is not built (_build/html missing): run the README's build command")
    return sorted((HTML / "book").glob("*.html"))


def _chapter_pages() -> list[Path]:
    pages = [
        p for p in _built_pages() if p.stem in {c.stem for c in CHAPTERS} and p.stem != "status"
    ]
    assert pages, f"no chapter page in {HTML / 'book'}"  # a loop over none checks nothing
    return pages


def _built_page(name: str) -> Path | None:
    """A built page, or None where the book is not built (a failure in CI)."""
    page = HTML / "book" / f"{name}.html"
    if page.is_file():
        return page
    if IN_CI:
        pytest.fail(f"the book is not built: {page} is missing")
    return None


def test_built_pages_use_no_math_cdn_and_ship_mathjax():
    pages = _built_pages()
    assert pages
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert not re.search(r"https?://[^\"']*mathjax", html, re.I), (
            f"{page.name} loads MathJax from the web"
        )
    assert (HTML / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_built_chapters_offer_source_and_notebook_downloads():
    for page in _chapter_pages():
        html = page.read_text(encoding="utf-8")
        assert "download-notebook-button" in html, f"{page.name} offers no .ipynb download"
        assert (HTML / "_sources" / "book" / f"{page.stem}.ipynb").is_file()
        assert (HTML / "_sources" / "book" / f"{page.stem}.md").is_file()


def section_reference_mismatches(pages: list[Path]) -> list[str]:
    """Links whose text names a section by number ("section 6.2.3") that the heading
    they point to does not carry: the numbers are typed in the text, the headings'
    numbers come from the build, and a section moved changes only the latter."""
    link = re.compile(
        r'<a class="reference internal" href="([^"#]*)#([^"]+)">'
        r'<span class="std std-ref">[Ss]ections? (\d+(?:\.\d+)*)</span>'
    )
    wrong = []
    for page in pages:
        for target, anchor, number in link.findall(page.read_text(encoding="utf-8")):
            html = (page.parent / target if target else page).read_text(encoding="utf-8")
            at = html.find(f'id="{anchor}"')
            heading = re.search(r'<span class="section-number">([\d.]+?)\.? </span>', html[at:])
            shown = heading.group(1) if at >= 0 and heading else None
            if shown != number:
                wrong.append(
                    f"{page.name}: 'section {number}' links to #{anchor}, numbered {shown}"
                )
    return wrong


def test_section_numbers_typed_in_links_match_their_headings():
    assert section_reference_mismatches(_chapter_pages()) == []


def test_the_section_number_check_catches_a_wrong_number(tmp_path):
    (tmp_path / "a.html").write_text(
        '<span id="sec-x"></span><h2><span class="section-number">6.2.3 </span>X</h2>'
    )
    page = tmp_path / "b.html"
    for typed, expected in (("6.2.3", []), ("6.2.2", ["numbered 6.2.3"])):
        page.write_text(
            '<a class="reference internal" href="a.html#sec-x">'
            f'<span class="std std-ref">section {typed}</span></a>'
        )
        found = section_reference_mismatches([page])
        assert [w.split(", ")[-1] for w in found] == expected


def test_inline_math_keeps_the_punctuation_after_it_on_its_line():
    """The math_punctuation extension wraps a formula and the marks right after it."""
    from docutils import nodes

    module = _load_ext("math_punctuation")

    def paragraph(*parts):
        return nodes.paragraph("", "", *parts)

    glued = paragraph(nodes.Text("with "), nodes.math("", "s"), nodes.Text("). Show that"))
    untouched = [
        paragraph(nodes.Text("a "), nodes.math("", "x"), nodes.Text(" and b")),
        paragraph(nodes.Text("end "), nodes.math("", "y")),
        paragraph(nodes.math("", "z"), nodes.inline("", ",")),
    ]
    document = nodes.section("", glued, *untouched)
    before = [p.pformat() for p in untouched]
    assert module.glue_punctuation(document) == 1
    assert glued.astext() == "with s). Show that"
    group = glued[1]
    assert isinstance(group, nodes.inline) and group["classes"] == ["nowrap"]
    assert [c.astext() for c in group] == ["s", ")."] and glued[2].astext() == " Show that"
    assert [p.pformat() for p in untouched] == before
    assert module.glue_punctuation(document) == 0  # idempotent
    # Siblings with the same text (a Text node is a str, equal by value): each formula
    # takes its own comma, none is doubled or lost.
    twins = paragraph(
        nodes.math("", "a"), nodes.Text(", "), nodes.math("", "b"), nodes.Text(", "),
        nodes.literal("", "code"),
    )  # fmt: skip
    assert module.glue_punctuation(nodes.section("", twins)) == 2
    assert twins.astext() == "a, b, code"
    assert [type(c).__name__ for c in twins] == ["inline", "Text", "inline", "Text", "literal"]
    # An opening bracket right before a formula goes with it (and the closing one after).
    opened = paragraph(nodes.Text("as in ("), nodes.math("", "K"), nodes.Text("), then"))
    alone = paragraph(nodes.Text("("), nodes.math("", "K"))
    assert module.glue_punctuation(nodes.section("", opened, alone)) == 2
    assert [c.astext() for c in opened] == ["as in ", "(K),", " then"]
    assert [c.astext() for c in opened[1]] == ["(", "K", "),"]
    assert len(alone) == 1 and alone[0].astext() == "(K"


def test_solution_titles_link_from_the_word_exercise():
    """sphinx-exercise's "Solution to" + link(" Exercise 6.2.1"): the space leaves the link."""
    from docutils import nodes

    module = _load_ext("solution_titles")
    link = nodes.reference("", "", nodes.Text(" Exercise 6.2.1"), refid="ex")
    title = nodes.title("", "", nodes.Text("Solution to"), link)
    assert module.move_leading_space_out_of_links(title)
    assert [c.astext() for c in title] == ["Solution to ", "Exercise 6.2.1"]
    assert not module.move_leading_space_out_of_links(title)  # nothing left to move
    for page in _chapter_pages():
        html = page.read_text(encoding="utf-8")
        assert not re.search(r"Solution to<a [^>]*>\s", html), page.name


def test_built_pages_wrap_no_punctuation_away_from_inline_math():
    loose = re.compile(r'nohighlight">\\\((?:(?!</span>).)*?\\\)</span>[.,;:]')
    wrapped = re.compile(r'<span class="nowrap"><span class="math notranslate nohighlight">')
    twice = re.compile(r'nohighlight">\\\((?:(?!</span>).)*?\\\)</span>([.,;:])</span>\1')
    pages = _chapter_pages()
    assert sum(len(wrapped.findall(p.read_text(encoding="utf-8"))) for p in pages) > 50
    for page in pages:
        html = page.read_text(encoding="utf-8")
        for match in loose.finditer(html):
            start = html.rfind("<span", 0, match.start())
            opened = re.search(r'<span class="nowrap">[(\[{‘“]*$', html[max(0, start - 40) : start])
            assert opened, (page.name, match.group())
        doubled = twice.search(html)  # a mark inside the span and again after it
        assert doubled is None, (page.name, doubled and doubled.group())


def test_figure_and_table_numbers_carry_their_page_number():
    """A figure of section 6.3 is "Fig. 6.3.k"; one of an unnumbered page (the appendix)
    "Fig. A.k": never a "Fig. 6.1" that reads as section 6.1's."""
    caption = re.compile(r'<span class="caption-number">(?:Fig\.|Table) ([\w.]+) </span>')
    title = re.compile(r'<h1><span class="section-number">([\d.]+) </span>')
    seen = 0
    for page in _chapter_pages():
        html = page.read_text(encoding="utf-8")
        heading = title.search(html)
        for number in caption.findall(html):
            seen += 1
            if heading:
                assert number.startswith(heading.group(1) + "."), (page.name, number)
            else:
                assert re.fullmatch(r"[A-Z]\.\d+", number), (page.name, number)
    assert seen > 20


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if IN_CI:
        pytest.fail("chromium is not installed (.ci/run installs it)")
    pytest.skip("chromium is not installed: apt-get install chromium")


def _rendered_dom(browser: str, page: Path) -> str:
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def test_chapters_render_math_and_images_in_a_real_browser():
    pages = _chapter_pages()
    assert pages, "no chapter page was built"
    browser = _chromium()
    for page in pages:
        dom = _rendered_dom(browser, page)
        typeset = dom.count("<mjx-container")
        assert typeset > 0, f"{page.name}: MathJax typeset no math"
        assert "<mjx-merror" not in dom, f"{page.name}: MathJax reported an error"
        images = re.findall(r"<img[^>]+src=\"([^\"]+)\"", dom)
        local = [src for src in images if not src.startswith(("data:", "http:", "https:"))]
        for src in local:
            target = (page.parent / src.split("#")[0].split("?")[0]).resolve()
            assert target.is_file(), f"{page.name}: image {src} is missing"
        assert any("_images" in src for src in local), f"{page.name}: no computed figure"


def test_ci_runs_exactly_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", readme)
    assert len(commands) == 2, "the README should state a build and a test command"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci, f".ci/run does not run the README command: {command}"


DEPARTURE = re.compile(
    r"(?P<label>\(departure-[\w-]+\)=\n)?(?P<fence>:::|```)\{admonition\} Departure from the draft\n"
    r"(?P<options>(:[^\n]*\n)*)"
)


def test_every_departure_note_is_folded_labelled_and_listed():
    notes = []
    for chapter in sorted(BOOK.glob("*.md")):
        for match in DEPARTURE.finditer(chapter.read_text()):
            where = f"{chapter.name}: note at offset {match.start()}"
            assert match["label"], f"{where} has no (departure-...)= label"
            assert re.search(r":class:.*\bdropdown\b", match["options"]), f"{where} is not folded"
            assert re.search(r":class:.*\bdeparture\b", match["options"]), (
                f"{where} lacks the class"
            )
            notes.append(match["label"][1:-3])
    assert len(notes) == len(set(notes)), "two departure notes share a label"
    listing = HTML / "book" / "departures.html"
    if not listing.is_file():
        if IN_CI:
            pytest.fail("the book is not built")
        pytest.skip("the book is not built")
    html = listing.read_text()
    listed = re.findall(r'href="[^"#]*#(departure-[\w-]+)"', html)
    assert sorted(listed) == sorted(notes), "the appendix does not list exactly the notes"


def test_departure_listing_keeps_the_first_sentence_math_and_references(monkeypatch):
    """The appendix lists each note's first sentence as nodes (math is typeset there,
    references resolve), not as text: no raw LaTeX, no label names, no cut words."""
    from docutils import nodes
    from sphinx import addnodes

    monkeypatch.syspath_prepend(str(BOOK / "_ext"))  # as local_extensions does
    module = _load_ext("departures")
    xref = addnodes.pending_xref("", nodes.Text("eq-62-wsd"), reftype="eq", refdomain="math")
    note = nodes.admonition(
        "",
        nodes.title("", "Departure from the draft"),
        nodes.paragraph(
            "",
            "",
            nodes.Text("Reddi et al. show that "),
            nodes.math("", r"\hat v_t"),
            nodes.Text(" grows, e.g. in "),
            xref,
            nodes.Text(". The draft says otherwise."),
        ),
    )
    sentence = module.first_sentence(note)
    assert "".join(n.astext() for n in sentence) == (
        r"Reddi et al. show that \hat v_t grows, e.g. in eq-62-wsd."
    )
    assert [type(n).__name__ for n in sentence] == [
        "Text", "math", "Text", "pending_xref", "Text"
    ]  # fmt: skip
    listing = _built_page("departures")
    if listing is not None:
        html = listing.read_text(encoding="utf-8")
        body = html[html.find("<main") :]
        without_math = re.sub(r'<span class="math[^"]*">.*?</span>', "", body, flags=re.S)
        text = re.sub(r"<[^>]+>", "", without_math)
        assert "…" not in text and not re.search(r"\beq-6\d-", text)
        assert not re.search(r"\\(?:eta|beta|hat|alpha|frac|sqrt|big)", text), text


def test_bibliography_labels_print_accents_not_latex():
    """Labels are built from the .bib's surnames, which spell accents in LaTeX."""
    from pybtex.database import Person

    module = _load_ext("author_year_bib")
    assert module._surname(Person("Alexandre D{\\'e}fossez")) == "Défossez"
    assert module._surname(Person('Alexander H{\\"a}gele')) == "Hägele"
    assert module._surname(Person("von Werra, Leandro")) == "von Werra"
    page = _built_page("bibliography")
    if page is not None:
        html = page.read_text(encoding="utf-8")
        assert "Défossez et al., 2022" in html and "\\'" not in html and '\\"' not in html


def test_a_chapter_is_skipped_only_when_the_build_ran_exactly_it_without_error(
    tmp_path, monkeypatch
):
    import jupytext
    import nbformat

    conftest = _load_book_conftest()
    chapter = BOOK / "sec61_beyond_smoothness.md"
    notebook = jupytext.read(chapter)
    monkeypatch.setattr(conftest, "EXECUTED", tmp_path)
    monkeypatch.delenv("COMPANION_RUN_NOTEBOOKS", raising=False)
    executed = tmp_path / f"{chapter.stem}.ipynb"
    assert conftest.executed_by_the_build(chapter, notebook) is None  # no build
    nbformat.write(notebook, executed)
    assert conftest.executed_by_the_build(chapter, notebook) == executed
    monkeypatch.setenv("COMPANION_RUN_NOTEBOOKS", "1")
    assert conftest.executed_by_the_build(chapter, notebook) is None  # asked to run
    monkeypatch.delenv("COMPANION_RUN_NOTEBOOKS")
    changed = jupytext.read(chapter)
    next(c for c in changed.cells if c.cell_type == "code").source += "\nassert False"
    assert conftest.executed_by_the_build(chapter, changed) is None  # other code
    failed = jupytext.read(chapter)
    cell = next(c for c in failed.cells if c.cell_type == "code")
    cell.outputs = [
        nbformat.v4.new_output("error", ename="AssertionError", evalue="", traceback=[])
    ]
    nbformat.write(failed, executed)
    assert conftest.executed_by_the_build(chapter, notebook) is None  # an error output
    nbformat.write(notebook, executed)
    os.utime(executed, (0, 0))  # older than the chapter and the package
    assert conftest.executed_by_the_build(chapter, notebook) is None
