"""CEL expressions: the reference implementation decides, a Python translation runs them fast.

Every expression is compiled by `cel` (the `common-expression-language` package): its syntax
errors, its names and its verdict on anything unusual are the contract. Converting the state
into CEL values costs more than evaluating a rule, and the oracle evaluates rules on every
call, so each expression is also translated once into one Python function over the plain
values. The translation covers what specs use (logic, comparison, arithmetic, member and index
access, list and map literals, the comprehension macros, `size`, the string methods, custom
functions such as `ansi`) with CEL's typing: no coercion between bool and int, int64 overflow,
truncating division. Anything it is unsure of (an error, a type it does not model, a value CEL
would not convert the same way) makes it give up for that evaluation, and `cel` evaluates the
expression instead: results and error messages are the reference's by construction.
`CONFORMANCE_CEL=reference` turns the translation off.

Neither engine has a timeout, so the work of one evaluation is bounded here: comprehensions
(`.map`, `.exists`, ...) may visit at most `ITERATION_LIMIT` elements in all. The translation
counts them as it goes; before `cel` runs an expression whose comprehensions nest, the largest
collection in its variables raised to the nesting depth is checked against the same bound.
Past it the evaluation raises `CostExceeded`, which the oracle reports at the rule's file:line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import cel

from conformance.spec.cel_text import _MACRO_CALL, comprehension_depth, tokens
from conformance.spec.translate import (
    ITERATION_LIMIT,
    CostExceeded,
    Untranslatable,
    _budget,
    translate,
)

Fast = Callable[[Mapping[str, Any], Mapping[str, Callable[..., Any]]], Any]

ENABLED = os.environ.get("CONFORMANCE_CEL", "").strip().lower() != "reference"


class Expression:
    """One compiled CEL expression: `cel`'s program, and its Python translation if any."""

    __slots__ = ("depth", "fast", "literal", "program", "source")

    def __init__(self, source: str):
        self.source = source
        self.program = cel.compile(source)  # raises on a defect: the reference's message
        self.depth = _depth(source)
        self.literal = source.count(",") + 1  # no list literal in it is longer
        self.fast: Fast | None = None
        if ENABLED:
            try:
                self.fast = translate(source)
            except (Untranslatable, SyntaxError, RecursionError, MemoryError, ValueError):
                self.fast = None

    def evaluate(self, scope: Scope) -> Any:
        if self.fast is not None:
            if self.depth:
                _budget.left = ITERATION_LIMIT
            try:
                value = self.fast(scope.variables, scope.functions)
            except CostExceeded:
                raise
            except Exception:  # whatever it was, the reference decides
                pass
            else:
                return list(value) if type(value) is tuple else value
        if self.depth > 1:
            _check_cost(self.depth, max(self.literal, _largest(scope.variables)))
        return self.program.execute(scope.context())


def _depth(source: str) -> int:
    try:
        return comprehension_depth([text for _, text in tokens(source)])
    except Untranslatable:  # a bytes literal: count every macro as if nested, an upper bound
        return len(re.findall(_MACRO_CALL, source))


def _check_cost(depth: int, largest: int) -> None:
    """Before `cel` runs nested comprehensions: the largest collection they could walk, to the
    power of the nesting, within the bound."""
    if largest**depth > ITERATION_LIMIT:
        raise CostExceeded(
            f"comprehensions nested {depth} deep over collections of up to {largest} elements "
            f"could visit {largest**depth:,} elements; the bound is {ITERATION_LIMIT:,}"
        )


def _largest(value: Any) -> int:
    """The size of the largest list or map anywhere in `value`."""
    largest, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            largest = max(largest, len(item))
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            largest = max(largest, len(item))
            stack.extend(item)
    return largest


class Scope:
    """The variables and functions of one evaluation; `cel`'s Context is built only when an
    expression has to be run by the reference, and then once."""

    __slots__ = ("_context", "functions", "variables")

    def __init__(self, variables: dict[str, Any], functions: dict[str, Callable[..., Any]]):
        self.variables = variables
        self.functions = functions
        self._context: cel.Context | None = None

    def context(self) -> cel.Context:
        if self._context is None:
            self._context = cel.Context(self.variables, functions=self.functions)
        return self._context


@lru_cache(maxsize=16384)
def compiled(source: str) -> Expression:
    """One Expression per distinct source text in the process."""
    return Expression(source)


__all__ = ["ENABLED", "Expression", "Scope", "Untranslatable", "compiled", "translate"]
