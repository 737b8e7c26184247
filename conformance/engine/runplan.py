"""The run's plan: every spec's and family's planned cases together, kept within a budget, and
printed by `conformance plan`; the warnings `validate` gives of rules no case reaches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from conformance.engine.candidates import Context
from conformance.engine.goals import GOAL_KINDS
from conformance.engine.operations import Budget, Costs, Tally, duration
from conformance.engine.plan import SpecPlan, plan_spec
from conformance.engine.strategies import Allowed

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
        return {
            "cases": self.cases(),
            "sequences": self.sequences(),
            "operations": self.operations().as_dict(),
            "seconds": round(self.seconds(), 3),
            "coverage": self.coverage(),
            "budget": str(self.budget) if self.budget else None,
            "left_out": self.left_out(),
            "families": {name: plan.summary() for name, plan in self.families.items()},
        }

    def headline(self) -> str:
        """One line: the plan's size and what it should take on this provider."""
        ops = self.operations()
        cov = self.coverage()
        covered = ", ".join(
            f"{k} {v['covered']}/{v['total']}" for k, v in cov.items() if v["total"]
        )
        budget = f"; budget {self.budget}: {self.left_out()} items left out" if self.budget else ""
        methods = f"{len(self.specs)} method" + ("" if len(self.specs) == 1 else "s")
        families = (
            f" and {self.sequences()} sequences over {len(self.families)} "
            f"famil{'y' if len(self.families) == 1 else 'ies'}"
            if self.families
            else ""
        )
        return (
            f"plan: {self.cases()} cases over {methods}{families}, "
            f"{ops.total} operations (reset {ops.counts['reset']}, setup "
            f"{ops.counts['setup']}, call {ops.counts['call']}, observe "
            f"{ops.counts['observe']}), about {duration(self.seconds())} on this provider"
            + (f"; coverage {covered}" if covered else "")
            + budget
        )

    def as_json(self) -> dict[str, Any]:
        """`conformance plan --json`: the run's figures, each method's plan with its cases in
        the spec's scenario shape, each family's sequences as reproductions are written."""
        return {
            **self.summary(),
            "methods": {
                spec_id: {
                    **plan.summary(),
                    "planned": [
                        {
                            **c.case.scenario(c.prediction.codes),
                            "rule": c.prediction.rule.index,
                            "covers": sorted(k for k in c.covers if k in plan.goals),
                            "operations": c.operations.total,
                            "seconds": round(c.seconds, 4),
                        }
                        for c in plan.cases
                    ],
                }
                for spec_id, plan in self.specs.items()
            },
            "families": {
                name: {
                    **plan.summary(),
                    "planned": [
                        {
                            **s.scenario(),
                            "covers": sorted(k for k in s.covers if k in plan.goals),
                            "operations": s.operations.total,
                        }
                        for s in plan.cases
                    ],
                }
                for name, plan in self.families.items()
            },
        }


def render_plan(plan: RunPlan, provider: str, profile: str, cases: bool = False) -> str:
    """`conformance plan` as text: a row per method, the totals, then what no case reaches
    and what the budget left out, each with the reason."""
    lines = [f"plan for provider {provider}, profile {profile} (the same whatever --seed)"]
    width = max((len(s) for s in plan.specs), default=6)
    kinds = [k for k in GOAL_KINDS]
    lines.append(
        f"{'method':<{width}}  {'cases':>5} {'ops':>6} {'time':>9}  "
        + " ".join(f"{k[:10]:>10}" for k in kinds)
    )
    for spec_id, spec_plan in sorted(plan.specs.items()):
        cov = spec_plan.coverage()
        lines.append(
            f"{spec_id:<{width}}  {len(spec_plan.cases):>5} "
            f"{spec_plan.operations().total:>6} {duration(spec_plan.seconds()):>9}  "
            + " ".join(f"{cov[k]['covered']:>4}/{cov[k]['total']:<5}" for k in kinds)
        )
        if cases:
            for case, tier in zip(spec_plan.cases, spec_plan.tiers, strict=True):
                shown = json.dumps(
                    case.case.scenario(case.prediction.codes), ensure_ascii=False, default=str
                )
                lines.append(
                    f"    tier {tier}, rule {case.prediction.rule.index}, "
                    f"{case.operations.total} ops: {shown}"
                )
    for name, family in sorted(plan.families.items()):
        cov = family.coverage()
        lines.append(
            f"{name + ' (sequences)':<{width}}  {len(family.cases):>5} "
            f"{family.operations().total:>6} {duration(family.seconds()):>9}  "
            + ", ".join(
                f"{k} {cov[k]['covered']}/{cov[k]['total']}"
                for k in ("pairs", "steps", "transitions")
            )
        )
        if cases:
            for sequence, tier in zip(family.cases, family.tiers, strict=True):
                shown = json.dumps(sequence.scenario(), ensure_ascii=False, default=str)
                lines.append(f"    tier {tier}, {sequence.operations.total} ops: {shown}")
    if plan.fixed.total:
        lines.append(
            f"scenarios and exploration (estimated): {plan.fixed.total} operations, "
            f"about {duration(plan.fixed_seconds)}"
        )
    lines.append(plan.headline())
    owners = sorted([*plan.specs.items(), *plan.families.items()])
    for title, attr in (("not reachable", "unreachable"), ("left out", "left_out")):
        entries = [
            (owner, p.goals[k].label, why)
            for owner, p in owners
            for k, why in getattr(p, attr).items()
        ]
        if entries:
            lines.append(f"{title} ({len(entries)}):")
            lines += [f"  {spec_id}: {label}: {why}" for spec_id, label, why in entries]
    return "\n".join(lines)


def apply_budget(plans: list[SpecPlan], budget: Budget, fixed: Tally, fixed_seconds: float) -> None:
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
                    "earlier rule, or reachable only after a sequence of calls)"
                )
    return warnings
