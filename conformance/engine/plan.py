"""The plan: which cases a run executes, chosen with the oracle before the provider is touched.

The oracle is free and the provider is not. For each spec the planner builds candidate cases
(the small states crossed with argument classes that `case_space.enumerate_cases` orders
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
pure function of the catalog, the profile, the budget and the provider's capabilities (one
spec's `plan_spec` here, the run's `runplan.RunPlan` with `apply_budget`); `--seed` never
changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from conformance.engine.candidates import (
    ENOUGH,
    Candidate,
    Context,
    CostlyOperand,
    candidates,
    case_key,
    compiled_operands,
    cost_of,
    covers_of,
    footprint,
    operand_truth,
)
from conformance.engine.case_space import relevant
from conformance.engine.goals import GOAL_KINDS, Goal, goals_of
from conformance.engine.operations import Tally
from conformance.engine.oracle import Oracle, OracleCostError, OracleError
from conformance.engine.search import SEARCHED, Search

if TYPE_CHECKING:
    from conformance.spec.model import Spec


@dataclass
class Planned:
    """What a plan of a spec or of a family holds: its goals, the cases the cover chose (with
    the tier each was chosen for), what no case reaches and what a budget left out."""

    goals: dict[str, Goal]
    cases: list[Any] = field(default_factory=list)
    tiers: list[int] = field(default_factory=list)  # the tier each case was chosen for
    unreachable: dict[str, str] = field(default_factory=dict)  # goal key -> why
    left_out: dict[str, str] = field(default_factory=dict)  # goal key -> why (budget)
    KINDS: ClassVar[tuple[str, ...]] = GOAL_KINDS  # the goal kinds its coverage counts

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
            out[name] = [
                {"item": self.goals[k].label, "kind": self.goals[k].kind, "why": why}
                for k, why in missing.items()
            ]
        return out


@dataclass
class SpecPlan(Planned):
    """The cases of one spec's property checks, and the coverage they reach."""

    spec: Spec = field(kw_only=True)
    error: str | None = None  # the rules could not be evaluated on some case
    observe: tuple[str, ...] = ()  # the collections read after each call
    calls: int = 1  # calls per case (2 when the repeat check applies)
    candidates: int = 0
    pool: list[Candidate] = field(default_factory=list, repr=False)  # every case judged

    def summary(self) -> dict[str, Any]:
        """The plan of this spec as results.json and `conformance plan --json` show it."""
        return {
            "cases": len(self.cases),
            "candidates": self.candidates,
            "calls_per_case": self.calls,
            "observe": list(self.observe),
            "operations": self.operations().as_dict(),
            "seconds": round(self.seconds(), 3),
            "coverage": self.coverage(),
            **({"error": self.error} if self.error else {}),
        }


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
    conditions = {r.index: compiled_operands(r.when) for r in spec.rules}
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
        covers = covers_of(spec, ctx, oracle, conditions, case, state, predicted)
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
            plan.unreachable[key] = why_unreachable(spec, ctx, goals[key], pool, conditions, oracle)


def _operand_place(spec: Spec, exc: CostlyOperand) -> str:
    """The rule a costly operand belongs to, as file:line, with the bound."""
    for rule in spec.rules:
        for where, source in (
            ("when", rule.when),
            *((f"effects.{name}", src) for name, src in rule.effects.items()),
        ):
            if exc.source in source:
                line = spec.line("rules", rule.index, where.split(".")[0])
                return f"{spec.file}:{line}: rules[{rule.index}].{where}: CostExceeded: {exc}"
    return f"{spec.file}: CostExceeded: {exc}"


def greedy(pool: list[Candidate], wanted: set[str]) -> list[Candidate]:
    """The classic greedy set cover: the candidate that covers most of what is left per
    second it costs, then the next; ties go to the smaller case (enumeration order)."""
    chosen: list[Candidate] = []
    left = set(wanted)
    useful = [c for c in pool if c.covers & left]
    while left and useful:
        best = max(useful, key=lambda c: (len(c.covers & left) / max(c.seconds, 1e-9), -c.order))
        chosen.append(best)
        left -= best.covers
        useful = [c for c in useful if c.covers & left]
    return chosen


def why_unreachable(
    spec: Spec,
    ctx: Context,
    goal: Goal,
    pool: list[Candidate],
    conditions: dict[int, tuple[str, list[Any]]],
    oracle: Oracle,
) -> str:
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
        return f"no case the provider can build reaches it (it cannot build: {', '.join(missing)})"
    if kind == "condition":
        rule, operand = (int(x) for x in rest.split(":"))
        joiner, parts = conditions[rule]
        want = joiner == "||"
        values = {operand_truth(parts[operand], oracle.scope(c.state, c.case.args)) for c in pool}
        if want not in values and "state." not in parts[operand].source:
            return (
                f"no argument the planner tries makes the operand {str(want).lower()} (its "
                "values come from the parameter's declared type and values)"
            )
        if want not in values:
            return (
                f"the operand is never {str(want).lower()} in a state the `given` steps "
                "build (a call sequence may reach it: the family check)"
                if None not in values or values - {None}
                else "the operand cannot be evaluated alone (it relies on another operand)"
            )
        return (
            "whenever this operand is " + str(want).lower() + ", another operand is too "
            "(or cannot be evaluated alone): the operands are not independent"
        )
    if kind == "effect":
        return "no small case makes this effect change the collection"
    return "no small case reaches it (dead or shadowed by an earlier rule?)"
