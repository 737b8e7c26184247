"""Candidate cases judged by the oracle alone: which goals each reaches and what it would cost
on the provider, before anything is run.
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conformance.engine.case_space import case_space, enumerate_cases, relevant, sample_case
from conformance.engine.goals import arg_classes
from conformance.engine.operations import Costs, Tally
from conformance.engine.strategies import Allowed, Case, state_of
from conformance.errors import SpecError
from conformance.spec.cel_text import operands
from conformance.spec.domain import FAULT_STEP, Domain
from conformance.spec.expression import compiled
from conformance.spec.translate import CostExceeded

if TYPE_CHECKING:
    from collections.abc import Iterable

    from conformance.engine.oracle import Oracle, Prediction
    from conformance.spec.codes import CodeTable
    from conformance.spec.model import Spec

ENUMERATED = 400  # candidates taken smallest first
SAMPLED = 300  # and drawn from the same space, for combinations far down that order
ENOUGH = 100  # candidates judged before the search may stop (once every goal is reached)


@dataclass
class Candidate:
    """A case the oracle has judged: what it would give, what it covers, what it costs."""

    case: Case
    state: dict[str, list[dict[str, Any]]]
    prediction: Prediction
    covers: frozenset[str]
    operations: Tally
    seconds: float
    order: int  # its place among the candidates: the tie-break, smaller first


# -- judging candidates with the oracle -------------------------------------------------------


@dataclass
class Context:
    """What planning a spec needs besides the spec: its domain, the code table, what the
    provider can build and observe, what its operations cost, and the profile's tier."""

    domain: Domain
    table: CodeTable
    allowed: Allowed
    costs: Costs
    observable: tuple[str, ...]
    tier: int = 1
    repeat: bool = False  # each case makes its call twice (the repeat check applies)
    code_page: str = "cp1252"


def footprint(spec: Spec, domain: Domain, observable: tuple[str, ...]) -> tuple[str, ...]:
    """The collections read after each call: those the rules read or change, that the
    provider can show. (The family check reads every collection after every step.)"""
    colls = {c.name for c in relevant(spec, domain)[0]}
    colls |= {coll for rule in spec.rules for coll in rule.effects}
    return tuple(c for c in observable if c in colls)


def cost_of(
    spec: Spec, case: Case, ctx: Context, observe: tuple[str, ...], calls: int
) -> tuple[Tally, float]:
    """The operations one case costs, and their seconds as the provider declares them."""
    ops = Tally()
    ops.add("reset")
    seconds = ctx.costs.of_op("reset")
    for step in case.given:
        ops.add("setup")
        seconds += ctx.costs.of_op("setup", str(next(iter(step))))
    ops.add("call", calls)
    seconds += calls * ctx.costs.of_op("call", spec.id)
    ops.add("observe", calls * len(observe))
    seconds += calls * sum(ctx.costs.of_op("observe", c) for c in observe)
    ops.batches += 1
    return ops, seconds


def covers_of(
    spec: Spec,
    ctx: Context,
    oracle: Oracle,
    conditions: dict[int, Any],
    case: Case,
    state: dict[str, Any],
    predicted: Prediction,
) -> frozenset[str]:
    """The goal keys a case reaches, judged by the oracle alone."""
    keys = {f"rule:{predicted.rule.index}"}
    keys |= {f"code:{c}" for c in predicted.codes}
    for coll in predicted.rule.effects:
        if changed(state.get(coll, []), predicted.state.get(coll, [])):
            keys.add(f"effect:{predicted.rule.index}:{coll}")
    if ctx.tier < 1:
        return frozenset(keys)
    scope = None
    for rule in spec.rules[: predicted.rule.index + 1]:
        joiner, parts = conditions[rule.index]
        if not parts:
            continue
        scope = scope or oracle.scope(state, case.args)
        values = [operand_truth(p, scope) for p in parts]
        if not joiner:
            if values[0] is False:
                keys.add(f"condition:{rule.index}:0")
            continue
        alone = joiner == "||"
        for i, value in enumerate(values):
            if value is alone and all(v is (not alone) for j, v in enumerate(values) if j != i):
                keys.add(f"condition:{rule.index}:{i}")
    for param in spec.params:
        for cls in arg_classes(
            spec, ctx.domain, param, case.args.get(param.name), state, oracle.functions["ansi"]
        ):
            keys.add(f"arg:{param.name}:{cls}")
    for step in case.given:
        if next(iter(step)) == FAULT_STEP:
            keys.add(f"fault:{step[FAULT_STEP]}")
    return frozenset(keys)


def operand_truth(expression: Any, scope: Any) -> bool | None:
    try:
        value = expression.evaluate(scope)
    except CostExceeded as exc:
        raise CostlyOperand(expression.source, exc) from None
    except Exception:  # an operand that only makes sense beside another: no value alone
        return None
    return value if isinstance(value, bool) else None


def changed(before: list[Any], after: list[Any]) -> bool:
    def key(objs: list[Any]) -> list[str]:
        return sorted(json.dumps(o, sort_keys=True, default=str) for o in objs)

    return key(before) != key(after)


def candidates(spec: Spec, ctx: Context) -> Iterable[tuple[Case, dict[str, Any]]]:
    """The cases the planner judges, each with the state its steps build: smallest first,
    then drawn from the same space with a generator seeded by the spec's id (its twin's for
    an A/W pair, so both get the same)."""
    state: tuple[Any, dict[str, Any]] | None = None
    for case in enumerate_cases(
        spec, ctx.domain, ENUMERATED, ctx.allowed, boundaries=ctx.tier >= 1
    ):
        if state is None or state[0] is not case.given:  # the cases of one state share it
            state = (case.given, state_of(ctx.domain, case.given))
        yield case, state[1]
    rng = random.Random(zlib.crc32(seed_key(spec).encode("utf-8")))
    space = case_space(spec, ctx.domain, ctx.allowed)
    for _ in range(SAMPLED):
        drawn = sample_case(spec, ctx.domain, rng, space, boundaries=ctx.tier >= 1)
        if drawn is not None:
            yield drawn


def seed_key(spec: Spec) -> str:
    """The generator's seed text: the A and W forms of a function share it."""
    return min(spec.id, spec.twin) if spec.twin else spec.id


def case_key(case: Case) -> str:
    """A case as text: equal cases, equal keys (for duplicates and for sharing executions).
    Steps and arguments are built in a fixed order, so their text is the same when equal."""
    return repr((case.given, case.args))


class CostlyOperand(SpecError):
    """One operand of a rule's condition, evaluated alone, passed the cost bound."""

    def __init__(self, source: str, exc: CostExceeded):
        super().__init__(str(exc))
        self.source = source


def compiled_operands(when: str) -> tuple[str, list[Any]]:
    joiner, parts = operands(when)
    if not joiner and parts == ["true"]:
        return "", []
    try:
        return joiner, [compiled(p) for p in parts]
    except Exception:  # an operand that does not compile alone (it cannot: the whole does)
        return "", []
