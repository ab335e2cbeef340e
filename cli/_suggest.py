""""Did you mean ...?": the closest valid name to a mistyped one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# how alike (difflib's ratio, 0 to 1) a valid name must be to be suggested
CUTOFF = 0.5


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The valid name most like ``word``, or None when none is alike enough.

    >>> closest("adma", ["sgd", "adam", "adamw"])
    'adam'
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=CUTOFF)
    return close[0] if close else None
