"""What the text of a spec's CEL expression says: whether it compiles, how deeply its
comprehensions nest, which names it uses, and how its work grows with the world.

Specs share most expressions (`true`, the same guards in each A and W twin), so each source is
read once (`cel_facts`, cached) and the per-spec checks (`crosscheck`) judge the names against
one spec and its domain. The expression is compiled by `cel`, the reference the oracle uses
too, and scanned by the one CEL scanner, `cel_text.tokens`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from conformance.spec.cel_text import MACROS, comprehension_degree, comprehension_depth, tokens
from conformance.spec.expression import compiled
from conformance.spec.messages import shorten
from conformance.spec.model import Spec
from conformance.spec.source import Path_, dotted
from conformance.spec.translate import ITERATION_LIMIT, Untranslatable

STATE, ARGS, CONSTANTS = "state", "args", "constants"
ROOTS = (STATE, ARGS, CONSTANTS)
# Identifiers CEL itself defines (type names) and the functions the oracle adds.
BUILTIN_NAMES = frozenset(
    {
        "int",
        "uint",
        "double",
        "bool",
        "string",
        "bytes",
        "list",
        "map",
        "null_type",
        "type",
        "dyn",
        "ansi",
    }
)
MAX_CEL_LENGTH = 4096
MAX_COMPREHENSION_DEPTH = 3

Token = tuple[str, str]  # (kind, text), as `cel_text.tokens` gives them


@dataclass(frozen=True)
class CelFacts:
    """What checking an expression needs from its text alone."""

    error: str | None  # the expression itself is wrong: too long, too deep, not CEL
    unknown: tuple[str, ...] = ()  # free names no expression may use
    selections: tuple[tuple[str, str | None], ...] = ()
    degree: int = 0  # the power of the world's size its work grows as


@functools.lru_cache(maxsize=8192)
def cel_facts(src: str) -> CelFacts:
    """The facts of one expression source, computed once per process.

    The nesting is judged before compiling, so a deeply nested expression is refused without
    `cel`'s work. `cel` accepts a few things the scanner does not read (a bytes literal, a raw
    string ending in a backslash): for those `cel`'s own check is all there is, and the
    oracle still bounds the cost of each evaluation at run time."""
    if len(src) > MAX_CEL_LENGTH:
        return CelFacts(f"expression is {len(src)} characters; at most {MAX_CEL_LENGTH}")
    scanned = _scan(src)
    texts = [text for _, text in scanned] if scanned is not None else []
    depth = comprehension_depth(texts)
    if depth > MAX_COMPREHENSION_DEPTH:
        return CelFacts(
            f"comprehensions nest {depth} deep; at most {MAX_COMPREHENSION_DEPTH} "
            "(each level multiplies the work of an evaluation)"
        )
    try:
        program = compiled(src).program  # the one compilation the oracle uses too
    except (ValueError, TypeError, RuntimeError) as exc:
        return CelFacts(_cel_error(exc))
    if scanned is None:
        return CelFacts(None)
    bound = _comprehension_vars(scanned)
    unknown = tuple(
        name
        for name in program.variables()
        if name not in ROOTS and name not in bound and name not in BUILTIN_NAMES
    )
    return CelFacts(None, unknown, tuple(_selections(scanned)), comprehension_degree(texts))


def _scan(src: str) -> list[Token] | None:
    """The expression's tokens, or None where the scanner cannot read it."""
    try:
        return tokens(src)
    except Untranslatable:
        return None


def _comprehension_vars(scanned: list[Token]) -> set[str]:
    """Names bound by `.exists(x, ...)` and the other macros."""
    bound = set()
    for i in range(len(scanned) - 4):
        (_, dot), (_, macro), (_, paren), (kind, var), (_, comma) = scanned[i : i + 5]
        if dot == "." and macro in MACROS and paren == "(" and kind == "ident" and comma == ",":
            bound.add(var)
    return bound


def _selections(scanned: list[Token]) -> Iterator[tuple[str, str | None]]:
    """(root, member) for each top-level `state.X`, `args.Y`, `constants.Z`; member None if bare."""
    for i, (kind, text) in enumerate(scanned):
        if kind != "ident" or text not in ROOTS:
            continue
        if i > 0 and scanned[i - 1][1] == ".":
            continue
        nxt = scanned[i + 1 : i + 3]
        if len(nxt) == 2 and nxt[0][1] == "." and nxt[1][0] == "ident":
            yield text, nxt[1][1]
        else:
            yield text, None


def _cel_error(exc: Exception) -> str:
    """`cel`'s complaint in one line: the syntax error first, at its line and column."""
    found = re.findall(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)", str(exc))
    if not found:
        return f"invalid CEL: {shorten(str(exc).splitlines()[0] if str(exc) else repr(exc))}"
    line, col, message = next((f for f in found if f[2].startswith("Syntax error")), found[0])
    return f"invalid CEL at {line}:{col}: {shorten(message)}"


# --------------------------------------------------------------------------- cost


def cost_warnings(catalog: Any) -> list[str]:
    """Expressions whose work grows as the cube of the world's size: comprehensions nested
    three deep, each over a collection of its own (`cel_text.comprehension_degree`). Each
    evaluation is still bounded (`ITERATION_LIMIT` visits, past which the check fails naming
    the rule and the bound), but a world of 100 objects reaches it, so such a rule is likely
    to go unjudged on a real system."""
    warnings: list[str] = []
    for spec in catalog.specs.values():
        for path, src in spec_expressions(spec):
            if (depth := cel_facts(src).degree) >= MAX_COMPREHENSION_DEPTH:
                line = spec.document.line(path) if spec.document else 1
                warnings.append(f"{spec.file}:{line}: {dotted(path)}: warning: {_cubic(depth)}")
    for domain in {id(d): d for d in catalog.domains.values()}.values():
        for name, src in domain.invariants:
            if (depth := cel_facts(src).degree) >= MAX_COMPREHENSION_DEPTH:
                warnings.append(f"{domain.file}: invariant {name!r}: warning: {_cubic(depth)}")
    return warnings


def spec_expressions(spec: Spec) -> Iterator[tuple[Path_, str]]:
    """Every CEL expression of a spec, with its path."""
    for rule in spec.rules:
        yield ("rules", rule.index, "when"), rule.when
        for kind, exprs in (("effects", rule.effects), ("outputs", rule.outputs)):
            for name, src in exprs.items():
                yield ("rules", rule.index, kind, name), src
    for entry in spec.observed:
        if entry.when is not None:
            yield ("observed", entry.index, "when"), entry.when


def _cubic(depth: int) -> str:
    """Why an expression of this degree is likely to pass the bound on a real system."""
    side = round(ITERATION_LIMIT ** (1 / depth))
    return (
        f"comprehensions nest {depth} deep, each over a collection of its own, so the "
        f"work grows as the world's size to the power {depth}: collections of {side} "
        f"objects reach the bound of {ITERATION_LIMIT:,} visits, past which the check "
        "fails naming this rule"
    )
