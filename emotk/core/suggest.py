"""One "did you mean" for every error message that names an unknown key, name or choice."""

from __future__ import annotations

import difflib
from typing import Iterable


def closest(name: str, known: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` entries of ``known`` closest to ``name`` (difflib ratio >= ``cutoff``), best first.

    An entry equal to ``name`` up to letter case wins outright (``Train`` -> ``train``).
    """
    known = [str(k) for k in known]
    same_case = [k for k in known if k.lower() == str(name).lower()]
    if same_case:
        return same_case[:n]
    return difflib.get_close_matches(str(name), known, n=n, cutoff=cutoff)


def did_you_mean(name: str, known: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> str:
    """``" (did you mean 'x'?)"`` (or ``'x' or 'y'`` for n > 1) for the closest known names; ``""`` if none."""
    close = closest(name, known, n=n, cutoff=cutoff)
    if not close:
        return ""
    return " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"
