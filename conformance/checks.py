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
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis.database import ExampleDatabase
from hypothesis.errors import Flaky, FlakyFailure, Unsatisfiable

from conformance.codes import (
    CodeTable,
    failed,
    hex32,
    is_microsoft_hresult_failure,
    is_plain_win32,
)
from conformance.domain import Domain
from conformance.observed import ObservedPolicy
from conformance.oracle import Oracle, OracleError
from conformance.provider import Outcome, Provider, Unsupported
from conformance.spec import DIRECT, Scenario, Spec
from conformance.strategies import Allowed, Case, cases, enumerate_cases, state_of
from conformance.world import OUT, ProviderError, Then, Unknown, World

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
    pass


@dataclass
class Verdict:
    status: str
    message: str = ""
    codes: dict[str, str] = field(default_factory=dict)
    repro: dict[str, Any] | None = None
    details: dict[str, Any] | None = None


@dataclass
class Settings:
    max_examples: int = 100
    exhaustive: int = 1000
    steer: bool = False  # hypothesis.target toward unseen codes (costly with long strings)
    seed: int | None = None
    database: ExampleDatabase | None = None
    code_page: str = "cp1252"
    observed: ObservedPolicy | None = None  # None: strict, nothing is excused


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

    def __post_init__(self) -> None:
        self.oracle = Oracle(self.spec, self.table, self.settings.code_page)


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


def call_args(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as a scenario writes them: `{unknown: step}`, NULL out-pointers only."""
    return {k: ({"unknown": v.step} if isinstance(v, Unknown) else v)
            for k, v in args.items() if v != OUT}


def _expect(expect: tuple[str, ...]) -> str | list[str]:
    return expect[0] if len(expect) == 1 else list(expect)


def repro(steps: list[dict[str, Any]], args: dict[str, Any], expect: tuple[str, ...]) -> dict:
    """A failing case in the spec's scenario shape, ready to paste under `scenarios`."""
    return {"given": [dict(s) for s in steps], "call": call_args(args), "expect": _expect(expect)}


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


# -- properties -------------------------------------------------------------------------------

# The worlds one case of a check builds, in order: (subject, given steps, the call after them).
Plan = Callable[[Case], list[tuple["Subject", list[dict[str, Any]], Then]]]
LOOKAHEAD = 8  # enumerated cases sent to a worker process ahead of the one being judged


def run_property(subject: Subject, body: Callable[[Case], tuple[str, ...]],
                 exhaustive: bool = True, plan: Plan | None = None) -> Verdict:
    """Run `body` on the enumerated small cases, then on drawn ones steered toward codes not
    yet seen; collect the codes it saw; a drawn failure is shrunk by hypothesis. `plan` says
    which worlds `body` builds for a case, so a worker process can run the enumerated cases
    ahead of their judging."""
    seen: set[str] = set()
    applicable = [0]
    unsupported: list[str] = []
    enumerated = 0
    if exhaustive and subject.settings.exhaustive:
        for case in looking_ahead(subject, plan, enumerate_cases(
                subject.spec, subject.domain, subject.settings.exhaustive, subject.allowed)):
            enumerated += 1
            try:
                seen.update(body(case))
                applicable[0] += 1
            except Unsupported as exc:
                unsupported.append(str(exc) or type(exc).__name__)
            except CheckFailed as exc:
                codes = {c: PASSED for c in seen}
                codes.update({c: FAILED for c in exc.codes})
                return Verdict(FAILED, exc.message, codes, exc.repro, exc.details)
        if enumerated and not applicable[0]:
            raise NotApplicable(f"unsupported by the provider: {unsupported[-1]}")

    def prop(case: Case) -> None:
        try:
            codes = body(case)
        except Unsupported as exc:
            unsupported.append(str(exc) or type(exc).__name__)
            assume(False)
            return
        applicable[0] += 1
        if subject.settings.steer:
            target(float(sum(c not in seen for c in codes)), label="codes not seen before")
        seen.update(codes)

    sets = settings(max_examples=subject.settings.max_examples, deadline=None, phases=PHASES,
                    database=subject.settings.database, derandomize=False,
                    suppress_health_check=list(HealthCheck), print_blob=False,
                    report_multiple_bugs=False)
    test = sets(given(cases(subject.spec, subject.domain, subject.allowed))(prop))
    if subject.settings.seed is not None:
        test = hypothesis_seed(subject.settings.seed)(test)
    try:
        test()
    except CheckFailed as exc:
        codes = {c: PASSED for c in seen}
        codes.update({c: FAILED for c in exc.codes})
        return Verdict(FAILED, exc.message, codes, exc.repro, exc.details)
    except Unsatisfiable:
        pass
    except (Flaky, FlakyFailure) as exc:
        return Verdict(FAILED, "the provider is not deterministic: the same case gave a "
                               f"different result when hypothesis ran it again ({exc})",
                       {c: PASSED for c in seen})
    if not applicable[0]:
        reason = unsupported[-1] if unsupported else "no case could be built"
        raise NotApplicable(f"unsupported by the provider: {reason}")
    drawn = applicable[0] - (enumerated if enumerated else 0)
    note = f"{applicable[0]} examples ({enumerated} enumerated, {max(drawn, 0)} drawn)"
    return Verdict(PASSED, note, {c: PASSED for c in sorted(seen)})


def looking_ahead(subject: Subject, plan: Plan | None, cases: Iterable[Case]) -> Iterator[Case]:
    """The cases in order; a provider that takes test cases ahead (`submit`: a worker
    process) gets the next ones' requests first, and runs them while this one is judged. The
    requests are those `body` makes, so its results are the same either way."""
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


def _one_world(subject: Subject, observe: tuple[str, ...]) -> Plan:
    """The plan of a check whose case is one world: the given steps, then the call."""
    return lambda case: [(subject, case.given, Then(subject.spec, case.args, observe))]


def _trial_or_fail(subject: Subject, case: Case, expect: tuple[str, ...],
                   observe: tuple[str, ...] = (), state: dict[str, Any] | None = None) -> Trial:
    try:
        return enact(subject, case.given, case.args, observe, state)
    except ProviderError as exc:
        raise CheckFailed(f"{exc} {context_line(case.given, case.args)}",
                          repro(case.given, case.args, expect), expect) from None


def check_oracle(subject: Subject) -> Verdict:
    def body(case: Case) -> tuple[str, ...]:
        state = state_of(subject.domain, case.given)
        predicted = subject.oracle.predict(state, case.args)
        trial = _trial_or_fail(subject, case, predicted.codes, subject.observable, state)
        problem = code_mismatch(subject, predicted.codes, trial.outcome, state, case.args) or \
            outputs_mismatch(trial.world, predicted.outputs, trial.outcome)
        if problem is None:
            try:
                problem = state_mismatch(trial.world, predicted.state, subject.observable)
            except ProviderError as exc:
                problem = str(exc)
        if problem:
            raise CheckFailed(f"{problem} {context_line(case.given, case.args)}",
                              repro(case.given, case.args, predicted.codes), predicted.codes,
                              details(subject, trial, predicted.codes, predicted.state))
        return predicted.codes

    return run_property(subject, body, plan=_one_world(subject, subject.observable))


def admitted(subject: Subject, value: int) -> bool:
    if any(c.value == value for c in subject.spec.codes):
        return True
    return any(subject.table.admits(entry, value) for entry in subject.spec.also)


def predicted_codes(subject: Subject, case: Case) -> tuple[str, ...]:
    """What the rules predict for a case: the `expect` of a reproduction."""
    return subject.oracle.predict(state_of(subject.domain, case.given), case.args).codes


def check_closed_world(subject: Subject) -> Verdict:
    def body(case: Case) -> tuple[str, ...]:
        trial = _trial_or_fail(subject, case, ())
        for label, value in (("returned", trial.outcome.hresult),
                             ("completed with", trial.outcome.completion)):
            if value is not None and not admitted(subject, value):
                state = state_of(subject.domain, case.given)
                expect = subject.oracle.predict(state, case.args).codes
                if observed_excuse(subject, expect, value, state, case.args) is not None:
                    continue
                raise CheckFailed(
                    f"{label} {subject.oracle.describe(value)}, which is neither a documented "
                    f"code of {subject.spec.id} nor in its `also` list "
                    f"({', '.join(subject.spec.also) or 'empty'}) "
                    f"{context_line(case.given, case.args)}",
                    repro(case.given, case.args, expect), expect,
                    details=details(subject, trial, expect))
        return ()

    return run_property(subject, body, plan=_one_world(subject, ()))


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


def check_out_params(subject: Subject) -> Verdict:
    def body(case: Case) -> tuple[str, ...]:
        trial = _trial_or_fail(subject, case, ())
        if case.args and any(p.is_out and case.args.get(p.name) is None
                             for p in subject.spec.params):
            return ()  # a NULL out-pointer: nothing can be written through it
        problem = out_param_problem(subject, trial.outcome)
        if problem:
            expect = predicted_codes(subject, case)
            given_code = effective(subject.spec, trial.outcome)[0]
            blamed = tuple(c.symbol for c in subject.spec.codes if c.value == given_code)
            raise CheckFailed(f"{problem} {context_line(case.given, case.args)}",
                              repro(case.given, case.args, expect), blamed or expect,
                              details=details(subject, trial, expect))
        return ()

    return run_property(subject, body, plan=_one_world(subject, ()))


# -- relations between calls, forms and providers ---------------------------------------------

def _fail_on_provider_error(case: Case, expect: tuple[str, ...], fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ProviderError as exc:
        raise CheckFailed(f"{exc} {context_line(case.given, case.args)}",
                          repro(case.given, case.args, expect), expect) from None


def check_repeat(subject: Subject) -> Verdict:
    """Each call is made twice; the second must give what the rules predict for the new state
    (a remove that succeeds twice, or corrupts what is left, is caught here)."""
    def body(case: Case) -> tuple[str, ...]:
        then = Then(subject.spec, case.args, subject.observable, calls=2)
        world, state = _fail_on_provider_error(case, (), lambda: prepare(subject, case.given,
                                                                         then=then))
        seen: list[str] = []
        calls: list[dict[str, Any]] = []
        for attempt in ("first", "second"):
            predicted = subject.oracle.predict(state, case.args)
            calls.append(call_repro(subject.spec.id, case.args, predicted.codes))
            outcome = _fail_on_provider_error(
                case, predicted.codes, lambda: world.call(subject.spec, case.args,
                                                          subject.observable))
            problem = code_mismatch(subject, predicted.codes, outcome, state, case.args)
            if problem is None:
                problem = _fail_on_provider_error(case, predicted.codes, lambda p=predicted:
                                                  state_mismatch(world, p.state,
                                                                 subject.observable))
            if problem:
                raise CheckFailed(
                    f"{attempt} of two identical calls: {problem} "
                    f"{context_line(case.given, case.args)}",
                    {"given": list(case.given), "calls": calls}, predicted.codes,
                    details(subject, Trial(world, state, case.args, outcome), predicted.codes,
                            predicted.state))
            seen.extend(predicted.codes)
            state = predicted.state
        return tuple(seen)

    def plan(case: Case) -> list[tuple[Subject, list[dict[str, Any]], Then]]:
        return [(subject, case.given, Then(subject.spec, case.args, subject.observable, 2))]

    return run_property(subject, body, plan=plan)


def snapshot(world: World, collections: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for coll in collections:
        try:
            out[coll] = canonical(world.observe(coll))
        except Unsupported:
            continue
    return out


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


def check_variants(subject: Subject) -> Verdict:
    """The A form must behave as the W form called with its code-page-converted strings:
    identical on ASCII, '?' where the code page has no character, up to the maximum length."""
    twin = subject.twin
    if twin is None:
        raise NotApplicable("no W twin of this A function is in the catalog")

    def body(case: Case) -> tuple[str, ...]:
        a_then = Then(subject.spec, case.args, subject.observable)
        a_world, _ = _fail_on_provider_error(case, (), lambda: prepare(subject, case.given,
                                                                       then=a_then))
        a_out = _fail_on_provider_error(case, (), lambda: a_world.call(subject.spec, case.args))
        a_seen = snapshot(a_world, subject.observable)
        w_args = ansi_args(subject, case.args)
        w_then = Then(twin.spec, w_args, twin.observable)
        w_world, _ = _fail_on_provider_error(case, (), lambda: prepare(twin, case.given,
                                                                       then=w_then))
        w_out = _fail_on_provider_error(case, (), lambda: w_world.call(twin.spec, w_args))
        w_seen = snapshot(w_world, twin.observable)
        a_code, w_code = effective(subject.spec, a_out)[0], effective(twin.spec, w_out)[0]
        if a_code != w_code or a_seen != w_seen:
            what = (f"{subject.spec.id} gave {_outcome_text(subject, a_out)} but "
                    f"{twin.spec.id} on the converted strings gave {_outcome_text(twin, w_out)}"
                    if a_code != w_code else
                    f"{subject.spec.id} and {twin.spec.id} left different state: "
                    f"{a_seen} vs {w_seen}")
            raise CheckFailed(f"{what} {context_line(case.given, case.args)}",
                              repro(case.given, case.args,
                                    tuple(c.symbol for c in twin.spec.codes
                                          if c.value == w_code) or ("?",)))
        return ()

    def plan(case: Case) -> list[tuple[Subject, list[dict[str, Any]], Then]]:
        w_then = Then(twin.spec, ansi_args(subject, case.args), twin.observable)
        return [*_one_world(subject, subject.observable)(case), (twin, case.given, w_then)]

    return run_property(subject, body, plan=plan if twin.provider is subject.provider else None)


def check_differential(subject: Subject) -> Verdict:
    """The provider against the reference on the same draws: codes and state must agree."""
    if subject.reference is None:
        raise NotApplicable("no reference provider to compare with")

    def body(case: Case) -> tuple[str, ...]:
        then = Then(subject.spec, case.args, subject.observable)
        world, _ = _fail_on_provider_error(case, (), lambda: prepare(subject, case.given,
                                                                     then=then))
        mine = _fail_on_provider_error(case, (), lambda: world.call(subject.spec, case.args))
        mine_seen = snapshot(world, subject.observable)
        ref_world, _ = prepare(subject, case.given, subject.reference, then)
        theirs = ref_world.call(subject.spec, case.args)
        theirs_seen = snapshot(ref_world, subject.observable)
        mine_code, theirs_code = effective(subject.spec, mine)[0], \
            effective(subject.spec, theirs)[0]
        if mine_code != theirs_code or mine_seen != theirs_seen:
            raise CheckFailed(
                f"provider gave {_outcome_text(subject, mine)}, the reference gave "
                f"{_outcome_text(subject, theirs)}"
                + ("" if mine_seen == theirs_seen else
                   f"; state differs: {mine_seen} vs reference {theirs_seen}")
                + f" {context_line(case.given, case.args)}",
                repro(case.given, case.args, tuple(c.symbol for c in subject.spec.codes
                                                   if c.value == theirs_code) or ("?",)))
        return ()

    return run_property(subject, body, plan=_one_world(subject, subject.observable))


PROPERTY_CHECKS: dict[str, Callable[[Subject], Verdict]] = {
    "oracle": check_oracle,
    "closed-world": check_closed_world,
    "out-params": check_out_params,
}

# Checks that apply only to some specs or some runs: kind -> (check, does it apply?).
CONDITIONAL_CHECKS: dict[str, tuple[Callable[[Subject], Verdict], Callable[[Spec], bool]]] = {
    "repeat": (check_repeat, lambda spec: any(r.effects for r in spec.rules)),
    "variants": (check_variants, lambda spec: spec.charset == "ansi" and spec.twin is not None),
    "differential": (check_differential, lambda spec: True),
}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
