"""Range checks for options and model-card values, in one place.

Why: out-of-range settings ran and gave a wrong answer with exit code 0 (``--batch-size -3``
segmented no slice and reported 0 ml; a threshold of -1 or 0 labelled the whole field of view,
1.5, nan or inf labelled nothing; a card threshold of -1 did the same, and "abc" ended in a
traceback). Every such value is checked before any work starts. The checks raise
:class:`~deepwml.errors.OptionError` (the command line prints one line and exits 2); the
``arg_*`` wrappers make them argparse types, so a bad option is refused before anything loads.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable

from .errors import OptionError


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError(None, f"{name} must be a number, not {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise OptionError(None, f"{name} must be a finite number, not {value!r}")
    return number


def _integer(value: Any, name: str) -> int:
    number = _number(value, name)
    if number != int(number):
        raise OptionError(None, f"{name} must be a whole number, not {value!r}")
    return int(number)


def check_synthesis_version(value: Any, name: str = "synthesis version") -> int:
    """A synthesis version the generator knows (:data:`deepwml.synthesis.generator.VERSIONS`, the
    one list; imported only when a version is checked, so other commands do not load synthesis)."""
    from .synthesis.generator import VERSIONS

    number = _integer(value, name)
    if number not in VERSIONS:
        raise OptionError(None, f"{name} must be one of {', '.join(map(str, sorted(VERSIONS)))}, not {value!r}")
    return number


def check_threshold(value: Any, name: str = "threshold") -> float:
    """A probability threshold strictly between 0 and 1 (0 labels everything, 1 nothing)."""
    number = _number(value, name)
    if not 0.0 < number < 1.0:
        raise OptionError(None, f"{name} must lie strictly between 0 and 1, not {value!r}")
    return number


def check_fraction(value: Any, name: str) -> float:
    """A number in [0, 1] (e.g. the minimum inter-rater Dice)."""
    number = _number(value, name)
    if not 0.0 <= number <= 1.0:
        raise OptionError(None, f"{name} must lie between 0 and 1, not {value!r}")
    return number


def _at_least(number: float, low: float, name: str, value: Any, strict: bool = False) -> float:
    if number < low or (strict and number == low):
        bound = f"greater than {low:g}" if strict else "0 or more" if low == 0 else f"at least {low:g}"
        raise OptionError(None, f"{name} must be {bound}, not {value!r}")
    return number


def check_positive_int(value: Any, name: str) -> int:
    return int(_at_least(_integer(value, name), 1, name, value))


def check_count(value: Any, name: str) -> int:
    """A whole number >= 0 (0 usually means "no limit")."""
    return int(_at_least(_integer(value, name), 0, name, value))


def check_positive(value: Any, name: str) -> float:
    return _at_least(_number(value, name), 0, name, value, strict=True)


def check_non_negative(value: Any, name: str) -> float:
    """A number >= 0 (0 usually switches something off, e.g. ``--thin-slab-mm 0``)."""
    return _at_least(_number(value, name), 0, name, value)


def thin_slab_kwargs(thin_slab_mm: Any = 0.0, sliding_slab_mm: Any = 0.0) -> dict[str, Any]:
    """The Segmenter's ``thin_slab_mm`` and ``thin_slab_sliding`` for consecutive slabs of
    ``thin_slab_mm`` or sliding slabs of ``sliding_slab_mm`` (one definition for the command line,
    the Slicer logic and its worker); both at once are refused in one line."""
    thin, sliding = check_non_negative(thin_slab_mm, "thin slab thickness"), check_non_negative(sliding_slab_mm,
                                                                                             "sliding slab thickness")
    if sliding > 0 and thin > 0:
        raise OptionError(None, "--thin-slab-mm and --sliding-slab-mm are two ways of seeing thin slices; give one")
    return {"thin_slab_mm": sliding, "thin_slab_sliding": True} if sliding > 0 else \
        {"thin_slab_mm": thin, "thin_slab_sliding": False}


def check_crop(value: Any, name: str = "crop", divisor: int = 16, canvas: int = 256) -> int:
    """0 (no crop) or a multiple of the network's divisor up to the canvas size."""
    number = check_count(value, name)
    if number and (number % divisor or number > canvas):
        raise OptionError(None, f"{name} must be 0 or a multiple of {divisor} up to {canvas}, not {value!r}")
    return number


def argtype(check: Callable[[Any, str], Any], name: str) -> Callable[[str], Any]:
    """``check`` as an argparse ``type``: a bad value becomes argparse's one-line error."""
    def parse(text: str) -> Any:
        try:
            return check(text, name)
        except OptionError as err:
            # argparse names the option itself ("argument --threshold: ...")
            raise argparse.ArgumentTypeError(err.problem.removeprefix(f"{name} ")) from None
    parse.__name__ = name
    return parse
