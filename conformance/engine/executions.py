"""The engine: each planned case executed once, its observation kept for every judge.

A spec's plan (`conformance.engine.plan`) says which cases its property checks need. The first
check of the spec that asks for them executes them all, in plan order, each as one round
trip to a worker process (reset, setups, the call, the collections read after it, the call
again where the repeat check applies), sending the next cases ahead while the last is read
back. What the provider answered is kept as an `Execution` of `Call`s; `oracle`,
`closed-world`, `out-params` and `repeat` then judge those same observations, and `variants`
pairs them with the W form's. Nothing is executed twice: a case another check of the run
needs again (the W form of an ASCII A case) is found by its key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.engine.candidates import case_key
from conformance.engine.lookahead import looking_ahead
from conformance.engine.oracle import Prediction
from conformance.engine.strategies import Case, state_of
from conformance.engine.trial import prepare
from conformance.engine.world import ProviderError, Then, World
from conformance.provider import Outcome, Unsupported

if TYPE_CHECKING:
    from conformance.engine.subject import Subject


@dataclass
class Call:
    """One call of a case: the state the rules saw, their prediction, and what the provider
    answered (or the contract breach that stopped it), with the collections read after it."""

    state: dict[str, list[dict[str, Any]]]
    args: dict[str, Any]
    prediction: Prediction
    outcome: Outcome | None = None
    error: ProviderError | None = None
    seen: dict[str, Any] = field(default_factory=dict)  # collection -> rows or the exception


@dataclass
class Execution:
    """A case as the provider answered it, once, for every judge."""

    case: Case
    world: World | None
    calls: list[Call] = field(default_factory=list)
    error: ProviderError | None = None  # reset or a setup broke the contract
    unsupported: Unsupported | None = None  # a step, the call or a collection it cannot do
    observe: tuple[str, ...] = ()
    requested: int = 1  # the calls asked for (fewer were made when one broke the contract)


def execute(
    subject: Subject,
    case: Case,
    state: dict[str, Any] | None = None,
    calls: int = 1,
    observe: tuple[str, ...] = (),
) -> Execution:
    """Build the case's state, make its call `calls` times (each on the state the last left),
    and read `observe` after each: one batch for a provider in another process."""

    state = state_of(subject.domain, case.given) if state is None else state
    run = Execution(case, None, observe=observe, requested=calls)
    try:
        run.world, _ = prepare(
            subject, case.given, then=Then(subject.spec, case.args, observe, calls), state=state
        )
    except Unsupported as exc:
        run.unsupported = exc
        return run
    except ProviderError as exc:
        run.error = exc
        return run
    for _ in range(calls):
        predicted = subject.oracle.predict(state, case.args)
        call = Call(state, case.args, predicted)
        run.calls.append(call)
        try:
            call.outcome = run.world.call(subject.spec, case.args, observe)
        except Unsupported as exc:
            run.unsupported = exc
            run.calls.pop()
            return run
        except ProviderError as exc:
            call.error = exc
            return run
        for coll in observe:
            try:
                call.seen[coll] = run.world.observe(coll)
            except (Unsupported, ProviderError) as exc:
                call.seen[coll] = exc
        state = predicted.state
    return run


class Executions:
    """A spec's executed cases: its plan's, run once in plan order, and any other case a
    check of the run asked for (by key), so that none is executed twice."""

    def __init__(self, subject: Subject):
        self.subject = subject
        self.done: list[Execution] = []  # the plan's, in order
        self.by_key: dict[str, Execution] = {}

    def planned(self) -> list[Execution]:
        """Every planned case executed (the ones not executed yet, now)."""

        plan = self.subject.plan
        pending = plan.cases[len(self.done) :]

        def worlds(c: Any) -> list[Any]:
            return [
                (
                    self.subject,
                    c.case.given,
                    Then(self.subject.spec, c.case.args, plan.observe, plan.calls),
                )
            ]

        for candidate in _ahead(self.subject, worlds, pending, looking_ahead):
            run = execute(self.subject, candidate.case, candidate.state, plan.calls, plan.observe)
            self.done.append(run)
            self.by_key.setdefault(case_key(candidate.case), run)
        return self.done

    def unreached(self) -> list[dict[str, str]] | None:
        """The plan's coverage items whose every case the provider could not run (a step,
        the call or a collection it calls Unsupported), each with the provider's reason."""
        plan = self.subject.plan
        reached: set[str] = set()
        why: dict[str, str] = {}
        for candidate, run in zip(plan.cases, self.done, strict=False):
            if run.unsupported is None:
                reached |= candidate.covers
            else:
                for key in candidate.covers:
                    why.setdefault(key, f"the provider could not run its case: {run.unsupported}")
        missing = [
            {"item": plan.goals[k].label, "kind": plan.goals[k].kind, "why": why[k]}
            for k in plan.goals
            if k in why and k not in reached
        ]
        return missing or None

    def get(self, case: Case, calls: int = 1, observe: tuple[str, ...] = ()) -> Execution:
        """The execution of `case` (with at least `calls` calls and `observe` read), made now
        if no check made it yet."""
        found = self.by_key.get(case_key(case))
        if found is not None and found.requested >= calls and set(observe) <= set(found.observe):
            return found
        run = execute(self.subject, case, calls=calls, observe=observe)
        self.by_key[case_key(case)] = run
        return run


def _ahead(subject: Subject, worlds: Any, pending: list[Any], looking_ahead: Any) -> Iterator[Any]:
    """The pending candidates, each sent to a worker process ahead of its execution."""
    by_case = {id(c.case): c for c in pending}
    for case in looking_ahead(
        subject, lambda case: worlds(by_case[id(case)]), [c.case for c in pending]
    ):
        yield by_case[id(case)]
