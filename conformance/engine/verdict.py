"""What a check concludes: its status, the verdict, the two ways it stops early (CheckFailed,
NotApplicable), and the run's settings every check reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from hypothesis import Phase

from conformance.engine.operations import Costs

if TYPE_CHECKING:
    from pathlib import Path

    from hypothesis.database import ExampleDatabase

    from conformance.spec.observed import ObservedPolicy


class Status(StrEnum):
    """A check's status, as results.json spells it (a StrEnum: it is written and compared as
    that string)."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_APPLICABLE = "not_applicable"
    ERROR = "error"


PASSED, FAILED, NOT_APPLICABLE, ERROR = Status  # the names the checks use


class CheckFailed(Exception):
    def __init__(
        self,
        message: str,
        repro: dict[str, Any] | None = None,
        codes: tuple[str, ...] = (),
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.repro = repro
        self.codes = codes
        self.details = details


class NotApplicable(Exception):
    def __init__(self, message: str, unreached: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.unreached = unreached  # planned coverage no case reached (see Verdict)


@dataclass
class Verdict:
    status: Status
    message: str = ""
    codes: dict[str, str] = field(default_factory=dict)
    repro: dict[str, Any] | None = None
    details: dict[str, Any] | None = None
    # coverage items of the plan that no executed case reached (its cases were Unsupported)
    unreached: list[dict[str, str]] | None = None
    regressions: list[dict[str, str]] | None = None  # saved cases it replayed, and how they went


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
