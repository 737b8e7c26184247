"""What pytest collects: a spec file becomes one item per scenario and per property check, a
domain file one item per family check, each named `<method id>::<kind>::<case>`.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

import pytest

from conformance.engine.kinds import KINDS
from conformance.engine.verdict import (
    ERROR,
    FAILED,
    NOT_APPLICABLE,
    PASSED,
    CheckFailed,
    Verdict,
    slug,
)
from conformance.runner.options import (
    session_of,
)

if TYPE_CHECKING:
    from pathlib import Path

    from _pytest._code.code import TerminalRepr

    from conformance.spec.model import Scenario, Spec


class SpecFile(pytest.File):
    def __init__(self, *, spec: Spec, **kwargs: Any):
        super().__init__(**kwargs)
        self.spec = spec

    def collect(self):
        for kind in (k.name for k in KINDS.values() if k.scope == "scenario"):
            for scenario in self.spec.scenarios:
                case = slug(scenario.name)
                yield CheckItem.from_parent(
                    self,
                    name=check_name(self.spec.id, kind, case),
                    spec=self.spec,
                    kind=kind,
                    scenario=scenario,
                    case=case,
                )
        session = session_of(self.config)
        assert session is not None
        for kind in session.kinds_for(self.spec):
            case = KINDS[kind].case
            yield CheckItem.from_parent(
                self,
                name=check_name(self.spec.id, kind, case),
                spec=self.spec,
                kind=kind,
                scenario=None,
                case=case,
            )


class DomainFile(pytest.File):
    """A family's domain: its stateful machine over every method of the family."""

    def __init__(self, *, family: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.family = family

    def collect(self):
        session = session_of(self.config)
        exploring = session is not None and session.settings.max_examples > 0
        for kind in (k for k in KINDS.values() if k.scope == "family"):
            cases = ["machine", *([kind.explore_case] if exploring and kind.explore_case else [])]
            for case in cases:
                yield CheckItem.from_parent(
                    self,
                    name=check_name(self.family, kind.name, case),
                    spec=None,
                    kind=kind.name,
                    scenario=None,
                    family=self.family,
                    case=case,
                )


def check_name(subject: str, kind: str, case: str) -> str:
    """The stable name of a check: `<method id>::<kind>::<case>` (a family for stateful)."""
    return f"{subject}::{kind}::{case}"


@functools.cache
def kind_marker(kind: str) -> pytest.MarkDecorator:
    """`conformance(kind)`, made once per kind and shared: marks are immutable."""
    return pytest.mark.conformance(kind)


class CheckItem(pytest.Item):
    def __init__(
        self,
        *,
        spec: Spec | None,
        kind: str,
        scenario: Scenario | None,
        family: str | None = None,
        case: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.spec = spec
        self.kind = kind
        self.scenario = scenario
        self.family = family or (spec.family if spec else "")
        if case is None:  # the collectors pass it; computed for items made elsewhere
            case = slug(scenario.name) if scenario else ("machine" if spec is None else "property")
        self.case = case
        name = check_name(spec.id if spec else self.family, kind, self.case)
        self.check_name = self.name if self.name == name else name  # one string, not two
        self.add_marker(kind_marker(kind))
        if self.family:  # `-k vds-iscsi` selects the family's methods, not only its machine
            self.extra_keyword_matches.add(self.family)
        self.verdict: Verdict | None = None

    def runtest(self) -> None:
        session = session_of(self.config)
        assert session is not None
        started = time.perf_counter()
        if session.progress is not None:
            session.progress.starting(self.check_name)
        session.begin(self)
        self.verdict = session.run_with_retries(self)
        session.record(self, self.verdict, time.perf_counter() - started)
        if session.progress is not None:
            session.progress.finished(self.check_name, self.verdict.status in (FAILED, ERROR))
        if self.verdict.status == NOT_APPLICABLE:
            pytest.skip(f"not applicable: {self.verdict.message}")
        if self.verdict.status in (FAILED, ERROR):
            raise CheckFailed(self.verdict.message)
        assert self.verdict.status == PASSED

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style=None
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, CheckFailed):
            return f"{self.check_name}\n  {excinfo.value.message}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        line = (
            self.spec.line("scenarios", self.scenario.index) if self.spec and self.scenario else 1
        )
        return self.path, line - 1, self.check_name
