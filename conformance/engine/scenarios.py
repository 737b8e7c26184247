"""Scenario checks: one row of a spec's scenario table (given, call, code, then) run as written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conformance.engine.judging import (
    _objects,
    canonical,
    code_mismatch,
    context_line,
    details,
    outputs_mismatch,
    repro,
)
from conformance.engine.oracle import OracleError
from conformance.engine.strategies import state_of
from conformance.engine.trial import Trial, prepare
from conformance.engine.verdict import FAILED, PASSED, CheckFailed, Verdict
from conformance.engine.world import OUT, ProviderError, Then, Unknown

if TYPE_CHECKING:
    from conformance.engine.subject import Subject
    from conformance.spec.model import Scenario, Spec

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
                f"{', '.join(predicted.codes)} (rule {predicted.rule.index})"
            )
    except OracleError as exc:
        wrong = exc
    then = Then(spec, args, tuple(scenario.then)) if wrong is None else None
    try:
        world, _ = prepare(subject, steps, then=then, state=state)
        if wrong is not None:
            raise wrong
        trial = Trial(world, state, args, world.call(spec, args))
    except ProviderError as exc:
        raise CheckFailed(
            f"{exc} {context_line(steps, args)}",
            repro(steps, args, scenario.expect),
            scenario.expect,
        ) from None
    codes = {s: FAILED for s in scenario.expect}
    problem = code_mismatch(
        subject, scenario.expect, trial.outcome, state, args
    ) or outputs_mismatch(trial.world, predicted.outputs, trial.outcome)
    if problem is None:
        problem = _then_mismatch(trial, scenario.then)
    if problem:
        raise CheckFailed(
            f"{problem} {context_line(steps, args)}",
            repro(steps, args, scenario.expect),
            scenario.expect,
            details(subject, trial, scenario.expect),
        )
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
            return (
                f"{coll} after the call: expected {len(want)} objects, provider has "
                f"{_objects(seen)}"
            )
    return None


def _same(a: Any, b: Any) -> bool:
    return canonical([{"v": a}]) == canonical([{"v": b}])
