"""A JSON Schema compiled into a plain-Python test that says only whether a document is valid.

Almost every document a run loads is valid, and jsonschema takes far longer to say so than a
few nested closures do; it is asked only about a document this test rejects, to find and
describe the errors (`schema.schema_problems`). The test implements exactly the keywords
below, with jsonschema's meaning (its type checker, `equal` and `uniq`); a schema using any
other keyword gets no test (`compile_schema` gives None), and jsonschema decides alone.
`tests/spec/test_loading.py` holds the two to the same answers on many broken documents.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from typing import Any

try:  # jsonschema's own equality, so the compiled test means what it means; private, so
    from jsonschema._utils import equal, uniq  # a release without it only loses the fast path
except ImportError:  # pragma: no cover - depends on the installed jsonschema
    equal = uniq = None

Accept = Callable[[Any], bool]
# Keywords that never fail a document: `format` asserts nothing without a format checker, and
# `then`/`else` are read by `if`.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$defs",
        "$comment",
        "title",
        "description",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "then",
        "else",
    }
)


def _is_integer(x: Any) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or (
        isinstance(x, float) and x.is_integer()
    )


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Number) and not isinstance(x, bool)


# The JSON types as jsonschema's Draft 2020-12 type checker sees Python values.
TYPE_TESTS: dict[str, Accept] = {
    "array": lambda x: isinstance(x, list),
    "boolean": lambda x: isinstance(x, bool),
    "integer": _is_integer,
    "null": lambda x: x is None,
    "number": _is_number,
    "object": lambda x: isinstance(x, dict),
    "string": lambda x: isinstance(x, str),
}


class _Unsupported(Exception):
    """The schema uses something the compiled test does not implement."""


def compile_schema(schema: Any) -> Accept | None:
    """The validity test of a schema, or None where only jsonschema can tell."""
    if equal is None or uniq is None:
        return None
    try:
        return _SchemaCompiler(schema).compile()
    except _Unsupported:
        return None


def _yes(x: Any) -> bool:
    return True


def _no(x: Any) -> bool:
    return False


def _every(tests: list[Accept]) -> Accept:
    """All of `tests`, as one closure (the single test itself where there is one)."""
    if not tests:
        return _yes
    if len(tests) == 1:
        return tests[0]
    frozen = tuple(tests)

    def accept(x: Any) -> bool:
        for test in frozen:  # noqa: SIM110 - a loop, not all(...): no generator per value
            if not test(x):
                return False
        return True

    return accept


class _SchemaCompiler:
    """Turns a JSON Schema (2020-12, `#/...` references only) into nested closures."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.refs: dict[str, Accept] = {}
        self.pending: set[str] = set()

    def compile(self) -> Accept:
        """The test of the whole schema."""
        return self.schema(self.root, top=True)

    def schema(self, schema: Any, top: bool = False) -> Accept:
        """The test of one (sub)schema: every keyword's test must pass."""
        if schema is True or schema is False:
            return _yes if schema else _no
        if not isinstance(schema, dict) or ("$id" in schema and not top):
            raise _Unsupported(repr(schema)[:60])
        tests = []
        for keyword, value in schema.items():
            if keyword in _ANNOTATIONS:
                continue
            build = self.dollar_ref if keyword == "$ref" else getattr(self, f"k_{keyword}", None)
            if build is None:
                raise _Unsupported(keyword)
            tests.append(build(value, schema))
        return _every(tests)

    def ref(self, target: str) -> Accept:
        """The test of a `$ref` target, compiled once however often it is referenced."""
        if target in self.refs:
            return self.refs[target]
        if target in self.pending:  # a recursive reference: found when called
            return lambda x: self.refs[target](x)
        self.pending.add(target)
        self.refs[target] = self.schema(self.resolve(target))
        self.pending.discard(target)
        return self.refs[target]

    def resolve(self, target: str) -> Any:
        """The subschema a `#/...` pointer names."""
        if not target.startswith("#") or (target != "#" and not target.startswith("#/")):
            raise _Unsupported(target)
        node = self.root
        for part in target[2:].split("/") if target != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise _Unsupported(target) from None
        return node

    # -- keywords: each returns a test of one instance ---------------------------------------
    def dollar_ref(self, value: str, schema: dict) -> Accept:
        return self.ref(value)

    def k_type(self, value: Any, schema: dict) -> Accept:
        names = [value] if isinstance(value, str) else list(value)
        if any(n not in TYPE_TESTS for n in names):
            raise _Unsupported(f"type {value!r}")
        tests = tuple(TYPE_TESTS[n] for n in names)
        return tests[0] if len(tests) == 1 else (lambda x: any(t(x) for t in tests))

    def k_properties(self, value: dict, schema: dict) -> Accept:
        pairs = tuple((name, self.schema(sub)) for name, sub in value.items())

        def accept(x: Any) -> bool:
            if isinstance(x, dict):
                for name, test in pairs:
                    if name in x and not test(x[name]):
                        return False
            return True

        return accept

    def k_patternProperties(self, value: dict, schema: dict) -> Accept:
        pairs = tuple((re.compile(p), self.schema(sub)) for p, sub in value.items())

        def accept(x: Any) -> bool:
            if isinstance(x, dict):
                for regex, test in pairs:
                    for k, v in x.items():
                        if regex.search(k) and not test(v):
                            return False
            return True

        return accept

    def k_additionalProperties(self, value: Any, schema: dict) -> Accept:
        known = frozenset(schema.get("properties", {}))
        joined = "|".join(schema.get("patternProperties", {}))  # as jsonschema joins them
        pattern = re.compile(joined) if joined else None
        test = self.schema(value)

        def accept(x: Any) -> bool:
            if isinstance(x, dict):
                for k, v in x.items():
                    if k not in known and not (pattern and pattern.search(k)) and not test(v):
                        return False
            return True

        return accept

    def k_propertyNames(self, value: Any, schema: dict) -> Accept:
        test = self.schema(value)
        return lambda x: not isinstance(x, dict) or all(test(k) for k in x)

    def k_required(self, value: list, schema: dict) -> Accept:
        names = tuple(value)
        return lambda x: not isinstance(x, dict) or all(n in x for n in names)

    def k_dependentRequired(self, value: dict, schema: dict) -> Accept:
        pairs = tuple((k, tuple(deps)) for k, deps in value.items())
        return lambda x: (
            not isinstance(x, dict) or all(d in x for k, deps in pairs if k in x for d in deps)
        )

    def k_minProperties(self, value: int, schema: dict) -> Accept:
        return lambda x: not isinstance(x, dict) or len(x) >= value

    def k_maxProperties(self, value: int, schema: dict) -> Accept:
        return lambda x: not isinstance(x, dict) or len(x) <= value

    def k_items(self, value: Any, schema: dict) -> Accept:
        test = self.schema(value)  # prefixItems is not implemented, so never beside it
        return lambda x: not isinstance(x, list) or all(test(i) for i in x)

    def k_minItems(self, value: int, schema: dict) -> Accept:
        return lambda x: not isinstance(x, list) or len(x) >= value

    def k_uniqueItems(self, value: bool, schema: dict) -> Accept:
        return (lambda x: not isinstance(x, list) or uniq(x)) if value else _yes

    def k_pattern(self, value: str, schema: dict) -> Accept:
        regex = re.compile(value)
        return lambda x: not isinstance(x, str) or regex.search(x) is not None

    def k_minLength(self, value: int, schema: dict) -> Accept:
        return lambda x: not isinstance(x, str) or len(x) >= value

    def k_minimum(self, value: Any, schema: dict) -> Accept:
        return lambda x: not _is_number(x) or not x < value

    def k_maximum(self, value: Any, schema: dict) -> Accept:
        return lambda x: not _is_number(x) or not x > value

    def k_const(self, value: Any, schema: dict) -> Accept:
        return lambda x: equal(x, value)

    def k_enum(self, value: list, schema: dict) -> Accept:
        return lambda x: any(equal(e, x) for e in value)

    def k_not(self, value: Any, schema: dict) -> Accept:
        test = self.schema(value)
        return lambda x: not test(x)

    def k_allOf(self, value: list, schema: dict) -> Accept:
        return _every([self.schema(sub) for sub in value])

    def k_anyOf(self, value: list, schema: dict) -> Accept:
        tests = tuple(self.schema(sub) for sub in value)
        return lambda x: any(t(x) for t in tests)

    def k_oneOf(self, value: list, schema: dict) -> Accept:
        tests = tuple(self.schema(sub) for sub in value)
        return lambda x: sum(1 for t in tests if t(x)) == 1

    def k_if(self, value: Any, schema: dict) -> Accept:
        cond = self.schema(value)
        then = self.schema(schema["then"]) if "then" in schema else _yes
        else_ = self.schema(schema["else"]) if "else" in schema else _yes
        return lambda x: then(x) if cond(x) else else_(x)
