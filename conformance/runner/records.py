"""What a finished or planned check leaves behind: its reproduction file, the method a family
check's failure ended on, the codes a scenario names, and the items the controller of `-n`
knows by their node ids only.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

import yaml

from conformance.engine.kinds import KINDS
from conformance.engine.repro import is_sequence
from conformance.engine.verdict import (
    NOT_APPLICABLE,
    Verdict,
    slug,
)

if TYPE_CHECKING:
    from pathlib import Path

    from conformance.engine.plan import SpecPlan
    from conformance.engine.repro import Repro
    from conformance.reporting.shapes import MethodPlanSummary
    from conformance.runner.items import CheckItem
    from conformance.runner.session import ConformanceSession
    from conformance.spec.model import Scenario, Spec


def say(line: str) -> None:
    """A line for the person running the run, before the checks start (stdout, flushed: a CI
    log shows it at once)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def plan_of(plan: SpecPlan | None) -> MethodPlanSummary | None:
    # (the engine writes the shape without importing reporting)
    return cast("MethodPlanSummary", plan.summary()) if plan is not None else None


class PlannedItem:
    """A collected item the controller of a parallel run knows by its node id only."""

    def __init__(
        self, spec: Spec | None, kind: str, scenario: Scenario | None, family: str, case: str
    ):
        self.spec, self.kind, self.scenario, self.family = spec, kind, scenario, family
        self.case = case

    @classmethod
    def of(cls, session: ConformanceSession, nodeid: str) -> PlannedItem | None:
        _, _, name = nodeid.partition("::")
        parts = name.split("::")
        if len(parts) < 3:
            return None
        kind, case = parts[-2], parts[-1]
        if kind not in KINDS:
            return None
        if KINDS[kind].scope == "family":
            return cls(None, kind, None, "::".join(parts[:-2]), case)
        spec = session.catalog.specs.get("::".join(parts[:-2]))
        if spec is None:
            return None
        scenario = next((s for s in spec.scenarios if slug(s.name) == case), None)
        return cls(spec, kind, scenario, spec.family, case)


def blamed_method(verdict: Verdict) -> str:
    """The method whose call a family-level failure ended on ("" when it passed)."""
    repro = verdict.repro
    for entry in reversed(repro["calls"] if repro is not None and is_sequence(repro) else []):
        if "method" in entry:
            return entry["method"]
    return ""


def write_repro(out: Path, check: str, repro: Repro) -> Path:
    """DIR/repro/<check>.yaml: a reproduction `conformance replay` runs again."""
    folder = out / "repro"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug(check)}.yaml"
    header = (
        f"# Reproduction of {check}\n# Run it again: conformance replay {path} "
        "--provider PROVIDER\n"
    )
    path.write_text(
        header + yaml.safe_dump(repro, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    return path


def scenario_codes(item: CheckItem) -> dict[str, str]:
    if KINDS[item.kind].scope == "scenario" and item.scenario is not None:
        return {c: NOT_APPLICABLE for c in item.scenario.expect}
    return {}
