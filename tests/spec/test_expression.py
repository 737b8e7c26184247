"""The Python translation of CEL agrees with `cel`, the reference, wherever it answers.

Three sources of expressions: a table of CEL's sharp edges (typing, overflow, division, errors,
macros), expressions drawn at random from CEL's grammar, and every expression of every bundled
spec on states and arguments drawn by the harness's own strategies. A broken translation is
caught by each (the `broken` tests), so the agreement shown here can fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import cel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ROOT

from conformance.engine.oracle import Oracle
from conformance.engine.strategies import cases, state_of
from conformance.spec import expression
from conformance.spec.catalog import load_catalog
from conformance.spec.expression import Expression, Scope, compiled
from conformance.spec.translate import translate

VARIABLES: dict[str, Any] = {
    "x": 7,
    "y": -3,
    "zero": 0,
    "big": 2**63,
    "top": 2**63 - 1,
    "f": 1.5,
    "s": "ab",
    "u": "日本",
    "b": True,
    "n": None,
    "l": [1, 2, 3],
    "e": [],
    "m": {"a": 1, "b": "x"},
    "t": (1, 2),
    "objs": [{"id": "T1", "port": 3260, "tags": ["a"]}, {"id": "T2", "port": None, "tags": []}],
}
FUNCTIONS = {
    "ansi": lambda text: (
        text.encode("cp1252", "replace").decode("cp1252") if isinstance(text, str) else text
    )
}


def same(a: Any, b: Any) -> bool:
    """Equal with CEL's types kept apart (True is not 1, 1 is not 1.0); tuples read as lists."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b or (a != a and b != b)  # NaN is NaN here


def disagreement(
    source: str, variables: dict[str, Any], functions: dict[str, Any], fast: Any = None
) -> str | None:
    """Why the translation's answer is not the reference's, or None when they agree or when
    the translation gives up (then the reference answers: agreement by construction)."""
    try:
        program = cel.compile(source)
    except Exception:  # not CEL: nothing to compare
        return None
    try:
        fast = fast or translate(source)
    except expression.Untranslatable:  # cel alone runs it
        return None
    try:
        mine = fast(variables, functions)
    except Exception:
        return None
    try:
        theirs = program.execute(cel.Context(variables, functions=functions))
    except Exception as exc:
        return f"{source!r}: translation gave {mine!r}, cel raised {type(exc).__name__}: {exc}"
    if not same(mine, theirs):
        return f"{source!r}: translation gave {mine!r}, cel gave {theirs!r}"
    return None


EDGES = [
    # equality and typing
    "1 == 1.0",
    "b == 1",
    "b == true",
    "n == null",
    "m == {'a': 1, 'b': 'x'}",
    "[1] == [1.0]",
    "s == null",
    "1 == 'a'",
    "l == [1, 2, 3]",
    "t == [1, 2]",
    "objs[1].port == null",
    "m == {'a': 1.0, 'b': 'x'}",
    "{'a': b} == {'a': 1}",
    "[b] == [1]",
    # ordering
    "1 < 1.5",
    "true < false",
    "'ab' < 'b'",
    "s < 1",
    "x <= y",
    "f >= 1",
    "n < 1",
    # arithmetic
    "x + y",
    "x - y",
    "x * y",
    "x / 2",
    "-7 / 2",
    "-7 % 2",
    "7 % -3",
    "x / zero",
    "x % zero",
    "top + 1",
    "-top - 2",
    "top * 2",
    "-(-9223372036854775807 - 1)",
    "1 + 1.0",
    "f + f",
    "s + 'c'",
    "l + [4]",
    "l + t",
    "big + 1",
    "big - 1",
    "-x",
    "-f",
    "-s",
    "2 * 3.0",
    # logic and its errors
    "b && true",
    "!b",
    "!x",
    "x && true",
    "false && x / zero == 1",
    "x / zero == 1 && false",
    "x / zero == 1 || true",
    "true || x / zero == 1",
    "b ? 1 : 'a'",
    "x ? 1 : 2",
    "b ? x / zero : 1",
    "!b ? x / zero : 1",
    # access
    "m.a",
    "m.zz",
    "m['b']",
    "objs[0].id",
    "objs[2].id",
    "l[0]",
    "l[-1]",
    "l[b]",
    "s.a",
    "n.a",
    "has(m.a)",
    "has(m.zz)",
    "has(s.a)",
    "has(objs[0].port)",
    "{1: 'a'}[1]",
    "{'a': [1]}.a[0]",
    "t[1]",
    # functions and methods
    "size(s)",
    "s.size()",
    "size(u)",
    "size(l)",
    "size(m)",
    "size(x)",
    "s.contains('a')",
    "s.startsWith('a')",
    "s.endsWith('b')",
    "s.contains(1)",
    "s.matches('^a.$')",
    "'ab\\n'.matches('^ab$')",
    "u.matches('^(?s).{1,2}$')",
    "u.matches('^\\\\w+$')",
    "s.matches('(?i)A')",
    "s.matches('a(?=b)')",
    "int('12')",
    "int('+3')",
    "int(' 3')",
    "int('1_0')",
    "int(x)",
    "int(f)",
    "string(x)",
    "string(s)",
    "string(f)",
    "string(b)",
    "dyn(x)",
    "ansi(u)",
    "ansi(s) == s",
    "nope(1)",
    "1 in l",
    "'a' in m",
    "1 in m",
    "null in [null]",
    "b in [1]",
    "x in s",
    # macros
    "l.exists(v, v > 2)",
    "l.all(v, v > 0)",
    "l.exists_one(v, v > 1)",
    "l.filter(v, v > 1)",
    "l.map(v, v * 2)",
    "l.map(v, v > 1, v * 2)",
    "m.exists(k, k == 'a')",
    "m.map(k, k)",
    "e.exists(v, true)",
    "e.all(v, false)",
    "l.exists(v, v == 1 || v / zero == 1)",
    "l.exists(v, v / (v - 2) == 1 || v == 3)",
    "l.all(v, v == 2 && 1 / (v - 2) == 1)",
    "l.exists_one(v, v == 1 || 1 / zero == 1)",
    "l.map(v, v == 3 ? 0 : 1 / (v - 2))",
    "x.exists(v, v)",
    "l.exists(v, 'a')",
    "objs.filter(o, o.port != null).map(o, o.id)",
    "objs.exists(o, o.tags.exists(t, t == 'a'))",
    "l.map(x, x + 1)",
    "objs.map(o, o.id == 'T1' ? {'id': o.id, 'port': 1} : o)",
    # literals
    "0x1F",
    ".5",
    "1e3",
    "1.5e-1",
    "'a\\x41\\u00e9\\n'",
    "r'a\\n'",
    "'''x'y'''",
    '"""a"b"""',
    "b'ab'",
    "1u",
    "{'a': 1, 'a': 2}",
    "{x: 1}",
    "{b: 1}",
    "[1, 'a', null]",
    "-9223372036854775808",
    "9223372036854775807",
    "// a comment\n 1",
]


@pytest.mark.parametrize("source", EDGES)
def test_the_translation_agrees_with_cel_on_its_sharp_edges(source: str) -> None:
    assert disagreement(source, VARIABLES, FUNCTIONS) is None


def test_common_expressions_are_translated_not_left_to_cel() -> None:
    """The fast path must be taken where it can be, or it is no fast path."""
    for source in (
        "l.exists(v, v > 2)",
        "m.a == 1 && s.size() == 2",
        "objs[0].id + 'x'",
        "has(m.a) ? m.a : 0",
        "{'id': s, 'n': [x, y]}",
        "ansi(s)",
    ):
        fast = translate(source)
        assert same(
            fast(VARIABLES, FUNCTIONS),
            cel.compile(source).execute(cel.Context(VARIABLES, functions=FUNCTIONS)),
        )


# -- drawn expressions ------------------------------------------------------------------------

LEAVES = st.sampled_from(
    [
        "0",
        "1",
        "-1",
        "2",
        "7",
        "9223372036854775807",
        "-9223372036854775808",
        "1.5",
        "-0.5",
        "''",
        "'a'",
        "'ab'",
        "'é'",
        "true",
        "false",
        "null",
        "x",
        "y",
        "zero",
        "big",
        "top",
        "f",
        "s",
        "u",
        "b",
        "n",
        "l",
        "e",
        "m",
        "t",
        "objs",
        "m.a",
        "m.b",
        "objs[0]",
        "objs[1].port",
        "objs[0].tags",
        "[]",
        "[1, 2]",
        "{'a': 1}",
        "{'a': 1, 'b': 'x'}",
    ]
)


def _compose(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.sampled_from(
        ["+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "in"]
    )
    return st.one_of(
        st.tuples(inner, binary, inner).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
        st.tuples(st.sampled_from(["!", "-"]), inner).map(lambda p: f"{p[0]}({p[1]})"),
        st.tuples(inner, inner, inner).map(lambda p: f"({p[0]} ? {p[1]} : {p[2]})"),
        st.tuples(inner, st.sampled_from(["a", "b", "id", "port", "zz"])).map(
            lambda p: f"({p[0]}).{p[1]}"
        ),
        st.tuples(inner, inner).map(lambda p: f"({p[0]})[{p[1]}]"),
        st.tuples(st.sampled_from(["size", "int", "string", "dyn", "ansi"]), inner).map(
            lambda p: f"{p[0]}({p[1]})"
        ),
        st.tuples(
            inner, st.sampled_from(["contains", "startsWith", "endsWith", "matches"]), inner
        ).map(lambda p: f"({p[0]}).{p[1]}({p[2]})"),
        st.tuples(inner, st.sampled_from(["a", "port"])).map(lambda p: f"has(({p[0]}).{p[1]})"),
        st.tuples(
            inner, st.sampled_from(["all", "exists", "exists_one", "filter", "map"]), inner
        ).map(lambda p: f"({p[0]}).{p[1]}(v, {p[2].replace('x', 'v')})"),
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(inner, inner), max_size=2).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
        ),
    )


EXPRESSIONS = st.recursive(LEAVES, _compose, max_leaves=12)


def _typed() -> st.SearchStrategy[str]:
    """Expressions that are mostly well typed, so that most of them have a value to compare
    (drawn at random from the whole grammar, most are type errors)."""

    def form(template: str, *parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.tuples(*parts).map(lambda p: template.format(*p))

    ints = st.deferred(
        lambda: st.one_of(
            st.sampled_from(
                [
                    "x",
                    "y",
                    "zero",
                    "top",
                    "1",
                    "-1",
                    "2",
                    "l[0]",
                    "m.a",
                    "size(s)",
                    "l.size()",
                    "objs[0].port",
                    "9223372036854775807",
                ]
            ),
            form("({} {} {})", ints, st.sampled_from("+-*/%"), ints),
            form("-({})", ints),
            form("({} ? {} : {})", bools, ints, ints),
        )
    )
    strs = st.deferred(
        lambda: st.one_of(
            st.sampled_from(["s", "u", "''", "'a'", "'é'", "objs[0].id", "m.b"]),
            form("({} + {})", strs, strs),
            form("string({})", ints),
            form("ansi({})", strs),
            form("({} ? {} : {})", bools, strs, strs),
        )
    )
    lists = st.deferred(
        lambda: st.one_of(
            st.sampled_from(["l", "e", "t", "[1, 2]", "objs.map(o, o.port)"]),
            form("{}.filter(v, v > {})", lists, ints),
            form("{}.map(v, v + {})", lists, ints),
            form("({} + {})", lists, lists),
            form("[{}, {}]", ints, ints),
        )
    )
    bools = st.deferred(
        lambda: st.one_of(
            st.sampled_from(["b", "true", "false", "has(m.a)", "has(m.zz)"]),
            form("({} {} {})", ints, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), ints),
            form("({} {} {})", strs, st.sampled_from(["<", "==", "!="]), strs),
            form("({} {} {})", bools, st.sampled_from(["&&", "||", "=="]), bools),
            form("!({})", bools),
            form("({} in {})", ints, lists),
            form("{}.exists(v, v == {})", lists, ints),
            form("{}.all(v, v != {})", lists, ints),
            form("{}.exists_one(v, v > {})", lists, ints),
            form("{}.contains({})", strs, strs),
            form("{}.startsWith({})", strs, strs),
            form("{}.matches('^a.*$')", strs),
            form("({} == {})", lists, lists),
        )
    )
    return st.one_of(ints, strs, lists, bools)


TYPED = _typed()
DRAWN = settings(
    max_examples=int(os.environ.get("CONFORMANCE_FUZZ_EXAMPLES", "400")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@DRAWN
@given(EXPRESSIONS)
def test_the_translation_agrees_with_cel_on_drawn_expressions(source: str) -> None:
    assert disagreement(source, VARIABLES, FUNCTIONS) is None


@pytest.mark.slow
@settings(DRAWN, max_examples=max(1, DRAWN.max_examples // 2))
@given(TYPED)
def test_the_translation_agrees_with_cel_on_drawn_well_typed_expressions(source: str) -> None:
    assert disagreement(source, VARIABLES, FUNCTIONS) is None


# -- every bundled spec -----------------------------------------------------------------------


def _spec_expressions(spec: Any) -> set[str]:
    found = {rule.when for rule in spec.rules}
    for rule in spec.rules:
        found.update(rule.effects.values(), rule.outputs.values())
    found.update(o.when for o in spec.observed if o.when)
    return found


def test_every_spec_expression_is_translated() -> None:
    catalog = load_catalog()
    untranslated = sorted(
        f"{spec.file}: {source}"
        for spec in catalog.specs.values()
        for source in _spec_expressions(spec)
        if compiled(source).fast is None
    )
    assert not untranslated, "\n".join(untranslated)


def _spec_ids() -> list[str]:
    try:
        return sorted(load_catalog().specs)
    except Exception:  # reported by the test that loads the catalog
        return []


@pytest.mark.parametrize("method", _spec_ids())
def test_the_translation_agrees_with_cel_on_every_spec(method: str) -> None:
    catalog = load_catalog()
    spec = catalog.specs[method]
    domain = catalog.domain_of(spec)
    oracle = Oracle(spec, catalog.codes)
    sources = sorted(_spec_expressions(spec))
    answered = [0]

    @settings(
        max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(cases(spec, domain))
    def agree(case: Any) -> None:
        scope = oracle.scope(state_of(domain, case.given), case.args)
        for source in sources:
            problem = disagreement(source, scope.variables, scope.functions, compiled(source).fast)
            assert problem is None, problem
            answered[0] += 1

    agree()
    assert answered[0] > 0


# -- a broken translation is caught -----------------------------------------------------------


def _broken(name: str, replacement: Any) -> Any:
    """translate() with one of CEL's operations replaced by Python's looser one."""

    def build(source: str) -> Any:
        fast = translate(source)
        namespace = dict(fast.__globals__)
        namespace[name] = replacement
        return type(fast)(fast.__code__, namespace)

    return build


@pytest.mark.parametrize(
    ("name", "replacement", "source"),
    [
        ("_eq", lambda a, b: a == b, "b == 1"),  # Python: True == 1
        ("_add", lambda a, b: a + b, "top + 1"),  # Python ints do not overflow
        ("_div", lambda a, b: a // b, "-7 / 2"),  # Python floors, CEL truncates
        ("_size", len, "size(u)"),  # this cel counts UTF-8 bytes
        ("_b", lambda v: v, "x ? 1 : 2"),  # Python truthiness
    ],
)
def test_a_broken_translation_is_caught(name: str, replacement: Any, source: str) -> None:
    fast = _broken(name, replacement)(source)
    assert disagreement(source, VARIABLES, FUNCTIONS, fast) is not None


# -- how the oracle uses it -------------------------------------------------------------------


def test_errors_are_the_references_own() -> None:
    """An evaluation the translation gives up on is run by cel: its error, its message."""
    scope = Scope(dict(VARIABLES), FUNCTIONS)
    for source in ("m.zz == 1", "x / zero", "s < 1"):
        with pytest.raises(Exception) as mine:
            compiled(source).evaluate(scope)
        with pytest.raises(Exception) as theirs:
            cel.compile(source).execute(cel.Context(VARIABLES, functions=FUNCTIONS))
        assert (type(mine.value), str(mine.value)) == (type(theirs.value), str(theirs.value))


def test_a_syntax_error_is_cels() -> None:
    with pytest.raises(Exception) as mine:
        Expression("(((")
    with pytest.raises(Exception) as theirs:
        cel.compile("(((")
    assert str(mine.value) == str(theirs.value)


def test_a_tuple_result_reads_as_cels_list() -> None:
    assert compiled("t").evaluate(Scope(dict(VARIABLES), {})) == [1, 2]


def test_the_translation_can_be_turned_off() -> None:
    env = {**os.environ, "CONFORMANCE_CEL": "reference"}
    code = (
        "from conformance.spec.expression import compiled, ENABLED; "
        "assert not ENABLED and compiled('1 == 1').fast is None; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
    assert expression.ENABLED or os.environ.get("CONFORMANCE_CEL") == "reference"


def test_a_rule_with_a_repeated_group_cannot_hang_the_harness() -> None:
    """`'aaaa…a!'.matches('^(a+)+$')`: Python's `re` backtracks exponentially (24 a's took
    23 s); such patterns go to `cel`, whose engine is linear in the text."""
    from conformance.spec.translate import _regex

    assert _regex("^(a+)+$") == (None, False)
    assert _regex("(a|aa)*b")[0] is None
    assert _regex("^(?s).{1,223}$")[0] is not None  # what the specs use stays translated
    expression = Expression("args.x.matches('^(a+)+$')")
    assert expression.evaluate(Scope({"args": {"x": "a" * 4000 + "!"}}, {})) is False
    assert expression.evaluate(Scope({"args": {"x": "a" * 4000}}, {})) is True


def test_nested_comprehensions_are_bounded_on_both_engines() -> None:
    """A depth-3 `.map` over three 250-element lists took the harness to 2.56 GB: every
    evaluation may visit at most ITERATION_LIMIT elements, on the translation and before cel."""
    from conformance.spec.translate import ITERATION_LIMIT, CostExceeded

    source = "state.a.map(x, state.a.map(y, state.a.map(z, x + y + z))).size()"
    big = Scope({"state": {"a": list(range(250))}}, {})
    translated = Expression(source)
    assert translated.fast is not None and translated.depth == 3
    with pytest.raises(CostExceeded, match=f"more than {ITERATION_LIMIT:,} elements"):
        translated.evaluate(big)
    reference = Expression(source)
    reference.fast = None
    with pytest.raises(CostExceeded, match=r"nested 3 deep .* up to 250 elements"):
        reference.evaluate(big)
    small = Scope({"state": {"a": list(range(20))}}, {})
    assert translated.evaluate(small) == reference.evaluate(small) == 20
    for _ in range(130):  # the budget resets per evaluation: 8,420 elements each
        translated.evaluate(small)
    literal = "[" + ",".join(map(str, range(250))) + "]"
    deep_literal = Expression(
        f"{literal}.exists(x, {literal}.exists(y, {literal}.exists(z, x + y + z < 0)))"
    )
    deep_literal.fast = None
    with pytest.raises(CostExceeded):
        deep_literal.evaluate(Scope({}, {}))


def test_an_invariant_too_costly_on_what_the_provider_shows_says_so() -> None:
    """The domain's invariants run on the provider's rows: past the bound the failure names
    the invariant, the rows and the bound instead of claiming the invariant does not hold."""

    from conformance.spec.domain import domain_from
    from conformance.spec.source import load_file

    domain = domain_from(load_file(ROOT / "specs/domains/vds-iscsi.yaml"))
    targets = [{"id": f"t{i}"} for i in range(1100)]
    sessions = [{"id": f"s{i}", "target": f"t{i}"} for i in range(1100)]

    def shown(**rows: list[dict[str, str]]) -> dict[str, Any]:
        return {**domain.empty_state(), **rows}

    assert domain.broken_invariant(shown(targets=targets[:10], sessions=sessions[:10])) is None
    broken = domain.broken_invariant(shown(sessions=sessions[:1]))
    assert broken and "does not hold on what the provider shows" in broken
    costly = domain.broken_invariant(shown(targets=targets, sessions=sessions))
    assert costly and "could not be judged" in costly and "1100 sessions" in costly
    assert "1,000,000" in costly
