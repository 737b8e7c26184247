"""Loading at scale: the quick paths must decide exactly as the slow ones they stand in for.

A document is accepted by a test compiled from the schema and handed to jsonschema only when
it fails; a file's line map is built only when a problem is reported. These tests pin that the
compiled test agrees with jsonschema on many broken documents, and that lines found late are
the lines found early.
"""

from __future__ import annotations

import copy
import datetime
import random
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from support import ROOT

from conformance.spec import schema, source
from conformance.spec.schema_compiler import TYPE_TESTS
from conformance.spec.source import load_file, load_text

SPECS = ROOT / "specs"
VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    1.5,
    float("nan"),
    2**32,
    "",
    "x",
    "true",
    "in",
    "out",
    "E_FAIL",
    "S_OK",
    "com-method",
    "function",
    "fault",
    "faults",
    "id",
    "call",
    "completion",
    "hresult",
    "x-y",
    [],
    {},
    ["a", "a"],
    ["a"],
    [1, True],
    {"a": 1},
    {"x-a": 1},
    datetime.date(2024, 1, 1),
    b"\x00",
]
KEYS = [
    "x-a",
    "zzz",
    "name",
    "call",
    "calls",
    "expect",
    "given",
    "then",
    "same",
    "ref",
    "mask",
    "value",
    "kind",
    "interface",
    "object",
    "effects",
    "outputs",
    "when",
    "id",
    "faults",
    "fault",
    "doc",
    "source",
    "via",
    "special",
    "max_length",
    "list",
    "enum",
    "struct",
]


def _kind(file: Path) -> str:
    return "codes" if file.name == "codes.yaml" else "domain" if "domains" in file.parts else "spec"


def _bundled() -> list[tuple[str, Any]]:
    files = [f for f in sorted(SPECS.rglob("*.yaml"))]
    return [(_kind(f), load_file(f).data) for f in files]


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        out += _paths(item, (*path, key))
    return out


def _mutated(data: Any, rnd: random.Random) -> Any:
    """The document with one to three random edits: a value replaced, a key dropped, added or
    renamed, an item repeated."""
    data = copy.deepcopy(data)
    for _ in range(rnd.choice([1, 1, 2, 3])):
        path = rnd.choice(_paths(data)[1:])
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        last, op = path[-1], rnd.randrange(4)
        if op == 0:
            parent[last] = copy.deepcopy(rnd.choice(VALUES))
        elif op == 1:
            del parent[last]
        elif op == 2 and isinstance(parent, dict):
            parent[rnd.choice(KEYS)] = copy.deepcopy(rnd.choice([*VALUES, parent[last]]))
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        else:
            parent[rnd.choice(KEYS)] = parent.pop(last)
    return data


@pytest.mark.parametrize("kind", schema.SCHEMA_KINDS)
def test_every_bundled_schema_compiles(kind: str) -> None:
    # A keyword the compiled test lacks makes jsonschema check every document: 10x slower.
    assert schema.acceptor(kind) is not None


def test_compiled_schema_test_agrees_with_jsonschema() -> None:
    rnd = random.Random(20240601)
    docs = _bundled()
    invalid = 0
    for _ in range(1500):
        kind, data = rnd.choice(docs)
        doc = _mutated(data, rnd)
        want = not any(True for _ in schema.validator(kind).iter_errors(doc))
        assert schema.acceptor(kind)(doc) is want, (kind, doc)
        invalid += not want
    assert 300 < invalid < 1200  # both answers were exercised


def test_type_tests_are_jsonschemas() -> None:
    checker = Draft202012Validator.TYPE_CHECKER
    for name, test in TYPE_TESTS.items():
        for value in VALUES:
            assert test(value) == checker.is_type(value, name), (name, value)


def test_lines_are_read_only_when_asked(tmp_path: Path) -> None:
    file = tmp_path / "a.yaml"
    file.write_text("a: 1\nb:\n  - x\n  - {c: 2}\n", encoding="utf-8")
    doc = load_file(file)
    assert doc._lines is None
    assert [doc.line(p) for p in [("a",), ("b",), ("b", 1), ("b", 1, "c"), ("b", 1, "z")]] == [
        1,
        2,
        4,
        4,
        4,
    ]
    text = load_text(file.read_text(encoding="utf-8"), "t.yaml")
    assert text.line(("b", 0)) == 3


def test_a_problem_found_while_reading_is_located_as_before(tmp_path: Path) -> None:
    with pytest.raises(source.SourceError) as info:
        load_text("a: 1\nb:\n  c: 1\n  c: 2\n", "dup.yaml")
    assert [str(p) for p in info.value.problems] == ["dup.yaml:4: b: duplicate key 'c'"]


def test_reading_keeps_no_yaml_nodes() -> None:
    load_text("a: 1\nb: [2, true, null, 1.5]\n", "t.yaml")
    assert not source._SAFE.constructed_objects  # it once held every file's node tree


def test_non_text_keys_are_noticed() -> None:
    assert load_text("a: {1: x}\n", "t.yaml").text_keys is False
    assert load_text("a: {b: x}\n", "t.yaml").text_keys is True
