"""How the lab speaks of a word it does not know: "did you mean ...?", from difflib."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean", "closest"]


def closest(word: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=cutoff)


def did_you_mean(word: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.6) -> str:
    """" (did you mean X?)", " (did you mean X or Y?)", or "" when nothing is close."""
    close = closest(word, choices, n, cutoff)
    return f" (did you mean {' or '.join(close)}?)" if close else ""
