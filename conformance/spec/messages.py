"""The wording shared by the schema and the cross-checks: short values, typo hints.

A problem is read by a spec's author in a terminal, so a value is quoted briefly and an
unknown name comes with the names it could have been; both checkers word these alike.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def is_scalar(value: Any) -> bool:
    """None, a bool or a number: what YAML reads from an unquoted word such as `off`."""
    return value is None or isinstance(value, bool | int | float)


def short(value: Any, limit: int = 60) -> str:
    """A value's repr, cut to `limit` characters so a huge one cannot flood a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shorten(message: str, limit: int = 300) -> str:
    """A message from a library, cut to `limit` characters."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A hint for a likely typo, to end a message with."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown(what: str, name: Any, candidates: Iterable[str], among: str) -> str:
    """`unknown step 'x' (steps of vds-iscsi: a, b); did you mean 'y'?`"""
    names = [str(c) for c in candidates]
    return (
        f"unknown {what} {short(name)} ({among}: {', '.join(names) or 'none'})"
        f"{did_you_mean(str(name), names)}"
    )
