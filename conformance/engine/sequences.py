"""Planned sequences: the family check's cases, chosen with the oracle like the single calls.

A bug only a sequence shows lives where one call changes what a later call reads. The planner
finds those places in the oracle's model. Its coverage items:

- `pairs`: every ordered pair of methods (A, B) of a family where A's effects change a
  collection B's rules read: some sequence has A change it, then calls B;
- `steps`: every collection (or fault) a method's rules read: some sequence calls the method,
  makes such an object between two calls (`given` mid-sequence), and calls it again;
- `transitions`: each rule of B that such an event makes B reach, where B would reach another
  without it (found among the candidates; transition-pair coverage over the oracle's model).

Candidates start from the single-call planner's small cases of the first method (its effects
changing something) and call the second with arguments naming what the first touched,
removed objects included. The fewest cheapest sequences covering every item are kept; the
plan is a pure function of the catalog and the capabilities, like the single calls'. Each
sequence runs once: every call is judged as the oracle check judges one (code, out-parameters,
next state) and after every step the domain's invariants must hold on what the provider
shows.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conformance.engine.case_space import arguments_of, field_choices
from conformance.engine.goals import Goal
from conformance.engine.operations import Costs, Tally
from conformance.engine.oracle import OracleError
from conformance.engine.plan import Planned, greedy
from conformance.engine.strategies import Allowed, Pool, call_args, require_objects
from conformance.spec.domain import FAULT_STEP, FAULTS, Domain

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conformance.engine.repro import Entry, SequenceRepro
    from conformance.engine.subject import Subject

FAMILY_GOAL_KINDS = ("pairs", "steps", "transitions")
STARTS = 12  # small cases of the first method a pair starts from
ARGUMENTS = 4  # argument combinations of the second method tried after each start


@dataclass(frozen=True)
class Event:
    """One step of a sequence: a call (method id and arguments) or a `given` step."""

    method: str | None = None
    args: dict[str, Any] | None = None
    step: dict[str, Any] | None = None


@dataclass
class Sequence:
    """A planned sequence: the base state, its events, what it covers and costs."""

    given: list[dict[str, Any]]
    events: list[Event]
    covers: frozenset[str]
    operations: Tally
    seconds: float
    order: int

    def scenario(self) -> SequenceRepro:
        """The sequence as a reproduction writes it: `given`, then `calls` (the expectations
        are the rules' answers; a planned sequence is judged call by call)."""
        calls: list[Entry] = []
        for event in self.events:
            if event.step is not None:
                calls.append({"given": [dict(event.step)]})
            else:
                assert event.method is not None  # an event is a step or a method's call
                calls.append({"method": event.method, "call": call_args(event.args or {})})
        return {"given": [dict(s) for s in self.given], "calls": calls}


@dataclass
class FamilyPlan(Planned):
    """A family's planned sequences (`cases`, in the order the cover chose them, with the
    tier each was chosen for), and the coverage they reach."""

    family: str = ""
    observe: tuple[str, ...] = ()
    candidates: int = 0
    KINDS = FAMILY_GOAL_KINDS

    @property
    def sequences(self) -> list[Sequence]:
        return self.cases

    def summary(self) -> dict[str, Any]:
        return {
            "sequences": len(self.cases),
            "candidates": self.candidates,
            "observe": list(self.observe),
            "operations": self.operations().as_dict(),
            "seconds": round(self.seconds(), 3),
            "coverage": self.coverage(),
        }


# -- what each method reads and writes -------------------------------------------------------

_STATE = re.compile(r"\bstate\.([A-Za-z_][A-Za-z0-9_]*)")


def reads(subject: Subject) -> set[str]:
    """The collections (and `faults`) a method's rules decide on."""
    text = " ".join(
        [r.when for r in subject.spec.rules]
        + [e for r in subject.spec.rules for e in r.outputs.values()]
    )
    return set(_STATE.findall(text))


def writes(subject: Subject) -> set[str]:
    return {coll for rule in subject.spec.rules for coll in rule.effects}


def reports(subject: Subject) -> bool:
    """Whether a method answers with what it sees (out-parameters the rules predict): such a
    method is asked again after every change, read by its rules or not, so that a change
    showing where the model says it must not (one collection leaking into another) is seen."""
    return any(rule.outputs for rule in subject.spec.rules)


def follows(a: Subject, b: Subject) -> set[str]:
    """What of A's writes makes (A, B) a pair: what B reads, or (B reporting) all of it."""
    if b is a:
        return set()
    return writes(a) if reports(b) else writes(a) & reads(b)


def _changed(before: list[Any], after: list[Any]) -> bool:
    def key(objs: list[Any]) -> list[str]:
        return sorted(json.dumps(o, sort_keys=True, default=str) for o in objs)

    return key(before) != key(after)


def _removed(domain: Domain, before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for coll in domain.collections.values():
        still = {o["id"] for o in after.get(coll.name, [])}
        gone = [o["id"] for o in before.get(coll.name, []) if o["id"] not in still]
        if gone:
            out[coll.step] = gone
    return out


def _used(subject: Subject, args: dict[str, Any]) -> dict[str, list[str]]:
    """The objects a call names, by step: what the next call should most often name too."""
    spec = subject.spec
    pairs = [(spec.this_object, args.get("this"))]
    pairs += [(p.refers, args.get(p.name)) for p in spec.params if p.refers]
    used: dict[str, list[str]] = {}
    for step, name in pairs:
        if step and isinstance(name, str):
            used.setdefault(step, []).append(name)
    return used


# -- planning ----------------------------------------------------------------------------------


@dataclass
class FamilyContext:
    domain: Domain
    allowed: Allowed
    costs: Costs
    observable: tuple[str, ...]
    tier: int = 1


def goals_of(subjects: list[Subject], ctx: FamilyContext) -> dict[str, Goal]:
    """The static items: pairs of methods, and steps before a method that reads them."""
    goals: list[Goal] = []
    for a in subjects:
        for b in subjects:
            met = follows(a, b)
            if met:
                goals.append(
                    Goal(
                        f"pair:{a.spec.id}>{b.spec.id}",
                        "pairs",
                        f"{a.spec.id} changes {', '.join(sorted(met))}, then "
                        f"{b.spec.id} "
                        + ("reads it" if met & reads(b) else "reports what it sees"),
                    )
                )
    for b in subjects:
        for coll in ctx.domain.collections.values():
            if coll.name in reads(b) and ctx.allowed.step(coll.step):
                goals.append(
                    Goal(
                        f"step:{coll.step}>{b.spec.id}",
                        "steps",
                        f"a {coll.step} made between two calls of {b.spec.id}",
                    )
                )
        text = " ".join(r.when for r in b.spec.rules)
        for fault in ctx.domain.faults:
            if (f"'{fault}'" in text or f'"{fault}"' in text) and ctx.allowed.fault(fault):
                goals.append(
                    Goal(
                        f"step:fault {fault}>{b.spec.id}",
                        "steps",
                        f"a {fault} fault between two calls of {b.spec.id}",
                    )
                )
    return {g.key: g for g in goals}


def family_observe(subjects: list[Subject], ctx: FamilyContext) -> tuple[str, ...]:
    """What a sequence reads after each step: what its methods read or change, and what the
    domain's invariants speak of, where the provider can show it."""
    wanted = set()
    for s in subjects:
        wanted |= set(s.plan.observe) | writes(s) | reads(s)
    for _, rule in ctx.domain.invariants:
        wanted |= set(_STATE.findall(rule))
    return tuple(c for c in ctx.observable if c in wanted)


def plan_family(subjects: list[Subject], ctx: FamilyContext) -> FamilyPlan:
    """The fewest cheapest sequences that cover the family's pairs, steps and transitions."""
    family = ctx.domain.family
    goals = goals_of(subjects, ctx)
    plan = FamilyPlan(goals, family=family, observe=family_observe(subjects, ctx))
    pool: list[Sequence] = []
    for candidate in _candidates(subjects, ctx, plan.observe):
        candidate.order = len(pool)
        pool.append(candidate)
        for key in candidate.covers:
            if key.startswith("transition:") and key not in goals:
                goals[key] = Goal(key, "transitions", _transition_label(key))
    plan.candidates = len(pool)
    plan.goals = {k: g for k, g in goals.items() if g.tier <= ctx.tier}
    for tier in range(ctx.tier + 1):
        wanted = {k for k, g in plan.goals.items() if g.tier == tier}
        # a Sequence has what greedy reads of a Candidate (covers, its cost)
        for chosen in greedy(pool, wanted - plan.covered):  # type: ignore[arg-type]
            plan.cases.append(chosen)
            plan.tiers.append(tier)
    for key, goal in plan.goals.items():
        if key not in plan.covered:
            plan.unreachable[key] = _why(goal)
    return plan


def _transition_label(key: str) -> str:
    _, _, rest = key.partition(":")
    before, _, after = rest.partition(">")
    method, _, rule = after.rpartition(":")
    return f"after {before}, {method} reaches rule {rule}"


def _why(goal: Goal) -> str:
    if goal.kind == "pairs":
        return (
            "no small case of the first method changes what the second reads with the "
            "second still callable"
        )
    return "no small state of the method lets such an object be made between its calls"


def _candidates(
    subjects: list[Subject], ctx: FamilyContext, observe: tuple[str, ...]
) -> Iterator[Sequence]:
    yield from _pair_candidates(subjects, ctx, observe)
    yield from _step_candidates(subjects, ctx, observe)


def _starts(subject: Subject, wanted: set[str]) -> list[Any]:
    """Small planned cases of a method whose effects change one of `wanted`."""
    plan = subject.plan
    seen: set[int] = set()
    out = []
    for candidate in [*plan.cases, *plan.pool]:
        if id(candidate) in seen:
            continue
        seen.add(id(candidate))
        after = candidate.prediction.state
        if any(_changed(candidate.state.get(c, []), after.get(c, [])) for c in wanted):
            out.append(candidate)
            if len(out) >= STARTS:
                break
    return out


def _distinct(candidates: list[Any]) -> list[Any]:
    seen: set[int] = set()
    out: list[Any] = []
    for c in candidates:
        if id(c) not in seen:
            seen.add(id(c))
            out.append(c)
    return out


def _pair_candidates(
    subjects: list[Subject], ctx: FamilyContext, observe: tuple[str, ...]
) -> Iterator[Sequence]:
    domain = ctx.domain
    for a in subjects:
        targets = [b for b in subjects if follows(a, b)]
        if not targets:
            continue
        for start in _starts(a, set().union(*(follows(a, b) for b in targets))):
            for b in targets:
                given, before = _callable(b, domain, ctx.allowed, start.case.given, start.state)
                if given is None:
                    continue
                try:
                    after = a.oracle.predict(before, start.case.args).state
                except OracleError:
                    continue
                changed = {c for c in writes(a) if _changed(before.get(c, []), after.get(c, []))}
                if not changed & follows(a, b):
                    continue
                pool = Pool.of(
                    domain, after, _removed(domain, before, after), _used(a, start.case.args)
                )
                for b_args in _argument_combos(b, domain, pool):
                    covers = _pair_covers(a, b, before, after, b_args)
                    if covers is None:
                        continue
                    events = [Event(a.spec.id, start.case.args), Event(b.spec.id, b_args)]
                    yield _sequence(given, events, covers, ctx, observe, subjects)


def _callable(
    subject: Subject,
    domain: Domain,
    allowed: Allowed,
    given: list[dict[str, Any]],
    state: dict[str, Any],
) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
    """The steps with what a com-method needs to be called on added when missing (its object,
    and what that object must refer to), and the state they build; None when the provider
    cannot build it."""
    step = subject.spec.this_object
    coll = domain.by_step(step or "")
    if coll is None or state.get(coll.name):
        return list(given), state
    require: dict[str, int] = {}
    require_objects(domain, coll, require)
    added = list(given)
    after = {k: list(v) for k, v in state.items()}
    used = {str(next(iter(s.values()))) for s in given}
    for need in (c for c in domain.collections.values() if c.name in require):
        if after.get(need.name):
            continue
        if not allowed.step(need.step):
            return None, state
        made = {c.name: after.get(c.name, []) for c in domain.collections.values()}
        number = 1
        while f"{need.prefix}{number}" in used:
            number += 1
        new: dict[str, Any] = {need.step: f"{need.prefix}{number}"}
        for fname, ftype in need.fields.items():
            choices = field_choices(domain, fname, ftype, new, made)
            if not choices:
                return None, state
            new[fname] = choices[0]
        objects = [s for s in added if next(iter(s)) != FAULT_STEP]
        faults = [s for s in added if next(iter(s)) == FAULT_STEP]
        added = [*objects, new, *faults]
        domain.apply(after, domain.complete(new))
        used.add(new[need.step])
    return added, after


def _pair_covers(
    a: Subject, b: Subject, before: dict[str, Any], after: dict[str, Any], args: dict[str, Any]
) -> frozenset[str] | None:
    try:
        then = b.oracle.predict(after, args)
    except OracleError:
        return None
    covers = {f"pair:{a.spec.id}>{b.spec.id}"}
    try:
        alone = b.oracle.predict(before, args).rule.index
    except OracleError:
        alone = None
    if alone != then.rule.index:
        covers.add(f"transition:{a.spec.id}>{b.spec.id}:{then.rule.index}")
    return frozenset(covers)


def _argument_combos(subject: Subject, domain: Domain, pool: Pool) -> list[dict[str, Any]]:
    """A few argument combinations, those naming the objects the last call used first."""
    dims = arguments_of(subject.spec, domain, pool)
    if any(not values for _, values in dims):
        return []
    recent = {n for names in pool.recent.values() for n in names}
    ordered = [
        (name, sorted(values, key=lambda v: not (isinstance(v, str) and v in recent)))
        for name, values in dims
    ]
    combos = itertools.islice(itertools.product(*(v for _, v in ordered)), ARGUMENTS)
    return [dict(zip((n for n, _ in ordered), combo, strict=True)) for combo in combos]


def _step_candidates(
    subjects: list[Subject], ctx: FamilyContext, observe: tuple[str, ...]
) -> Iterator[Sequence]:
    """A method called, an object (or fault) it reads made, the method called again."""
    domain = ctx.domain
    for b in subjects:
        read = reads(b)
        for start in _distinct([*b.plan.cases, *b.plan.pool[:STARTS]]):
            state = start.prediction.state
            made = {
                c.name: [dict(o) for o in state.get(c.name, [])]
                for c in domain.collections.values()
            }
            used = {str(next(iter(s.values()))) for s in start.case.given}
            for step in _new_steps(domain, ctx.allowed, read, made, state, used):
                after = _with(domain, state, step)
                try:
                    first = b.oracle.predict(state, start.case.args)
                    again = b.oracle.predict(after, start.case.args)
                except OracleError:
                    continue
                label = next(iter(step))
                label = f"fault {step[FAULT_STEP]}" if label == FAULT_STEP else label
                covers = {f"step:{label}>{b.spec.id}"}
                if first.rule.index != again.rule.index:
                    covers.add(f"transition:+{label}>{b.spec.id}:{again.rule.index}")
                events = [
                    Event(b.spec.id, start.case.args),
                    Event(step=step),
                    Event(b.spec.id, start.case.args),
                ]
                yield _sequence(start.case.given, events, frozenset(covers), ctx, observe, subjects)


def _new_steps(
    domain: Domain,
    allowed: Allowed,
    read: set[str],
    made: dict[str, list[dict[str, Any]]],
    state: dict[str, Any],
    used: set[str],
) -> Iterator[dict[str, Any]]:
    """Objects (and faults) a method reads, made anew; a new object never takes the name of
    one the sequence made before (a removed object's name still means that object)."""
    for coll in domain.collections.values():
        if coll.name not in read or not allowed.step(coll.step):
            continue
        taken = {o["id"] for o in state.get(coll.name, [])} | used
        number = 1
        while f"{coll.prefix}{number}" in taken:
            number += 1
        base: dict[str, Any] = {coll.step: f"{coll.prefix}{number}"}
        refs = [(f, t) for f, t in coll.fields.items() if t.kind == "ref"]
        yield from itertools.islice(_refs_filled(domain, refs, base, made), 3)
    if FAULTS in read:
        from conformance.engine.search import _fill_fault

        for kind in domain.faults:
            if not allowed.fault(kind):
                continue
            present = state.get(FAULTS, [])
            for filled in itertools.islice(_fill_fault(domain, kind, made), 2):
                if {
                    "fault": kind,
                    **{k: v for k, v in filled.items() if k != FAULT_STEP},
                } not in present:
                    yield filled


def _refs_filled(
    domain: Domain,
    refs: list[tuple[str, Any]],
    step: dict[str, Any],
    made: dict[str, list[dict[str, Any]]],
) -> Iterator[dict[str, Any]]:
    """The step with each reference field given an object, in field order (a field that
    must refer to the same thing as an earlier one sees that one's choice)."""
    if not refs:
        yield step
        return
    (name, ftype), rest = refs[0], refs[1:]
    for choice in field_choices(domain, name, ftype, step, made)[:2]:
        yield from _refs_filled(domain, rest, {**step, name: choice}, made)


def _with(domain: Domain, state: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    after = {k: list(v) for k, v in state.items()}
    domain.apply(after, domain.complete(step))
    return after


def _sequence(
    given: list[dict[str, Any]],
    events: list[Event],
    covers: frozenset[str],
    ctx: FamilyContext,
    observe: tuple[str, ...],
    subjects: list[Subject],
) -> Sequence:
    ops = Tally()
    ops.add("reset")
    seconds = ctx.costs.of_op("reset")
    for step in given:
        ops.add("setup")
        seconds += ctx.costs.of_op("setup", str(next(iter(step))))
    for event in events:
        if event.step is not None:
            ops.add("setup")
            seconds += ctx.costs.of_op("setup", str(next(iter(event.step))))
        else:
            ops.add("call")
            seconds += ctx.costs.of_op("call", event.method or "*")
        ops.add("observe", len(observe))
        seconds += sum(ctx.costs.of_op("observe", c) for c in observe)
    ops.batches += len(events)
    return Sequence(list(given), events, covers, ops, seconds, 0)


def context_of(subjects: list[Subject], domain: Domain) -> FamilyContext:
    first = subjects[0]
    return FamilyContext(
        domain,
        first.allowed or Allowed(),
        first.settings.costs,
        first.observable,
        first.settings.tier,
    )
