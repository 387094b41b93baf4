"""The reader's view, checked in a real browser (Playwright driving Debian's chromium).

Every page of the built book is opened at 1280 px and at 420 px, after MathJax has
typeset it, and audited for what a reader must never meet:

* ``wide-block``: a visible code or output block or table wider than its column (at
  1280 px);
* ``page-overflow``: a page that scrolls sideways (at either width);
* ``wide-equation``: a display equation wider than its column (at 1280 px), or one that
  is clipped instead of scrolling (at 420 px);
* ``untypeset-math``: math left as raw TeX (a page that did not load MathJax);
* ``wide-inline-math``: an inline formula wider than its line, which cuts it off (at
  either width: it can neither wrap nor scroll);
* ``repr-output``: a visible output that is a raw Python repr (a tuple, dict, list,
  ``np.float64(...)``, ``array(...)``, ``tensor(...)``, an object address, a bare number);
* ``noisy-output``: a warning, traceback, temporary path or progress bar in an output;
* ``caption-math``: math in a figure caption that MathJax did not typeset (``$``, a TeX
  command, ``w_t``, ``w²``, ``√(``);
* ``missing-image``: an image that did not load;
* ``blurry-figure``: a raster figure with fewer than 2 image pixels per displayed pixel;
* ``bold-glue``: a glued number in bold;
* ``math-error``: a MathJax error.

The audit itself is tested on two fixture pages: one with a defect of every class, one
with none. The page checks need a built book (``_build/html``), chromium and Playwright;
they are skipped without them, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
WIDTHS = (1280, 420)

AUDIT = r"""
(width) => {
  const found = [];
  const add = (kind, el, detail) => {
    const where = (el.closest('section[id]') || {}).id || el.tagName.toLowerCase();
    found.push({kind, where, detail: String(detail).slice(0, 160)});
  };
  const visible = (el) => {
    if (el.closest('details:not([open]), .tag_remove-output, .hidden')) return false;
    const box = el.getBoundingClientRect();
    return el.offsetParent !== null && box.width > 0 && box.height > 0;
  };
  const main = document.querySelector('main') || document.body;
  if (!main) return [{kind: 'missing-page', where: 'document', detail: location.href}];
  // code and output blocks
  if (width >= 1000) {
    for (const el of main.querySelectorAll('pre, .cell_output, div.output, table, .pst-scrollable-table-container')) {
      if (!visible(el)) continue;
      if (el.scrollWidth > el.clientWidth + 2) {
        add('wide-block', el, `${el.scrollWidth}px in ${el.clientWidth}px: ` + el.innerText.split('\n')[0]);
      }
    }
  }
  // the page itself must never scroll sideways
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth + 2) {
    add('page-overflow', page, `${page.scrollWidth}px in a ${window.innerWidth}px window`);
  }
  // display equations
  for (const el of main.querySelectorAll('mjx-container[display="true"]')) {
    if (!visible(el)) continue;
    const inner = el.firstElementChild;
    if (!inner) continue;
    const need = inner.getBoundingClientRect().width;
    const column = el.parentElement.clientWidth;
    if (need <= column + 2) continue;
    if (width >= 1000) {
      add('wide-equation', el, `${Math.round(need)}px in ${column}px`);
    } else {
      const style = getComputedStyle(el);
      const scrolls = ['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth;
      if (!scrolls) add('wide-equation', el, `clipped: ${Math.round(need)}px in ${column}px`);
    }
  }
  // math that MathJax never typeset (the page did not load it): raw TeX on the page
  for (const el of main.querySelectorAll('span.math, div.math')) {
    if (visible(el) && !el.querySelector('mjx-container') && el.textContent.trim()) {
      add('untypeset-math', el, el.textContent.trim());
    }
  }
  // inline formulas: one wider than its line is cut off (it cannot wrap, nor scroll)
  for (const el of main.querySelectorAll('mjx-container:not([display="true"])')) {
    if (!visible(el)) continue;
    const block = el.parentElement.closest('p, li, td, th, dd, dt, figcaption, div');
    if (!block) continue;
    const line = block.getBoundingClientRect(), box = el.getBoundingClientRect();
    if (box.right > line.right + 2 || box.left < line.left - 2) {
      add('wide-inline-math', el, `${Math.round(box.width)}px in a ${Math.round(line.width)}px line`);
    }
  }
  // outputs: raw reprs and noise
  const repr = /^\s*(\(.*\)|\{.*\}|\[.*\])\s*$|np\.(float|int)\d*\(|\barray\(|\btensor\(|<[\w.]+ object at 0x|^\s*-?\d+(\.\d+)?(e[-+]?\d+)?\s*$/s;
  const noise = /Warning|Traceback|\/tmp\/|\d+%\|/;
  for (const el of main.querySelectorAll('div.output, div.cell_output > *')) {
    if (!visible(el)) continue;
    const text = el.innerText || '';
    if (el.matches('.stderr, .output.stderr') || noise.test(text)) {
      add('noisy-output', el, text.split('\n')[0]);
    } else if (el.matches('.text_plain, .output.text_plain, .output.stream') && repr.test(text.trim())) {
      add('repr-output', el, text.split('\n')[0]);
    }
  }
  // captions: untypeset math
  const rawMath = /\$|\\[a-zA-Z]+|\b[A-Za-z]_[A-Za-z0-9{]|[A-Za-z)][²³⁻]|√\(/;
  for (const cap of main.querySelectorAll('figcaption, .caption')) {
    const copy = cap.cloneNode(true);
    copy.querySelectorAll('mjx-container, .math, code').forEach((m) => m.remove());
    if (rawMath.test(copy.textContent)) add('caption-math', cap, copy.textContent.trim());
  }
  // images
  for (const img of main.querySelectorAll('img')) {
    if (!img.complete || img.naturalWidth === 0) { add('missing-image', img, img.getAttribute('src')); continue; }
    const src = img.getAttribute('src') || '';
    const shown = img.getBoundingClientRect().width;
    if (!/\.svg(\?|#|$)/i.test(src) && !src.startsWith('data:image/svg') && shown > 0
        && img.naturalWidth < 2 * shown - 1 && visible(img)) {
      add('blurry-figure', img, `${img.naturalWidth}px shown at ${Math.round(shown)}px: ${src}`);
    }
  }
  // glued numbers in the body's weight
  for (const el of main.querySelectorAll('span.pasted-text')) {
    if (parseInt(getComputedStyle(el).fontWeight, 10) >= 600) add('bold-glue', el, el.textContent);
  }
  for (const el of main.querySelectorAll('mjx-merror')) add('math-error', el, el.textContent);
  return found;
}
"""


def _browser():
    playwright = pytest.importorskip("playwright.sync_api") if not IN_CI else None
    if playwright is None:
        import playwright.sync_api as playwright
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if IN_CI:
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed: apt-get install chromium")
    return playwright.sync_playwright, chromium


def audit(pages: list[Path], widths: tuple[int, ...] = WIDTHS) -> dict[tuple[str, int], list]:
    """Open each page at each width and return the defects found, keyed by (page, width)."""
    sync_playwright, chromium = _browser()
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for width in widths:
                page = browser.new_page(viewport={"width": width, "height": 900})
                for path in pages:
                    page.goto(path.resolve().as_uri())
                    page.wait_for_load_state("load")
                    page.evaluate(
                        "() => window.MathJax && MathJax.startup && MathJax.startup.promise"
                    )
                    page.evaluate(
                        "() => Promise.all([...document.images].map(i => i.complete ? 0 :"
                        " new Promise(r => { i.onload = i.onerror = r; })))"
                    )
                    # readers open folded solutions and notes: audit them open
                    page.evaluate(
                        "() => document.querySelectorAll('.toggle-hidden')"
                        ".forEach(e => e.classList.remove('toggle-hidden'))"
                    )
                    results[path.name, width] = page.evaluate(AUDIT, width)
                page.close()
        finally:
            browser.close()
    return results


def _built_pages() -> list[Path]:
    pages = sorted((HTML / "book").glob("*.html"))
    if not pages:
        if IN_CI:
            pytest.fail("the book is not built (run the README's build command first)")
        pytest.skip("the book is not built: run the README's build command first")
    return pages  # index.html only redirects to book/intro.html


def _kinds(defects: list) -> set[str]:
    return {d["kind"] for d in defects}


def test_the_audit_finds_every_defect_class_on_a_broken_page():
    found = audit([FIXTURES / "broken_page.html"])
    wide = _kinds(found["broken_page.html", 1280])
    narrow = _kinds(found["broken_page.html", 420])
    expected = {
        "wide-block",
        "wide-equation",
        "wide-inline-math",
        "untypeset-math",
        "repr-output",
        "noisy-output",
        "caption-math",
        "missing-image",
        "blurry-figure",
        "bold-glue",
        "math-error",
    }
    assert expected <= wide, f"not found at 1280 px: {sorted(expected - wide)}"
    assert "wide-equation" in narrow, "a clipped equation at 420 px was not found"
    assert "wide-inline-math" in narrow, "a clipped inline formula at 420 px was not found"


def test_the_audit_passes_a_clean_page():
    found = audit([FIXTURES / "clean_page.html"])
    assert found == {("clean_page.html", 1280): [], ("clean_page.html", 420): []}


def test_every_built_page_reads_cleanly_at_1280_and_420_px():
    found = audit(_built_pages())
    problems = [
        f"{name} @ {width}px: {d['kind']} in #{d['where']}: {d['detail']}"
        for (name, width), defects in sorted(found.items())
        for d in defects
    ]
    assert not problems, f"{len(problems)} defects:\n" + "\n".join(problems)
