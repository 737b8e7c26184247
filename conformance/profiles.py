"""Profiles: what a run's plan covers, and whether it explores beyond it.

A profile is a coverage level, not a count of cases: the planner chooses the cases that reach
it (conformance.plan). `quick` covers every rule, code and effect; `ci` (the default) also
each operand of a rule deciding alone (MC/DC), every argument class and every fault a rule
reads, and adds the repeat and variants checks; `thorough` adds hypothesis-drawn cases on top
of the plan (`explore` per property check), steered toward codes not seen yet. The family
machine runs `machine_runs` sequences; outside `thorough` it draws them from a fixed seed, so
that the same provider gets the same verdict on every run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    tier: int  # plan coverage: 0 rules, codes, effects; 1 also conditions, arguments, faults
    explore: int  # hypothesis-drawn cases per property check after the plan
    machine_runs: int  # sequences of the family machine
    steer: bool
    description: str

    @property
    def seeded(self) -> bool:
        """Whether the family machine draws from a fixed seed (the run can gate)."""
        return not self.explore


PROFILES = {
    p.name: p
    for p in (
        Profile("quick", 0, 0, 3, False,
                "every rule, code and effect; seconds on the reference"),
        Profile("ci", 1, 0, 6, False,
                "the default: also conditions (MC/DC), argument classes, faults, repeat and "
                "variants"),
        Profile("thorough", 1, 200, 100, True,
                "the ci plan, then 200 drawn cases per property check, steered to unseen codes, "
                "and 100 sequences of each family machine"),
    )
}
