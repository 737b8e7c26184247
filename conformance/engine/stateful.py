"""Exploring a family: one hypothesis state machine per family, built from data.

The family check's planned sequences are conformance.engine.sequences; this machine runs only when
the run explores (`--explore`, the thorough profile), from the run's seed, and what it finds
is saved as a regression of the family check (conformance.engine.regressions).

Its rules are the domain's `given` steps (new objects and faults, at any point) and calls of
every spec'd method of the family with drawn arguments: existing objects, objects an earlier
call removed, unknown ids. After each call the provider's code must be what the rules predict
and every observable collection must equal the oracle's state after the effects; after each
step the domain's invariants must hold on what the provider shows. Nothing here names a
method: the machine is the same code for every family.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky, FlakyFailure
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    invariant,
    rule,
)

from conformance.engine.draws import pin_draws
from conformance.engine.judging import (
    call_repro,
    code_mismatch,
    details,
    outputs_mismatch,
    state_mismatch,
)
from conformance.engine.replay import minimize
from conformance.engine.repro import Entry, Repro
from conformance.engine.strategies import (
    Pool,
    draw_args,
    draw_given,
    draw_new_step,
    require_objects,
    sampled,
)
from conformance.engine.subject import Subject
from conformance.engine.verdict import FAILED, PASSED, PHASES, CheckFailed, NotApplicable, Verdict
from conformance.engine.world import ProviderError, World
from conformance.provider import Unsupported
from conformance.spec.catalog import Catalog
from conformance.spec.domain import FAULTS, Domain
from conformance.spec.model import Spec

STEPS_PER_RUN = 25


def _refers_to(step: dict[str, Any], names: set[str]) -> bool:
    """Whether a step's fields (not its own name) name one of `names`."""

    def mentions(value: Any) -> bool:
        if isinstance(value, str):
            return value in names
        if isinstance(value, list):
            return any(mentions(v) for v in value)
        return False

    return bool(names) and any(mentions(v) for v in list(step.values())[1:])


def callable_subjects(subjects: list[Subject], pool: Pool) -> list[Subject]:
    """Methods that can be called now: a com-method needs an object to be called on."""
    return [s for s in subjects if s.spec.this_object is None or pool.names.get(s.spec.this_object)]


def _used(spec: Spec, args: dict[str, Any]) -> dict[str, list[str]]:
    """The objects a call's arguments name, by step."""
    used: dict[str, list[str]] = {}
    pairs = [(spec.this_object, args.get("this"))]
    pairs += [(p.refers, args.get(p.name)) for p in spec.params if p.refers]
    for step, name in pairs:
        if step and isinstance(name, str):
            used.setdefault(step, []).append(name)
    return used


def _merged(recent: list[dict[str, list[str]]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for used in recent:
        for step, names in used.items():
            known = out.setdefault(step, [])
            known.extend(n for n in names if n not in known)
    return out


def build_machine(
    subjects: list[Subject], domain: Domain, calls_made: list[int] | None = None
) -> type[RuleBasedStateMachine]:
    provider = subjects[0].provider
    observable = subjects[0].observable
    require: dict[str, int] = {}
    for subject in subjects:
        coll = domain.by_step(subject.spec.this_object or "")
        if coll is not None:
            require_objects(domain, coll, require)
    made = calls_made if calls_made is not None else [0]

    class FamilyMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.world = World(provider, domain)
            self.world.reset()
            self.state = domain.empty_state()
            self.removed: dict[str, list[str]] = {}
            self.trace: list[Entry] = []
            self.counters: dict[str, int] = {}
            self.recent: list[dict[str, list[str]]] = []  # objects the last two steps used

        def fail(
            self, message: str, codes: tuple[str, ...] = (), extra: dict[str, Any] | None = None
        ) -> None:
            raise CheckFailed(
                f"{message} (after {len(self.trace)} steps)",
                {"given": [], "calls": list(self.trace)},
                codes,
                extra,
            )

        @initialize(data=st.data())
        def start(self, data: st.DataObject) -> None:
            """A drawn starting state with an object for every method to be called on."""
            skipped: set[str] = set()  # objects the provider could not make
            for raw in draw_given(data.draw, domain, require, subjects[0].allowed):
                step = domain.complete(raw)
                name = str(next(iter(step.values())))
                if _refers_to(step, skipped):  # it needs an object that was never made
                    skipped.add(name)
                    continue
                try:
                    self.world.setup(step)
                except Unsupported:
                    skipped.add(name)
                    continue
                except ProviderError as exc:
                    self.trace.append({"given": [step]})
                    self.fail(str(exc))
                domain.apply(self.state, step)
                self.trace.append({"given": [step]})
                coll = domain.by_step(next(iter(step)))
                if coll is not None:
                    self.counters[coll.name] = self.counters.get(coll.name, 0) + 1

        @rule(data=st.data())
        def add(self, data: st.DataObject) -> None:
            step = draw_new_step(data.draw, domain, self.state, self.counters)
            if step is None:
                return
            step = domain.complete(step)
            try:
                self.world.setup(step)
            except Unsupported:
                return
            except ProviderError as exc:
                self.trace.append({"given": [step]})
                self.fail(str(exc))
            domain.apply(self.state, step)
            self.trace.append({"given": [step]})
            kind = next(iter(step))
            self.recent = [*self.recent[-1:], {kind: [str(step[kind])]}]

        @rule(data=st.data())
        def call(self, data: st.DataObject) -> None:
            pool = Pool.of(domain, self.state, self.removed, _merged(self.recent))
            choices = callable_subjects(subjects, pool)
            if not choices:
                return
            subject = data.draw(sampled(choices), label="method")
            args = draw_args(data.draw, subject.spec, domain, pool)
            self.recent = [*self.recent[-1:], _used(subject.spec, args)]
            predicted = subject.oracle.predict(self.state, args)
            entry = call_repro(subject.spec.id, args, predicted.codes)
            self.trace.append(entry)
            try:
                outcome = self.world.call(subject.spec, args)
            except Unsupported:
                self.trace.pop()
                return
            except ProviderError as exc:
                self.fail(f"{subject.spec.id}: {exc}", predicted.codes)
            made[0] += 1
            problem = code_mismatch(subject, predicted.codes, outcome) or outputs_mismatch(
                self.world, predicted.outputs, outcome
            )
            if problem is None:
                try:
                    problem = state_mismatch(self.world, predicted.state, observable)
                except ProviderError as exc:
                    problem = str(exc)
            if problem:
                self.fail(
                    f"{subject.spec.id}: {problem}",
                    predicted.codes,
                    details(subject, None, predicted.codes, predicted.state),
                )
            self._forget_removed(predicted.state)
            self.state = predicted.state

        def _forget_removed(self, after: dict[str, list[dict[str, Any]]]) -> None:
            for coll in domain.collections.values():
                still = {o["id"] for o in after.get(coll.name, [])}
                gone = [o["id"] for o in self.state.get(coll.name, []) if o["id"] not in still]
                if gone:
                    self.removed.setdefault(coll.step, []).extend(gone)

        @invariant()
        def domain_invariants(self) -> None:
            if not domain.invariants or not self.trace:
                return
            seen: dict[str, Any] = {FAULTS: self.state.get(FAULTS, [])}
            for coll in domain.collections:
                if coll in observable:
                    try:
                        seen[coll] = self.world.observe(coll)
                    except Unsupported:
                        return
                    except ProviderError as exc:
                        self.fail(str(exc))
                else:
                    seen[coll] = self.state.get(coll, [])
            broken = domain.broken_invariant(seen)
            if broken:
                self.fail(broken)

    FamilyMachine.__name__ = f"Machine_{domain.family.replace('-', '_')}"
    return FamilyMachine


def _minimized(repro: Repro | None, subjects: list[Subject], domain: Domain) -> Repro | None:
    """The shrunk sequence with every call and step it does not need taken out."""
    if repro is None:
        return None
    catalog = Catalog(
        {s.spec.id: s.spec for s in subjects}, {domain.family: domain}, subjects[0].table
    )
    try:
        return minimize(repro, catalog, subjects[0].provider, subjects[0].settings)
    except Exception:  # minimizing is a nicety: never lose the failure over it
        return repro


def check_stateful(subjects: list[Subject], domain: Domain) -> Verdict:
    """Run the family's machine; a failure is shrunk to the shortest sequence that shows it."""
    if not subjects:
        raise NotApplicable("no method of this family is supported by the provider")
    first = subjects[0].settings
    calls_made = [0]
    machine = build_machine(subjects, domain, calls_made)
    seed = first.seed
    seeded = seed is not None  # a seeded run draws from the seed alone: no database
    sets = settings(
        max_examples=max(1, first.machine_runs),
        deadline=None,
        phases=PHASES,
        stateful_step_count=STEPS_PER_RUN,
        database=None if seeded else first.database,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        report_multiple_bugs=False,
    )
    test = get_state_machine_test(machine, settings=sets)
    if seeded:  # (derandomize would seed from the machine class's source, not from --seed)
        test = hypothesis_seed(seed)(test)

    unpin = pin_draws() if seeded else (lambda: None)
    try:
        test()
    except CheckFailed as exc:
        return Verdict(
            FAILED,
            exc.message,
            {c: FAILED for c in exc.codes},
            _minimized(exc.repro, subjects, domain),
            exc.details,
        )
    except (Flaky, FlakyFailure) as exc:
        return Verdict(FAILED, f"the provider is not deterministic across replays: {exc}")
    finally:
        unpin()
    if not calls_made[0]:
        raise NotApplicable("unsupported by the provider: no call of the family could be made")
    return Verdict(
        PASSED, f"{sets.max_examples} runs of up to {STEPS_PER_RUN} steps, {calls_made[0]} calls"
    )


__all__ = ["PASSED", "build_machine", "check_stateful"]
