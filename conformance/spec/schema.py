"""Checking a document's shape against `specs/schema/<kind>.schema.json` (JSON Schema 2020-12).

A spec, a domain or the code table is checked before anything is built from it, so the model
can assume a well-formed document. A valid document is accepted by the test compiled from its
schema (`schema_compiler`); jsonschema is asked only about one that is not, and each of its
errors becomes a `Problem` at the YAML line it concerns, worded for a spec's author.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from conformance.spec.messages import did_you_mean, is_scalar, short, shorten
from conformance.spec.paths import default_specs_dir
from conformance.spec.schema_compiler import Accept, compile_schema
from conformance.spec.source import Document, Path_, Problem, SourceError, dotted

SCHEMA_KINDS = ("spec", "domain", "codes")


def schema_problems(doc: Document, kind: str) -> list[Problem]:
    """Check `doc.data` against `specs/schema/<kind>.schema.json`, one Problem per error."""
    if kind not in SCHEMA_KINDS:
        raise ValueError(f"unknown schema kind {kind!r} (one of {', '.join(SCHEMA_KINDS)})")
    accept = acceptor(kind)
    if doc.text_keys and accept is not None and accept(doc.data):
        return []  # valid: jsonschema would find nothing, and is far slower to say so
    problems: list[Problem] = []
    data = _string_keys(doc, doc.data, (), problems)
    errors = sorted(
        validator(kind).iter_errors(data),
        key=lambda e: (doc.line(tuple(e.absolute_path)), [str(p) for p in e.path]),
    )
    for error in errors:
        problems.extend(_describe(doc, error))
    return list(dict.fromkeys(problems))


@functools.cache
def validator(kind: str) -> Draft202012Validator:
    """Load a schema once per process; they ship next to the specs."""
    path = default_specs_dir() / "schema" / f"{kind}.schema.json"
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(
            [Problem(str(path), 1, "", f"cannot load the {kind} schema: {exc}")]
        ) from None
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@functools.cache
def acceptor(kind: str) -> Accept | None:
    """The compiled validity test of a schema, or None where only jsonschema can tell."""
    return compile_schema(validator(kind).schema)


def _string_keys(doc: Document, value: Any, path: Path_, problems: list[Problem]) -> Any:
    """A copy with string keys: YAML reads `1:` or `off:` as non-strings, JSON has none."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            sub = (*path, key if isinstance(key, str | int) else str(key))  # as source.py keys it
            if not isinstance(key, str):
                problems.append(
                    Problem(
                        doc.file, doc.line(sub), dotted(path), f"key {key!r} is not text: quote it"
                    )
                )
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
        return [
            doc.problem(path, f"missing required key {key!r}")
            for key in error.validator_value
            if key not in error.instance
        ]
    if "propertyNames" in error.absolute_schema_path:
        key = error.instance
        return [Problem(doc.file, doc.line((*path, key)), dotted(path), f"key {_message(error)}")]
    return [doc.problem(path, _message(error))]


def _message(error: ValidationError) -> str:
    """One jsonschema error in a spec author's words: what was found, what was expected."""
    instance, expected = error.instance, error.validator_value
    if error.validator == "type":
        types = [expected] if isinstance(expected, str) else expected
        quote = " (quote it)" if "string" in types and is_scalar(instance) else ""
        return f"{short(instance)} is not of type {', '.join(repr(t) for t in types)}{quote}"
    if error.validator == "const":
        return f"must be {expected!r}, not {short(instance)}"
    if error.validator == "pattern" and "title" in error.schema:
        return f"{short(instance)} is not {error.schema['title']}"
    if error.validator == "not":
        return f"{short(instance)} is a reserved name"
    if error.validator == "enum":
        hint = did_you_mean(str(instance), [str(e) for e in expected])
        return f"{short(instance)} is not one of {', '.join(map(str, expected))}{hint}"
    if error.validator == "dependentRequired" and isinstance(instance, dict):
        pairs = [
            (k, d)
            for k, deps in expected.items()
            if k in instance
            for d in deps
            if d not in instance
        ]
        return "; ".join(f"{k!r} needs {d!r} beside it" for k, d in pairs) or error.message
    if error.validator == "maxProperties" and isinstance(instance, dict):
        return f"too many keys ({', '.join(map(str, instance))}): at most {expected} here"
    return shorten(error.message)


def _unknown_keys(doc: Document, path: Path_, error: ValidationError) -> list[Problem]:
    """One problem per key the schema does not allow, at that key's line, with the keys
    that are allowed and the likeliest typo."""
    schema = error.schema
    known = list(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    allowed = ", ".join(known + (["x-*"] if "^x-" in patterns else []))
    out = []
    for key in error.instance:
        if key in known or any(re.search(p, key) for p in patterns):
            continue
        out.append(
            Problem(
                doc.file,
                doc.line((*path, key)),
                dotted(path),
                f"unknown key {key!r} (allowed: {allowed}){did_you_mean(key, known)}",
            )
        )
    return out
