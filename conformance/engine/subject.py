"""The subject of a check: one spec, its domain and code table, the provider under test, and the
spec's plan and executions, made once and shared by every check of the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.engine.candidates import Context as PlanContext
from conformance.engine.executions import Executions
from conformance.engine.kinds import KINDS
from conformance.engine.oracle import Oracle
from conformance.engine.plan import SpecPlan, plan_spec
from conformance.engine.strategies import Allowed
from conformance.engine.verdict import Settings

if TYPE_CHECKING:
    from collections import deque

    from conformance.engine.world import Then
    from conformance.provider import Provider
    from conformance.spec.codes import (
        CodeTable,
    )
    from conformance.spec.domain import Domain
    from conformance.spec.model import Spec


@dataclass
class Subject:
    """Everything a check needs about one spec and the provider under test."""

    spec: Spec
    domain: Domain
    table: CodeTable
    provider: Provider
    observable: tuple[str, ...]
    settings: Settings = field(default_factory=Settings)
    twin: Subject | None = None  # the W form of an A function, for the variants check
    reference: Provider | None = None  # the provider to compare with (--differential)
    allowed: Allowed | None = None  # what the provider's capabilities say it can build
    # id(given) -> [(given, then, completed steps, batch)]: cases sent ahead (looking_ahead),
    # in order; cases may share one `given` list
    planned: dict[int, deque[tuple[Any, Then, list[dict[str, Any]], list[dict[str, Any]]]]] = field(
        default_factory=dict, repr=False, compare=False
    )
    repeat: bool | None = None  # cases make their call twice (None: when the repeat check applies)

    def __post_init__(self) -> None:
        self.oracle = Oracle(self.spec, self.table, self.settings.code_page)
        self._plan: SpecPlan | None = None
        self.executions = Executions(self)

    @property
    def plan(self) -> SpecPlan:
        """The spec's planned cases (made here from the subject when no run planned them)."""
        if self._plan is None:
            self._plan = plan_spec(self.spec, self.plan_context())
        return self._plan

    @plan.setter
    def plan(self, value: SpecPlan) -> None:
        self._plan = value
        self.forget_executions()

    def forget_executions(self) -> None:
        """The planned cases are executed again when a check next asks for them."""
        self.executions = Executions(self)

    def plan_context(self) -> PlanContext:
        repeat = (
            self.repeat
            if self.repeat is not None
            else any(
                k.calls > 1 and k.scope == "spec" and k.applies(self.spec, self.settings)
                for k in KINDS.values()
            )
        )
        return PlanContext(
            self.domain,
            self.table,
            self.allowed or Allowed(),
            self.settings.costs,
            self.observable,
            self.settings.tier,
            repeat,
            self.settings.code_page,
        )
