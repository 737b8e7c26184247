"""What a check concludes: the verdict (of one an error ended: `verdict_of`), the two ways a
check stops early (CheckFailed, NotApplicable), and the run's settings every check reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hypothesis import Phase

from conformance.engine.operations import Costs
from conformance.errors import ConformanceError, ExitStatus, Status

if TYPE_CHECKING:
    from pathlib import Path

    from hypothesis.database import ExampleDatabase

    from conformance.engine.repro import Repro
    from conformance.spec.observed import ObservedPolicy


PASSED, FAILED, NOT_APPLICABLE, ERROR = Status  # the names the checks use


class CheckFailed(ConformanceError):
    """The check found the provider deviating; `codes` are the codes it marks failed."""

    status = Status.FAILED
    exit_status = ExitStatus.FAILS
    codes: tuple[str, ...]
    breach: bool = False  # the contract broken (a crash, a refused answer), not a code
    kind: str | None = None  # the kind that judged it, where exploration ran several

    def __init__(
        self,
        message: str,
        repro: Repro | None = None,
        codes: tuple[str, ...] = (),
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.repro = repro
        self.codes = codes
        self.details = details


class NotApplicable(ConformanceError):
    """The check cannot judge this provider (what it needs is unsupported or unreachable)."""

    status = Status.NOT_APPLICABLE
    exit_status = ExitStatus.FAILS

    def __init__(self, message: str, unreached: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.unreached = unreached  # planned coverage no case reached (see Verdict)


@dataclass
class Verdict:
    status: Status
    message: str = ""
    codes: dict[str, str] = field(default_factory=dict)
    repro: Repro | None = None
    details: dict[str, Any] | None = None
    # coverage items of the plan that no executed case reached (its cases were Unsupported)
    unreached: list[dict[str, str]] | None = None
    regressions: list[dict[str, str]] | None = None  # saved cases it replayed, and how they went


def verdict_of(error: ConformanceError, scenario: dict[str, str]) -> Verdict:
    """The verdict of a check an error ended, read from the error's class: its status and
    message, and the codes it marks (`scenario`: the check's own codes, each not applicable)."""
    codes: dict[str, str]
    if error.status is Status.FAILED:
        codes = {c: FAILED for c in (scenario if error.codes is None else error.codes)}
    else:
        codes = scenario if error.status is Status.NOT_APPLICABLE else {}
    return Verdict(
        error.status, error.describe(), codes, error.repro, error.details, error.unreached
    )


@dataclass
class Settings:
    max_examples: int = 0  # drawn cases per property check after the plan (exploration)
    tier: int = 1  # the plan's coverage: 0 rules, codes and effects; 1 also conditions, ...
    steer: bool = False  # hypothesis.target toward unseen codes (costly with long strings)
    seed: int | None = None
    database: ExampleDatabase | None = None
    code_page: str = "cp1252"
    observed: ObservedPolicy | None = None  # None: strict, nothing is excused
    costs: Costs = field(default_factory=Costs)  # what the provider's operations cost
    machine_runs: int = 10  # runs of the family machine (exploring)
    regressions: Path | None = None  # where exploration saves what it finds
    provider_name: str = ""  # recorded with a saved regression


# Hypothesis's explain phase replays a shrunk failure under a tracer to annotate it; the harness
# reports its own reproduction, and on a state machine that phase costs more than shrinking.
PHASES = tuple(p for p in Phase if p is not Phase.explain)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
