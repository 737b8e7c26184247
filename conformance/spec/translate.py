"""CEL translated to Python: the common expressions of the specs evaluated without converting
the state for `cel`, with the same results (anything the translation is not sure of raises
`Untranslatable` at translation or `_GiveUp` at evaluation, and `cel` decides). Comprehensions
are bounded: one evaluation visits at most `ITERATION_LIMIT` elements (`CostExceeded`).
"""

from __future__ import annotations

import re
import threading
import warnings
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from conformance.errors import SpecError
from conformance.spec.cel_text import Untranslatable, _string_value, tokens

if TYPE_CHECKING:
    from conformance.spec.expression import Fast


class CostExceeded(SpecError):
    """One evaluation would pass `ITERATION_LIMIT`: the spec's rule is at fault, not the
    provider."""


ITERATION_LIMIT = 1_000_000


class _Budget(threading.local):
    """Elements the running evaluation's comprehensions may still visit (per thread)."""

    left = ITERATION_LIMIT


_budget = _Budget()


class _GiveUp(Exception):
    """This evaluation is not one the translation is sure of: `cel` evaluates it."""


# -- parsing to Python source -----------------------------------------------------------------

_MACROS = {"all", "exists", "exists_one", "map", "filter"}
_STRING_METHODS = {"contains", "startsWith", "endsWith", "matches"}
_GLOBALS = {"size": "_size", "int": "_int", "string": "_string", "dyn": "", "matches": "_matches"}
_UNMODELLED = {"uint", "double", "bool", "bytes", "type", "timestamp", "duration", "has"}
_RELATIONS = {
    "==": "_eq",
    "!=": "_ne",
    "<": "_lt",
    "<=": "_le",
    ">": "_gt",
    ">=": "_ge",
    "in": "_in",
}
_ARITHMETIC = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}
_INT64 = (-(2**63), 2**63 - 1)


class _Parser:
    """Recursive descent over CEL's grammar, emitting one Python expression."""

    def __init__(
        self,
        tokens: list[tuple[str, str]],
        bound: list[str] | None = None,
        strings: set[str] | None = None,
    ):
        self.tokens = tokens
        self.pos = 0
        self.bound = [] if bound is None else bound  # comprehension variables, innermost last
        self.strings = set() if strings is None else strings  # string literals' code (map keys)

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos]

    def take(self, text: str | None = None) -> tuple[str, str]:
        token = self.tokens[self.pos]
        if text is not None and token[1] != text:
            raise Untranslatable(f"expected {text!r}, found {token[1]!r}")
        self.pos += 1
        return token

    def at(self, text: str) -> bool:
        kind, value = self.tokens[self.pos]
        return value == text and kind in ("op", "ident")

    def parse(self) -> str:
        code = self.expr()
        if self.peek()[0] != "end":
            raise Untranslatable(f"trailing {self.peek()[1]!r}")
        return code

    def expr(self) -> str:
        cond = self.or_()
        if not self.at("?"):
            return cond
        self.take("?")
        yes = self.or_()
        self.take(":")
        no = self.expr()
        return f"(({yes}) if _b({cond}) else ({no}))"

    def or_(self) -> str:
        code = self.and_()
        while self.at("||"):
            self.take()
            code = f"(_b({code}) or _b({self.and_()}))"
        return code

    def and_(self) -> str:
        code = self.relation()
        while self.at("&&"):
            self.take()
            code = f"(_b({code}) and _b({self.relation()}))"
        return code

    def relation(self) -> str:
        code = self.addition()
        while self.peek()[1] in _RELATIONS and self.peek()[0] in ("op", "ident"):
            op = self.take()[1]
            code = f"{_RELATIONS[op]}({code}, {self.addition()})"
        return code

    def addition(self) -> str:
        code = self.multiplication()
        while self.at("+") or self.at("-"):
            op = self.take()[1]
            code = f"{_ARITHMETIC[op]}({code}, {self.multiplication()})"
        return code

    def multiplication(self) -> str:
        code = self.unary()
        while self.at("*") or self.at("/") or self.at("%"):
            op = self.take()[1]
            code = f"{_ARITHMETIC[op]}({code}, {self.unary()})"
        return code

    def unary(self) -> str:
        if self.at("!"):
            self.take()
            return f"_not({self.unary()})"
        if self.at("-"):
            self.take()
            kind, text = self.peek()
            if kind in ("int", "float"):  # a negative literal, folded: -9223372036854775808
                self.take()
                return self.member(_number(kind, text, negative=True))
            return f"_neg({self.unary()})"
        return self.member(self.primary())

    def member(self, code: str) -> str:
        while True:
            if self.at("."):
                self.take()
                kind, name = self.take()
                if kind != "ident":
                    raise Untranslatable(f"member {name!r}")
                code = self.call_on(code, name) if self.at("(") else f"({code})[{name!r}]"
            elif self.at("["):
                self.take()
                index = self.expr()
                self.take("]")
                code = f"_index({code}, {index})"
            elif self.at("{"):
                raise Untranslatable("message construction")
            else:
                return code

    def call_on(self, target: str, name: str) -> str:
        if name in _MACROS:
            return self.macro(target, name)
        args = self.arguments()
        if name == "size" and not args:
            return f"_size({target})"
        if name in _STRING_METHODS and len(args) == 1:
            return f"_{name}({target}, {args[0]})"
        raise Untranslatable(f"method {name}")

    def macro(self, target: str, name: str) -> str:
        self.take("(")
        kind, var = self.take()
        if kind != "ident":
            raise Untranslatable("macro variable")
        self.take(",")
        self.bound.append(var)
        try:
            parts = [self.expr()]
            while self.at(","):
                self.take()
                parts.append(self.expr())
        finally:
            self.bound.pop()
        self.take(")")
        local = f"c_{var}"
        loop = f"for {local} in _iter({target})"
        if name == "map" and len(parts) == 2:
            return f"[{parts[1]} {loop} if _b({parts[0]})]"
        if len(parts) != 1:
            raise Untranslatable(f"{name} with {len(parts)} arguments")
        body = parts[0]
        return {
            "all": f"all(_b({body}) {loop})",
            "exists": f"any(_b({body}) {loop})",
            "exists_one": f"(sum(1 {loop} if _b({body})) == 1)",
            "map": f"[{body} {loop}]",
            "filter": f"[{local} {loop} if _b({body})]",
        }[name]

    def arguments(self) -> list[str]:
        self.take("(")
        args: list[str] = []
        while not self.at(")"):
            args.append(self.expr())
            if not self.at(")"):
                self.take(",")
        self.take(")")
        return args

    def primary(self) -> str:
        kind, text = self.take()
        if kind == "int" or kind == "float":
            return _number(kind, text)
        if kind == "string":
            code = repr(_string_value(text))
            self.strings.add(code)
            return code
        if kind == "ident":
            return self.identifier(text)
        if text == "(":
            code = self.expr()
            self.take(")")
            return code
        if text == "[":
            return self.list_literal()
        if text == "{":
            return self.map_literal()
        raise Untranslatable(f"unexpected {text!r}")

    def identifier(self, name: str) -> str:
        if name in ("true", "false", "null"):
            return {"true": "True", "false": "False", "null": "None"}[name]
        if name == "has" and self.at("("):
            return self.has()
        if self.at("("):
            return self.global_call(name)
        if name in self.bound:
            return f"c_{name}"
        return f"V[{name!r}]"

    def has(self) -> str:
        self.take("(")
        code = self._has_target()
        self.take(")")
        return code

    def _has_target(self) -> str:
        """`has(a.b)`: parse `a` with every selection but the last, which is tested."""
        start = self.pos
        depth, last_dot = 0, -1
        while True:
            kind, text = self.tokens[self.pos]
            if kind == "end":
                raise Untranslatable("unterminated has()")
            if text in ("(", "[", "{"):
                depth += 1
            elif text in (")", "]", "}"):
                if depth == 0:
                    break
                depth -= 1
            elif text == "." and depth == 0:
                last_dot = self.pos
            self.pos += 1
        end = self.pos
        if last_dot < 0 or last_dot + 2 != end or self.tokens[last_dot + 1][0] != "ident":
            raise Untranslatable("has() needs a field selection")
        inner = _Parser([*self.tokens[start:last_dot], ("end", "")], self.bound, self.strings)
        code = inner.parse()
        return f"_has({code}, {self.tokens[last_dot + 1][1]!r})"

    def global_call(self, name: str) -> str:
        if name in _UNMODELLED or name in _MACROS:
            raise Untranslatable(f"function {name}")
        args = self.arguments()
        helper = _GLOBALS.get(name)
        if helper == "" and len(args) == 1:
            return args[0]
        if helper and (len(args) == 1 or (name == "matches" and len(args) == 2)):
            return f"{helper}({', '.join(args)})"
        return f"F[{name!r}]({', '.join(args)})"  # a custom function (`ansi`)

    def list_literal(self) -> str:
        items: list[str] = []
        while not self.at("]"):
            items.append(self.expr())
            if not self.at("]"):
                self.take(",")
        self.take("]")
        return f"[{', '.join(items)}]"

    def map_literal(self) -> str:
        pairs: list[tuple[str, str]] = []
        while not self.at("}"):
            key = self.expr()
            self.take(":")
            pairs.append((key, self.expr()))
            if not self.at("}"):
                self.take(",")
        self.take("}")
        if all(k in self.strings for k, _ in pairs):
            return "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        return "_map([" + ", ".join(f"({k}, {v})" for k, v in pairs) + "])"


def _number(kind: str, text: str, negative: bool = False) -> str:
    if text[-1] in "uU":
        raise Untranslatable("unsigned literal")
    if kind == "float":
        return repr(-float(text) if negative else float(text))
    value = int(text, 16) if text[:2].lower() == "0x" else int(text)
    value = -value if negative else value
    if not _INT64[0] <= value <= _INT64[1]:
        raise Untranslatable("int literal out of range")
    return f"({value})"


# -- CEL's operations on plain values; anything unmodelled gives up ---------------------------


def _b(value: Any) -> bool:
    if value is True or value is False:
        return value
    raise _GiveUp


def _not(value: Any) -> bool:
    return not _b(value)


_SCALARS = (str, int, float, type(None))


def _eq(a: Any, b: Any) -> bool:
    ta = type(a)
    if ta is type(b) and ta in _SCALARS:
        return a == b
    return _eq_slow(a, b)


def _eq_slow(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if ta in (int, float) and tb in (int, float):
        if (ta is int and abs(a) > 2**53) or (tb is int and abs(b) > 2**53):
            raise _GiveUp  # CEL's int/double comparison at this size is its own
        return a == b
    if ta in (list, tuple) and tb in (list, tuple):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b, strict=True))
    if ta is dict and tb is dict:
        if not all(type(k) is str for k in a) or not all(type(k) is str for k in b):
            raise _GiveUp
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    if ta in _KNOWN and tb in _KNOWN:
        return False  # different CEL types are never equal
    raise _GiveUp


_KNOWN = (str, int, float, bool, type(None), list, tuple, dict)


def _ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _ordered(a: Any, b: Any) -> None:
    ta, tb = type(a), type(b)
    if ta is tb and ta in (int, float, str, bool):
        return
    if ta in (int, float) and tb in (int, float):
        return
    raise _GiveUp


def _lt(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return a < b


def _le(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return a <= b


def _gt(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return a > b


def _ge(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return a >= b


def _in(item: Any, container: Any) -> bool:
    tc = type(container)
    if tc is list or tc is tuple:
        return any(_eq(item, x) for x in container)
    if tc is dict and type(item) is str:
        return item in container
    raise _GiveUp


def _i64(value: int) -> int:
    if _INT64[0] <= value <= _INT64[1]:
        return value
    raise _GiveUp


def _ints(a: Any, b: Any) -> bool:
    """Both operands CEL ints within int64 (a wider Python int is a uint to CEL)."""
    if type(a) is int and type(b) is int:
        _i64(a)
        _i64(b)
        return True
    return False


def _add(a: Any, b: Any) -> Any:
    if _ints(a, b):
        return _i64(a + b)
    ta = type(a)
    if ta is type(b) and ta in (str, float):
        return a + b
    if ta in (list, tuple) and type(b) in (list, tuple):
        return [*a, *b]
    raise _GiveUp


def _sub(a: Any, b: Any) -> Any:
    if _ints(a, b):
        return _i64(a - b)
    if type(a) is float and type(b) is float:
        return a - b
    raise _GiveUp


def _mul(a: Any, b: Any) -> Any:
    if _ints(a, b):
        return _i64(a * b)
    if type(a) is float and type(b) is float:
        return a * b
    raise _GiveUp


def _div(a: Any, b: Any) -> Any:
    if _ints(a, b) and b != 0:
        quotient = abs(a) // abs(b)
        return _i64(quotient if (a < 0) == (b < 0) else -quotient)
    raise _GiveUp


def _mod(a: Any, b: Any) -> Any:
    if _ints(a, b) and b != 0:
        rest = abs(a) % abs(b)
        return -rest if a < 0 else rest
    raise _GiveUp


def _neg(a: Any) -> Any:
    if type(a) is int:
        return _i64(-_i64(a))
    if type(a) is float:
        return -a
    raise _GiveUp


def _index(container: Any, key: Any) -> Any:
    tc = type(container)
    if tc is list or tc is tuple:
        if type(key) is int and 0 <= key < len(container):
            return container[key]
        raise _GiveUp
    if tc is dict and type(key) in (str, int):
        return container[key]
    raise _GiveUp


def _has(target: Any, name: str) -> bool:
    if type(target) is dict:
        return name in target
    raise _GiveUp


def _iter(target: Any) -> Any:
    tt = type(target)
    if tt is list or tt is tuple:
        _spend(len(target))
        return target
    if tt is dict and len(target) <= 1:  # cel walks a larger map in its own hash order
        _spend(len(target))
        return list(target)
    raise _GiveUp


def _spend(elements: int) -> None:
    left = _budget.left - elements
    _budget.left = left
    if left < 0:
        raise CostExceeded(
            f"comprehensions visited more than {ITERATION_LIMIT:,} elements in one evaluation"
        )


def _map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    if not all(type(k) in (str, int) for k, _ in pairs):
        raise _GiveUp
    return dict(pairs)


def _size(value: Any) -> int:
    tv = type(value)
    if tv is str:
        if value.isascii():  # beyond ASCII, what a size is differs between CEL versions
            return len(value)
        raise _GiveUp
    if tv in (list, tuple, dict):
        return len(value)
    raise _GiveUp


def _int(value: Any) -> int:
    if type(value) is int:
        return _i64(value)
    if type(value) is str and re.fullmatch(r"[+-]?[0-9]+", value):
        return _i64(int(value))
    raise _GiveUp


def _string(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise _GiveUp


def _strings(a: Any, b: Any) -> None:
    if type(a) is not str or type(b) is not str:
        raise _GiveUp


def _contains(text: Any, part: Any) -> bool:
    _strings(text, part)
    return part in text


def _startsWith(text: Any, part: Any) -> bool:
    _strings(text, part)
    return text.startswith(part)


def _endsWith(text: Any, part: Any) -> bool:
    _strings(text, part)
    return text.endswith(part)


def _matches(text: Any, pattern: Any) -> bool:
    _strings(text, pattern)
    regex, classes = _regex(pattern)
    if regex is None or (classes and not text.isascii()):
        raise _GiveUp  # Unicode classes (\\w, \\s) are where RE2 and `re` part ways
    return regex.search(text) is not None


_QUANTIFIED_GROUP = re.compile(r"\)[*+?{]")  # a group repeated: where backtracking explodes
_SAFE_ESCAPES = frozenset(".-\\[](){}*+?|^$/")
_CLASS_ESCAPES = frozenset("dDwWsS")


@lru_cache(maxsize=256)
def _regex(pattern: str) -> tuple[re.Pattern[str] | None, bool]:
    """A RE2 pattern as Python's `re` reads it the same way, and whether it uses class escapes;
    None where the two may differ (lookaround, backreferences, other escapes and flags), and
    where `re` could take exponential time: a quantified group (`(a+)+`, `(a|aa)*`). RE2, and
    `cel`'s engine, run in time linear in the text; `re` backtracks, so a spec's rule could
    hang the harness on a provider's string. Those patterns are left to `cel`."""
    if _QUANTIFIED_GROUP.search(pattern):
        return None, False
    flags = re.match(r"^(\^?)\(\?s\)", pattern)  # `^(?s)`: Python wants flags first
    if flags:
        pattern = "(?s)" + flags.group(1) + pattern[flags.end() :]
    out, i, in_class, classes = [], 4 if flags else 0, False, False
    if flags:
        out.append("(?s)")
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            if not nxt or nxt not in _SAFE_ESCAPES | _CLASS_ESCAPES:
                return None, False
            classes = classes or nxt in _CLASS_ESCAPES
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if ch == "(" and pattern[i + 1 : i + 2] == "?":
            return None, False
        if ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        out.append("\\Z" if ch == "$" and not in_class else ch)
        i += 1
    try:
        return re.compile("".join(out)), classes
    except re.error:
        return None, False


_NAMESPACE: dict[str, Any] = {
    name: value for name, value in globals().items() if name.startswith("_") and callable(value)
}
_NAMESPACE["__builtins__"] = {
    "all": all,
    "any": any,
    "sum": sum,
    "list": list,
    "dict": dict,
    "len": len,
    "zip": zip,
    "abs": abs,
    "type": type,
    "str": str,
    "int": int,
}


def translate(source: str) -> Fast:
    """The Python function of a CEL expression, taking the variables and custom functions."""
    code = _Parser(tokens(source)).parse()
    with warnings.catch_warnings():  # e.g. "'int' object is not subscriptable": CEL decides
        warnings.simplefilter("ignore")
        return eval(compile(f"lambda V, F: {code}", "<cel>", "eval"), dict(_NAMESPACE))
