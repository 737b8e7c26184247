"""The plan: which cases a run executes, chosen with the oracle before the provider is touched.

The oracle is free and the provider is not. For each spec the planner builds candidate cases
(the small states crossed with argument classes that `strategies.enumerate_cases` orders
smallest first, and more drawn from the same space by a generator seeded with the spec's id,
so the plan is the same on every run), asks the oracle what each would give, and keeps the
fewest that cover the spec's coverage goals, cheapest first by the operations they cost and
the seconds the provider declares for them:

- tier 0 (every profile): every rule that can be the first to match, every documented code,
  every effect that changes what it names;
- tier 1 (`ci`, `thorough`): each operand of a rule's top-level `&&`/`||` deciding the rule
  alone (MC/DC), every argument class of every parameter, every fault the rules read.

A goal no candidate reaches is listed as unreachable with the reason. `--budget` keeps the
cheapest prefix of the run's cases, tier 0 first, and lists what it left out. The plan is a
pure function of the catalog, the profile, the budget and the provider's capabilities
(`plan_run`); `--seed` never changes it.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from conformance.engine.operations import Budget, Costs, Tally, duration
from conformance.engine.oracle import Oracle, OracleCostError, OracleError, Prediction
from conformance.engine.strategies import (
    Allowed,
    Case,
    Pool,
    arguments_of,
    boundary_strings,
    case_space,
    enumerate_cases,
    field_choices,
    is_flag,
    is_text,
    param_field,
    relevant,
    sample_case,
    state_of,
)
from conformance.engine.world import Unknown
from conformance.spec.codes import CodeTable
from conformance.spec.domain import FAULT_STEP, Domain
from conformance.spec.expression import CostExceeded, compiled, operands
from conformance.spec.model import Param, Spec

ENUMERATED = 400  # candidates taken smallest first
SAMPLED = 300  # and drawn from the same space, for combinations far down that order
ENOUGH = 100  # candidates judged before the search may stop (once every goal is reached)
GOAL_KINDS = ("rules", "codes", "effects", "conditions", "arguments", "faults")
TIER_OF = {"rules": 0, "codes": 0, "effects": 0, "conditions": 1, "arguments": 1, "faults": 1,
           "pairs": 0, "steps": 0, "transitions": 1}  # the last three: a family's sequences
PROFILE_TIERS = {"quick": 0, "ci": 1, "thorough": 1}


@dataclass(frozen=True)
class Goal:
    """One coverage item of a spec: a rule, a code, an operand deciding alone, ..."""

    key: str
    kind: str  # one of GOAL_KINDS
    label: str

    @property
    def tier(self) -> int:
        return TIER_OF[self.kind]


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


@dataclass
class Planned:
    """What a plan of a spec or of a family holds: its goals, the cases the cover chose (with
    the tier each was chosen for), what no case reaches and what a budget left out."""

    goals: dict[str, Goal]
    cases: list[Any] = field(default_factory=list)
    tiers: list[int] = field(default_factory=list)  # the tier each case was chosen for
    unreachable: dict[str, str] = field(default_factory=dict)  # goal key -> why
    left_out: dict[str, str] = field(default_factory=dict)  # goal key -> why (budget)
    KINDS = GOAL_KINDS  # the goal kinds its coverage counts

    @property
    def covered(self) -> set[str]:
        return {k for c in self.cases for k in c.covers if k in self.goals}

    def operations(self) -> Tally:
        total = Tally()
        for c in self.cases:
            total.merge(c.operations)
        return total

    def seconds(self) -> float:
        return sum(c.seconds for c in self.cases)

    def coverage(self) -> dict[str, Any]:
        """covered/total per goal kind, and each goal not covered with the reason."""
        covered = self.covered
        out: dict[str, Any] = {}
        for kind in self.KINDS:
            keys = [k for k, g in self.goals.items() if g.kind == kind]
            out[kind] = {"covered": sum(k in covered for k in keys), "total": len(keys)}
        for name, missing in (("unreachable", self.unreachable), ("left_out", self.left_out)):
            out[name] = [{"item": self.goals[k].label, "kind": self.goals[k].kind, "why": why}
                         for k, why in missing.items()]
        return out


@dataclass
class SpecPlan(Planned):
    """The cases of one spec's property checks, and the coverage they reach."""

    spec: Spec | None = None
    error: str | None = None  # the rules could not be evaluated on some case
    observe: tuple[str, ...] = ()  # the collections read after each call
    calls: int = 1  # calls per case (2 when the repeat check applies)
    candidates: int = 0
    pool: list[Candidate] = field(default_factory=list, repr=False)  # every case judged

    def summary(self) -> dict[str, Any]:
        """The plan of this spec as results.json and `conformance plan --json` show it."""
        return {"cases": len(self.cases), "candidates": self.candidates,
                "calls_per_case": self.calls, "observe": list(self.observe),
                "operations": self.operations().as_dict(),
                "seconds": round(self.seconds(), 3), "coverage": self.coverage(),
                **({"error": self.error} if self.error else {})}


# -- goals ------------------------------------------------------------------------------------

def goals_of(spec: Spec, domain: Domain, tier: int) -> dict[str, Goal]:
    """The coverage items of a spec up to `tier`, in a fixed order."""
    goals: list[Goal] = []
    for rule in spec.rules:
        goals.append(Goal(f"rule:{rule.index}", "rules",
                          f"rule {rule.index} ({spec.file}:{spec.line('rules', rule.index)})"))
    for code in spec.codes:
        goals.append(Goal(f"code:{code.symbol}", "codes", code.symbol))
    for rule in spec.rules:
        for coll in rule.effects:
            goals.append(Goal(f"effect:{rule.index}:{coll}", "effects",
                              f"rule {rule.index} changes {coll}"))
    if tier >= 1:
        for rule in spec.rules:
            joiner, parts = operands(rule.when)
            if not joiner and parts == ["true"]:
                continue
            for i, part in enumerate(parts):
                alone = "false" if joiner != "||" else "true"
                label = (f"rule {rule.index} operand {i + 1} of {len(parts)} ({joiner}) decides "
                         f"alone ({alone}): {part}" if joiner else
                         f"rule {rule.index} reached and false: {part}")
                goals.append(Goal(f"condition:{rule.index}:{i}", "conditions", label))
        for param in spec.params:
            for cls in declared_classes(spec, domain, param):
                goals.append(Goal(f"arg:{param.name}:{cls}", "arguments",
                                  f"{param.name}: {cls}"))
        for fault in relevant(spec, domain)[1]:
            goals.append(Goal(f"fault:{fault}", "faults", f"fault {fault}"))
    return {g.key: g for g in goals}


def declared_classes(spec: Spec, domain: Domain, param: Param) -> list[str]:
    """The argument classes a parameter's declaration promises to the planner."""
    if param.is_out:
        return ["valid pointer", "NULL"] if param.nullable else []
    out: list[str] = []
    ftype = param_field(domain, param)
    if param.refers:
        out += ["existing object", "unknown object"]
    elif ftype is not None and ftype.kind == "enum":
        out += [f"value {_short(v)}" for v in ftype.choices]
    elif (ftype is not None and ftype.kind == "bool") or is_flag(param):
        out += ["true", "false"]
    if param.values:
        out.append(EXISTING_VALUE)
    if not param.refers and (is_text(param) or (ftype is not None and ftype.kind == "string")):
        out += [string_class(s, ftype.max_length if ftype else None)
                for s in boundary_strings(ftype)]
        out += ["non-ASCII the code page holds", "non-ASCII outside the code page"]
        if param.values and spec.charset == "ansi":
            out.append(EXISTING_OUTSIDE)
    out += [f"special {name}" for name in param.special]
    if param.nullable:
        out.append("NULL")
    return list(dict.fromkeys(out))


def string_class(text: str, max_length: int | None) -> str:
    if text == "":
        return "empty string"
    if max_length and len(text) == max_length:
        return f"longest allowed ({max_length})"
    if max_length and len(text) > max_length:
        return f"one past the longest ({max_length + 1})"
    if len(text) == 1:
        return "one character"
    return ""


def arg_classes(spec: Spec, domain: Domain, param: Param, value: Any,
                state: dict[str, list[dict[str, Any]]], ansi: Any) -> set[str]:
    """The classes one argument value belongs to (see `declared_classes`)."""
    if param.is_out:
        return {"NULL"} if value is None else {"valid pointer"}
    if value is None:
        return {"NULL"}
    out: set[str] = set()
    if isinstance(value, Unknown):
        return {"unknown object"}
    if param.refers and isinstance(value, str):
        out.add("existing object")
    for name in param.special:
        if spec.constants.get(name) == value and not isinstance(value, bool):
            out.add(f"special {name}")
    ftype = param_field(domain, param)
    if ftype is not None and ftype.kind == "enum" and value in ftype.choices:
        out.add(f"value {_short(value)}")
    if isinstance(value, bool):
        out.add("true" if value else "false")
    if param.values and _holds_value(param.values, value, state, domain):
        out.add(EXISTING_VALUE)
        if isinstance(value, str) and spec.charset == "ansi" and ansi(value) != value:
            out.add(EXISTING_OUTSIDE)
    if isinstance(value, str) and not param.refers:
        cls = string_class(value, ftype.max_length if ftype else None)
        if cls:
            out.add(cls)
        if not value.isascii():
            out.add("non-ASCII the code page holds" if ansi(value) == value
                    else "non-ASCII outside the code page")
    return out


EXISTING_VALUE = "an existing object's value"
# where an A form and its W twin part: the W form finds the object, the A form's converted
# string does not
EXISTING_OUTSIDE = "an existing object's value outside the code page"


def _holds_value(values: str, value: Any, state: dict[str, list[dict[str, Any]]],
                 domain: Domain) -> bool:
    """Whether `value` is the `field` of an object of `step` (`values: step.field`)."""
    step, _, fname = values.partition(".")
    coll = domain.by_step(step)
    return coll is not None and any(o.get(fname) == value for o in state.get(coll.name, []))


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


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


def cost_of(spec: Spec, case: Case, ctx: Context, observe: tuple[str, ...], calls: int
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


def _covers(spec: Spec, ctx: Context, oracle: Oracle, conditions: dict[int, Any],
            case: Case, state: dict[str, Any], predicted: Prediction) -> frozenset[str]:
    """The goal keys a case reaches, judged by the oracle alone."""
    keys = {f"rule:{predicted.rule.index}"}
    keys |= {f"code:{c}" for c in predicted.codes}
    for coll in predicted.rule.effects:
        if _changed(state.get(coll, []), predicted.state.get(coll, [])):
            keys.add(f"effect:{predicted.rule.index}:{coll}")
    if ctx.tier < 1:
        return frozenset(keys)
    scope = None
    for rule in spec.rules[:predicted.rule.index + 1]:
        joiner, parts = conditions[rule.index]
        if not parts:
            continue
        scope = scope or oracle.scope(state, case.args)
        values = [_truth(p, scope) for p in parts]
        if not joiner:
            if values[0] is False:
                keys.add(f"condition:{rule.index}:0")
            continue
        alone = joiner == "||"
        for i, value in enumerate(values):
            if value is alone and all(v is (not alone) for j, v in enumerate(values) if j != i):
                keys.add(f"condition:{rule.index}:{i}")
    for param in spec.params:
        for cls in arg_classes(spec, ctx.domain, param, case.args.get(param.name), state,
                               oracle.functions["ansi"]):
            keys.add(f"arg:{param.name}:{cls}")
    for step in case.given:
        if next(iter(step)) == FAULT_STEP:
            keys.add(f"fault:{step[FAULT_STEP]}")
    return frozenset(keys)


def _truth(expression: Any, scope: Any) -> bool | None:
    try:
        value = expression.evaluate(scope)
    except CostExceeded as exc:
        raise CostlyOperand(expression.source, exc) from None
    except Exception:  # an operand that only makes sense beside another: no value alone
        return None
    return value if isinstance(value, bool) else None


def _changed(before: list[Any], after: list[Any]) -> bool:
    def key(objs: list[Any]) -> list[str]:
        return sorted(json.dumps(o, sort_keys=True, default=str) for o in objs)
    return key(before) != key(after)


def candidates(spec: Spec, ctx: Context) -> Iterable[tuple[Case, dict[str, Any]]]:
    """The cases the planner judges, each with the state its steps build: smallest first,
    then drawn from the same space with a generator seeded by the spec's id (its twin's for
    an A/W pair, so both get the same)."""
    state: tuple[Any, dict[str, Any]] | None = None
    for case in enumerate_cases(spec, ctx.domain, ENUMERATED, ctx.allowed,
                                boundaries=ctx.tier >= 1):
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


def plan_spec(spec: Spec, ctx: Context) -> SpecPlan:
    """The fewest cheapest cases that cover the spec's goals, chosen tier by tier. A rule
    whose evaluation passes the cost bound ends the spec's planning there: each further
    case would pay the bound again, so the spec's checks fail naming the rule instead."""
    oracle = Oracle(spec, ctx.table, ctx.code_page)
    goals = goals_of(spec, ctx.domain, ctx.tier)
    observe = footprint(spec, ctx.domain, ctx.observable)
    calls = 2 if ctx.repeat else 1
    plan = SpecPlan(goals, spec=spec, observe=observe, calls=calls)
    try:
        _plan_cases(plan, spec, ctx, oracle)
    except OracleCostError as exc:
        plan.error, plan.cases, plan.tiers = str(exc), [], []
    except CostlyOperand as exc:
        plan.error, plan.cases, plan.tiers = _operand_place(spec, exc), [], []
    return plan


def _plan_cases(plan: SpecPlan, spec: Spec, ctx: Context, oracle: Oracle) -> None:
    goals = plan.goals
    conditions = {r.index: _compiled_operands(r.when) for r in spec.rules}
    pool: list[Candidate] = []
    seen: set[str] = set()
    reached: set[str] = set()
    for case, state in candidates(spec, ctx):
        if len(seen) >= ENOUGH and reached >= goals.keys():
            break  # every goal is reached, by cases as small as the first ones
        key = case_key(case)
        if key in seen:
            continue
        seen.add(key)
        try:
            predicted = oracle.predict(state, case.args)
        except OracleCostError:
            raise
        except OracleError as exc:
            plan.error = plan.error or str(exc)
            continue
        ops, seconds = cost_of(spec, case, ctx, plan.observe, plan.calls)
        covers = _covers(spec, ctx, oracle, conditions, case, state, predicted)
        reached |= covers
        pool.append(Candidate(case, state, predicted, covers, ops, seconds, len(pool)))
    if plan.error is None:
        search = Search(spec, ctx, oracle, conditions, pool, seen)
        for key in goals:
            if key not in reached and key.split(":")[0] in SEARCHED:
                found = search.reach(key)
                if found is not None:
                    reached |= found.covers
    plan.candidates = len(pool)
    plan.pool = pool
    for tier in range(ctx.tier + 1):
        wanted = {k for k, g in goals.items() if g.tier == tier}
        for chosen in greedy(pool, wanted - plan.covered):
            plan.cases.append(chosen)
            plan.tiers.append(tier)
    for key in goals:
        if key not in plan.covered:
            plan.unreachable[key] = why_unreachable(spec, ctx, goals[key], pool, conditions,
                                                    oracle)


class CostlyOperand(Exception):
    """One operand of a rule's condition, evaluated alone, passed the cost bound."""

    def __init__(self, source: str, exc: CostExceeded):
        super().__init__(str(exc))
        self.source = source


def _operand_place(spec: Spec, exc: CostlyOperand) -> str:
    """The rule a costly operand belongs to, as file:line, with the bound."""
    for rule in spec.rules:
        for where, source in (("when", rule.when), *(
                (f"effects.{name}", src) for name, src in rule.effects.items())):
            if exc.source in source:
                line = spec.line("rules", rule.index, where.split(".")[0])
                return f"{spec.file}:{line}: rules[{rule.index}].{where}: CostExceeded: {exc}"
    return f"{spec.file}: CostExceeded: {exc}"


# -- reaching what the candidates missed: a local search by one change at a time -----------

SEARCHED = ("rule", "code", "effect", "condition")
SEEDS = 3  # starting points per goal: the candidates nearest to it
STEPS = 12  # changes from one starting point


class Search:
    """Reaches a goal the candidates missed by changing one thing at a time (an argument, a
    field of an object, a fault added or taken away, one more object), keeping each change
    that brings the case nearer: fewer earlier rules that hold, the wanted operands right.
    Rules in precedence order (argument checks, then access, then faults, ...) make the
    case that reaches a late rule many changes away from any small one, and near none."""

    def __init__(self, spec: Spec, ctx: Context, oracle: Oracle,
                 conditions: dict[int, tuple[str, list[Any]]], pool: list[Candidate],
                 seen: set[str]):
        self.spec, self.ctx, self.oracle = spec, ctx, oracle
        self.conditions = conditions
        self.pool, self.seen = pool, seen
        self.whens = [compiled(r.when) for r in spec.rules]
        self.space = case_space(spec, ctx.domain, ctx.allowed)
        self.truths: dict[int, dict[Any, bool | None]] = {}
        self.observe = footprint(spec, ctx.domain, ctx.observable)
        self.calls = 2 if ctx.repeat else 1

    def reach(self, key: str) -> Candidate | None:
        target = self._target(key)
        if target is None:
            return None
        scored = sorted(self.pool, key=lambda c: (self._distance(target, c.case, c.state,
                                                                 self._known(c)), c.order))
        for start in scored[:SEEDS]:
            case, state = start.case, start.state
            distance = self._distance(target, case, state)
            for _ in range(STEPS):
                if distance == 0:
                    break
                better = next(((c, s, d) for c, s in self._neighbours(case, state)
                               if (d := self._distance(target, c, s)) < distance), None)
                if better is None:
                    break
                case, state, distance = better
            if distance == 0:
                found = self._judged(case, state)
                if found is not None and key in found.covers:
                    return found
        return None

    def _target(self, key: str) -> tuple[Any, ...] | None:
        """(rule, operand or None, whether it must hold[, the collection an effect must
        change]) for a goal key."""
        kind, _, rest = key.partition(":")
        if kind == "rule":
            return int(rest), None, True
        if kind == "effect":
            rule, coll = rest.split(":")
            return int(rule), None, True, coll
        if kind == "code":
            rules = [r.index for r in self.spec.rules if rest in r.expect]
            return (rules[0], None, True) if rules else None
        if kind == "condition":
            rule, operand = (int(x) for x in rest.split(":"))
            joiner = self.conditions[rule][0]
            return rule, operand, joiner == "||"
        return None

    def _known(self, candidate: Candidate) -> dict[Any, bool | None]:
        """What has been evaluated of a pool candidate (each rule's `when`, each operand),
        kept: every goal's search ranks the whole pool."""
        return self.truths.setdefault(id(candidate), {})

    def _distance(self, target: tuple[Any, ...], case: Case, state: dict[str, Any],
                  known: dict[Any, bool | None] | None = None) -> int:
        """How far a case is from the goal: earlier rules that hold, and (for an operand)
        operands not as wanted, (for an effect) the collection unchanged; 0 when the case
        reaches it."""
        rule, operand, holds = target[:3]
        known = {} if known is None else known
        scope: list[Any] = []

        def truth(key: Any, expression: Any) -> bool | None:
            if key not in known:
                if not scope:
                    scope.append(self.oracle.scope(state, case.args))
                known[key] = _truth(expression, scope[0])
            return known[key]

        distance = sum(truth(i, w) is not False for i, w in enumerate(self.whens[:rule]))
        if operand is None:
            distance += truth(rule, self.whens[rule]) is not True
            if len(target) > 3:  # the rule's effect, as if it matched, must change it
                coll = target[3]
                source = self.spec.rules[rule].effects[coll]
                try:
                    after = compiled(source).evaluate(
                        scope[0] if scope else self.oracle.scope(state, case.args))
                except CostExceeded as exc:
                    raise CostlyOperand(source, exc) from None
                except Exception:
                    return distance + 1
                distance += not _changed(state.get(coll, []), list(after or []))
            return distance
        joiner, parts = self.conditions[rule]
        for i, part in enumerate(parts):
            want = holds if i == operand else not holds
            if not joiner:
                want = False
            distance += truth((rule, i), part) is not want
        return distance

    def _judged(self, case: Case, state: dict[str, Any]) -> Candidate | None:
        key = case_key(case)
        if key in self.seen:
            return next((c for c in self.pool if case_key(c.case) == key), None)
        self.seen.add(key)
        try:
            predicted = self.oracle.predict(state, case.args)
        except OracleCostError:
            raise
        except OracleError:
            return None
        ops, seconds = cost_of(self.spec, case, self.ctx, self.observe, self.calls)
        covers = _covers(self.spec, self.ctx, self.oracle, self.conditions, case, state,
                         predicted)
        found = Candidate(case, state, predicted, covers, ops, seconds, len(self.pool))
        self.pool.append(found)
        return found

    def _neighbours(self, case: Case, state: dict[str, Any]):
        """Cases one change away, in a fixed order, each with its state."""
        domain = self.ctx.domain
        colls, faults, _, read = self.space
        for given in self._step_changes(case.given, colls, faults, read):
            new_state = state_of(domain, given)
            dims = dict(arguments_of(self.spec, domain, Pool.of(domain, new_state), True))
            if all(_still_valid(v, dims.get(k)) for k, v in case.args.items()):
                yield Case(given, case.args), new_state
        dims = arguments_of(self.spec, domain, Pool.of(domain, state), True)
        for name, values in dims:
            for value in values:
                if value != case.args.get(name) or type(value) is not type(case.args.get(name)):
                    yield Case(case.given, {**case.args, name: value}), state

    def _step_changes(self, given: list[dict[str, Any]], colls: list[Any], faults: list[str],
                      read: frozenset[str]):
        domain = self.ctx.domain
        objects = [s for s in given if next(iter(s)) != FAULT_STEP]
        present = [s for s in given if next(iter(s)) == FAULT_STEP]
        made: dict[str, list[dict[str, Any]]] = {}
        for step in objects:
            coll = domain.by_step(next(iter(step)))
            if coll is not None:
                made.setdefault(coll.name, []).append({"id": step[coll.step], **step})
        for i, step in enumerate(objects):  # one field of one object
            coll = domain.by_step(next(iter(step)))
            if coll is None:
                continue
            before = {c: [o for o in objs if o["id"] != step[coll.step]]
                      for c, objs in made.items()}
            for fname, ftype in coll.fields.items():
                for value in field_choices(domain, fname, ftype, step, before, read):
                    if value != step.get(fname):
                        yield [*objects[:i], {**step, fname: value}, *objects[i + 1:],
                               *present]
        for i in range(len(present)):  # a fault taken away
            yield [*objects, *present[:i], *present[i + 1:]]
        for kind in faults:  # a fault added
            for filled in _fill_fault(domain, kind, made):
                if filled not in present:
                    yield [*objects, *present, filled]
        for coll in colls:  # one more object
            count = len(made.get(coll.name, []))
            if count >= 2:
                continue
            step = {coll.step: f"{coll.prefix}{count + 1}"}
            for fname, ftype in coll.fields.items():
                choices = field_choices(domain, fname, ftype, step, made, read)
                if not choices:
                    break
                step[fname] = choices[0]
            else:
                yield [*objects, step, *present]


def _fill_fault(domain: Domain, kind: str, made: dict[str, list[dict[str, Any]]]):
    from conformance.engine.strategies import _fill

    for filled in _fill(domain, None, {FAULT_STEP: kind}, list(domain.faults[kind].items()),
                        made, []):
        yield filled[0]


def _still_valid(value: Any, options: list[Any] | None) -> bool:
    """Whether an argument still makes sense after the steps changed (an object it names
    is still there)."""
    if options is None or not isinstance(value, str):
        return True
    return value in options or not any(isinstance(o, str) for o in options)


def _compiled_operands(when: str) -> tuple[str, list[Any]]:
    joiner, parts = operands(when)
    if not joiner and parts == ["true"]:
        return "", []
    try:
        return joiner, [compiled(p) for p in parts]
    except Exception:  # an operand that does not compile alone (it cannot: the whole does)
        return "", []


def greedy(pool: list[Candidate], wanted: set[str]) -> list[Candidate]:
    """The classic greedy set cover: the candidate that covers most of what is left per
    second it costs, then the next; ties go to the smaller case (enumeration order)."""
    chosen: list[Candidate] = []
    left = set(wanted)
    useful = [c for c in pool if c.covers & left]
    while left and useful:
        best = max(useful, key=lambda c: (len(c.covers & left) / max(c.seconds, 1e-9),
                                          -c.order))
        chosen.append(best)
        left -= best.covers
        useful = [c for c in useful if c.covers & left]
    return chosen


def why_unreachable(spec: Spec, ctx: Context, goal: Goal, pool: list[Candidate],
                    conditions: dict[int, tuple[str, list[Any]]], oracle: Oracle) -> str:
    """A person's reason why no case covers a goal."""
    kind, _, rest = goal.key.partition(":")
    if kind == "code" and not any(rest in r.expect for r in spec.rules):
        return "no rule expects this code"
    if kind == "arg" and rest.endswith(":existing object"):
        param = next(p for p in spec.params if p.name == rest.split(":")[0])
        if param.refers and not ctx.allowed.step(param.refers):
            return f"the provider cannot build a {param.refers} (not in its capabilities' steps)"
    if kind == "fault" and not ctx.allowed.fault(rest):
        return "the provider cannot inject this fault (not in its capabilities' faults)"
    missing = [c.step for c in relevant(spec, ctx.domain)[0] if not ctx.allowed.step(c.step)]
    if missing:
        return ("no case the provider can build reaches it (it cannot build: "
                f"{', '.join(missing)})")
    if kind == "condition":
        rule, operand = (int(x) for x in rest.split(":"))
        joiner, parts = conditions[rule]
        want = joiner == "||"
        values = {_truth(parts[operand], oracle.scope(c.state, c.case.args)) for c in pool}
        if want not in values and "state." not in parts[operand].source:
            return (f"no argument the planner tries makes the operand {str(want).lower()} (its "
                    "values come from the parameter's declared type and values)")
        if want not in values:
            return (f"the operand is never {str(want).lower()} in a state the `given` steps "
                    "build (a call sequence may reach it: the family check)"
                    if None not in values or values - {None} else
                    "the operand cannot be evaluated alone (it relies on another operand)")
        return ("whenever this operand is " + str(want).lower() + ", another operand is too "
                "(or cannot be evaluated alone): the operands are not independent")
    if kind == "effect":
        return "no small case makes this effect change the collection"
    return "no small case reaches it (dead or shadowed by an earlier rule?)"


# -- the run's plan ---------------------------------------------------------------------------

@dataclass
class RunPlan:
    """The plans of a run's specs and families, after the budget; what a run prints before it
    starts. (`families` hold conformance.engine.sequences.FamilyPlan: the same shape, sequences for
    cases.)"""

    specs: dict[str, SpecPlan]
    budget: Budget | None = None
    fixed: Tally = field(default_factory=Tally)  # scenarios and exploration (estimated)
    fixed_seconds: float = 0.0
    families: dict[str, Any] = field(default_factory=dict)

    def _plans(self) -> list[Any]:
        return [*self.specs.values(), *self.families.values()]

    def operations(self) -> Tally:
        total = self.fixed.copy()
        for plan in self._plans():
            total.merge(plan.operations())
        return total

    def seconds(self) -> float:
        return self.fixed_seconds + sum(p.seconds() for p in self._plans())

    def cases(self) -> int:
        return sum(len(p.cases) for p in self.specs.values())

    def sequences(self) -> int:
        return sum(len(p.cases) for p in self.families.values())

    def coverage(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for plan in self._plans():
            for kind, value in plan.coverage().items():
                if isinstance(value, dict):
                    entry = out.setdefault(kind, {"covered": 0, "total": 0})
                    entry["covered"] += value["covered"]
                    entry["total"] += value["total"]
        return out

    def left_out(self) -> int:
        return sum(len(p.left_out) for p in self._plans())

    def summary(self) -> dict[str, Any]:
        return {"cases": self.cases(), "sequences": self.sequences(),
                "operations": self.operations().as_dict(),
                "seconds": round(self.seconds(), 3), "coverage": self.coverage(),
                "budget": str(self.budget) if self.budget else None,
                "left_out": self.left_out(),
                "families": {name: plan.summary() for name, plan in self.families.items()}}

    def headline(self) -> str:
        """One line: the plan's size and what it should take on this provider."""
        ops = self.operations()
        cov = self.coverage()
        covered = ", ".join(f"{k} {v['covered']}/{v['total']}" for k, v in cov.items()
                            if v["total"])
        budget = f"; budget {self.budget}: {self.left_out()} items left out" \
            if self.budget else ""
        methods = f"{len(self.specs)} method" + ("" if len(self.specs) == 1 else "s")
        families = f" and {self.sequences()} sequences over {len(self.families)} " \
            f"famil{'y' if len(self.families) == 1 else 'ies'}" if self.families else ""
        return (f"plan: {self.cases()} cases over {methods}{families}, "
                f"{ops.total} operations (reset {ops.counts['reset']}, setup "
                f"{ops.counts['setup']}, call {ops.counts['call']}, observe "
                f"{ops.counts['observe']}), about {duration(self.seconds())} on this provider"
                + (f"; coverage {covered}" if covered else "") + budget)

    def as_json(self) -> dict[str, Any]:
        """`conformance plan --json`: the run's figures, each method's plan with its cases in
        the spec's scenario shape, each family's sequences as reproductions are written."""
        return {**self.summary(), "methods": {
            spec_id: {**plan.summary(),
                      "planned": [{**c.case.scenario(c.prediction.codes),
                                   "rule": c.prediction.rule.index,
                                   "covers": sorted(k for k in c.covers if k in plan.goals),
                                   "operations": c.operations.total,
                                   "seconds": round(c.seconds, 4)} for c in plan.cases]}
            for spec_id, plan in self.specs.items()},
            "families": {name: {**plan.summary(),
                                "planned": [{**s.scenario(),
                                             "covers": sorted(k for k in s.covers
                                                              if k in plan.goals),
                                             "operations": s.operations.total}
                                            for s in plan.cases]}
                         for name, plan in self.families.items()}}


def render_plan(plan: RunPlan, provider: str, profile: str, cases: bool = False) -> str:
    """`conformance plan` as text: a row per method, the totals, then what no case reaches
    and what the budget left out, each with the reason."""
    lines = [f"plan for provider {provider}, profile {profile} (the same whatever --seed)"]
    width = max((len(s) for s in plan.specs), default=6)
    kinds = [k for k in GOAL_KINDS]
    lines.append(f"{'method':<{width}}  {'cases':>5} {'ops':>6} {'time':>9}  "
                 + " ".join(f"{k[:10]:>10}" for k in kinds))
    for spec_id, spec_plan in sorted(plan.specs.items()):
        cov = spec_plan.coverage()
        lines.append(f"{spec_id:<{width}}  {len(spec_plan.cases):>5} "
                     f"{spec_plan.operations().total:>6} {duration(spec_plan.seconds()):>9}  "
                     + " ".join(f"{cov[k]['covered']:>4}/{cov[k]['total']:<5}" for k in kinds))
        if cases:
            for case, tier in zip(spec_plan.cases, spec_plan.tiers, strict=True):
                shown = json.dumps(case.case.scenario(case.prediction.codes), ensure_ascii=False,
                                   default=str)
                lines.append(f"    tier {tier}, rule {case.prediction.rule.index}, "
                             f"{case.operations.total} ops: {shown}")
    for name, family in sorted(plan.families.items()):
        cov = family.coverage()
        lines.append(f"{name + ' (sequences)':<{width}}  {len(family.cases):>5} "
                     f"{family.operations().total:>6} {duration(family.seconds()):>9}  "
                     + ", ".join(f"{k} {cov[k]['covered']}/{cov[k]['total']}"
                                 for k in ("pairs", "steps", "transitions")))
        if cases:
            for sequence, tier in zip(family.cases, family.tiers, strict=True):
                shown = json.dumps(sequence.scenario(), ensure_ascii=False, default=str)
                lines.append(f"    tier {tier}, {sequence.operations.total} ops: {shown}")
    if plan.fixed.total:
        lines.append(f"scenarios and exploration (estimated): {plan.fixed.total} operations, "
                     f"about {duration(plan.fixed_seconds)}")
    lines.append(plan.headline())
    owners = sorted([*plan.specs.items(), *plan.families.items()])
    for title, attr in (("not reachable", "unreachable"), ("left out", "left_out")):
        entries = [(owner, p.goals[k].label, why) for owner, p in owners
                   for k, why in getattr(p, attr).items()]
        if entries:
            lines.append(f"{title} ({len(entries)}):")
            lines += [f"  {spec_id}: {label}: {why}" for spec_id, label, why in entries]
    return "\n".join(lines)


def apply_budget(plans: list[SpecPlan], budget: Budget, fixed: Tally,
                 fixed_seconds: float) -> None:
    """Keep cases while the run stays within `budget`: tier 0 of every spec before tier 1,
    the specs taking turns, each spec's cases in the order the greedy cover chose them."""
    ops, seconds = fixed.total, fixed_seconds
    kept: dict[int, list[int]] = {id(p): [] for p in plans}
    for tier in sorted({t for p in plans for t in p.tiers}):
        queues = [[i for i, t in enumerate(p.tiers) if t == tier] for p in plans]
        depth = 0
        while any(depth < len(q) for q in queues):
            for plan, queue in zip(plans, queues, strict=True):
                if depth >= len(queue):
                    continue
                case = plan.cases[queue[depth]]
                if budget.allows(ops + case.operations.total, seconds + case.seconds):
                    ops += case.operations.total
                    seconds += case.seconds
                    kept[id(plan)].append(queue[depth])
            depth += 1
    for plan in plans:
        before = plan.covered
        indices = sorted(kept[id(plan)])
        plan.cases = [plan.cases[i] for i in indices]
        plan.tiers = [plan.tiers[i] for i in indices]
        for key in sorted(before - plan.covered, key=list(plan.goals).index):
            plan.left_out[key] = f"left out to stay within the budget ({budget})"


def rule_warnings(catalog: Any) -> list[str]:
    """A rule no case can make the first to match is usually a mistake in the spec (dead, or
    shadowed by an earlier rule): `conformance validate` warns of each, with its file:line.
    The search is the planner's, over everything the domain can build (tier 0: rules and
    codes)."""
    warnings: list[str] = []
    for spec in catalog.specs.values():
        domain = catalog.domain_of(spec)
        ctx = Context(domain, catalog.codes, Allowed(), Costs(), (), tier=0)
        plan = plan_spec(spec, ctx)
        if plan.error:
            continue  # validation reports what cannot be evaluated
        for rule in spec.rules:
            key = f"rule:{rule.index}"
            if key in plan.unreachable:
                warnings.append(
                    f"{spec.file}:{spec.line('rules', rule.index)}: rules[{rule.index}]: "
                    "warning: no case makes this rule the first to match (dead, shadowed by an "
                    "earlier rule, or reachable only after a sequence of calls)")
    return warnings
