"""The book's plot style: one place for figure size, fonts and colours.

Notebooks call :func:`use_book_style` once; plotting code lives in hidden cells.
"""

from __future__ import annotations

__all__ = ["COLORS", "use_book_style"]

#: A colour-blind-safe cycle (Okabe & Ito), used in this order by every figure.
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]


def use_book_style() -> None:
    """Set matplotlib's rcParams to the book's style (vector-friendly, readable, compact)."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(
        {
            "figure.figsize": (7.0, 3.6),
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": cycler(color=COLORS),
            "legend.frameon": False,
            "font.size": 10,
            "lines.linewidth": 1.8,
        }
    )
