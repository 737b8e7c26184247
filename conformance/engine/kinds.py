"""The check kinds, declared once: each kind's name, scope, when it applies, how it judges a call
and where its check is implemented (resolved when first run, so that the registry sits below
the implementations in the import graph and every layer can read it).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.engine.judging import (
    Judge,
    blame_given,
    blame_predicted,
    judge_code,
    judge_documented,
    judge_out_params,
    judge_rules,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from conformance.engine.executions import Call
    from conformance.engine.subject import Subject
    from conformance.engine.verdict import Settings, Verdict
    from conformance.spec.domain import Domain
    from conformance.spec.model import Scenario, Spec

# -- the check kinds: one registry ------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What one check item runs on: a spec's subject (with a scenario for a scenario check),
    or a family's subjects and domain for the family check."""

    subject: Subject | None = None
    scenario: Scenario | None = None
    family: list[Subject] = field(default_factory=list)
    domain: Domain | None = None
    catalog: Any = None
    family_plan: Any = None  # the family's planned sequences, when the run made them
    case: str = ""  # the item's case ("property", "machine", "explore", a scenario's slug)
    regressions: tuple[Any, ...] = ()  # saved cases replayed under this check, first


@dataclass(frozen=True)
class CheckKind:
    """A kind of check, declared once: its name, how many items it makes (one per `scenario`
    of a spec, one per `spec`, or one per `family`), when it applies, how it runs, and, for
    the kinds that judge planned cases, how it judges one call and which calls of a case."""

    name: str
    scope: str  # "scenario" | "spec" | "family"
    runner: str  # "module:function" of its check, called as function(target, kind)
    applies: Callable[[Spec, Settings], bool] = lambda spec, settings: True
    judge: Judge | None = None  # one call (planned cases and `conformance replay`)
    blame: Callable[[Subject, Call], tuple[str, ...]] = blame_predicted
    calls: int = 1  # the calls of a planned case it judges (repeat: both)
    marks_codes: bool = True  # the codes of the cases it passes are marked pass
    repro: str = "call"  # its reproductions: one `call`, or a sequence of `calls`
    optional: bool = False  # collected only when the run asks for it (--differential)
    explores: bool = False  # judges the drawn cases of exploration (--explore)
    explore_case: str | None = None  # a family kind's second item when the run explores
    case: str = "property"  # the case part of a per-spec kind's check name
    with_twin: bool = False  # pairs a spec's cases with its A/W twin's (so plans the twin)
    description: str = ""

    def run(self, target: Target) -> Verdict:
        """Run this kind's check on one target."""
        module, _, function = self.runner.partition(":")
        return getattr(importlib.import_module(module), function)(target, self)

    def replay_judge(self) -> Judge:
        """How `conformance replay` judges each call of this kind's reproduction."""
        return self.judge or judge_rules


def _has_effects(spec: Spec, settings: Settings) -> bool:
    return settings.tier >= 1 and any(r.effects for r in spec.rules)


def _exploring(spec: Spec, settings: Settings) -> bool:
    return settings.max_examples > 0


def _has_twin(spec: Spec, settings: Settings) -> bool:
    return settings.tier >= 1 and spec.charset == "ansi" and spec.twin is not None


CHECKS = "conformance.engine.checks:"  # where the kinds' checks are implemented

KINDS: dict[str, CheckKind] = {
    k.name: k
    for k in (
        CheckKind(
            "scenario",
            "scenario",
            CHECKS + "run_scenario",
            description="a scenario of the spec: given, call, code, then",
        ),
        CheckKind(
            "oracle",
            "spec",
            CHECKS + "planned",
            judge=judge_rules,
            explores=True,
            description="the rules' code, out-parameters and next state on the plan",
        ),
        CheckKind(
            "closed-world",
            "spec",
            CHECKS + "planned",
            judge=judge_documented,
            marks_codes=False,
            explores=True,
            description="only documented codes, or the spec's `also` families",
        ),
        CheckKind(
            "out-params",
            "spec",
            CHECKS + "planned",
            judge=judge_out_params,
            blame=blame_given,
            marks_codes=False,
            explores=True,
            description="out and async pointers agree with the code",
        ),
        CheckKind(
            "repeat",
            "spec",
            CHECKS + "planned",
            applies=_has_effects,
            judge=judge_rules,
            calls=2,
            repro="calls",
            explores=True,
            description="each planned call made twice: the second as the rules predict",
        ),
        CheckKind(
            "variants",
            "spec",
            CHECKS + "check_variants",
            applies=_has_twin,
            judge=judge_code,
            with_twin=True,
            description="the A form behaves as the W form on converted strings",
        ),
        CheckKind(
            "differential",
            "spec",
            CHECKS + "check_differential",
            optional=True,
            judge=judge_code,
            description="the provider agrees with the reference on the plan",
        ),
        CheckKind(
            "explore",
            "spec",
            CHECKS + "run_explore",
            applies=_exploring,
            case="drawn",
            description="exploration: hypothesis-drawn cases judged by every exploring "
            "kind; what fails is saved as a regression",
        ),
        CheckKind(
            "stateful",
            "family",
            CHECKS + "run_family",
            repro="calls",
            explore_case="explore",
            description="the family's planned sequences (`machine`) and, exploring, its "
            "hypothesis state machine (`explore`)",
        ),
    )
}


def kinds_for(
    spec: Spec, settings: Settings, optional: frozenset[str] = frozenset()
) -> list[CheckKind]:
    """The per-spec kinds that apply to a spec in a run (`optional`: those asked for)."""
    return [
        k
        for k in KINDS.values()
        if k.scope == "spec"
        and k.applies(spec, settings)
        and (not k.optional or k.name in optional)
    ]
