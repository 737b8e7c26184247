"""The checks: each takes one spec and a provider and gives a Verdict.

Kinds (DESIGN.md): `scenario` (a table row: given, call, code, then), `oracle` (drawn states
and arguments; the rules predict the code and the next state), `closed-world` (only
documented codes or the `also` families), `out-params` (async and out pointers agree with the
code; Win32 statuses and HRESULTs are not mixed). A failure raises `CheckFailed` with a message
a person can act on and a reproduction in the spec's own scenario shape.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis.database import ExampleDatabase
from hypothesis.errors import Flaky, FlakyFailure, Unsatisfiable

from conformance.engine.executions import Call, Execution, Executions, execute
from conformance.engine.operations import Costs
from conformance.engine.oracle import Oracle, OracleError
from conformance.engine.plan import Context as PlanContext
from conformance.engine.plan import SpecPlan, plan_spec
from conformance.engine.strategies import Allowed, Case, call_args, cases, state_of
from conformance.engine.world import OUT, ProviderError, Then, Unknown, World
from conformance.provider import Outcome, Provider, Unsupported
from conformance.spec.codes import (
    CodeTable,
    failed,
    hex32,
    is_microsoft_hresult_failure,
    is_plain_win32,
)
from conformance.spec.domain import Domain
from conformance.spec.model import DIRECT, Scenario, Spec
from conformance.spec.observed import ObservedPolicy

PASSED, FAILED, NOT_APPLICABLE, ERROR = "passed", "failed", "not_applicable", "error"


class CheckFailed(Exception):
    def __init__(self, message: str, repro: dict[str, Any] | None = None,
                 codes: tuple[str, ...] = (), details: dict[str, Any] | None = None):
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
    status: str
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
    planned: dict[int, deque[tuple[Any, Then, list[dict[str, Any]], list[dict[str, Any]]]]] = \
        field(default_factory=dict, repr=False, compare=False)
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
        repeat = self.repeat if self.repeat is not None else any(
            k.calls > 1 and k.scope == "spec" and k.applies(self.spec, self.settings)
            for k in KINDS.values())
        return PlanContext(self.domain, self.table, self.allowed or Allowed(),
                           self.settings.costs, self.observable, self.settings.tier, repeat,
                           self.settings.code_page)


# -- one trial: build the state, call, look ---------------------------------------------------

@dataclass
class Trial:
    world: World
    state: dict[str, list[dict[str, Any]]]
    args: dict[str, Any]
    outcome: Outcome


def prepare(subject: Subject, steps: list[dict[str, Any]], provider: Provider | None = None,
            then: Then | None = None, state: dict[str, Any] | None = None
            ) -> tuple[World, dict[str, Any]]:
    """A fresh world with the steps applied, and the oracle state they build (`state`: the
    caller built it already). `then` is the call the caller makes next on the world and what
    it may observe after it: a worker process answers all of it in one round trip."""
    world = World(provider or subject.provider, subject.domain)
    planned = subject.planned.get(id(steps)) if subject.planned else None
    if planned and planned[0][0] is steps and planned[0][1] == then and provider is None:
        _, _, completed, requests = planned.popleft()  # built when it was sent ahead
    else:
        completed, requests = [subject.domain.complete(raw) for raw in steps], None
    world.reset_and_setup(completed, then, requests)
    if state is None:
        state = subject.domain.empty_state()
        for step in completed:
            subject.domain.apply(state, step)
    return world, state


def enact(subject: Subject, steps: list[dict[str, Any]], args: dict[str, Any],
          observe: tuple[str, ...] = (), state: dict[str, Any] | None = None) -> Trial:
    """Build the steps, make the call, and read the `observe` collections after it."""
    world, state = prepare(subject, steps, then=Then(subject.spec, args, observe), state=state)
    return Trial(world, state, args, world.call(subject.spec, args))


def effective(spec: Spec, outcome: Outcome) -> tuple[int, str]:
    """The operation's result and where it arrived: the call, or the async completion."""
    if spec.delivery != DIRECT and not failed(outcome.hresult) and outcome.completion is not None:
        return outcome.completion, "completion"
    return outcome.hresult, "call"


def code_mismatch(subject: Subject, expect: tuple[str, ...], outcome: Outcome,
                  state: dict[str, Any] | None = None,
                  args: dict[str, Any] | None = None) -> str | None:
    """Why the provider's code is not what the rules predict, or None when it is (or when the
    run's `--observed lenient` policy excuses it by an `observed` entry of the spec: `state`
    and `args` are those the rules saw, needed for an entry with a `when`; by default those of
    the oracle's last prediction)."""
    oracle, spec = subject.oracle, subject.spec
    value, where = effective(spec, outcome)
    wanted = [oracle.value(s) for s in expect]
    if value not in wanted:
        if observed_excuse(subject, expect, value, state, args) is not None:
            return None
        want = " or ".join(oracle.describe(v) for v in wanted)
        return f"expected {want}, got {oracle.describe(value)} (from the {where})"
    code = next((c for c in spec.codes if c.value == value), None)
    if code is not None and code.via not in ("either", where):
        return (f"{oracle.describe(value)} must arrive through the {code.via}, "
                f"but arrived through the {where}")
    return None


def observed_excuse(subject: Subject, expect: tuple[str, ...], value: int,
                    state: dict[str, Any] | None, args: dict[str, Any] | None) -> Any:
    """The `observed` entry that excuses `value` where the rules predict `expect`, or None.

    The one place a departure recorded in a spec is judged: only under `--observed lenient`,
    only for a provider that declares a Windows version the entry's `windows` prefixes, only
    for the entry's code, only in place of its `instead_of`, only where its `when` holds."""
    policy = subject.settings.observed
    if policy is None or not policy.lenient:
        return None
    if (state is None or args is None) and subject.oracle.last is not None:
        state, args = subject.oracle.last  # the call the rules were last asked about
    for entry in subject.spec.observed:
        if not policy.applies(entry) or subject.oracle.values.get(entry.code) != value:
            continue
        if entry.instead_of is not None and entry.instead_of not in expect:
            continue
        if entry.when and (state is None or args is None
                           or not subject.oracle.observed_holds(entry, state, args)):
            continue
        policy.note(subject.spec.id, entry, expect)
        return entry
    return None


def outputs_mismatch(world: World, expected: dict[str, Any], outcome: Outcome) -> str | None:
    """Out-parameters the rule predicts (enumerations, property structs) against the provider's,
    in scenario names; lists compare as sets, as enumeration order is not documented."""
    for name, want in expected.items():
        got = world.output_names(outcome.outputs.get(name))
        if canonical([{"v": got}]) != canonical([{"v": want}]):
            return (f"{name}: expected {json.dumps(want, ensure_ascii=False, default=str)}, "
                    f"provider gave {json.dumps(got, ensure_ascii=False, default=str)}")
    return None


def details(subject: Subject, trial: Trial | None, expect: tuple[str, ...],
            state_after: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a person needs beside the message: expected and actual codes, outputs, states."""
    out: dict[str, Any] = {"expected": [subject.oracle.describe(subject.oracle.value(s))
                                        for s in expect if s in subject.oracle.values]}
    if trial is not None:
        o = trial.outcome
        out["actual"] = {
            "hresult": subject.oracle.describe(o.hresult),
            "completion": None if o.completion is None else subject.oracle.describe(o.completion),
            "outputs": {k: (v if isinstance(v, str | int | float | bool | type(None)) else repr(v))
                        for k, v in o.outputs.items()},
        }
        out["state_before"] = trial.state
    if state_after is not None:
        out["state_expected_after"] = state_after
    return out


def canonical(objects: list[dict[str, Any]]) -> list[str]:
    def norm(value: Any) -> Any:
        if isinstance(value, list):
            return sorted((norm(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True,
                                                                              default=str))
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        return value

    return sorted(json.dumps(norm(o), sort_keys=True, ensure_ascii=False, default=str)
                  for o in objects)


def state_mismatch(world: World, expected: dict[str, list[dict[str, Any]]],
                   collections: tuple[str, ...]) -> str | None:
    """The first observable collection where the provider differs from the oracle's state."""
    for coll in collections:
        try:
            seen = world.observe(coll)
        except Unsupported:
            continue
        want = [{k: o.get(k) for k in ("id", *world.domain.collections[coll].fields)}
                for o in expected.get(coll, [])]
        if canonical(seen) != canonical(want):
            return (f"{coll} after the call: expected {_objects(want)}, provider has "
                    f"{_objects(seen)}")
    return None


def _objects(objs: list[dict[str, Any]]) -> str:
    return "[" + ", ".join(json.dumps(o, ensure_ascii=False, sort_keys=True) for o in objs) + "]"


def _expect(expect: tuple[str, ...]) -> str | list[str]:
    return expect[0] if len(expect) == 1 else list(expect)


def repro(steps: list[dict[str, Any]], args: dict[str, Any], expect: tuple[str, ...]) -> dict:
    """A failing case in the spec's scenario shape, ready to paste under `scenarios`."""
    return Case(steps, args).scenario(expect)


def call_repro(method: str, args: dict[str, Any], expect: tuple[str, ...]) -> dict:
    """One call of a multi-call reproduction (`calls:`), naming its method."""
    return {"method": method, "call": call_args(args), "expect": _expect(expect)}


def context_line(steps: list[dict[str, Any]], args: dict[str, Any]) -> str:
    given_text = json.dumps(steps, ensure_ascii=False)
    call_text = json.dumps(call_args(args), ensure_ascii=False, default=str)
    return f"after given {given_text}, call {call_text}"


# -- scenario ---------------------------------------------------------------------------------

def scenario_args(spec: Spec, scenario: Scenario) -> dict[str, Any]:
    """A scenario's `call` as oracle arguments: unknown refs, special names, NULL pointers."""
    args: dict[str, Any] = {}
    if spec.this_object is not None:
        args["this"] = _ref(scenario.call.get("this"))
    for param in spec.params:
        value = scenario.call.get(param.name, OUT if param.is_out else None)
        if isinstance(value, str) and value in param.special:
            value = spec.constants[value]
        args[param.name] = _ref(value)
    return args


def _ref(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"unknown"}:
        return Unknown(value["unknown"])
    return value


def check_scenario(subject: Subject, scenario: Scenario) -> Verdict:
    spec = subject.spec
    args = scenario_args(spec, scenario)
    steps = [dict(s) for s in scenario.given]
    state = state_of(subject.domain, steps)
    wrong: OracleError | None = None  # raised after the setups, the call not made
    try:
        predicted = subject.oracle.predict(state, args)
        if set(predicted.codes) != set(scenario.expect):
            wrong = OracleError(
                f"{spec.file}:{spec.line('scenarios', scenario.index)}: scenario "
                f"{scenario.name!r} expects {', '.join(scenario.expect)} but the rules predict "
                f"{', '.join(predicted.codes)} (rule {predicted.rule.index})")
    except OracleError as exc:
        wrong = exc
    then = Then(spec, args, tuple(scenario.then)) if wrong is None else None
    try:
        world, _ = prepare(subject, steps, then=then, state=state)
        if wrong is not None:
            raise wrong
        trial = Trial(world, state, args, world.call(spec, args))
    except ProviderError as exc:
        raise CheckFailed(f"{exc} {context_line(steps, args)}",
                          repro(steps, args, scenario.expect), scenario.expect) from None
    codes = {s: FAILED for s in scenario.expect}
    problem = code_mismatch(subject, scenario.expect, trial.outcome, state, args) or \
        outputs_mismatch(trial.world, predicted.outputs, trial.outcome)
    if problem is None:
        problem = _then_mismatch(trial, scenario.then)
    if problem:
        raise CheckFailed(f"{problem} {context_line(steps, args)}",
                          repro(steps, args, scenario.expect), scenario.expect,
                          details(subject, trial, scenario.expect))
    return Verdict(PASSED, codes={s: PASSED for s in codes})


def _then_mismatch(trial: Trial, then: dict[str, Any]) -> str | None:
    for coll, want in then.items():
        seen = trial.world.observe(coll)
        if all(isinstance(w, str) for w in want):
            got = sorted(o["id"] for o in seen)
            if got != sorted(want):
                return f"{coll} after the call: expected {sorted(want)}, provider has {got}"
            continue
        for w in want:
            match = [o for o in seen if all(_same(o.get(k), v) for k, v in w.items())]
            if not match:
                return f"{coll} after the call: no object like {w} in {_objects(seen)}"
        if len(seen) != len(want):
            return f"{coll} after the call: expected {len(want)} objects, provider has " \
                   f"{_objects(seen)}"
    return None


def _same(a: Any, b: Any) -> bool:
    return canonical([{"v": a}]) == canonical([{"v": b}])


# -- judging one call -------------------------------------------------------------------------

Judge = Callable[["Subject", Call, World], "str | None"]


def rows_mismatch(domain: Domain, seen: dict[str, Any],
                  expected: dict[str, list[dict[str, Any]]]) -> str | None:
    """The first collection read after a call where the provider differs from the oracle's
    next state (a collection the provider cannot show is skipped; one it failed to show is the
    problem)."""
    for coll, rows in seen.items():
        if isinstance(rows, Unsupported):
            continue
        if isinstance(rows, Exception):
            return str(rows)
        want = [{k: o.get(k) for k in ("id", *domain.collections[coll].fields)}
                for o in expected.get(coll, [])]
        if canonical(rows) != canonical(want):
            return (f"{coll} after the call: expected {_objects(want)}, provider has "
                    f"{_objects(rows)}")
    return None


def judge_rules(subject: Subject, call: Call, world: World) -> str | None:
    """`oracle`: the code (and where it arrived), the out-parameters and the next state."""
    assert call.outcome is not None
    predicted = call.prediction
    return (code_mismatch(subject, predicted.codes, call.outcome, call.state, call.args)
            or outputs_mismatch(world, predicted.outputs, call.outcome)
            or rows_mismatch(subject.domain, call.seen, predicted.state))


def judge_code(subject: Subject, call: Call, world: World) -> str | None:
    """The code alone (a variants reproduction: the W form decides the state)."""
    assert call.outcome is not None
    return code_mismatch(subject, call.prediction.codes, call.outcome, call.state, call.args)


def judge_documented(subject: Subject, call: Call, world: World) -> str | None:
    """`closed-world`: the code is documented, or in the spec's `also` families."""
    assert call.outcome is not None
    for label, value in (("returned", call.outcome.hresult),
                         ("completed with", call.outcome.completion)):
        if value is None or admitted(subject, value):
            continue
        if observed_excuse(subject, call.prediction.codes, value, call.state,
                           call.args) is not None:
            continue
        return (f"{label} {subject.oracle.describe(value)}, which is neither a documented code "
                f"of {subject.spec.id} nor in its `also` list "
                f"({', '.join(subject.spec.also) or 'empty'})")
    return None


def judge_out_params(subject: Subject, call: Call, world: World) -> str | None:
    """`out-params`: out and async pointers agree with the code; no HRESULT for a status."""
    assert call.outcome is not None
    if any(p.is_out and call.args.get(p.name) is None for p in subject.spec.params):
        return None  # a NULL out-pointer: nothing can be written through it
    return out_param_problem(subject, call.outcome)


def blame_predicted(subject: Subject, call: Call) -> tuple[str, ...]:
    return call.prediction.codes


def blame_given(subject: Subject, call: Call) -> tuple[str, ...]:
    """The documented code the provider gave (out-params: that code's contract was broken)."""
    if call.outcome is None:
        return call.prediction.codes
    given_code = effective(subject.spec, call.outcome)[0]
    return tuple(c.symbol for c in subject.spec.codes if c.value == given_code) or \
        call.prediction.codes


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
    run: Callable[[Target], Verdict]
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

    def replay_judge(self) -> Judge:
        """How `conformance replay` judges each call of this kind's reproduction."""
        return self.judge or judge_rules


def _failure(subject: Subject, kind: CheckKind, run: Execution, index: int, problem: str,
             call: Call | None) -> CheckFailed:
    """A planned case's failure: the message, the reproduction in the kind's shape, the
    codes it blames and the details."""
    case = Case([subject.domain.minimal(step) for step in run.case.given], run.case.args)
    expect = kind.blame(subject, call) if call is not None else ()
    text = f"{problem} {context_line(case.given, case.args)}"
    if kind.repro == "calls":
        ordinal = ("first", "second", "third")[min(index, 2)]
        text = f"{ordinal} of {len(run.calls)} identical calls: {text}" \
            if len(run.calls) > 1 else text
        shown = [call_repro(subject.spec.id, c.args, c.prediction.codes)
                 for c in run.calls[:index + 1]]
        reproduction = {"given": list(case.given), "calls": shown}
    else:
        reproduction = repro(case.given, case.args, expect)
    info = None
    if call is not None and call.outcome is not None and run.world is not None:
        info = details(subject, Trial(run.world, call.state, call.args, call.outcome), expect,
                       call.prediction.state if kind.judge is judge_rules else None)
    return CheckFailed(text, reproduction, expect, info)


def judge_execution(subject: Subject, kind: CheckKind, run: Execution) -> tuple[str, ...]:
    """The codes a kind saw pass in one executed case; CheckFailed at its first problem."""
    assert kind.judge is not None
    if run.error is not None:
        predicted = subject.oracle.predict(state_of(subject.domain, run.case.given),
                                           run.case.args)
        given = [subject.domain.minimal(step) for step in run.case.given]
        failure = CheckFailed(f"{run.error} {context_line(given, run.case.args)}",
                              repro(given, run.case.args, predicted.codes), predicted.codes)
        failure.breach = True  # type: ignore[attr-defined]  (the contract, not a code)
        raise failure
    seen: list[str] = []
    assert run.world is not None
    for index, call in enumerate(run.calls[:kind.calls]):
        if call.error is not None:
            failure = _failure(subject, kind, run, index, str(call.error), call)
            failure.breach = True  # type: ignore[attr-defined]
            raise failure
        problem = kind.judge(subject, call, run.world)
        if problem:
            raise _failure(subject, kind, run, index, problem, call)
        seen.extend(call.prediction.codes)
    return tuple(seen) if kind.marks_codes else ()


def planned_check(kind_name: str) -> Callable[[Target], Verdict]:
    """A check that judges the spec's planned cases (executed once for every such kind), then,
    when the profile explores, drawn cases of its own."""
    def run(target: Target) -> Verdict:
        subject = target.subject
        assert subject is not None
        kind = KINDS[kind_name]
        if subject.plan.error:
            raise OracleError(subject.plan.error)
        failed, replayed = replay_regressions(target, subject)
        if failed is not None:
            return failed
        seen: set[str] = set()
        applicable, unsupported = 0, []
        for execution in subject.executions.planned():
            if execution.unsupported is not None:
                unsupported.append(str(execution.unsupported) or "Unsupported")
                continue
            applicable += 1
            try:
                seen.update(judge_execution(subject, kind, execution))
            except CheckFailed as exc:
                return _failed(seen, shrink(subject, kind, execution, exc))
        if not applicable:
            reason = unsupported[-1] if unsupported else "no case could be built"
            raise NotApplicable(f"unsupported by the provider: {reason}",
                                subject.executions.unreached())
        return Verdict(PASSED, f"{applicable} planned cases" + (
            f", {len(unsupported)} the provider could not build" if unsupported else "")
            + _fixed_note(replayed), {c: PASSED for c in sorted(seen)},
            unreached=subject.executions.unreached(), regressions=replayed or None)

    return run


SHRINK_TRIES = 30  # executions a failure may spend on finding a smaller case that shows it


def shrink(subject: Subject, kind: CheckKind, run: Execution,
           failure: CheckFailed) -> CheckFailed:
    """The failure on the smallest case found that still fails the same way: a fault, an
    object or a field's value taken out at a time, each try one execution (at most
    SHRINK_TRIES), kept when the kind fails again blaming the same codes. A planned case
    covers several goals at once; a person reads the one thing that breaks."""
    if getattr(failure, "breach", False):
        return failure  # a crash or a refused answer: trying smaller cases would repeat it
    best, tries = failure, 0
    case = run.case
    improved = True
    while improved and tries < SHRINK_TRIES:
        improved = False
        for smaller in simpler_cases(subject, case):
            if tries >= SHRINK_TRIES:
                break
            tries += 1
            attempt = execute(subject, smaller, calls=subject.plan.calls,
                              observe=subject.plan.observe)
            if attempt.unsupported is not None:
                continue
            try:
                judge_execution(subject, kind, attempt)
            except CheckFailed as exc:
                if exc.codes == failure.codes:
                    best, case, improved = exc, smaller, True
                    break
    return best


def simpler_cases(subject: Subject, case: Case) -> Iterator[Case]:
    """Cases one simplification away, in a fixed order: a fault taken away, an object no
    other step or argument names taken away, a field set back to its default."""
    domain = subject.domain
    named = _mentions(case.args)
    for i, step in enumerate(case.given):
        kind = next(iter(step))
        rest = case.given[:i] + case.given[i + 1:]
        if kind == "fault" or (step[kind] not in named and step[kind] not in _mentions(rest)):
            yield Case(rest, case.args)
    for i, step in enumerate(case.given):
        try:
            fields = domain.fields_of_step(step)
        except KeyError:
            continue
        for name, ftype in fields.items():
            if ftype.kind in ("ref", "list") or name not in step:
                continue
            default = ftype.default(domain)
            if step[name] != default:
                yield Case([*case.given[:i], {**step, name: default}, *case.given[i + 1:]],
                           case.args)


def _mentions(value: Any) -> set[Any]:
    """Every string a step list or an argument map holds (the names it refers to)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return {n for v in value.values() for n in _mentions(v)}
    if isinstance(value, list | tuple):
        return {n for v in value for n in _mentions(v)}
    return set()


def replay_regressions(target: Target, subject: Subject | None
                       ) -> tuple[Verdict | None, list[dict[str, str]]]:
    """The saved regressions of this check, replayed first: the verdict of the first that
    still fails (None when none does), and how each went."""
    from conformance.engine.replay import ReproError, replay

    outcomes: list[dict[str, str]] = []
    for regression in target.regressions:
        provider = subject.provider if subject is not None else target.family[0].provider
        settings = subject.settings if subject is not None else target.family[0].settings
        try:
            result = replay(regression.repro, target.catalog, provider, settings)
        except ReproError as exc:  # a step or call the provider cannot do, or a stale file
            outcomes.append({"file": regression.name, "status": "not applicable",
                             "message": str(exc)})
            continue
        if result.passed:
            outcomes.append({"file": regression.name, "status": "fixed",
                             "message": result.message})
            continue
        outcomes.append({"file": regression.name, "status": "fails",
                         "message": result.message})
        codes = {c: FAILED for c in result.expected}
        return Verdict(FAILED, f"{regression.describe()}: {result.message}", codes,
                       regression.repro, regressions=outcomes), outcomes
    return None, outcomes


def _fixed_note(replayed: list[dict[str, str]]) -> str:
    fixed = [r["file"] for r in replayed if r["status"] == "fixed"]
    if not fixed:
        return ""
    plural = len(fixed) > 1
    return (f"; {len(fixed)} saved regression{'s' if plural else ''} now "
            f"pass{'' if plural else 'es'} (fixed: {', '.join(fixed)}; remove the "
            f"file{'s' if plural else ''} to forget {'them' if plural else 'it'})")


def _failed(seen: set[str], exc: CheckFailed) -> Verdict:
    codes = {c: PASSED for c in seen}
    codes.update({c: FAILED for c in exc.codes})
    return Verdict(FAILED, exc.message, codes, exc.repro, exc.details)


# -- exploration: drawn cases after the plan (the thorough profile) ---------------------------

LOOKAHEAD = 8  # planned cases sent to a worker process ahead of the one being executed

# The worlds one case of a check builds, in order: (subject, given steps, the call after them).
Plan = Callable[[Case], list[tuple["Subject", list[dict[str, Any]], Then]]]


def run_explore(target: Target) -> Verdict:
    """Exploration, apart from the plan: hypothesis-drawn cases (seeded), each executed once
    and judged by every exploring kind of the spec. A failure is shrunk by hypothesis and
    saved as a regression of the planned check of the kind that found it, which every later
    run replays; the planned checks' verdicts never depend on it."""
    subject = target.subject
    assert subject is not None
    examples = subject.settings.max_examples
    if not examples:
        raise NotApplicable("exploration is off (--explore N, or the thorough profile)")
    judges = [k for k in kinds_for(subject.spec, subject.settings) if k.explores]
    calls = max(k.calls for k in judges)
    seen: set[str] = set()
    unsupported: list[str] = []
    drawn = [0]

    def prop(case: Case) -> None:
        run = execute(subject, case, calls=calls, observe=subject.plan.observe)
        if run.unsupported is not None:
            unsupported.append(str(run.unsupported) or "Unsupported")
            assume(False)
            return
        drawn[0] += 1
        codes: set[str] = set()
        for kind in judges:
            try:
                codes.update(judge_execution(subject, kind, run))
            except CheckFailed as exc:
                exc.kind = kind.name  # type: ignore[attr-defined]
                raise
        if subject.settings.steer:  # once a case: hypothesis keeps one score per label
            target_codes(float(sum(c not in seen for c in codes)))
        seen.update(codes)

    sets = settings(max_examples=examples, deadline=None, phases=PHASES,
                    database=subject.settings.database, derandomize=False,
                    suppress_health_check=list(HealthCheck), print_blob=False,
                    report_multiple_bugs=False)
    test = sets(given(cases(subject.spec, subject.domain, subject.allowed))(prop))
    if subject.settings.seed is not None:
        test = hypothesis_seed(subject.settings.seed)(test)
    try:
        test()
    except CheckFailed as exc:
        check = f"{subject.spec.id}::{getattr(exc, 'kind', 'oracle')}::property"
        return found_by_exploration(subject.settings, check, subject.spec.id, exc)
    except Unsatisfiable:
        pass
    except (Flaky, FlakyFailure) as exc:
        return Verdict(FAILED, "the provider is not deterministic: the same case gave a "
                               f"different result when hypothesis ran it again ({exc})")
    if not drawn[0]:
        reason = unsupported[-1] if unsupported else "no case could be built"
        raise NotApplicable(f"unsupported by the provider: {reason}")
    return Verdict(PASSED, f"{drawn[0]} drawn cases (--seed {subject.settings.seed}), judged "
                           f"by {', '.join(k.name for k in judges)}")


def target_codes(score: float) -> None:
    """Steer hypothesis toward codes not seen yet (the thorough profile)."""
    target(score, label="codes not seen before")


def found_by_exploration(config: Settings, check: str, method: str,
                         exc: CheckFailed) -> Verdict:
    """An exploration failure: saved as a regression of `check` (when the run keeps them)."""
    from conformance.engine import regressions

    note = ""
    if config.regressions is not None and exc.repro is not None:
        repro = {"check": check, "method": method, **exc.repro}
        try:
            path = regressions.save(config.regressions, check, repro, config.provider_name,
                                    config.seed, exc.message)
            note = f"; saved as {path}, which every later run replays under {check}"
        except OSError as error:
            note = f"; could not be saved as a regression ({error})"
    return Verdict(FAILED, f"found by exploration (--seed {config.seed}): {exc.message}{note}",
                   {c: FAILED for c in exc.codes}, exc.repro, exc.details)


def looking_ahead(subject: Subject, plan: Plan | None, cases: Iterable[Case]) -> Iterator[Case]:
    """The cases in order; a provider that takes test cases ahead (`submit`: a worker
    process) gets the next ones' requests first, and runs them while this one is judged. The
    requests are those the engine makes, so its results are the same either way."""
    submit = getattr(subject.provider, "submit", None)
    if plan is None or submit is None:
        yield from cases
        return
    pending = iter(cases)
    upcoming: deque[Case] = deque()
    sent = 0  # the first `sent` of `upcoming` were taken by the provider
    planned: dict[int, Subject] = {}  # the subjects that keep batches built ahead
    try:
        while True:
            while len(upcoming) < LOOKAHEAD and (case := next(pending, None)) is not None:
                upcoming.append(case)
            while sent < len(upcoming) and submit(_batches(plan, upcoming[sent], planned)):
                sent += 1
            if not upcoming:
                return
            sent = max(sent - 1, 0)
            yield upcoming.popleft()
    finally:  # what was built for cases sent but not judged (the check ended first)
        for subject_ in planned.values():
            subject_.planned.clear()


def _batches(plan: Plan, case: Case, planned: dict[int, Subject]) -> list[list[dict[str, Any]]]:
    """The batches of a case's worlds, kept for `prepare` so it need not build them again."""
    out = []
    for subject, steps, then in plan(case):
        completed = [subject.domain.complete(raw) for raw in steps]
        requests = World(subject.provider, subject.domain).batch_requests(completed, then)
        subject.planned.setdefault(id(steps), deque()).append((steps, then, completed, requests))
        planned[id(subject)] = subject
        out.append(requests)
    return out


def admitted(subject: Subject, value: int) -> bool:
    if any(c.value == value for c in subject.spec.codes):
        return True
    return any(subject.table.admits(entry, value) for entry in subject.spec.also)


def predicted_codes(subject: Subject, case: Case) -> tuple[str, ...]:
    """What the rules predict for a case: the `expect` of a reproduction."""
    return subject.oracle.predict(state_of(subject.domain, case.given), case.args).codes


def out_param_problem(subject: Subject, outcome: Outcome) -> str | None:
    spec, describe = subject.spec, subject.oracle.describe
    hr = outcome.hresult
    documented = {c.value for c in spec.codes}
    if spec.convention == "win32" and is_microsoft_hresult_failure(hr) and hr not in documented:
        return (f"returned {describe(hr)}, an HRESULT, where a Win32 or ISDSC status is "
                "documented (HRESULT_FROM_WIN32 used by mistake?)")
    if spec.convention == "hresult" and is_plain_win32(hr) and hr not in documented \
            and not any(subject.table.admits(a, hr) for a in spec.also):
        return (f"returned {hex32(hr)}, a bare Win32 code, where an HRESULT is documented "
                "(missing HRESULT_FROM_WIN32?)")
    outs = [p for p in spec.params if p.is_out and p.name in outcome.outputs]
    if (hr != 0 if spec.convention == "win32" else failed(hr)):
        leaked = [p.name for p in outs if outcome.outputs.get(p.name) is not None]
        if leaked:
            return (f"failed with {describe(hr)} but set {', '.join(leaked)}: out-parameters "
                    "must be NULL on failure")
        if outcome.completion is not None:
            return f"failed with {describe(hr)} but reported a completion"
        return None
    for p in spec.async_params:
        if subject.spec.delivery == DIRECT:
            continue
        obj = outcome.outputs.get(p.name)
        if obj is None:
            return f"succeeded with {describe(hr)} but returned no async object in {p.name}"
        if outcome.completion is None:
            return f"succeeded with {describe(hr)} but the async object {p.name} has no result"
        if not admitted(subject, outcome.completion):
            return (f"the async object {p.name} completed with "
                    f"{describe(outcome.completion)}, not a documented code")
    if not spec.async_params and outcome.completion is not None:
        return "reported a completion though the method has no async object"
    return None


# -- relations between forms and providers ----------------------------------------------------

def snapshot(world: World, collections: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for coll in collections:
        try:
            out[coll] = canonical(world.observe(coll))
        except Unsupported:
            continue
    return out


def _seen_snapshot(call: Call) -> dict[str, list[str]]:
    """The collections read after a call, as comparable text (those shown, not the errors)."""
    return {coll: canonical(rows) for coll, rows in call.seen.items()
            if not isinstance(rows, Exception)}


def _outcome_text(subject: Subject, outcome: Outcome) -> str:
    value, where = effective(subject.spec, outcome)
    return f"{subject.oracle.describe(value)} (from the {where})"


def ansi_args(subject: Subject, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the W form receives them after the A form's code-page conversion."""
    convert = subject.oracle.functions["ansi"]

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return convert(value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return {k: (v if k == "this" else walk(v)) for k, v in args.items()}


def _first_call(subject: Subject, run: Execution) -> Call:
    """The first call of an executed case; a case that broke the contract fails the check."""
    if run.error is not None or not run.calls or run.calls[0].error is not None:
        error = run.error or (run.calls[0].error if run.calls else None)
        raise CheckFailed(f"{error} {context_line(run.case.given, run.case.args)}",
                          repro(run.case.given, run.case.args, ()))
    return run.calls[0]


def check_variants(target: Target) -> Verdict:
    """The A form must behave as the W form called with its code-page-converted strings:
    identical on ASCII, '?' where the code page has no character, up to the maximum length.
    Each planned A case is paired with the W form's execution of the converted case (one of
    the W form's own planned cases whenever they agree, as they do on ASCII)."""
    subject = target.subject
    assert subject is not None
    twin = subject.twin
    if twin is None:
        raise NotApplicable("no W twin of this A function is in the catalog")
    if subject.plan.error:
        raise OracleError(subject.plan.error)
    if twin.provider is subject.provider:
        twin.executions.planned()  # the W form's own cases: most pairs are among them
    pairs = 0
    for a_run in subject.executions.planned():
        if a_run.unsupported is not None:
            continue
        case = a_run.case
        a_call = _first_call(subject, a_run)
        w_case = Case(case.given, ansi_args(subject, case.args))
        w_run = twin.executions.get(w_case, observe=twin.plan.observe)
        if w_run.unsupported is not None:
            continue
        w_call = _first_call(twin, w_run)
        pairs += 1
        assert a_call.outcome is not None and w_call.outcome is not None
        a_code = effective(subject.spec, a_call.outcome)[0]
        w_code = effective(twin.spec, w_call.outcome)[0]
        a_seen, w_seen = _seen_snapshot(a_call), _seen_snapshot(w_call)
        shared = set(a_seen) & set(w_seen)
        a_seen = {k: v for k, v in a_seen.items() if k in shared}
        w_seen = {k: v for k, v in w_seen.items() if k in shared}
        if a_code != w_code or a_seen != w_seen:
            what = (f"{subject.spec.id} gave {_outcome_text(subject, a_call.outcome)} but "
                    f"{twin.spec.id} on the converted strings gave "
                    f"{_outcome_text(twin, w_call.outcome)}"
                    if a_code != w_code else
                    f"{subject.spec.id} and {twin.spec.id} left different state: "
                    f"{a_seen} vs {w_seen}")
            raise CheckFailed(f"{what} {context_line(case.given, case.args)}",
                              repro(case.given, case.args,
                                    tuple(c.symbol for c in twin.spec.codes
                                          if c.value == w_code) or ("?",)))
    if not pairs:
        raise NotApplicable("unsupported by the provider: no planned case could be built "
                            "in both forms")
    return Verdict(PASSED, f"{pairs} planned cases in both forms")


def check_differential(target: Target) -> Verdict:
    """The provider against the reference on the planned cases: codes and state must agree."""
    subject = target.subject
    assert subject is not None
    if subject.reference is None:
        raise NotApplicable("no reference provider to compare with")
    observe = subject.plan.observe
    pairs = 0
    for mine_run in subject.executions.planned():
        if mine_run.unsupported is not None:
            continue
        case = mine_run.case
        mine = _first_call(subject, mine_run)
        ref_world, _ = prepare(subject, case.given, subject.reference,
                               Then(subject.spec, case.args, observe))
        theirs = ref_world.call(subject.spec, case.args)
        theirs_seen = snapshot(ref_world, observe)
        mine_seen = {k: v for k, v in _seen_snapshot(mine).items() if k in theirs_seen}
        pairs += 1
        assert mine.outcome is not None
        mine_code = effective(subject.spec, mine.outcome)[0]
        theirs_code = effective(subject.spec, theirs)[0]
        if mine_code != theirs_code or mine_seen != theirs_seen:
            raise CheckFailed(
                f"provider gave {_outcome_text(subject, mine.outcome)}, the reference gave "
                f"{_outcome_text(subject, theirs)}"
                + ("" if mine_seen == theirs_seen else
                   f"; state differs: {mine_seen} vs reference {theirs_seen}")
                + f" {context_line(case.given, case.args)}",
                repro(case.given, case.args, tuple(c.symbol for c in subject.spec.codes
                                                   if c.value == theirs_code) or ("?",)))
    if not pairs:
        raise NotApplicable("unsupported by the provider: no planned case could be built")
    return Verdict(PASSED, f"{pairs} planned cases agree with the reference")


def run_scenario(target: Target) -> Verdict:
    """A scenario of the spec: one call (`check_scenario`), or a sequence of `calls`
    replayed as its reproduction would be."""
    assert target.subject is not None and target.scenario is not None
    if target.scenario.calls:
        return check_sequence(target)
    return check_scenario(target.subject, target.scenario)


def check_sequence(target: Target) -> Verdict:
    """A scenario of several calls: run as its reproduction would be replayed."""
    from conformance.engine.replay import ReplayUnsupported, replay

    subject, scenario = target.subject, target.scenario
    assert subject is not None and scenario is not None
    spec = subject.spec
    sequence = {"method": spec.id, "given": list(scenario.given),
                "calls": list(scenario.calls)}
    expected = {c for entry in scenario.calls if "expect" in entry
                and entry.get("method", spec.id) == spec.id
                for c in ([entry["expect"]] if isinstance(entry["expect"], str)
                          else entry["expect"])}
    try:
        result = replay(sequence, target.catalog, subject.provider, subject.settings)
    except ReplayUnsupported as exc:
        return Verdict(NOT_APPLICABLE, str(exc), {c: NOT_APPLICABLE for c in expected})
    if result.passed:
        return Verdict(PASSED, result.message, {c: PASSED for c in expected})
    blamed = {c: FAILED for c in result.expected if c in expected} if result.expected \
        else {c: FAILED for c in expected}
    return Verdict(FAILED, result.message, blamed, sequence)


def run_family(target: Target) -> Verdict:
    """The family check: the saved regressions, then its planned sequences
    (conformance.engine.sequences); exploring (case `explore`), the family's hypothesis machine."""
    from conformance.engine.sequences import check_sequences

    assert target.domain is not None
    if target.case == KINDS["stateful"].explore_case:
        return explore_family(target)
    failed, replayed = replay_regressions(target, None)
    if failed is not None:
        return failed
    verdict = check_sequences(target.family, target.domain, target.family_plan)
    verdict.regressions = replayed or None
    verdict.message += _fixed_note(replayed)
    return verdict


def explore_family(target: Target) -> Verdict:
    """The family's hypothesis machine (seeded); a failure, minimized, is saved as a
    regression of the family check."""
    from conformance.engine.stateful import check_stateful

    assert target.domain is not None
    if not target.family:
        raise NotApplicable("no method of this family is supported by the provider")
    config = target.family[0].settings
    verdict = check_stateful(target.family, target.domain)
    if verdict.status != FAILED or verdict.repro is None:
        return verdict
    check = f"{target.domain.family}::stateful::machine"
    method = next((e["method"] for e in reversed(verdict.repro.get("calls", []))
                   if "method" in e), "")
    failure = CheckFailed(verdict.message, verdict.repro, tuple(verdict.codes), verdict.details)
    return found_by_exploration(config, check, method, failure)


def _tier(minimum: int) -> Callable[[Spec, Settings], bool]:
    return lambda spec, settings: settings.tier >= minimum


def _has_effects(spec: Spec, settings: Settings) -> bool:
    return settings.tier >= 1 and any(r.effects for r in spec.rules)


def _exploring(spec: Spec, settings: Settings) -> bool:
    return settings.max_examples > 0


def _has_twin(spec: Spec, settings: Settings) -> bool:
    return settings.tier >= 1 and spec.charset == "ansi" and spec.twin is not None


KINDS: dict[str, CheckKind] = {k.name: k for k in (
    CheckKind("scenario", "scenario", run_scenario,
              description="a scenario of the spec: given, call, code, then"),
    CheckKind("oracle", "spec", planned_check("oracle"), judge=judge_rules,
              explores=True,
              description="the rules' code, out-parameters and next state on the plan"),
    CheckKind("closed-world", "spec", planned_check("closed-world"), judge=judge_documented,
              marks_codes=False,
              explores=True,
              description="only documented codes, or the spec's `also` families"),
    CheckKind("out-params", "spec", planned_check("out-params"), judge=judge_out_params,
              blame=blame_given, marks_codes=False,
              explores=True,
              description="out and async pointers agree with the code"),
    CheckKind("repeat", "spec", planned_check("repeat"), applies=_has_effects,
              judge=judge_rules, calls=2, repro="calls",
              explores=True,
              description="each planned call made twice: the second as the rules predict"),
    CheckKind("variants", "spec", check_variants, applies=_has_twin, judge=judge_code,
              with_twin=True,
              description="the A form behaves as the W form on converted strings"),
    CheckKind("differential", "spec", check_differential, optional=True, judge=judge_code,
              description="the provider agrees with the reference on the plan"),
    CheckKind("explore", "spec", run_explore, applies=_exploring, case="drawn",
              description="exploration: hypothesis-drawn cases judged by every exploring "
                          "kind; what fails is saved as a regression"),
    CheckKind("stateful", "family", run_family, repro="calls", explore_case="explore",
              description="the family's planned sequences (`machine`) and, exploring, its "
                          "hypothesis state machine (`explore`)"),
)}


def kinds_for(spec: Spec, settings: Settings, optional: frozenset[str] = frozenset()
              ) -> list[CheckKind]:
    """The per-spec kinds that apply to a spec in a run (`optional`: those asked for)."""
    return [k for k in KINDS.values() if k.scope == "spec" and k.applies(spec, settings)
            and (not k.optional or k.name in optional)]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
