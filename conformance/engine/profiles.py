"""Profiles: what a run's plan covers, and whether it explores beyond it.

A profile is a coverage level, not a count of cases: the planner chooses the cases that reach
it (conformance.engine.plan, conformance.engine.sequences). `quick` covers every rule, code and
effect, and every pair of a family's methods where one changes what the other reads; `ci` (the
default) also each operand of a rule deciding alone (MC/DC), every argument class and every
fault a rule reads, the rules a change makes a later call reach, and adds the repeat and
variants checks; `thorough` also explores: `explore` hypothesis-drawn cases per method and
`machine_runs` sequences of each family's state machine, from the run's seed, after the plan.
What exploration finds is saved as a regression; the plan alone decides the other checks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    tier: int  # plan coverage: 0 rules, codes, effects; 1 also conditions, arguments, faults
    explore: int  # hypothesis-drawn cases per method (0: no exploration)
    machine_runs: int  # sequences of each family's machine, exploring
    steer: bool
    description: str


PROFILES = {
    p.name: p
    for p in (
        Profile(
            "quick",
            0,
            0,
            0,
            False,
            "every rule, code and effect, and the pairs of methods of each family",
        ),
        Profile(
            "ci",
            1,
            0,
            0,
            False,
            "the default: also conditions (MC/DC), argument classes, faults, transitions, "
            "repeat and variants",
        ),
        Profile(
            "thorough",
            1,
            200,
            50,
            True,
            "the ci plan, then exploration: 200 drawn cases per method, steered to unseen "
            "codes, and 50 sequences of each family machine",
        ),
    )
}
