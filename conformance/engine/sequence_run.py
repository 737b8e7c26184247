"""Running a family's planned sequences on the provider: each sequence's calls judged by the
rules one after another, the domain's invariants checked on what the provider shows, and the
first failure reported with the sequence that shows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conformance.engine.sequences import FamilyPlan, Sequence, context_of, plan_family
from conformance.engine.strategies import call_args
from conformance.engine.world import ProviderError, Then, World
from conformance.errors import ProviderFault
from conformance.provider import Unsupported
from conformance.spec.domain import FAULTS, Domain

if TYPE_CHECKING:
    from conformance.engine.oracle import Prediction
    from conformance.engine.repro import Entry
    from conformance.engine.subject import Subject

# -- running a planned sequence ----------------------------------------------------------------


class SequenceFailed(ProviderFault):
    """A planned sequence went wrong; `trace` holds what ran up to it."""

    codes: tuple[str, ...]

    def __init__(
        self,
        message: str,
        trace: list[Entry],
        codes: tuple[str, ...],
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message, self.trace, self.codes, self.details = message, trace, codes, details


def run_sequence(
    subjects: dict[str, Subject], domain: Domain, sequence: Sequence, observe: tuple[str, ...]
) -> int:
    """Run one planned sequence; the calls it made. SequenceFailed at its first problem,
    Unsupported when the provider cannot do one of its steps."""
    from conformance.engine.executions import Call
    from conformance.engine.judging import details, judge_rules

    first = next(e for e in sequence.events if e.method)
    provider = subjects[first.method or ""].provider
    world = World(provider, domain)
    completed = [domain.complete(s) for s in sequence.given]
    state = domain.empty_state()
    for step in completed:
        domain.apply(state, step)
    trace: list[Entry] = []
    try:
        world.reset_and_setup(
            completed, Then(subjects[first.method or ""].spec, first.args or {}, observe)
        )
    except ProviderError as exc:
        raise SequenceFailed(str(exc), [], ()) from None
    calls = 0
    for event in sequence.events:
        if event.step is not None:
            step = domain.complete(event.step)
            trace.append({"given": [dict(event.step)]})
            try:
                world.setup(step)
            except ProviderError as exc:
                raise SequenceFailed(str(exc), trace, ()) from None
            domain.apply(state, step)
            _invariants(world, domain, state, observe, trace)
            continue
        subject = subjects[event.method or ""]
        args = event.args or {}
        predicted: Prediction = subject.oracle.predict(state, args)
        trace.append(
            {
                "method": subject.spec.id,
                "call": call_args(args),
                "expect": predicted.codes[0]
                if len(predicted.codes) == 1
                else list(predicted.codes),
            }
        )
        try:
            outcome = world.call(subject.spec, args, observe)
        except ProviderError as exc:
            raise SequenceFailed(f"{subject.spec.id}: {exc}", trace, predicted.codes) from None
        calls += 1
        call = Call(state, args, predicted, outcome)
        for coll in observe:
            try:
                call.seen[coll] = world.observe(coll)
            except (Unsupported, ProviderError) as exc:
                call.seen[coll] = exc
        problem = judge_rules(subject, call, world)
        if problem:
            raise SequenceFailed(
                f"{subject.spec.id}: {problem}",
                trace,
                predicted.codes,
                details(subject, None, predicted.codes, predicted.state),
            )
        state = predicted.state
        _invariants(world, domain, state, observe, trace, call.seen)
    return calls


def _invariants(
    world: World,
    domain: Domain,
    state: dict[str, Any],
    observe: tuple[str, ...],
    trace: list[Entry],
    seen: dict[str, Any] | None = None,
) -> None:
    """The domain's invariants on what the provider shows (the oracle's state for what it
    cannot show)."""
    if not domain.invariants:
        return
    shown: dict[str, Any] = {FAULTS: state.get(FAULTS, [])}
    for coll in domain.collections:
        rows = (seen or {}).get(coll) if coll in observe else None
        if coll in observe and rows is None:
            try:
                rows = world.observe(coll)
            except (Unsupported, ProviderError) as exc:
                rows = exc
        shown[coll] = state.get(coll, []) if rows is None or isinstance(rows, Exception) else rows
    broken = domain.broken_invariant(shown)
    if broken:
        raise SequenceFailed(broken, trace, ())


def check_sequences(subjects: list[Subject], domain: Domain, plan: FamilyPlan | None = None) -> Any:
    """The family check: every planned sequence, once; the first problem fails it with the
    sequence as a reproduction (`given`, then `calls`)."""
    from conformance.engine.verdict import FAILED, PASSED, NotApplicable, Verdict

    if not subjects:
        raise NotApplicable("no method of this family is supported by the provider")
    plan = plan or plan_family(subjects, context_of(subjects, domain))
    by_id = {s.spec.id: s for s in subjects}
    ran = calls = 0
    unsupported: list[str] = []
    for sequence in plan.sequences:
        try:
            calls += run_sequence(by_id, domain, sequence, plan.observe)
        except Unsupported as exc:
            unsupported.append(str(exc) or "Unsupported")
            continue
        except SequenceFailed as exc:
            steps = sum("method" in e for e in exc.trace)
            return Verdict(
                FAILED,
                f"{exc.message} (after {steps} calls of a planned sequence)",
                {c: FAILED for c in exc.codes},
                {"given": list(sequence.given), "calls": exc.trace},
                exc.details,
            )
        ran += 1
    if not ran:
        reason = unsupported[-1] if unsupported else "no sequence was planned"
        raise NotApplicable(f"unsupported by the provider: {reason}")
    note = f", {len(unsupported)} the provider could not run" if unsupported else ""
    return Verdict(PASSED, f"{ran} planned sequences, {calls} calls{note}")
