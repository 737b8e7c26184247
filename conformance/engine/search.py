"""Reaching what the candidates missed: a local search that changes a case one thing at a time
toward a goal, judged by the oracle alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conformance.engine.candidates import (
    Candidate,
    Context,
    CostlyOperand,
    case_key,
    changed,
    cost_of,
    covers_of,
    footprint,
    operand_truth,
)
from conformance.engine.case_space import arguments_of, case_space, field_choices
from conformance.engine.oracle import Oracle, OracleCostError, OracleError
from conformance.engine.strategies import Case, Pool, state_of
from conformance.spec.domain import FAULT_STEP, Domain
from conformance.spec.expression import compiled
from conformance.spec.translate import CostExceeded

if TYPE_CHECKING:
    from conformance.spec.model import Spec

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

    def __init__(
        self,
        spec: Spec,
        ctx: Context,
        oracle: Oracle,
        conditions: dict[int, tuple[str, list[Any]]],
        pool: list[Candidate],
        seen: set[str],
    ):
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
        scored = sorted(
            self.pool,
            key=lambda c: (self._distance(target, c.case, c.state, self._known(c)), c.order),
        )
        for start in scored[:SEEDS]:
            case, state = start.case, start.state
            distance = self._distance(target, case, state)
            for _ in range(STEPS):
                if distance == 0:
                    break
                better = next(
                    (
                        (c, s, d)
                        for c, s in self._neighbours(case, state)
                        if (d := self._distance(target, c, s)) < distance
                    ),
                    None,
                )
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
            index, operand = (int(x) for x in rest.split(":"))
            joiner = self.conditions[index][0]
            return index, operand, joiner == "||"
        return None

    def _known(self, candidate: Candidate) -> dict[Any, bool | None]:
        """What has been evaluated of a pool candidate (each rule's `when`, each operand),
        kept: every goal's search ranks the whole pool."""
        return self.truths.setdefault(id(candidate), {})

    def _distance(
        self,
        target: tuple[Any, ...],
        case: Case,
        state: dict[str, Any],
        known: dict[Any, bool | None] | None = None,
    ) -> int:
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
                known[key] = operand_truth(expression, scope[0])
            return known[key]

        distance = sum(truth(i, w) is not False for i, w in enumerate(self.whens[:rule]))
        if operand is None:
            distance += truth(rule, self.whens[rule]) is not True
            if len(target) > 3:  # the rule's effect, as if it matched, must change it
                coll = target[3]
                source = self.spec.rules[rule].effects[coll]
                try:
                    after = compiled(source).evaluate(
                        scope[0] if scope else self.oracle.scope(state, case.args)
                    )
                except CostExceeded as exc:
                    raise CostlyOperand(source, exc) from None
                except Exception:
                    return distance + 1
                distance += not changed(state.get(coll, []), list(after or []))
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
        covers = covers_of(
            self.spec, self.ctx, self.oracle, self.conditions, case, state, predicted
        )
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
        for name, values in arguments_of(self.spec, domain, Pool.of(domain, state), True):
            for value in values:
                if value != case.args.get(name) or type(value) is not type(case.args.get(name)):
                    yield Case(case.given, {**case.args, name: value}), state

    def _step_changes(
        self, given: list[dict[str, Any]], colls: list[Any], faults: list[str], read: frozenset[str]
    ):
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
            before = {
                c: [o for o in objs if o["id"] != step[coll.step]] for c, objs in made.items()
            }
            for fname, ftype in coll.fields.items():
                for value in field_choices(domain, fname, ftype, step, before, read):
                    if value != step.get(fname):
                        yield [*objects[:i], {**step, fname: value}, *objects[i + 1 :], *present]
        for i in range(len(present)):  # a fault taken away
            yield [*objects, *present[:i], *present[i + 1 :]]
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
    from conformance.engine.case_space import _fill

    for filled in _fill(
        domain, None, {FAULT_STEP: kind}, list(domain.faults[kind].items()), made, []
    ):
        yield filled[0]


def _still_valid(value: Any, options: list[Any] | None) -> bool:
    """Whether an argument still makes sense after the steps changed (an object it names
    is still there)."""
    if options is None or not isinstance(value, str):
        return True
    return value in options or not any(isinstance(o, str) for o in options)
