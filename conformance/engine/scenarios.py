"""Scenario checks: one row of a spec's scenario table (given, call, code, then) run as written,
once the oracle has judged the row itself: a scenario its rules or its domain's invariants
contradict is a spec error found without the provider (at run time, and by `conformance
validate` through `scenario_problems`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from conformance.engine.judging import (
    code_mismatch,
    context_line,
    details,
    outputs_mismatch,
    repro,
    then_mismatch,
)
from conformance.engine.oracle import Oracle, OracleCostError, OracleError
from conformance.engine.strategies import Allowed, state_of
from conformance.engine.trial import Trial, prepare
from conformance.engine.verdict import FAILED, PASSED, CheckFailed, NotApplicable, Verdict
from conformance.engine.world import OUT, ProviderError, Then, Unknown
from conformance.spec.model import Scenario

if TYPE_CHECKING:
    from conformance.engine.oracle import Prediction
    from conformance.engine.repro import CallRepro, Entry
    from conformance.engine.subject import Subject
    from conformance.spec.catalog import Catalog
    from conformance.spec.domain import Domain
    from conformance.spec.model import Spec

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


def scenario_needs(scenario: Scenario, method: str) -> tuple[list[dict[str, Any]], list[str]]:
    """What a scenario asks of the provider: the steps its `given` and its `calls` entries
    build, and the methods its `calls` call (`method` where an entry names none)."""
    steps = [*scenario.given, *(s for e in scenario.calls for s in e.get("given") or [])]
    return steps, [e.get("method") or method for e in scenario.calls if "call" in e]


def _ref(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"unknown"}:
        return Unknown(value["unknown"])
    return value


def _disagreement(
    domain: Domain,
    spec: Spec,
    scenario: Scenario,
    entry: tuple[str | int, ...],
    written: tuple[tuple[str, ...], dict[str, Any]],
    predicted: Prediction,
) -> OracleError | None:
    """A scenario's call whose `expect` or `then` (`written`) is not what the rules predict,
    or after which the rules leave a world the invariants forbid: a spec error, found with the
    oracle alone. `entry` is the path of one of its `calls` (empty: its `call`)."""
    expect, then = written
    where = f" {entry[0]}[{entry[1]}]" if entry else ""
    if set(predicted.codes) != set(expect):
        return OracleError(
            f"{spec.file}:{spec.line('scenarios', scenario.index, *entry, 'expect')}: scenario "
            f"{scenario.name!r}{where} expects {', '.join(expect)} but the rules predict "
            f"{', '.join(predicted.codes)} (rule {predicted.rule.index})"
        )
    differs = then_mismatch(then, lambda c: predicted.state.get(c, []), "the rules leave")
    if differs is not None:
        return OracleError(
            f"{spec.file}:{spec.line('scenarios', scenario.index, *entry, 'then')}: scenario "
            f"{scenario.name!r}{where} then: {differs} (rule {predicted.rule.index})"
        )
    what = f"the state rule {predicted.rule.index} leaves"
    return _impossible(domain, spec, scenario, entry, predicted.state, what)


def _impossible(
    domain: Domain,
    spec: Spec,
    scenario: Scenario,
    entry: tuple[str | int, ...],
    state: dict[str, Any],
    what: str,
) -> OracleError | None:
    """A scenario whose steps, or whose rules' effects, make a world the domain's invariants
    forbid: no provider can show it, so it is the spec's error."""
    broken = domain.broken_invariant(state, on=what)
    if broken is None:
        return None
    where = f" {entry[0]}[{entry[1]}]" if entry else ""
    line = spec.line("scenarios", scenario.index, *entry)
    return OracleError(f"{spec.file}:{line}: scenario {scenario.name!r}{where}: {broken}")


def _predicted(
    spec: Spec, scenario: Scenario, domain: Domain, oracle: Oracle
) -> tuple[dict[str, Any], Prediction]:
    """The state a one-call scenario's steps build and what the rules predict of its call;
    OracleError when the scenario contradicts its rules or invariants."""
    state = state_of(domain, list(scenario.given))
    wrong = _impossible(domain, spec, scenario, (), state, "the state its given steps build")
    if wrong is None:
        predicted = oracle.predict(state, scenario_args(spec, scenario))
        written = (scenario.expect, scenario.then)
        wrong = _disagreement(domain, spec, scenario, (), written, predicted)
    if wrong is not None:
        raise wrong
    return state, predicted


def walk_calls(
    entries: Iterable[Entry],
    state: dict[str, Any],
    domain: Domain,
    catalog: Catalog,
    method: str,
    code_page: str = "cp1252",
) -> Iterator[tuple[int, Entry, dict[str, Any], Prediction | None]]:
    """A sequence of `calls` run on the oracle alone, from `state`: each entry with the state
    it leaves and, for a call, what the rules predict of it (None for a `given` entry, whose
    steps are applied). A call names its `method`, else `method`; the catalog holds every
    method a loaded scenario calls (catalog_checks), and a replay names one it lacks."""
    oracles: dict[str, Oracle] = {}
    for j, entry in enumerate(entries):
        if "given" in entry:
            for raw in entry["given"] or []:
                domain.apply(state, domain.complete(raw))
            yield j, entry, state, None
            continue
        callee = catalog.specs[entry.get("method") or method]
        if callee.id not in oracles:
            oracles[callee.id] = Oracle(callee, catalog.codes, code_page)
        call = Scenario(callee.id, (), dict(entry.get("call") or {}), ())
        predicted = oracles[callee.id].predict(state, scenario_args(callee, call))
        state = predicted.state
        yield j, entry, state, predicted


def sequence_disagreement(
    spec: Spec, scenario: Scenario, catalog: Catalog, code_page: str = "cp1252"
) -> OracleError | None:
    """The first entry of a multi-call scenario whose `expect` or `then` is not what the rules
    predict after the steps and calls before it, or whose steps or calls make a world the
    invariants forbid (what its check raises before any provider call)."""
    domain = catalog.domain_of(spec)
    state = state_of(domain, list(scenario.given))
    wrong = _impossible(domain, spec, scenario, (), state, "the state its given steps build")
    entries = cast("list[Entry]", list(scenario.calls))  # schema-valid `calls` entries
    walked = walk_calls(entries, state, domain, catalog, spec.id, code_page)
    for j, entry, after, predicted in walked if wrong is None else ():
        if "given" in entry:
            what = "the state the steps before it build"
            wrong = _impossible(domain, spec, scenario, ("calls", j), after, what)
        elif predicted is not None and (expect := entry.get("expect")) is not None:
            expected = tuple(expect) if isinstance(expect, list) else (expect,)
            written = (expected, dict(entry.get("then") or {}))
            wrong = _disagreement(domain, spec, scenario, ("calls", j), written, predicted)
        if wrong is not None:  # the first one: later entries are not predicted
            break
    return wrong


def scenario_problems(catalog: Catalog) -> list[str]:
    """Every scenario of the catalog whose expected codes or `then` the rules do not predict,
    whose world the invariants forbid, or whose rules fail on it (`file:line: message`):
    found by `conformance validate` with the oracle alone, as the scenario checks would find
    them."""
    problems: list[str] = []
    for spec in catalog.specs.values():
        oracle = Oracle(spec, catalog.codes)
        for number, scenario in enumerate(spec.scenarios, 1):
            try:
                if scenario.calls:
                    wrong = sequence_disagreement(spec, scenario, catalog)
                else:
                    _predicted(spec, scenario, catalog.domain_of(spec), oracle)
                    wrong = None
            except OracleCostError as exc:  # paid once per spec, not once per scenario
                left = len(spec.scenarios) - number
                problems.append(
                    f"{exc}"
                    + (f" ({left} later scenarios of {spec.id} not judged)" if left else "")
                )
                break
            except OracleError as exc:
                wrong = exc
            if wrong is not None:
                problems.append(str(wrong))
    return problems


def _repro(steps: list[dict[str, Any]], args: dict[str, Any], scenario: Scenario) -> CallRepro:
    """The failing scenario as its reproduction: with its `then`, which a replay compares."""
    written = repro(steps, args, scenario.expect)
    if scenario.then:
        written["then"] = dict(scenario.then)
    return written


def check_scenario(subject: Subject, scenario: Scenario) -> Verdict:
    spec = subject.spec
    args = scenario_args(spec, scenario)
    steps = [dict(s) for s in scenario.given]
    # the oracle first (it is free): a spec error is raised before any provider operation
    state, predicted = _predicted(spec, scenario, subject.domain, subject.oracle)
    refused = (subject.allowed or Allowed()).refused(*scenario_needs(scenario, spec.id))
    if refused is not None:
        raise NotApplicable(f"unsupported by the provider: {refused}")
    then = Then(spec, args, tuple(scenario.then))
    try:
        world, _ = prepare(subject, steps, then=then, state=state)
        trial = Trial(world, state, args, world.call(spec, args))
    except ProviderError as exc:
        raise CheckFailed(
            f"{exc} {context_line(steps, args)}",
            _repro(steps, args, scenario),
            scenario.expect,
        ) from None
    codes = {s: FAILED for s in scenario.expect}
    problem = code_mismatch(
        subject, scenario.expect, trial.outcome, state, args
    ) or outputs_mismatch(trial.world, predicted.outputs, trial.outcome)
    if problem is None:
        problem = then_mismatch(scenario.then, trial.world.observe)
    if problem:
        raise CheckFailed(
            f"{problem} {context_line(steps, args)}",
            _repro(steps, args, scenario),
            scenario.expect,
            details(subject, trial, scenario.expect),
        )
    return Verdict(PASSED, codes={s: PASSED for s in codes})
