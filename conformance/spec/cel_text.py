"""CEL read as text: its tokens, the operands of a condition's top-level && or ||, and how
deeply its comprehensions nest and multiply. One scanner, shared by the translation, the
planner and validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conformance.errors import SpecError


class Untranslatable(SpecError):
    """The expression uses something the translation does not model: `cel` runs it."""


if TYPE_CHECKING:
    from collections.abc import Sequence

MACROS = frozenset({"all", "exists", "exists_one", "existsOne", "map", "filter"})


def comprehension_depth(texts: Sequence[str]) -> int:
    """How deeply `.map(...)`, `.exists(...)` and the other macros nest in a token sequence:
    each level multiplies the work of an evaluation."""
    depth = deepest = 0
    stack: list[bool] = []
    for i, text in enumerate(texts):
        if text == "(":
            is_macro = i >= 2 and texts[i - 1] in MACROS and texts[i - 2] == "."
            stack.append(is_macro)
            depth += is_macro
            deepest = max(deepest, depth)
        elif text == ")" and stack:
            depth -= stack.pop()
    return deepest


@dataclass
class _Level:
    """One open parenthesis while measuring a comprehension's cost."""

    macro: bool
    variable: str | None = None
    counts: bool = False  # multiplies the work (its range is not a part of an outer element)
    consumed: _Level | None = None  # the enclosing level whose element it ranges over
    taken: bool = False  # an inner level already ranges over this level's element


def comprehension_degree(texts: Sequence[str]) -> int:
    """The power of the world's size that an evaluation's work grows as. Comprehensions
    nested in one another multiply, except one ranging over a part of an enclosing one's
    element (`g.portals` inside the loop over `g`): all those parts together are one
    collection, so it takes that loop's place instead of multiplying it (once per loop)."""
    stack: list[_Level] = []
    degree = deepest = 0
    for i, text in enumerate(texts):
        if text == "(":
            level = _Level(i >= 2 and texts[i - 1] in MACROS and texts[i - 2] == ".")
            if level.macro:
                level.variable = texts[i + 1] if i + 1 < len(texts) else None
                root = _receiver_root(texts, i - 2)
                outer = next((o for o in reversed(stack) if o.macro and o.variable == root), None)
                if outer is not None and not outer.taken:
                    outer.taken, level.consumed = True, outer
                else:
                    level.counts = True
                    degree += 1
                    deepest = max(deepest, degree)
            stack.append(level)
        elif text == ")" and stack:
            level = stack.pop()
            degree -= level.counts
            if level.consumed is not None:
                level.consumed.taken = False
    return deepest


def _receiver_root(texts: Sequence[str], dot: int) -> str | None:
    """The first name of the expression a macro is called on (`g` in `g.portals.all(`)."""
    j = dot - 1
    while j >= 0:
        if texts[j] in (")", "]"):
            j = _opening(texts, j) - 1
            continue
        if not (texts[j][:1].isalpha() or texts[j][:1] == "_"):
            return None
        if j >= 1 and texts[j - 1] == ".":
            j -= 2
            continue
        return texts[j]
    return None


def _opening(texts: Sequence[str], close: int) -> int:
    """The index of the bracket that `texts[close]` closes (0 if unbalanced)."""
    depth = 0
    for j in range(close, -1, -1):
        depth += texts[j] in (")", "]")
        depth -= texts[j] in ("(", "[")
        if depth == 0:
            return j
    return 0


_MACRO_CALL = re.compile(r"\.\s*(?:" + "|".join(MACROS) + r")\s*\(")


# -- tokens -----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<string>[rR]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"
                     |'(?:\\.|[^\\'\n])*'|"(?:\\.|[^\\"\n])*"))
  | (?P<bytes>[bB][rR]?['"])
  | (?P<float>(?:\d+\.\d+(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+))
  | (?P<int>0[xX][0-9a-fA-F]+[uU]?|\d+[uU]?)
  | (?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%!<>?:.,()\[\]{}])
""",
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}


def tokens(source: str) -> list[tuple[str, str]]:
    """CEL's tokens as (kind, text), without whitespace or comments, ending with ("end", ""):
    the harness's one CEL scanner, read by the translation and by the checks of a spec's
    expressions (`cel_checks`). Untranslatable for a bytes literal or a character CEL does not
    have."""
    out, pos = [], 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None or match.lastgroup == "bytes":
            raise Untranslatable(f"at {pos}")
        pos = match.end()
        if match.lastgroup != "ws":
            out.append((match.lastgroup or "", match.group()))
    out.append(("end", ""))
    return out


def operands(source: str) -> tuple[str, list[str]]:
    """A rule's top-level operands, for condition coverage: `("||", [a, b])` for `a || b`,
    `("&&", [a, b, c])` for `a && b && c`, `("", [source])` when neither operator joins the
    whole expression (a ternary, a call, one comparison). Parentheses around the whole are
    looked through; an expression the tokenizer cannot read is one operand."""
    spans: list[tuple[str, int, int]] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None or match.lastgroup == "bytes":
            return "", [source.strip()]
        if match.lastgroup != "ws":
            spans.append((match.group(), match.start(), match.end()))
        pos = match.end()
    while len(spans) >= 2 and spans[0][0] == "(" and spans[-1][0] == ")" and _closes_first(spans):
        spans = spans[1:-1]
    if not spans:
        return "", [source.strip()]
    depth = 0
    tops: dict[str, list[int]] = {"&&": [], "||": [], "?": []}
    for i, (text, _, _) in enumerate(spans):
        if text in "([{" and text:
            depth += 1
        elif text in ")]}" and text:
            depth -= 1
        elif depth == 0 and text in tops:
            tops[text].append(i)
    body = source[spans[0][1] : spans[-1][2]]
    if tops["?"]:
        return "", [body.strip()]
    joiner = "||" if tops["||"] else "&&" if tops["&&"] else ""
    if not joiner:
        return "", [body.strip()]
    cuts, out, start = tops[joiner], [], spans[0][1]
    for i in cuts:
        out.append(source[start : spans[i][1]].strip())
        start = spans[i][2]
    out.append(source[start : spans[-1][2]].strip())
    return joiner, out


def _closes_first(spans: list[tuple[str, int, int]]) -> bool:
    """Whether the parenthesis opening `spans` is the one that closes it last."""
    depth = 0
    for i, (text, _, _) in enumerate(spans):
        depth += text in ("(", "[", "{")
        depth -= text in (")", "]", "}")
        if depth == 0:
            return i == len(spans) - 1
    return False


def _string_value(text: str) -> str:
    raw = text[0] in "rR"
    if raw:
        text = text[1:]
    quote = 3 if text[:3] in ("'''", '"""') else 1
    body = text[quote:-quote]
    return body if raw else _unescape(body)


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "xXuU":
            width = {"x": 2, "X": 2, "u": 4, "U": 8}[nxt]
            out.append(chr(int(body[i + 2 : i + 2 + width], 16)))
            i += 2 + width
        elif nxt in "01234567":
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise Untranslatable(f"escape \\{nxt}")
    return "".join(out)
