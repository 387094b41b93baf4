"""The book's plot style: one place for figure size, fonts, colours and output format.

Notebooks call :func:`use_book_style` once; plotting code lives in hidden cells. Figures
are emitted as SVG (vector: crisp on any screen) at the width of the book's text column,
with text at 10 pt, so that the page shows them at about their natural size.
"""

from __future__ import annotations

__all__ = ["COLORS", "COLUMN_WIDTH", "LINESTYLES", "MARKERS", "use_book_style"]

#: A colour-blind-safe cycle (Okabe & Ito), used in this order by every figure.
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]

#: Line styles to tell apart curves that may coincide (use with the colours).
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 2))]

#: Markers for the same purpose, on sparse points (``markevery``).
MARKERS = ["o", "s", "^", "D", "v", "x"]

#: The text column's width in inches (about 660 CSS pixels at 1280 px).
COLUMN_WIDTH = 6.8


def use_book_style() -> None:
    """Set matplotlib's rcParams to the book's style, and SVG output in a notebook."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(
        {
            "figure.figsize": (COLUMN_WIDTH, 3.2),
            "figure.dpi": 100,
            "savefig.dpi": 200,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": cycler(color=COLORS),
            "legend.frameon": False,
            "font.size": 10,
            "axes.titlesize": 10,
            "axes.labelsize": 10,
            "legend.fontsize": 9.5,
            "xtick.labelsize": 9.5,
            "ytick.labelsize": 9.5,
            "lines.linewidth": 1.8,
            "svg.fonttype": "path",
        }
    )
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # plain Python: nothing to configure
        return
    if get_ipython() is not None:
        set_matplotlib_formats("svg")
