"""The checks: each takes one spec and a provider and gives a Verdict.

Kinds (DESIGN.md): `scenario` (a table row: given, call, code, then), `oracle` (drawn states
and arguments; the rules predict the code and the next state), `closed-world` (only
documented codes or the `also` families), `out-params` (async and out pointers agree with the
code; Win32 statuses and HRESULTs are not mixed). A failure raises `CheckFailed` with a message
a person can act on and a reproduction in the spec's own scenario shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from hypothesis import HealthCheck, assume, given, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky, FlakyFailure, Unsatisfiable

from conformance.engine.executions import Call, Execution, execute
from conformance.engine.judging import (
    _outcome_text,
    _seen_snapshot,
    ansi_args,
    call_repro,
    context_line,
    details,
    effective,
    judge_rules,
    repro,
    snapshot,
)
from conformance.engine.kinds import KINDS, CheckKind, Target, kinds_for
from conformance.engine.oracle import OracleError
from conformance.engine.repro import is_sequence
from conformance.engine.scenarios import check_scenario, scenario_needs, sequence_disagreement
from conformance.engine.strategies import Allowed, Case, cases, state_of
from conformance.engine.trial import Trial, prepare
from conformance.engine.verdict import (
    FAILED,
    NOT_APPLICABLE,
    PASSED,
    PHASES,
    CheckFailed,
    NotApplicable,
    Settings,
    Verdict,
)
from conformance.engine.world import Then

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conformance.engine.repro import Entry, Repro, SequenceRepro
    from conformance.engine.subject import Subject


def _failure(
    subject: Subject, kind: CheckKind, run: Execution, index: int, problem: str, call: Call | None
) -> CheckFailed:
    """A planned case's failure: the message, the reproduction in the kind's shape, the
    codes it blames and the details."""
    case = Case([subject.domain.minimal(step) for step in run.case.given], run.case.args)
    expect = kind.blame(subject, call) if call is not None else ()
    text = f"{problem} {context_line(case.given, case.args)}"
    reproduction: Repro
    if kind.repro == "calls":
        ordinal = ("first", "second", "third")[min(index, 2)]
        text = (
            f"{ordinal} of {len(run.calls)} identical calls: {text}" if len(run.calls) > 1 else text
        )
        shown: list[Entry] = [
            call_repro(subject.spec.id, c.args, c.prediction.codes) for c in run.calls[: index + 1]
        ]
        reproduction = {"given": list(case.given), "calls": shown}
    else:
        reproduction = repro(case.given, case.args, expect)
    info = None
    if call is not None and call.outcome is not None and run.world is not None:
        info = details(
            subject,
            Trial(run.world, call.state, call.args, call.outcome),
            expect,
            call.prediction.state if kind.judge is judge_rules else None,
        )
    return CheckFailed(text, reproduction, expect, info)


def judge_execution(subject: Subject, kind: CheckKind, run: Execution) -> tuple[str, ...]:
    """The codes a kind saw pass in one executed case; CheckFailed at its first problem."""
    assert kind.judge is not None
    if run.error is not None:
        predicted = subject.oracle.predict(state_of(subject.domain, run.case.given), run.case.args)
        given = [subject.domain.minimal(step) for step in run.case.given]
        failure = CheckFailed(
            f"{run.error} {context_line(given, run.case.args)}",
            repro(given, run.case.args, predicted.codes),
            predicted.codes,
        )
        failure.breach = True
        raise failure
    seen: list[str] = []
    assert run.world is not None
    for index, call in enumerate(run.calls[: kind.calls]):
        if call.error is not None:
            failure = _failure(subject, kind, run, index, str(call.error), call)
            failure.breach = True
            raise failure
        problem = kind.judge(subject, call, run.world)
        if problem:
            raise _failure(subject, kind, run, index, problem, call)
        seen.extend(call.prediction.codes)
    return tuple(seen) if kind.marks_codes else ()


def planned(target: Target, kind: CheckKind) -> Verdict:
    """A check that judges the spec's planned cases (executed once for every such kind)."""
    subject = target.subject
    assert subject is not None
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
        raise NotApplicable(
            f"unsupported by the provider: {reason}", subject.executions.unreached()
        )
    return Verdict(
        PASSED,
        f"{applicable} planned cases"
        + (f", {len(unsupported)} the provider could not build" if unsupported else "")
        + _fixed_note(replayed),
        {c: PASSED for c in sorted(seen)},
        unreached=subject.executions.unreached(),
        regressions=replayed or None,
    )


SHRINK_TRIES = 30  # executions a failure may spend on finding a smaller case that shows it


def shrink(subject: Subject, kind: CheckKind, run: Execution, failure: CheckFailed) -> CheckFailed:
    """The failure on the smallest case found that still fails the same way: a fault, an
    object or a field's value taken out at a time, each try one execution (at most
    SHRINK_TRIES), kept when the kind fails again blaming the same codes. A planned case
    covers several goals at once; a person reads the one thing that breaks."""
    if failure.breach:
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
            attempt = execute(
                subject, smaller, calls=subject.plan.calls, observe=subject.plan.observe
            )
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
        rest = case.given[:i] + case.given[i + 1 :]
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
                yield Case(
                    [*case.given[:i], {**step, name: default}, *case.given[i + 1 :]], case.args
                )


def _mentions(value: Any) -> set[Any]:
    """Every string a step list or an argument map holds (the names it refers to)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return {n for v in value.values() for n in _mentions(v)}
    if isinstance(value, list | tuple):
        return {n for v in value for n in _mentions(v)}
    return set()


def replay_regressions(
    target: Target, subject: Subject | None
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
            outcomes.append(
                {"file": regression.name, "status": "not applicable", "message": str(exc)}
            )
            continue
        if result.passed:
            outcomes.append({"file": regression.name, "status": "fixed", "message": result.message})
            continue
        outcomes.append({"file": regression.name, "status": "fails", "message": result.message})
        codes: dict[str, str] = {c: FAILED for c in result.expected}
        return Verdict(
            FAILED,
            f"{regression.describe()}: {result.message}",
            codes,
            regression.repro,
            regressions=outcomes,
        ), outcomes
    return None, outcomes


def _fixed_note(replayed: list[dict[str, str]]) -> str:
    fixed = [r["file"] for r in replayed if r["status"] == "fixed"]
    if not fixed:
        return ""
    plural = len(fixed) > 1
    return (
        f"; {len(fixed)} saved regression{'s' if plural else ''} now "
        f"pass{'' if plural else 'es'} (fixed: {', '.join(fixed)}; remove the "
        f"file{'s' if plural else ''} to forget {'them' if plural else 'it'})"
    )


def _failed(seen: set[str], exc: CheckFailed) -> Verdict:
    codes: dict[str, str] = {c: PASSED for c in seen}
    codes.update({c: FAILED for c in exc.codes})
    return Verdict(FAILED, exc.message, codes, exc.repro, exc.details)


def run_explore(target: Target, kind: CheckKind) -> Verdict:
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
                exc.kind = kind.name
                raise
        if subject.settings.steer:  # once a case: hypothesis keeps one score per label
            target_codes(float(sum(c not in seen for c in codes)))
        seen.update(codes)

    sets = settings(
        max_examples=examples,
        deadline=None,
        phases=PHASES,
        database=subject.settings.database,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        report_multiple_bugs=False,
    )
    test = sets(given(cases(subject.spec, subject.domain, subject.allowed))(prop))
    if subject.settings.seed is not None:
        test = hypothesis_seed(subject.settings.seed)(test)
    try:
        test()
    except CheckFailed as exc:
        check = f"{subject.spec.id}::{exc.kind or 'oracle'}::property"
        return found_by_exploration(subject.settings, check, subject.spec.id, exc)
    except Unsatisfiable:
        pass
    except (Flaky, FlakyFailure) as exc:
        return Verdict(
            FAILED,
            "the provider is not deterministic: the same case gave a "
            f"different result when hypothesis ran it again ({exc})",
        )
    if not drawn[0]:
        reason = unsupported[-1] if unsupported else "no case could be built"
        raise NotApplicable(f"unsupported by the provider: {reason}")
    return Verdict(
        PASSED,
        f"{drawn[0]} drawn cases (--seed {subject.settings.seed}), judged "
        f"by {', '.join(k.name for k in judges)}",
    )


def target_codes(score: float) -> None:
    """Steer hypothesis toward codes not seen yet (the thorough profile)."""
    target(score, label="codes not seen before")


def found_by_exploration(config: Settings, check: str, method: str, exc: CheckFailed) -> Verdict:
    """An exploration failure: saved as a regression of `check` (when the run keeps them)."""
    from conformance.engine import regressions

    note = ""
    if config.regressions is not None and exc.repro is not None:
        repro = cast("Repro", {"check": check, "method": method, **exc.repro})
        try:
            path = regressions.save(
                config.regressions, check, repro, config.provider_name, config.seed, exc.message
            )
            note = f"; saved as {path}, which every later run replays under {check}"
        except OSError as error:
            note = f"; could not be saved as a regression ({error})"
    return Verdict(
        FAILED,
        f"found by exploration (--seed {config.seed}): {exc.message}{note}",
        {c: FAILED for c in exc.codes},
        exc.repro,
        exc.details,
    )


def _first_call(subject: Subject, run: Execution) -> Call:
    """The first call of an executed case; a case that broke the contract fails the check."""
    if run.error is not None or not run.calls or run.calls[0].error is not None:
        error = run.error or (run.calls[0].error if run.calls else None)
        raise CheckFailed(
            f"{error} {context_line(run.case.given, run.case.args)}",
            repro(run.case.given, run.case.args, ()),
        )
    return run.calls[0]


def check_variants(target: Target, kind: CheckKind) -> Verdict:
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
            what = (
                f"{subject.spec.id} gave {_outcome_text(subject, a_call.outcome)} but "
                f"{twin.spec.id} on the converted strings gave "
                f"{_outcome_text(twin, w_call.outcome)}"
                if a_code != w_code
                else f"{subject.spec.id} and {twin.spec.id} left different state: "
                f"{a_seen} vs {w_seen}"
            )
            raise CheckFailed(
                f"{what} {context_line(case.given, case.args)}",
                repro(
                    case.given,
                    case.args,
                    tuple(c.symbol for c in twin.spec.codes if c.value == w_code) or ("?",),
                ),
            )
    if not pairs:
        raise NotApplicable(
            "unsupported by the provider: no planned case could be built in both forms"
        )
    return Verdict(PASSED, f"{pairs} planned cases in both forms")


def check_differential(target: Target, kind: CheckKind) -> Verdict:
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
        ref_world, _ = prepare(
            subject, case.given, subject.reference, Then(subject.spec, case.args, observe)
        )
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
                + (
                    ""
                    if mine_seen == theirs_seen
                    else f"; state differs: {mine_seen} vs reference {theirs_seen}"
                )
                + f" {context_line(case.given, case.args)}",
                repro(
                    case.given,
                    case.args,
                    tuple(c.symbol for c in subject.spec.codes if c.value == theirs_code) or ("?",),
                ),
            )
    if not pairs:
        raise NotApplicable("unsupported by the provider: no planned case could be built")
    return Verdict(PASSED, f"{pairs} planned cases agree with the reference")


def run_scenario(target: Target, kind: CheckKind) -> Verdict:
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
    sequence: SequenceRepro = {
        "method": spec.id,
        "given": list(scenario.given),
        "calls": cast("list[Entry]", list(scenario.calls)),  # schema-valid `calls` entries
    }
    expected = {
        c
        for entry in scenario.calls
        if "expect" in entry and entry.get("method", spec.id) == spec.id
        for c in ([entry["expect"]] if isinstance(entry["expect"], str) else entry["expect"])
    }
    wrong = sequence_disagreement(spec, scenario, target.catalog, subject.settings.code_page)
    if wrong is not None:  # a spec error, found before any provider call
        raise wrong
    refused = (subject.allowed or Allowed()).refused(*scenario_needs(scenario, spec.id))
    if refused is not None:
        return Verdict(
            NOT_APPLICABLE,
            f"unsupported by the provider: {refused}",
            dict.fromkeys(expected, NOT_APPLICABLE),
        )
    try:
        result = replay(sequence, target.catalog, subject.provider, subject.settings)
    except ReplayUnsupported as exc:
        return Verdict(NOT_APPLICABLE, str(exc), {c: NOT_APPLICABLE for c in expected})
    if result.passed:
        return Verdict(PASSED, result.message, {c: PASSED for c in expected})
    blamed: dict[str, str] = (
        {c: FAILED for c in result.expected if c in expected}
        if result.expected
        else {c: FAILED for c in expected}
    )
    return Verdict(FAILED, result.message, blamed, sequence)


def run_family(target: Target, kind: CheckKind) -> Verdict:
    """The family check: the saved regressions, then its planned sequences
    (conformance.engine.sequences); exploring (case `explore`), the family's hypothesis machine."""
    from conformance.engine.sequence_run import check_sequences

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
    calls = verdict.repro["calls"] if is_sequence(verdict.repro) else []
    method = next((e["method"] for e in reversed(calls) if "method" in e), "")
    failure = CheckFailed(verdict.message, verdict.repro, tuple(verdict.codes), verdict.details)
    return found_by_exploration(config, check, method, failure)
