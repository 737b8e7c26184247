"""Checking specs before anything runs: shape by JSON Schema, meaning by cross-reference.

A spec is written by a person and read by the oracle, the engine and the reports; a typo in a
symbol, a collection or a parameter would otherwise surface as a baffling test failure in the
middle of a run. Every check here returns `Problem`s located at the YAML line they concern, so
`conformance validate` can list them all as `file:line: path: message`.
"""

from __future__ import annotations

import difflib
import functools
import json
import numbers
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

try:  # jsonschema's own equality, so the compiled test means what it means; private, so
    from jsonschema._utils import equal, uniq  # a release without it only loses the fast path
except ImportError:  # pragma: no cover - depends on the installed jsonschema
    equal = uniq = None  # type: ignore[assignment]

from conformance.spec.codes import CodeTable, failed, hex32
from conformance.spec.domain import ANY, FAULT_STEP, FAULTS, Domain, FieldType
from conformance.spec.expression import (
    ITERATION_LIMIT,
    MACROS,
    compiled,
    comprehension_degree,
    comprehension_depth,
)
from conformance.spec.model import DIRECT, Param, Spec
from conformance.spec.source import Document, Path_, Problem, SourceError, dotted, load_file

SCHEMA_KINDS = ("spec", "domain", "codes")

STATE, ARGS, CONSTANTS = "state", "args", "constants"
THIS = "this"
CATCH_ALL = "true"
UNKNOWN = "unknown"
# Macros whose first argument binds a comprehension variable (`list.exists(s, ...)`).
# Identifiers CEL itself defines (type names) and the functions the oracle adds.
BUILTIN_NAMES = frozenset({"int", "uint", "double", "bool", "string", "bytes", "list", "map",
                           "null_type", "type", "dyn", "ansi"})
WIN32_WRAPPED = re.compile(r"^HRESULT_FROM_WIN32\(([A-Za-z_][A-Za-z0-9_]*)\)$")


# --------------------------------------------------------------------------- JSON Schema


def schema_problems(doc: Document, kind: str) -> list[Problem]:
    """Check `doc.data` against `specs/schema/<kind>.schema.json`, one Problem per error."""
    if kind not in SCHEMA_KINDS:
        raise ValueError(f"unknown schema kind {kind!r} (one of {', '.join(SCHEMA_KINDS)})")
    accept = _acceptor(kind)
    if doc.text_keys and accept is not None and accept(doc.data):
        return []  # valid: jsonschema would find nothing, and is far slower to say so
    problems: list[Problem] = []
    data = _string_keys(doc, doc.data, (), problems)
    errors = sorted(_validator(kind).iter_errors(data),
                    key=lambda e: (doc.line(tuple(e.absolute_path)), [str(p) for p in e.path]))
    for error in errors:
        problems.extend(_describe(doc, error))
    return list(dict.fromkeys(problems))


@functools.cache
def _validator(kind: str) -> Draft202012Validator:
    """Load a schema once per process; they ship next to the specs."""
    from conformance.spec.catalog import default_specs_dir  # catalog imports this module

    path = default_specs_dir() / "schema" / f"{kind}.schema.json"
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError([Problem(str(path), 1, "", f"cannot load the {kind} schema: {exc}")]
                          ) from None
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


# A document is checked by a plain-Python test compiled from the schema, which says only
# whether it is valid; jsonschema finds and describes the errors of one that is not. The test
# implements exactly the keywords below, with jsonschema's meaning (its type checker, `equal`
# and `uniq`); a schema using any other keyword gets no test, and jsonschema decides alone.

_Accept = Callable[[Any], bool]
# Keywords that never fail a document: `format` asserts nothing without a format checker, and
# `then`/`else` are read by `if`.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description",
                          "examples", "default", "deprecated", "readOnly", "writeOnly",
                          "format", "then", "else"})


def _is_integer(x: Any) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or \
        (isinstance(x, float) and x.is_integer())


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Number) and not isinstance(x, bool)


_TYPE_TESTS: dict[str, _Accept] = {
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


@functools.cache
def _acceptor(kind: str) -> _Accept | None:
    """The compiled validity test of a schema, or None where only jsonschema can tell."""
    if equal is None or uniq is None:
        return None
    try:
        return _SchemaCompiler(_validator(kind).schema).compile()
    except _Unsupported:
        return None


def _yes(x: Any) -> bool:
    return True


def _no(x: Any) -> bool:
    return False


def _every(tests: list[_Accept]) -> _Accept:
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

    def __init__(self, root: Any):
        self.root = root
        self.refs: dict[str, _Accept] = {}
        self.pending: set[str] = set()

    def compile(self) -> _Accept:
        return self.schema(self.root, top=True)

    def schema(self, schema: Any, top: bool = False) -> _Accept:
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

    def ref(self, target: str) -> _Accept:
        if target in self.refs:
            return self.refs[target]
        if target in self.pending:  # a recursive reference: found when called
            return lambda x: self.refs[target](x)
        self.pending.add(target)
        self.refs[target] = self.schema(self.resolve(target))
        self.pending.discard(target)
        return self.refs[target]

    def resolve(self, target: str) -> Any:
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
    def dollar_ref(self, value: str, schema: dict) -> _Accept:
        return self.ref(value)

    def k_type(self, value: Any, schema: dict) -> _Accept:
        names = [value] if isinstance(value, str) else list(value)
        if any(n not in _TYPE_TESTS for n in names):
            raise _Unsupported(f"type {value!r}")
        tests = tuple(_TYPE_TESTS[n] for n in names)
        return tests[0] if len(tests) == 1 else (lambda x: any(t(x) for t in tests))

    def k_properties(self, value: dict, schema: dict) -> _Accept:
        pairs = tuple((name, self.schema(sub)) for name, sub in value.items())

        def accept(x: Any) -> bool:
            if isinstance(x, dict):
                for name, test in pairs:
                    if name in x and not test(x[name]):
                        return False
            return True

        return accept

    def k_patternProperties(self, value: dict, schema: dict) -> _Accept:
        pairs = tuple((re.compile(p), self.schema(sub)) for p, sub in value.items())

        def accept(x: Any) -> bool:
            if isinstance(x, dict):
                for regex, test in pairs:
                    for k, v in x.items():
                        if regex.search(k) and not test(v):
                            return False
            return True

        return accept

    def k_additionalProperties(self, value: Any, schema: dict) -> _Accept:
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

    def k_propertyNames(self, value: Any, schema: dict) -> _Accept:
        test = self.schema(value)
        return lambda x: not isinstance(x, dict) or all(test(k) for k in x)

    def k_required(self, value: list, schema: dict) -> _Accept:
        names = tuple(value)
        return lambda x: not isinstance(x, dict) or all(n in x for n in names)

    def k_dependentRequired(self, value: dict, schema: dict) -> _Accept:
        pairs = tuple((k, tuple(deps)) for k, deps in value.items())
        return lambda x: not isinstance(x, dict) or all(
            d in x for k, deps in pairs if k in x for d in deps)

    def k_minProperties(self, value: int, schema: dict) -> _Accept:
        return lambda x: not isinstance(x, dict) or len(x) >= value

    def k_maxProperties(self, value: int, schema: dict) -> _Accept:
        return lambda x: not isinstance(x, dict) or len(x) <= value

    def k_items(self, value: Any, schema: dict) -> _Accept:
        test = self.schema(value)  # prefixItems is not implemented, so never beside it
        return lambda x: not isinstance(x, list) or all(test(i) for i in x)

    def k_minItems(self, value: int, schema: dict) -> _Accept:
        return lambda x: not isinstance(x, list) or len(x) >= value

    def k_uniqueItems(self, value: bool, schema: dict) -> _Accept:
        return (lambda x: not isinstance(x, list) or uniq(x)) if value else _yes

    def k_pattern(self, value: str, schema: dict) -> _Accept:
        regex = re.compile(value)
        return lambda x: not isinstance(x, str) or regex.search(x) is not None

    def k_minLength(self, value: int, schema: dict) -> _Accept:
        return lambda x: not isinstance(x, str) or len(x) >= value

    def k_minimum(self, value: Any, schema: dict) -> _Accept:
        return lambda x: not _is_number(x) or not x < value

    def k_maximum(self, value: Any, schema: dict) -> _Accept:
        return lambda x: not _is_number(x) or not x > value

    def k_const(self, value: Any, schema: dict) -> _Accept:
        return lambda x: equal(x, value)

    def k_enum(self, value: list, schema: dict) -> _Accept:
        return lambda x: any(equal(e, x) for e in value)

    def k_not(self, value: Any, schema: dict) -> _Accept:
        test = self.schema(value)
        return lambda x: not test(x)

    def k_allOf(self, value: list, schema: dict) -> _Accept:
        return _every([self.schema(sub) for sub in value])

    def k_anyOf(self, value: list, schema: dict) -> _Accept:
        tests = tuple(self.schema(sub) for sub in value)
        return lambda x: any(t(x) for t in tests)

    def k_oneOf(self, value: list, schema: dict) -> _Accept:
        tests = tuple(self.schema(sub) for sub in value)
        return lambda x: sum(1 for t in tests if t(x)) == 1

    def k_if(self, value: Any, schema: dict) -> _Accept:
        cond = self.schema(value)
        then = self.schema(schema["then"]) if "then" in schema else _yes
        else_ = self.schema(schema["else"]) if "else" in schema else _yes
        return lambda x: then(x) if cond(x) else else_(x)


def _string_keys(doc: Document, value: Any, path: Path_, problems: list[Problem]) -> Any:
    """A copy with string keys: YAML reads `1:` or `off:` as non-strings, JSON has none."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            sub = (*path, key if isinstance(key, str | int) else str(key))  # as source.py keys it
            if not isinstance(key, str):
                problems.append(Problem(doc.file, doc.line(sub), dotted(path),
                                        f"key {key!r} is not text: quote it"))
            out[str(key)] = _string_keys(doc, item, sub, problems)
        return out
    if isinstance(value, list):
        return [_string_keys(doc, item, (*path, i), problems) for i, item in enumerate(value)]
    return value


def _describe(doc: Document, error: ValidationError) -> list[Problem]:
    """Turn one jsonschema error into human messages at the right line."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return _unknown_keys(doc, path, error)
    if error.validator == "required" and isinstance(error.instance, dict):
        return [doc.problem(path, f"missing required key {key!r}")
                for key in error.validator_value if key not in error.instance]
    if "propertyNames" in error.absolute_schema_path:
        key = error.instance
        return [Problem(doc.file, doc.line((*path, key)), dotted(path),
                        f"key {_message(error)}")]
    return [doc.problem(path, _message(error))]


def _message(error: ValidationError) -> str:
    instance, expected = error.instance, error.validator_value
    if error.validator == "type":
        types = [expected] if isinstance(expected, str) else expected
        quote = " (quote it)" if "string" in types and _is_scalar(instance) else ""
        return f"{_short(instance)} is not of type {', '.join(repr(t) for t in types)}{quote}"
    if error.validator == "const":
        return f"must be {expected!r}, not {_short(instance)}"
    if error.validator == "pattern" and "title" in error.schema:
        return f"{_short(instance)} is not {error.schema['title']}"
    if error.validator == "not":
        return f"{_short(instance)} is a reserved name"
    if error.validator == "enum":
        hint = _did_you_mean(str(instance), [str(e) for e in expected])
        return f"{_short(instance)} is not one of {', '.join(map(str, expected))}{hint}"
    if error.validator == "dependentRequired" and isinstance(instance, dict):
        pairs = [(k, d) for k, deps in expected.items() if k in instance
                 for d in deps if d not in instance]
        return "; ".join(f"{k!r} needs {d!r} beside it" for k, d in pairs) or error.message
    if error.validator == "maxProperties" and isinstance(instance, dict):
        return f"too many keys ({', '.join(map(str, instance))}): at most {expected} here"
    return _shorten(error.message)


def _unknown_keys(doc: Document, path: Path_, error: ValidationError) -> list[Problem]:
    schema = error.schema
    known = list(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    allowed = ", ".join(known + (["x-*"] if "^x-" in patterns else []))
    out = []
    for key in error.instance:
        if key in known or any(re.search(p, key) for p in patterns):
            continue
        out.append(Problem(doc.file, doc.line((*path, key)), dotted(path),
                           f"unknown key {key!r} (allowed: {allowed}){_did_you_mean(key, known)}"))
    return out


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shorten(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A hint for a likely typo, to end a message with."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown(what: str, name: Any, candidates: Iterable[str], among: str) -> str:
    """`unknown step 'x' (steps of vds-iscsi: a, b); did you mean 'y'?`"""
    names = [str(c) for c in candidates]
    return (f"unknown {what} {_short(name)} ({among}: {', '.join(names) or 'none'})"
            f"{_did_you_mean(str(name), names)}")


# --------------------------------------------------------------------------- one spec


@dataclass
class _Check:
    """What every per-spec check needs: the spec, its domain, the code table, the findings."""

    spec: Spec
    domain: Domain | None
    codes: CodeTable
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: Path_, message: str) -> None:
        doc = self.spec.document
        if doc is not None:
            self.problems.append(doc.problem(path, message))
        else:
            self.problems.append(Problem(self.spec.file, 1, dotted(path), message))

    @property
    def is_com(self) -> bool:
        return self.spec.kind == "com-method"

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.spec.params] + ([THIS] if self.is_com else [])

    @property
    def expectable(self) -> list[str]:
        """Symbols a rule or scenario may expect: the table's rows and `also` symbols."""
        extra = [s for s in self.spec.also if s not in self.codes.families]
        return [c.symbol for c in self.spec.codes] + extra


def spec_problems(spec: Spec, domain: Domain | None, codes: CodeTable,
                  families: dict[Path, list[str]] | None = None) -> list[Problem]:
    """Everything the schema cannot see: symbols, CEL, domain names, reachability.
    `families` memoizes the families found beside each folder, across one catalog's specs."""
    check = _Check(spec, domain, codes)
    known = _known_families(spec.file, {} if families is None else families)
    if domain is None and spec.family not in known:  # else its domain file failed, and said so
        check.add(("family",), _unknown("family", spec.family, known, "families with a domain"))
    _code_problems(check)
    _param_problems(check)
    _interface_problems(check)
    _rule_problems(check)
    _scenario_problems(check)
    _finding_problems(check)
    _observed_problems(check)
    return check.problems


def _specs_root(file: str) -> Path:
    """The folder holding codes.yaml and domains/ above a spec, as the catalog finds it."""
    for candidate in Path(file).resolve().parents:
        if (candidate / "codes.yaml").is_file() and (candidate / "domains").is_dir():
            return candidate
    from conformance.spec.catalog import default_specs_dir

    return default_specs_dir()


def _known_families(file: str, memo: dict[Path, list[str]]) -> list[str]:
    folder = Path(file).resolve().parent
    if folder not in memo:
        memo[folder] = sorted(p.stem for p in (_specs_root(file) / "domains").glob("*.yaml"))
    return memo[folder]


def _code_problems(check: _Check) -> None:
    spec = check.spec
    docs = {s.get("doc") for s in spec.sources}
    seen: set[str] = set()
    for i, code in enumerate(spec.codes):
        path = ("returns", "codes", i)
        if code.symbol in seen:
            check.add((*path, "symbol"), f"{code.symbol} is listed twice")
        seen.add(code.symbol)
        if code.via == "completion" and spec.delivery == DIRECT:
            check.add((*path, "via"), "a code cannot arrive by completion when delivery is direct")
        rows = (spec.raw.get("returns") or {}).get("codes") or []
        source = rows[i].get("source") if i < len(rows) else None
        if source is not None and source not in docs:
            check.add((*path, "source"), f"{source!r} is not the doc of any entry in sources")
    table_loaded = bool(check.codes.symbols or check.codes.families)
    for i, entry in enumerate(spec.also if table_loaded else ()):
        if entry not in check.codes.symbols and entry not in check.codes.families:
            names = [*check.codes.symbols, *check.codes.families]
            check.add(("returns", "also", i), f"{entry!r} is neither a symbol nor a family of "
                                              f"codes.yaml{_did_you_mean(entry, names)}")


def _param_problems(check: _Check) -> None:
    seen: set[str] = set()
    for i, param in enumerate(check.spec.params):
        path = ("params", i)
        if param.name in seen:
            check.add((*path, "name"), f"parameter {param.name!r} is listed twice")
        if param.name == THIS:
            check.add((*path, "name"), "'this' is reserved for the called object")
        seen.add(param.name)
        for j, name in enumerate(param.special):
            if name not in check.spec.constants:
                check.add((*path, "special", j),
                          _unknown("constant", name, check.spec.constants, "constants"))
        if check.domain is not None:
            _param_domain_problems(check, path, param, check.domain)


def _param_domain_problems(check: _Check, path: Path_, param: Param, domain: Domain) -> None:
    if param.refers is not None and domain.by_step(param.refers) is None:
        check.add((*path, "refers"), _unknown_step(param.refers, domain))
    if param.values is not None:
        step, _, name = param.values.partition(".")
        coll = domain.by_step(step)
        if coll is None:
            check.add((*path, "values"), _unknown_step(step, domain))
        elif name != "id" and name not in coll.fields:
            check.add((*path, "values"),
                      _unknown("field", name, ["id", *coll.fields], f"fields of {step}"))


def _unknown_step(step: str, domain: Domain, *extra: str) -> str:
    return _unknown("step", step, [*domain.steps(), *extra], f"steps of {domain.family}")


def _interface_problems(check: _Check) -> None:
    obj = check.spec.this_object
    if check.domain is not None and obj is not None and check.domain.by_step(obj) is None:
        check.add(("interface", "object"), _unknown_step(obj, check.domain))


# --------------------------------------------------------------------------- rules


def _rule_problems(check: _Check) -> None:
    rules = check.spec.rules
    catch_all = next((r.index for r in rules if r.when.strip() == CATCH_ALL), None)
    for rule in rules:
        path = ("rules", rule.index)
        _expect_problems(check, (*path, "expect"), _raw(check.spec, "rules", rule.index))
        _cel_problems(check, (*path, "when"), rule.when)
        for name, src in rule.effects.items():
            if check.domain is not None and name not in check.domain.collections:
                check.add((*path, "effects", name), _unknown_collection(name, check.domain))
            _cel_problems(check, (*path, "effects", name), src)
        outs = {p.name for p in check.spec.params if p.is_out}
        for name, src in rule.outputs.items():
            if name not in outs:
                check.add((*path, "outputs", name),
                          f"{name!r} is not an out-parameter of {check.spec.id} "
                          f"(out-parameters: {', '.join(sorted(outs)) or 'none'})")
            _cel_problems(check, (*path, "outputs", name), src)
        if catch_all is not None and rule.index > catch_all:
            check.add(path, f"never reached: rules[{catch_all}] matches always (when: \"true\")")
    if catch_all is None:
        check.add(("rules",), 'no catch-all: the last rule should be when: "true"')
    expected = {symbol for rule in rules for symbol in rule.expect}
    for i, code in enumerate(check.spec.codes):
        if code.symbol not in expected:
            check.add(("returns", "codes", i), f"unreachable: no rule expects {code.symbol}")


def _raw(spec: Spec, section: str, index: int) -> Any:
    """A rule's or scenario's `expect` as written: a string, or a list whose items have lines."""
    entries = spec.raw.get(section) or []
    written = entries[index].get("expect") if index < len(entries) else None
    if written is not None:
        return written
    items = (spec.rules if section == "rules" else spec.scenarios)[index].expect
    return items[0] if len(items) == 1 else list(items)


def _expect_problems(check: _Check, path: Path_, expect: str | list[str]) -> None:
    items = [(path, expect)] if isinstance(expect, str) else [
        ((*path, j), s) for j, s in enumerate(expect)]
    allowed = check.expectable
    for where, symbol in items:
        if symbol in allowed:
            continue
        if symbol in check.spec.also:
            check.add(where, f"{symbol!r} is a family of codes in returns.also, not one code")
            continue
        check.add(where, _unknown("code", symbol, allowed, "returns.codes and returns.also"))


def _unknown_collection(name: str, domain: Domain) -> str:
    return _unknown("collection", name, domain.collections, f"collections of {domain.family}")


# --------------------------------------------------------------------------- CEL


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>(?:[rR][bB]?|[bB][rR])(?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|"[^"\n]*")
             |[bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"
                     |'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>.)
""", re.VERBOSE | re.DOTALL)


def _tokens(src: str) -> list[_Token]:
    """CEL tokens without whitespace, comments or the contents of string literals."""
    out = []
    for match in _TOKEN.finditer(src):
        kind = match.lastgroup or "punct"
        if kind != "space":
            out.append(_Token(kind, match.group()))
    return out


def _comprehension_vars(tokens: list[_Token]) -> set[str]:
    """Names bound by `.exists(x, ...)` and the other macros."""
    bound = set()
    for i in range(len(tokens) - 4):
        a, macro, paren, var, comma = tokens[i:i + 5]
        if (a.text == "." and macro.text in MACROS and paren.text == "("
                and var.kind == "ident" and comma.text == ","):
            bound.add(var.text)
    return bound


def _selections(tokens: list[_Token]) -> Iterator[tuple[str, str | None]]:
    """(root, member) for each top-level `state.X`, `args.Y`, `constants.Z`; member None if bare."""
    for i, tok in enumerate(tokens):
        if tok.kind != "ident" or tok.text not in (STATE, ARGS, CONSTANTS):
            continue
        if i > 0 and tokens[i - 1].text == ".":
            continue
        nxt = tokens[i + 1:i + 3]
        if len(nxt) == 2 and nxt[0].text == "." and nxt[1].kind == "ident":
            yield tok.text, nxt[1].text
        else:
            yield tok.text, None


MAX_CEL_LENGTH = 4096
MAX_COMPREHENSION_DEPTH = 3


@dataclass(frozen=True)
class _CelFacts:
    """What checking an expression needs from its text alone: specs share most expressions
    (`true`, the same guards in each A and W twin), so each source is compiled once."""

    error: str | None  # the expression itself is wrong: too long, too deep, not CEL
    unknown: tuple[str, ...] = ()  # free names no expression may use
    selections: tuple[tuple[str, str | None], ...] = ()
    degree: int = 0  # the power of the world's size its work grows as


@functools.lru_cache(maxsize=8192)
def _cel_facts(src: str) -> _CelFacts:
    if len(src) > MAX_CEL_LENGTH:
        return _CelFacts(f"expression is {len(src)} characters; at most {MAX_CEL_LENGTH}")
    tokens = _tokens(src)
    depth = comprehension_depth([t.text for t in tokens])
    if depth > MAX_COMPREHENSION_DEPTH:
        return _CelFacts(f"comprehensions nest {depth} deep; at most {MAX_COMPREHENSION_DEPTH} "
                         "(each level multiplies the work of an evaluation)")
    try:
        program = compiled(src).program  # the one compilation the oracle uses too
    except (ValueError, TypeError, RuntimeError) as exc:
        return _CelFacts(_cel_error(exc))
    bound = _comprehension_vars(tokens)
    unknown = tuple(name for name in program.variables()
                    if name not in (STATE, ARGS, CONSTANTS) and name not in bound
                    and name not in BUILTIN_NAMES)
    return _CelFacts(None, unknown, tuple(_selections(tokens)),
                     comprehension_degree([t.text for t in tokens]))


def cost_warnings(catalog: Any) -> list[str]:
    """Expressions whose work grows as the cube of the world's size: comprehensions nested
    three deep, each over a collection of its own (`expression.comprehension_degree`). Each
    evaluation is still bounded (`ITERATION_LIMIT` visits, past which the check fails naming
    the rule and the bound), but a world of 100 objects reaches it, so such a rule is likely
    to go unjudged on a real system."""
    warnings: list[str] = []
    for spec in catalog.specs.values():
        for path, src in _spec_expressions(spec):
            if (depth := _cel_facts(src).degree) >= MAX_COMPREHENSION_DEPTH:
                line = spec.document.line(path) if spec.document else 1
                warnings.append(f"{spec.file}:{line}: {dotted(path)}: warning: {_cubic(depth)}")
    for domain in {id(d): d for d in catalog.domains.values()}.values():
        for name, src in domain.invariants:
            if (depth := _cel_facts(src).degree) >= MAX_COMPREHENSION_DEPTH:
                warnings.append(f"{domain.file}: invariant {name!r}: warning: {_cubic(depth)}")
    return warnings


def _spec_expressions(spec: Spec) -> Iterator[tuple[Path_, str]]:
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
    side = round(ITERATION_LIMIT ** (1 / depth))
    return (f"comprehensions nest {depth} deep, each over a collection of its own, so the "
            f"work grows as the world's size to the power {depth}: collections of {side} "
            f"objects reach the bound of {ITERATION_LIMIT:,} visits, past which the check "
            "fails naming this rule")


def _cel_problems(check: _Check, path: Path_, src: str) -> None:
    """Check one expression, and every name it uses against the spec and domain."""
    facts = _cel_facts(src)
    if facts.error is not None:
        check.add(path, facts.error)
        return
    for name in facts.unknown:
        check.add(path, f"unknown variable {name!r}: expressions see only state, args, "
                        "constants and their own comprehension variables")
    for root, member in facts.selections:
        message = _selection_problem(check, root, member)
        if message:
            check.add(path, message)


def _cel_error(exc: Exception) -> str:
    found = re.findall(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)", str(exc))
    if not found:
        return f"invalid CEL: {_shorten(str(exc).splitlines()[0] if str(exc) else repr(exc))}"
    line, col, message = next((f for f in found if f[2].startswith("Syntax error")), found[0])
    return f"invalid CEL at {line}:{col}: {_shorten(message)}"


def _selection_problem(check: _Check, root: str, member: str | None) -> str | None:
    if member is None:
        return f"{root} is used only as {root}.<name>"
    if root == STATE:
        if check.domain is None or member in check.domain.collections or member == FAULTS:
            return None
        return f"state.{member}: {_unknown_collection(member, check.domain)}"
    if root == ARGS:
        if member == THIS and not check.is_com:
            return "args.this: a function has no 'this' (only com-methods do)"
        if member in check.param_names:
            return None
        return f"args.{member}: {_unknown('parameter', member, check.param_names, 'parameters')}"
    if member in check.spec.constants:
        return None
    return f"constants.{member}: {_unknown('constant', member, check.spec.constants, 'constants')}"


# --------------------------------------------------------------------------- scenarios


def _scenario_problems(check: _Check) -> None:
    names: dict[str, int] = {}
    for scenario in check.spec.scenarios:
        path = ("scenarios", scenario.index)
        if scenario.name in names:
            check.add((*path, "name"),
                      f"scenario name also used by scenarios[{names[scenario.name]}]")
        names.setdefault(scenario.name, scenario.index)
        _expect_problems(check, (*path, "expect"), _raw(check.spec, "scenarios", scenario.index))
        created: dict[str, str] = {}
        if check.domain is not None:
            for j, step in enumerate(scenario.given):
                _step_problems(check, check.domain, (*path, "given", j), step, created)
        _call_problems(check, (*path, "call"), scenario.call, created)
        for name in scenario.then:
            if check.domain is not None and name not in check.domain.collections:
                check.add((*path, "then", name), _unknown_collection(name, check.domain))


def _step_problems(check: _Check, domain: Domain, path: Path_, step: dict[str, Any],
                   created: dict[str, str]) -> None:
    """A given step: a known kind, a fresh name, declared fields with plausible values."""
    kind, name = next(iter(step.items()))
    if not isinstance(name, str):
        check.add((*path, kind), f"{kind} {_short(name)}: name it with a string")
        return
    if kind == FAULT_STEP:
        if name not in domain.faults:
            check.add((*path, kind),
                      _unknown("fault", name, domain.faults, f"faults of {domain.family}"))
            return
        fields = domain.faults[name]
    else:
        coll = domain.by_step(kind)
        if coll is None:
            check.add((*path, kind), _unknown_step(kind, domain, FAULT_STEP))
            return
        fields = coll.fields
        if name in created:
            check.add((*path, kind), f"{name!r} is created twice")
        else:
            created[name] = kind
    for key, value in list(step.items())[1:]:
        if key not in fields:
            check.add((*path, key), _unknown("field", key, fields, f"fields of {kind}"))
            continue
        message = _value_problem(domain, fields[key], value, created)
        if message:
            check.add((*path, key), message)


def _value_problem(domain: Domain, ftype: FieldType, value: Any,
                   created: dict[str, str]) -> str | None:
    """Why a given value does not fit its declared field type, or None."""
    kind = ftype.kind
    if kind == "ref":
        return _ref_problem(domain, ftype, value, created)
    if kind == "list":
        if not isinstance(value, list):
            return f"{_short(value)} is not a list"
        item = ftype.item or FieldType("string")
        return next((m for v in value if (m := _value_problem(domain, item, v, created))), None)
    if kind == "enum":
        if value in ftype.choices:
            return None
        quote = " (quote YAML words like off, on, yes, no)" if _is_scalar(value) else ""
        return f"{_short(value)} is not one of {', '.join(map(str, ftype.choices))}{quote}"
    if kind == "bool":
        return None if isinstance(value, bool) else f"{_short(value)} is not true or false"
    if kind == "string":
        if not isinstance(value, str):
            return f"{_short(value)} is not a string"
        too_long = ftype.max_length is not None and len(value) > ftype.max_length
        return f"longer than {ftype.max_length} characters" if too_long else None
    if kind in ("uint16", "uint32"):
        top = 0xFFFF if kind == "uint16" else 0xFFFFFFFF
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top
        return None if ok else f"{_short(value)} is not a {kind}"
    if kind == "struct":
        return _struct_problem(domain, ftype, value, created)
    return None


def _ref_problem(domain: Domain, ftype: FieldType, value: Any,
                 created: dict[str, str]) -> str | None:
    if isinstance(value, dict) and set(value) == {UNKNOWN}:
        return None
    if not isinstance(value, str):
        return f"{_short(value)} is not the name of an object"
    if value not in created:
        return f"{value!r} is not created by an earlier step"
    coll = domain.collections.get(ftype.ref or "")
    if ftype.ref != ANY and coll is not None and created[value] != coll.step:
        return f"{value!r} is a {created[value]}, not a {coll.step}"
    return None


def _struct_problem(domain: Domain, ftype: FieldType, value: Any,
                    created: dict[str, str]) -> str | None:
    fields = domain.types.get(ftype.struct or "", {})
    if not isinstance(value, dict):
        return f"{_short(value)} is not a {ftype.struct}"
    for key, item in value.items():
        if key not in fields:
            return f"{ftype.struct} has no field {key!r} (fields: {', '.join(fields)})"
        message = _value_problem(domain, fields[key], item, created)
        if message:
            return f"{key}: {message}"
    return None


def _call_problems(check: _Check, path: Path_, call: dict[str, Any],
                   created: dict[str, str]) -> None:
    params = {p.name: p for p in check.spec.params}
    for key, value in call.items():
        if key == THIS and check.is_com:
            message = _arg_ref_problem(check, value, check.spec.this_object, (), created)
        elif key in params:
            param = params[key]
            message = None if param.refers is None else _arg_ref_problem(
                check, value, param.refers, param.special, created,
                nullable=param.nullable or param.optional)
        else:
            message = _unknown("parameter", key, check.param_names, "parameters")
        if message:
            check.add((*path, key), message)


def _arg_ref_problem(check: _Check, value: Any, step: str | None, special: tuple[str, ...],
                     created: dict[str, str], nullable: bool = False) -> str | None:
    """An object argument: a name the scenario created, {unknown: step}, or a constant."""
    if check.domain is None or step is None:
        return None
    if isinstance(value, dict) and set(value) == {UNKNOWN}:
        target = value[UNKNOWN]
        ok = isinstance(target, str) and check.domain.by_step(target) is not None
        return None if ok else _unknown_step(str(target), check.domain)
    if (value is None and nullable) or (isinstance(value, int) and not isinstance(value, bool)):
        return None  # NULL where allowed, or a literal id (e.g. a port number) on purpose
    if isinstance(value, str) and (value in created or value in special):
        return None
    known = [*created, *special]
    return (f"{_short(value)} is not an object this scenario creates; use {{unknown: {step}}} "
            f"for an id that exists nowhere{_did_you_mean(str(value), known)}")


def _finding_problems(check: _Check) -> None:
    docs = {s.get("doc") for s in check.spec.sources}
    symbols = [c.symbol for c in check.spec.codes] + list(check.spec.also)
    for i, finding in enumerate(check.spec.findings):
        code, source = finding.get("code"), finding.get("source")
        if code is not None and code not in symbols:
            check.add(("findings", i, "code"),
                      _unknown("code", code, symbols, "returns.codes and returns.also"))
        if source is not None and source not in docs:
            check.add(("findings", i, "source"),
                      f"{source!r} is not the doc of any entry in sources")


def _observed_problems(check: _Check) -> None:
    """`observed` entries: a code Windows can give, a documented code it replaces, CEL like a
    rule's `when` (the version string itself is the schema's)."""
    known = list(dict.fromkeys([*check.expectable, *check.codes.symbols]))
    for entry in check.spec.observed:
        path = ("observed", entry.index)
        if entry.code not in known:
            check.add((*path, "code"),
                      _unknown("code", entry.code, known, "returns.codes and codes.yaml"))
        if entry.instead_of is not None:
            if entry.instead_of not in check.expectable:
                check.add((*path, "instead_of"),
                          _unknown("code", entry.instead_of, check.expectable,
                                   "returns.codes and returns.also"))
            elif entry.instead_of == entry.code:
                check.add((*path, "instead_of"), f"{entry.code} replaces itself: an observed "
                                                 "code must differ from the documented one")
        if entry.when is not None:
            _cel_problems(check, (*path, "when"), entry.when)


# --------------------------------------------------------------------------- the catalog


@dataclass(frozen=True)
class _Seen:
    """Where a symbol's value is written; its line is looked up only for a message."""

    value: int
    file: str
    path: str
    doc: Document | None = None
    at: Path_ = ()

    @property
    def line(self) -> int:
        return self.doc.line(self.at) if self.doc is not None else 1


def _sequence_problems(specs: list[Spec]) -> list[Problem]:
    """A multi-call scenario may call another method only if its spec is loaded too, in the
    same family (so a run fails at exit 2, before any call, rather than mid-run)."""
    by_id = {s.id: s for s in specs}
    problems = []
    for spec in specs:
        for scenario in spec.scenarios:
            for j, entry in enumerate(scenario.calls):
                method = entry.get("method") if isinstance(entry, dict) else None
                if method is None or spec.document is None:
                    continue
                where = ("scenarios", scenario.index, "calls", j, "method")
                other = by_id.get(method)
                if other is None:
                    problems.append(spec.document.problem(
                        where, f"unknown method {method!r}: its spec is not among those loaded"))
                elif other.family != spec.family:
                    problems.append(spec.document.problem(
                        where, f"{method!r} is in family {other.family}, not {spec.family}"))
    return problems


def catalog_problems(specs: list[Spec], codes: CodeTable) -> list[Problem]:
    """Across files: one value per symbol, and symbols whose severity matches their value."""
    problems: list[Problem] = _sequence_problems(specs)
    table = _table_locations(specs, codes)
    first: dict[str, _Seen] = dict(table)
    for symbol, seen in table.items():
        message = _severity_problem(symbol, seen.value)
        if message:
            problems.append(Problem(seen.file, seen.line, seen.path, message))
    for spec in specs:
        for i, code in enumerate(spec.codes):
            path = f"returns.codes[{i}].value"
            here = _Seen(code.value, spec.file, path, spec.document,
                         ("returns", "codes", i, "value"))
            earlier = first.setdefault(code.symbol, here)
            if earlier.value != code.value:
                problems.append(Problem(here.file, here.line, path,
                                        f"{code.symbol} is {hex32(code.value)} here but "
                                        f"{hex32(earlier.value)} in {earlier.file}:{earlier.line}"))
            message = _severity_problem(code.symbol, code.value)
            if message:
                problems.append(Problem(here.file, here.line, path, message))
    problems.extend(_wrapped_win32_problems(first))
    return problems


def _table_locations(specs: list[Spec], codes: CodeTable) -> dict[str, _Seen]:
    """Where each code-table symbol is written, for messages that name codes.yaml."""
    root = _specs_root(specs[0].file) if specs else None
    file = str(root / "codes.yaml") if root else "codes.yaml"
    try:
        doc = load_file(file) if root else None
    except SourceError:
        doc = None
    return {symbol: _Seen(value, file, f"symbols.{symbol}", doc, ("symbols", symbol))
            for symbol, value in codes.symbols.items()}


def _severity_problem(symbol: str, value: int) -> str | None:
    """E_ names a failure (severity bit set), S_ a success (bit clear)."""
    if symbol.startswith("E_") or "_E_" in symbol:
        if not failed(value):
            return f"{symbol} names a failure but {hex32(value)} has the severity bit clear"
    elif (symbol.startswith("S_") or "_S_" in symbol) and failed(value):
        return f"{symbol} names a success but {hex32(value)} has the severity bit set"
    return None


def _wrapped_win32_problems(first: dict[str, _Seen]) -> list[Problem]:
    """HRESULT_FROM_WIN32(X) must be 0x8007xxxx of X wherever X's value is known."""
    out = []
    for symbol, seen in first.items():
        match = WIN32_WRAPPED.match(symbol)
        name = match.group(1) if match else ""
        inner = first.get(name)
        if inner is None:
            continue
        want = inner.value if inner.value == 0 else 0x80070000 | (inner.value & 0xFFFF)
        if seen.value != want:
            out.append(Problem(seen.file, seen.line, seen.path,
                               f"{symbol} is {hex32(seen.value)} but {name} is "
                               f"{hex32(inner.value)}, so it must be {hex32(want)}"))
    return out
