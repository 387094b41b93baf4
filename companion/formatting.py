"""Numbers as a textbook writes them: ``1.9 × 10⁻⁴`` rather than ``1.9e-04``.

The chapters glue computed numbers into their prose; this module turns a float into the
text the reader sees. Plain Python: no numpy, torch or notebook dependency.
"""

from __future__ import annotations

import math
from typing import Any

from companion._validation import check_integer, check_real

__all__ = ["glue_number", "textbook_number"]

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_MINUS = "\N{MINUS SIGN}"
_TIMES = "\N{NO-BREAK SPACE}×\N{NO-BREAK SPACE}"  # a line never breaks inside a number


def _power_of_ten(mantissa: str, exponent: int) -> str:
    if mantissa in ("1", "1.0"):
        return f"10{str(exponent).translate(_SUPERSCRIPT)}"
    return f"{mantissa}{_TIMES}10{str(exponent).translate(_SUPERSCRIPT)}"


def textbook_number(
    value: Any,
    spec: str | None = None,
    *,
    digits: int = 2,
    small: float = 1e-3,
    large: float = 1e5,
) -> str:
    """Format ``value`` for running text.

    Parameters
    ----------
    value : real number
        The number (Python, numpy or a one-element CPU tensor).
    spec : str, optional
        A format spec (``".3f"``, ``".2e"``, ``".1%"``, ``","``...). Exponents that it
        produces are rewritten as powers of ten.
    digits : int
        Without ``spec``: significant digits. Numbers with magnitude in
        ``[small, large)`` are written in fixed point, the others as ``a × 10ⁿ``; zero is ``0``.

    Returns
    -------
    str
        The text, with a true minus sign (U+2212), superscript exponents and no-break
        spaces around the ×, so that a line or a table cell never breaks inside it.

    Examples
    --------
    >>> text = textbook_number(1.9e-4)
    >>> text.replace("\N{NO-BREAK SPACE}", " ")   # shown with plain spaces here
    '1.9 × 10⁻⁴'
    >>> textbook_number(0.0)
    '0'
    >>> textbook_number(0.016048, digits=3)
    '0.0160'
    >>> textbook_number(-2.75e-16, ".2e").replace("\N{NO-BREAK SPACE}", " ")
    '−2.75 × 10⁻¹⁶'
    >>> textbook_number(0.0, ".1e")
    '0'
    >>> textbook_number(1e-16, ".0e")
    '10⁻¹⁶'
    >>> textbook_number(12345.678, ",.1f")
    '12,345.7'
    """
    number = check_real("value", value, finite=False, allow_tensor=True)
    number = float(number)
    if spec is not None:
        if not isinstance(spec, str):
            raise TypeError(f"spec must be a format spec such as '.3f', got {spec!r}")
        try:
            text = format(number, spec)
        except ValueError as err:
            raise ValueError(f"spec={spec!r} is not a format spec for a float: {err}") from None
        if number == 0 and spec.rstrip().endswith(("e", "E", "g", "G")):
            return "0"  # not 0.0 × 10⁰
    else:
        check_integer("digits", digits, low=1, high=17)  # float64 holds 17 at most
        small = check_real("small", small, low=0, low_open=True)
        check_real("large", large, low=small, low_open=True, high_name=None)
        if number == 0:
            return "0"
        if not math.isfinite(number):
            text = format(number)
        elif small <= abs(number) < large:
            decimals = max(digits - 1 - math.floor(math.log10(abs(number))), 0)
            text = f"{number:.{decimals}f}"
        else:
            text = f"{number:.{digits - 1}e}"
    if "e" in text and not text.endswith(("inf", "nan")):
        mantissa, exponent = text.split("e")
        sign = "-" if mantissa.startswith("-") else ""
        text = sign + _power_of_ten(mantissa.lstrip("-"), int(exponent))
    return text.replace("-", _MINUS)


def glue_number(name: str, value: Any, spec: str | None = None, **options: Any) -> str:
    """Glue ``textbook_number(value, spec, **options)`` under ``name`` (myst-nb) and return it.

    Use it in the prose as ``{glue:text}`name```. The notebook still asserts on ``value``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str (the glue key), got {name!r}")
    text = textbook_number(value, spec, **options)
    from myst_nb import glue

    glue(name, text, display=False)
    return text
