"""The oracle: a spec's CEL rules predict the code and the next abstract state.

Rules are tried in order and the first whose `when` holds decides: its `expect` is the set of
codes the contract allows, and its `effects` give each changed collection's new value. Every
expression is compiled once per process (conformance.spec.expression: `cel` is the reference, a
Python translation the fast path); evaluation sees `state`, `args`, `constants` and the `ansi()`
function (a string as the ANSI code page carries it, for A entry points).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from conformance.engine.values import OUT, Unknown
from conformance.errors import SpecError
from conformance.spec.codes import CodeTable
from conformance.spec.expression import Expression, Scope, compiled
from conformance.spec.model import Observed, Rule, Spec
from conformance.spec.translate import CostExceeded


class OracleError(SpecError):
    """A rule could not be evaluated: a defect of the spec, reported with its place."""


class OracleCostError(OracleError):
    """A rule's evaluation passed the cost bound (`translate.ITERATION_LIMIT`): evaluating
    it again on other cases would pay the bound again, so whoever plans stops there."""


def failed(place: str, exc: Exception) -> OracleError:
    """The OracleError for an evaluation that raised `exc`, at `place`."""
    kind = OracleCostError if isinstance(exc, CostExceeded) else OracleError
    return kind(f"{place}{type(exc).__name__}: {exc}")


def ansi_function(code_page: str):
    """What a Unicode string becomes after the round trip through an ANSI code page."""

    def ansi(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        return text.encode(code_page, errors="replace").decode(code_page)

    return ansi


@dataclass(frozen=True)
class Prediction:
    rule: Rule
    codes: tuple[str, ...]
    values: tuple[int, ...]
    state: dict[str, list[dict[str, Any]]]  # the next state, when the call gives one of codes
    outputs: dict[str, Any]  # expected out-parameter values (scenario names), when given


class Oracle:
    def __init__(self, spec: Spec, codes: CodeTable, code_page: str = "cp1252"):
        self.spec = spec
        self.table = codes
        self.functions = {"ansi": ansi_function(code_page)}
        self.constants = dict(spec.constants)
        self.programs: dict[str, Expression] = {}
        # The state and arguments of the last prediction: the call being judged, for an
        # `observed` entry's `when` where the caller does not pass them (the stateful machine).
        self.last: tuple[dict[str, Any], dict[str, Any]] | None = None
        self.values = {c.symbol: c.value for c in spec.codes}
        for symbol in (*spec.also, *(o.code for o in spec.observed)):
            if symbol in codes.symbols:
                self.values.setdefault(symbol, codes.symbols[symbol])
        text = " ".join(
            [r.when for r in spec.rules]
            + [e for r in spec.rules for e in (*r.effects.values(), *r.outputs.values())]
            + [o.when for o in spec.observed if o.when]
        )
        # Only the collections the rules read are handed to CEL: converting the state is the
        # largest cost of an evaluation by `cel`, and most collections are not read.
        self.reads = frozenset(re.findall(r"\bstate\.([A-Za-z_][A-Za-z0-9_]*)", text))
        for rule in spec.rules:  # compile up front: errors surface before any call
            self._program(rule, "when", rule.when)
            for coll, expr in rule.effects.items():
                self._program(rule, f"effects.{coll}", expr)
            for name, expr in rule.outputs.items():
                self._program(rule, f"outputs.{name}", expr)
        for entry in spec.observed:
            if entry.when:
                self._observed_program(entry)

    def _program(self, rule: Rule, where: str, source: str) -> Expression:
        """The expression, kept by this oracle: no shared-cache lookup per evaluation, and
        nothing the shared cache evicts has to be compiled again."""
        found = self.programs.get(source)
        if found is not None:
            return found
        try:
            found = self.programs[source] = compiled(source)
            return found
        except Exception as exc:
            raise OracleError(self._place(rule, where, f"does not compile: {exc}")) from None

    def _place(self, rule: Rule, where: str, message: str) -> str:
        line = self.spec.line("rules", rule.index, where.split(".")[0])
        return f"{self.spec.file}:{line}: rules[{rule.index}].{where}: {message}"

    def scope(self, state: dict[str, Any], args: dict[str, Any]) -> Scope:
        variables = {
            "state": {k: v for k, v in state.items() if k in self.reads},
            "args": oracle_args(args),
            "constants": self.constants,
        }
        return Scope(variables, self.functions)

    def predict(self, state: dict[str, Any], args: dict[str, Any]) -> Prediction:
        self.last = (state, args)
        ctx = self.scope(state, args)
        for rule in self.spec.rules:
            try:
                hit = self._program(rule, "when", rule.when).evaluate(ctx)
            except Exception as exc:
                raise failed(self._place(rule, "when", ""), exc) from None
            if hit is True:
                return Prediction(
                    rule,
                    rule.expect,
                    tuple(self.value(c) for c in rule.expect),
                    self._effects(rule, state, ctx),
                    self._outputs(rule, ctx),
                )
            if hit is not False:
                raise OracleError(self._place(rule, "when", f"gave {hit!r}, not a bool"))
        raise OracleError(f'{self.spec.file}: no rule matched; end the rules with when: "true"')

    def _observed_program(self, entry: Observed) -> Expression:
        try:
            return compiled(entry.when or "true")
        except Exception as exc:
            raise OracleError(self._observed_place(entry, f"does not compile: {exc}")) from None

    def _observed_place(self, entry: Observed, message: str) -> str:
        line = self.spec.line("observed", entry.index, "when")
        return f"{self.spec.file}:{line}: observed[{entry.index}].when: {message}"

    def observed_holds(self, entry: Observed, state: dict[str, Any], args: dict[str, Any]) -> bool:
        """Whether an `observed` entry's condition holds for this call (no `when`: always)."""
        if not entry.when:
            return True
        try:
            hit = self._observed_program(entry).evaluate(self.scope(state, args))
        except Exception as exc:
            raise failed(self._observed_place(entry, ""), exc) from None
        if not isinstance(hit, bool):
            raise OracleError(self._observed_place(entry, f"gave {hit!r}, not a bool"))
        return hit

    def _effects(self, rule: Rule, state: dict[str, Any], ctx: Scope) -> dict[str, Any]:
        after = {name: list(objects) for name, objects in state.items()}  # objects are not
        for coll, expr in rule.effects.items():  # mutated: copying the lists is enough
            try:
                value = self._program(rule, f"effects.{coll}", expr).evaluate(ctx)
            except Exception as exc:
                raise failed(self._place(rule, f"effects.{coll}", ""), exc) from None
            if not isinstance(value, list):
                raise OracleError(
                    self._place(rule, f"effects.{coll}", f"gave {type(value).__name__}, not a list")
                )
            after[coll] = list(value)  # never the list of the state it was computed from
        return after

    def _outputs(self, rule: Rule, ctx: Scope) -> dict[str, Any]:
        out = {}
        for name, expr in rule.outputs.items():
            try:
                out[name] = self._program(rule, f"outputs.{name}", expr).evaluate(ctx)
            except Exception as exc:
                raise failed(self._place(rule, f"outputs.{name}", ""), exc) from None
        return out

    def value(self, symbol: str) -> int:
        if symbol in self.values:
            return self.values[symbol]
        raise OracleError(f"{self.spec.file}: {symbol} is not a code of {self.spec.id}")

    def describe(self, value: int) -> str:
        known = {v: k for k, v in reversed(self.values.items())}
        return self.table.describe(value, known)


def oracle_args(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as CEL sees them: unknown references become names no object has."""
    return {k: (v.name if isinstance(v, Unknown) else v) for k, v in args.items()}


__all__ = ["OUT", "Oracle", "OracleError", "Prediction", "ansi_function", "compiled"]
